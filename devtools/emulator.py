"""Start and stop the official Firestore emulator, for `make run` and the test session.

The emulator is Google's own Java server (`cloud-firestore-emulator`); the bridge never
imitates Firestore in memory. `find_emulator()` looks for it where the Debian/Ubuntu package and
the gcloud SDK put it; when it is missing, `EmulatorMissing` says how to install it.

The SDK's `cloud_firestore_emulator` is a bash script that forks `java` (no `exec`): a death
signal set on the script would not reach the JVM, which holds the port. So when the jar sits
beside the script, `jvm_command` starts the JVM directly, the way the script would, and the JVM
gets the death signal itself (devtools/lifetime.py). Through `gcloud emulators firestore start`
only the launcher's own cleanup stops it.

`export()` writes the database through the emulator's REST export endpoint; `start(import_file=)`
loads such an export (`make run` keeps its data that way, devtools/run.py). The emulator's own
`--export-on-exit` is not used: on SIGTERM it wrote nothing in our tries (version of Dec 2026).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.lifetime import die_with_parent

SDK_ROOTS = (
    Path("/usr/lib/google-cloud-sdk"),
    Path("/usr/share/google-cloud-sdk"),
    Path("/opt/google-cloud-sdk"),
    Path.home() / "google-cloud-sdk",
)
SCRIPT = Path("platform/cloud-firestore-emulator/cloud_firestore_emulator")
JAR_NAME = "cloud-firestore-emulator.jar"
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
EXPORT_TIMEOUT = 60.0  # seconds for one export of the whole database
START_TIMEOUT = 60.0  # seconds; the JVM's first start on a busy 2-core machine takes ~10 s

INSTALL_HELP = """\
The Firestore emulator is not installed (it needs Java 17 or newer).
Install it with one of:
  sudo apt-get install google-cloud-cli-firestore-emulator default-jre-headless
      (Debian/Ubuntu with Google's apt repository: https://cloud.google.com/sdk/docs/install)
  gcloud components install cloud-firestore-emulator
      (a gcloud SDK installed from Google's archive)
or point FIRESTORE_EMULATOR_BIN at the cloud_firestore_emulator script."""


class EmulatorMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__(INSTALL_HELP)


def find_emulator() -> list[str]:
    """The command that starts the emulator, without its host and port arguments."""
    override = os.environ.get("FIRESTORE_EMULATOR_BIN")
    if override:
        return [override, "start"]
    if shutil.which("java"):
        for root in SDK_ROOTS:
            script = root / SCRIPT
            if script.is_file():
                return [str(script), "start"]
    gcloud = shutil.which("gcloud")
    if gcloud and shutil.which("java"):
        sdk = Path(os.path.realpath(gcloud)).parent.parent
        if (sdk / SCRIPT).is_file():
            return [gcloud, "emulators", "firestore", "start"]
    raise EmulatorMissing


def jvm_command(command: list[str]) -> list[str]:
    """`command` with the SDK script replaced by the `java` line it would run, when the jar sits
    beside the script and `java` is on PATH; otherwise `command` unchanged."""
    script = Path(command[0])
    java = os.environ.get("JAVA") or shutil.which("java")
    jar = script.parent / JAR_NAME
    if command[1:] != ["start"] or not java or not jar.is_file():
        return command
    # The script's own flags: English messages, the jar on the class path.
    return [java, "-Duser.language=en", "-cp", str(jar), MAIN_CLASS, "start"]


# Where `free_port` looks: below the kernel's ephemeral range. The emulator binds its WebSocket
# server to a port the OS picks from that range as it starts, and outgoing connections take
# theirs from it too: a port the OS handed out there could be taken again before the emulator
# (or a function) binds it (seen once in `make test`: the WebSocket server got the very port
# chosen for the emulator, which then died with "Address already in use").
LOWEST_FREE_PORT = 10_000
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_START = 32_768  # Linux's default


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def free_port() -> int:
    """A port nobody listens on now, outside the range the OS picks ports from (see above)."""
    highest = _ephemeral_start() - 1
    for _ in range(200):
        port = random.randint(LOWEST_FREE_PORT, highest)  # noqa: S311 (a port, not a secret)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST_FREE_PORT} and {highest}")


class Emulator:
    """One running emulator process (its own process group, so stopping it leaves nothing)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, log_path: Path | None = None, *, import_file: Path | None = None) -> None:
        """Start and wait until it answers; `import_file`: an export's
        `.overall_export_metadata` file to load first."""
        command = find_emulator()
        if command[1] == "emulators":
            command += [f"--host-port={self.address}", "--quiet"]
        else:
            command = [*jvm_command(command), f"--host={self.host}", f"--port={self.port}"]
        if import_file is not None:
            command.append(f"--import-data={import_file}")
        output = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # the JVM ends with whoever started it
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Firestore emulator exited early ({self._process.returncode})")
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Firestore emulator not ready after {START_TIMEOUT:.0f} s")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/", timeout=1) as response:
                return response.read().strip() == b"Ok"
        except (urllib.error.URLError, OSError):
            return False

    def wipe(self, project: str) -> None:
        """Delete every document of `project`'s default database."""
        request = urllib.request.Request(
            f"http://{self.address}/emulator/v1/projects/{project}/databases/(default)/documents",
            method="DELETE",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def export(self, project: str, directory: Path, name: str) -> Path:
        """Export `project`'s default database to `directory/name`; returns the export's
        `.overall_export_metadata` file (what `start(import_file=)` takes)."""
        directory.mkdir(parents=True, exist_ok=True)  # the emulator refuses a missing folder
        body = {
            "database": f"projects/{project}/databases/(default)",
            "export_directory": str(directory.resolve()),
            "export_name": name,
        }
        request = urllib.request.Request(
            f"http://{self.address}/emulator/v1/projects/{project}:export",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT):  # noqa: S310 - loopback
            pass
        return directory.resolve() / name / f"{name}.overall_export_metadata"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        stop_process_group(self._process)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process's group, then SIGKILL what is still there after `timeout`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    # The group may hold children (the emulator's JVM) that outlive their parent shell.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
