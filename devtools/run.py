"""`make run`: the whole bridge on a workstation.

Starts the Firestore emulator, the four functions (one functions-framework process each), and
the local scheduler loop; prints the URLs; on Ctrl-C or SIGTERM stops every process it started
(each in its own process group) and exits. If one of them dies, the others are stopped too.

Ports: `LOCAL_BASE_PORT` (default 8080) for `api`, then `sync_device`, `refresh_devices`,
`webhooks`; the emulator on `FIRESTORE_PORT` (default 8090).

The TLINK receiver refuses pushes without a protection (issue 13), so the local stack has one:
a path token made on first start in the local secrets (`.secrets/tlink-path-token`), with
`TLINK_REQUIRE_PATH_TOKEN` on; the banner prints the push URL with it. Only an explicit
`TLINK_ALLOW_UNAUTHENTICATED=true` (without `TLINK_REQUIRE_PATH_TOKEN`) leaves it open.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.emulator import Emulator, EmulatorMissing, stop_process_group
from shared.config import Settings, load_settings
from shared.errors import ConfigError
from shared.secrets import LocalSecretStore, SecretNotFound

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("api", "sync_device", "refresh_devices", "webhooks")
READY_TIMEOUT = 60.0


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]


def function_command(name: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "functions_framework",
        f"--source={ROOT / 'functions' / name / 'main.py'}",
        f"--target={name}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]


def wait_until_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT:.0f} s")


def tlink_path_token(settings: Settings) -> str | None:
    """The local TLINK push token, made and stored on first start; None when the user left the
    receiver open on purpose (`TLINK_ALLOW_UNAUTHENTICATED` without the path token)."""
    if settings.tlink_allow_unauthenticated and not settings.tlink_require_path_token:
        return None
    # The functions run in ROOT: a relative SECRETS_DIR is theirs, wherever this was started.
    store = LocalSecretStore(ROOT / settings.secrets_dir)
    name = settings.tlink_path_token_secret
    try:
        token = store.read(name).strip()
    except SecretNotFound:
        token = ""
    if not token:
        token = secrets.token_hex(24)
        store.add_version(name, token)
    return token


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2

    base_port = int(os.environ.get("LOCAL_BASE_PORT", "8080"))
    emulator = Emulator(port=int(os.environ.get("FIRESTORE_PORT", "8090")))
    urls = {name: f"http://127.0.0.1:{base_port + i}" for i, name in enumerate(FUNCTIONS)}
    started: list[Started] = []
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    try:
        print(f"starting the Firestore emulator on {emulator.address} ...", flush=True)
        emulator.start()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FIRESTORE_EMULATOR_HOST": emulator.address,
            "GCP_PROJECT": settings.gcp_project,
            "SECRETS_BACKEND": "local",
            "SCHEDULER_BACKEND": "local",
            "SYNC_DEVICE_URL": urls["sync_device"],
            "REFRESH_DEVICES_URL": urls["refresh_devices"],
        }
        push_token = tlink_path_token(settings)
        if push_token is not None:
            env["TLINK_REQUIRE_PATH_TOKEN"] = "true"  # noqa: S105 - a switch, not a secret
        for name in FUNCTIONS:
            port = int(urls[name].rsplit(":", 1)[1])
            process = subprocess.Popen(
                function_command(name, port), cwd=ROOT, env=env, start_new_session=True
            )
            started.append(Started(name, process))
        for entry in started:
            wait_until_listening(urls[entry.name] + "/health", entry.process)
        loop = subprocess.Popen(
            [sys.executable, "-m", "devtools.scheduler"], cwd=ROOT, env=env, start_new_session=True
        )
        started.append(Started("scheduler loop", loop))

        print("\ntraccar-bridge is running:")
        for name in FUNCTIONS:
            print(f"  {name:<16} {urls[name]}")
        # An empty API_TOKEN leaves the local API open to anyone who reaches the port: say so.
        auth = "bearer token (API_TOKEN)" if settings.api_token else "no auth (API_TOKEN is empty)"
        print(f"  {'api auth':<16} {auth}")
        if push_token is not None:
            print(f"  {'tlink push':<16} {urls['webhooks']}/tlink/{push_token}")
        else:
            print(f"  {'tlink push':<16} {urls['webhooks']}/tlink (unprotected on purpose)")
        print(f"  {'firestore':<16} http://{emulator.address} (emulator)")
        print(f"  try: curl {urls['api']}/health\nCtrl-C stops everything.\n", flush=True)

        while not stop.wait(0.5):
            for entry in started:
                if entry.process.poll() is not None:
                    print(
                        f"make run: {entry.name} exited ({entry.process.returncode})",
                        file=sys.stderr,
                    )
                    return 1
        return 0
    except EmulatorMissing as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        for entry in reversed(started):
            stop_process_group(entry.process)
        emulator.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
