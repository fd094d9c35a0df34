"""`make run`: the whole bridge on a workstation.

Starts the Firestore emulator, the four functions (one functions-framework process each), and
the local scheduler loop; prints the URLs and the effective settings once the functions
themselves answer; on Ctrl-C, SIGTERM or SIGHUP (terminal closed) stops every process it
started (each in its own process group) and exits. If one of them dies, the others are stopped
too. Every child also gets a death signal (devtools/lifetime.py): a SIGKILL of this launcher,
which runs no cleanup, still ends them all, so the next `make run` finds its ports free.

Ports: `LOCAL_BASE_PORT` (default 8080) for `api`, then `sync_device`, `refresh_devices`,
`webhooks`; the emulator on `FIRESTORE_PORT` (default 8090). A port already in use stops the
start before anything runs, naming the port and the variable that moves it.

Data: the emulator loads the newest export in `LOCAL_DATA_DIR` (default `.local-data/`,
git-ignored) at start, and the launcher exports to it every `LOCAL_EXPORT_INTERVAL` seconds (60)
and on a clean stop: a hard kill loses at most that interval. `--reset` (`make run RESET=1`)
deletes the exports and starts empty.

The TLINK receiver refuses pushes without a protection (issue 13), so the local stack has one:
a path token made on first start in the local secrets (`.secrets/tlink-path-token`), with
`TLINK_REQUIRE_PATH_TOKEN` on; the banner prints the push URL with it. Only an explicit
`TLINK_ALLOW_UNAUTHENTICATED=true` (without `TLINK_REQUIRE_PATH_TOKEN`) leaves it open.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.emulator import Emulator, EmulatorMissing, stop_process_group
from devtools.lifetime import die_with_parent, port_taken
from shared.config import Settings, load_settings
from shared.errors import ConfigError
from shared.secrets import LocalSecretStore, SecretNotFound

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("api", "sync_device", "refresh_devices", "webhooks")
READY_TIMEOUT = 60.0
DEFAULT_DATA_DIR = ".local-data"
DEFAULT_EXPORT_INTERVAL = 60.0  # seconds: what a hard kill may lose at most
EXPORT_JOIN_TIMEOUT = 70.0  # seconds; longer than one export may take (EXPORT_TIMEOUT)
EXPORT_PREFIX = "export-"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """A stop signal arrived: unwinds whatever the launcher was doing into its cleanup."""


class PortsTaken(Exception):
    """Ports in use before the start; the message names them and the variables to set."""


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class StackHooks:
    """What a wrapper of this stack adds to it (`make demo`, devtools/demo.py); each gets the
    functions' URLs by name. An exception from a hook stops the stack like any start failure."""

    # The functions answer and the scheduler loop has not started yet (its first tick
    # refreshes the device lists): the place to upload credentials through the API.
    ready: Callable[[dict[str, str]], None]
    # After the banner: the wrapper's own work begins.
    running: Callable[[dict[str, str]], None]
    # The first step of the cleanup, before any process is stopped.
    stopping: Callable[[], None]


# The functions that write Traccar's Find Hub sender attributes (`API_URL` and the command key)
# onto its devices, as Terraform deploys them: never the public webhooks function, which must
# not read the command key (its `API_URL` is set empty, whatever `.env` says).
COMMAND_WRITERS = ("sync_device", "refresh_devices")


def public_api_url(settings: Settings, urls: dict[str, str]) -> str:
    """The API's URL Traccar's "Send command" calls (`command.findHub.url`): the user's
    `API_URL` (a tunnel a remote Traccar reaches), else the local API's own URL, so that the
    local stack provisions the command attributes as the cloud does."""
    return str(settings.api_url).rstrip("/") if settings.api_url else urls["api"]


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


def answers_as_a_function(url: str) -> bool:
    """True when `url` answers the way our functions do: a JSON object, whatever the status
    (`sync_device` has no /health and answers a JSON 404). Another program on the port would
    have been caught before the start; this keeps the banner from trusting any HTTP answer."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            content_type, body = response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        content_type, body = error.headers.get("Content-Type", ""), error.read()
    except (urllib.error.URLError, OSError):
        return False
    if not content_type.startswith("application/json"):
        return False
    with contextlib.suppress(ValueError):
        return isinstance(json.loads(body), dict)
    return False


def wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode} while starting")
        if answers_as_a_function(url):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT:.0f} s")


def check_ports(base_port: int, firestore_port: int) -> None:
    """Refuse the start when a port is in use, before anything is started."""
    taken = [
        f"{base_port + i} ({name}; LOCAL_BASE_PORT={base_port} numbers the functions' ports)"
        for i, name in enumerate(FUNCTIONS)
        if port_taken(base_port + i)
    ]
    if port_taken(firestore_port):
        taken.append(f"{firestore_port} (Firestore emulator; FIRESTORE_PORT)")
    if taken:
        raise PortsTaken(
            "port already in use: "
            + ", ".join(taken)
            + ". Stop what uses it, or move the stack, e.g. "
            f"`LOCAL_BASE_PORT={base_port + 100} FIRESTORE_PORT={firestore_port + 100} make run`"
        )


class LocalData:
    """The emulator's data between two `make run`s: `<folder>/export-<time>/`, newest wins.

    An export is written under a `partial-` name and renamed once complete, so a launcher
    killed in the middle of one leaves the previous export as the newest complete one."""

    def __init__(self, folder: Path, *, project: str) -> None:
        self.folder = folder
        self.project = project
        self.failure_reported = False

    def newest(self) -> Path | None:
        """The newest complete export's metadata file, the one `--import-data` takes."""
        for export in sorted(self.folder.glob(EXPORT_PREFIX + "*"), reverse=True):
            found = sorted(export.glob("*.overall_export_metadata"))
            if found:
                return found[0]
        return None

    def reset(self) -> None:
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                if entry.name.startswith((EXPORT_PREFIX, "partial-")):
                    shutil.rmtree(entry, ignore_errors=True)

    def export(self, emulator: Emulator) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.monotonic_ns() % 1_000_000:06d}"
        partial = f"partial-{stamp}"
        emulator.export(self.project, self.folder, partial)
        (self.folder / partial).rename(self.folder / f"{EXPORT_PREFIX}{stamp}")
        # Only the newest export is kept; leftovers of an interrupted one go too.
        for entry in self.folder.iterdir():
            name = entry.name
            if name.startswith((EXPORT_PREFIX, "partial-")) and name != EXPORT_PREFIX + stamp:
                shutil.rmtree(entry, ignore_errors=True)

    def export_quietly(self, emulator: Emulator) -> None:
        """An export from the periodic thread: a failure is said once, never stops the stack."""
        try:
            self.export(emulator)
        except (OSError, urllib.error.URLError) as exc:
            if not self.failure_reported:
                self.failure_reported = True
                print(f"make run: exporting to {self.folder} failed: {exc}", file=sys.stderr)


def local_data_folder() -> Path:
    # Relative to the repository, as SECRETS_DIR is for the functions.
    return ROOT / os.environ.get("LOCAL_DATA_DIR", DEFAULT_DATA_DIR)


def export_interval() -> float:
    value = os.environ.get("LOCAL_EXPORT_INTERVAL", str(DEFAULT_EXPORT_INTERVAL))
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"LOCAL_EXPORT_INTERVAL must be a positive number of seconds: {value!r}")
    return seconds


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


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reset", action="store_true", help="delete the local data and start empty"
    )
    return parser.parse_args(argv)


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own session: a Ctrl-C reaches the launcher alone, which stops the children in order.
    # Death signal: they end with the launcher even when it is killed without any cleanup.
    return subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, preexec_fn=die_with_parent()
    )


def print_banner(
    settings: Settings,
    urls: dict[str, str],
    *,
    push_token: str | None,
    emulator: Emulator,
    data: LocalData,
    data_note: str,
) -> None:
    print("\ntraccar-bridge is running:")
    for name in FUNCTIONS:
        print(f"  {name:<16} {urls[name]}")
    # An empty API_TOKEN leaves the local API open to anyone who reaches the port: say so.
    auth = "bearer token (API_TOKEN)" if settings.api_token else "no auth (API_TOKEN is empty)"
    print(f"  {'api auth':<16} {auth}")
    print(f"  {'status page':<16} {urls['api']}/status (asks for API_TOKEN)")
    if push_token is not None:
        print(f"  {'tlink push':<16} {urls['webhooks']}/tlink/{push_token}")
    else:
        print(f"  {'tlink push':<16} {urls['webhooks']}/tlink (unprotected on purpose)")
    print(f"  {'traccar osmand':<16} {settings.traccar_server_url} (TRACCAR_SERVER_URL)")
    api = settings.traccar_api_url or "not set: devices are not created (TRACCAR_API_URL)"
    print(f"  {'traccar api':<16} {api}")
    print(f"  {'traccar commands':<16} {public_api_url(settings, urls)} (API_URL)")
    print(f"  {'secrets':<16} local files in {ROOT / settings.secrets_dir} (make secrets)")
    print(f"  {'scheduler':<16} local loop")
    print(f"  {'firestore':<16} http://{emulator.address} (emulator, project {data.project})")
    print(f"  {'data':<16} {data.folder} ({data_note})")
    print(f"  try: curl {urls['api']}/health\nCtrl-C stops everything.\n", flush=True)


def main(argv: list[str] | None = None, hooks: StackHooks | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        settings = load_settings()
        interval = export_interval()
    except (ConfigError, ValueError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2

    base_port = int(os.environ.get("LOCAL_BASE_PORT", "8080"))
    firestore_port = int(os.environ.get("FIRESTORE_PORT", "8090"))
    try:
        check_ports(base_port, firestore_port)
    except PortsTaken as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2

    emulator = Emulator(port=firestore_port)
    data = LocalData(local_data_folder(), project=settings.gcp_project)
    urls = {name: f"http://127.0.0.1:{base_port + i}" for i, name in enumerate(FUNCTIONS)}
    started: list[Started] = []
    exporting = threading.Event()  # set: the periodic export stops
    exporters: list[threading.Thread] = []
    emulator_up = False

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)

    try:
        if arguments.reset:
            data.reset()
        import_file = data.newest()
        data_note = f"loaded {import_file.parent.name}" if import_file else "started empty"
        if arguments.reset:
            data_note += ", RESET"
        data.folder.mkdir(parents=True, exist_ok=True)
        print(f"starting the Firestore emulator on {emulator.address} ...", flush=True)
        try:
            emulator.start(log_path=data.folder / "emulator.log", import_file=import_file)
        except RuntimeError as exc:
            hint = " (`make run RESET=1` starts empty)" if import_file else ""
            raise RuntimeError(f"{exc}; see {data.folder / 'emulator.log'}{hint}") from None
        emulator_up = True
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
        api_url = public_api_url(settings, urls)
        for name in FUNCTIONS:
            port = int(urls[name].rsplit(":", 1)[1])
            function_env = {**env, "API_URL": api_url if name in COMMAND_WRITERS else ""}
            started.append(Started(name, spawn(function_command(name, port), function_env)))
        for entry in started:
            wait_until_answering(urls[entry.name] + "/health", entry.process)
        if hooks is not None:
            hooks.ready(urls)
        loop = spawn([sys.executable, "-m", "devtools.scheduler"], env)
        started.append(Started("scheduler loop", loop))
        exporter = threading.Thread(
            target=lambda: periodic_export(data, emulator, exporting, interval),
            name="local-data-export",
            daemon=True,
        )
        exporter.start()
        exporters.append(exporter)

        print_banner(
            settings,
            urls,
            push_token=push_token,
            emulator=emulator,
            data=data,
            data_note=data_note,
        )
        if hooks is not None:
            hooks.running(urls)
        while True:
            time.sleep(0.5)
            for entry in started:
                if entry.process.poll() is not None:
                    print(
                        f"make run: {entry.name} exited ({entry.process.returncode})",
                        file=sys.stderr,
                    )
                    return 1
    except Interrupted:
        return 0
    except EmulatorMissing as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short: the children have their death
        # signal, but the last export would be lost.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if hooks is not None:
            hooks.stopping()
        exporting.set()
        for exporter in exporters:
            exporter.join(timeout=EXPORT_JOIN_TIMEOUT)  # one export at a time in the folder
        for entry in reversed(started):
            stop_process_group(entry.process)
        if emulator_up and emulator.ready():
            data.export_quietly(emulator)  # after the functions: their last writes are in
        emulator.stop()
        # SIGHUP: the terminal may be gone, and with it stdout.
        with contextlib.suppress(OSError):
            print("stopped.", flush=True)


def periodic_export(
    data: LocalData, emulator: Emulator, stop: threading.Event, interval: float
) -> None:
    while not stop.wait(interval):
        data.export_quietly(emulator)


if __name__ == "__main__":
    raise SystemExit(main())
