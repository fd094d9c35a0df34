"""`make run`'s runner (`python -m devtools.run`) as a user starts and stops it.

The runner starts its own Firestore emulator, the four functions and the scheduler loop. The
tests note every process below the runner (walking /proc), send it SIGINT, SIGTERM, SIGHUP or
SIGKILL, and check that none of those processes, the emulator's JVM included, is left, that a
second runner on the same ports starts cleanly and finds the data of the first; a port in use
stops the start before anything runs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from test_utils.retry import RetryResult

from devtools.emulator import Emulator, free_port
from shared.secrets import LocalSecretStore

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("api", "sync_device", "refresh_devices", "webhooks")
REQUEST_TIMEOUT = 10.0  # seconds for one request to the running stack
STOP_TIMEOUT = 45.0  # seconds; each process group gets 10 s to stop before SIGKILL
BAD_CONFIG_TIMEOUT = 30.0  # seconds for the runner to refuse a bad configuration
READY_MARKER = "Ctrl-C stops everything"


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: int  # clock ticks since boot: tells a process from a later one reusing its pid
    cmdline: str

    def alive(self) -> bool:
        stat = read_stat(self.pid)
        return stat is not None and stat[2] == self.start_time and stat[0] != "Z"


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of `pid`, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name sits in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def read_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def environment_of(pid: int) -> dict[str, str]:
    """The environment `pid` was started with (/proc/<pid>/environ)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    pairs = (entry.decode().partition("=") for entry in raw.split(b"\0") if entry)
    return {name: value for name, _, value in pairs}


def all_processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            found.append(Proc(int(entry.name), stat[2], read_cmdline(int(entry.name))))
    return found


def descendants(root: int) -> set[Proc]:
    """Every live process below `root`, however deep (the JVM is the emulator script's child)."""
    parents: dict[int, int] = {}
    by_pid: dict[int, Proc] = {}
    for proc in all_processes():
        stat = read_stat(proc.pid)
        if stat is not None and stat[0] != "Z":
            parents[proc.pid] = stat[1]
            by_pid[proc.pid] = proc
    found: set[Proc] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and by_pid[pid] not in found:
                found.add(by_pid[pid])
                frontier.append(pid)
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def nothing_listens(port: int) -> bool:
    # A connection, not a bind: the requests made leave TIME_WAIT sockets on the port.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports (the runner numbers the functions' ports)."""
    for _ in range(50):
        base = free_port()
        if base + size <= 65_535 and all(port_is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports")


class Runner:
    """`python -m devtools.run` with its output collected line by line as it comes."""

    module = "devtools.run"  # `make demo`'s test runs devtools.demo (tests/e2e/test_demo.py)

    def __init__(self, env: dict[str, str], *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *arguments],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until_ready(self) -> None:
        @RetryResult(lambda ready: ready, max_tries=240, delay=0.5, backoff=1)
        def printed_urls() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"the runner exited ({self.process.returncode}):\n{self.output}")
            return READY_MARKER in self.output

        printed_urls()

    def urls(self) -> dict[str, str]:
        found = {}
        for name in FUNCTIONS:
            match = re.search(rf"^\s+{name}\s+(http://\S+)$", self.output, re.MULTILINE)
            assert match, f"no URL printed for {name}:\n{self.output}"
            found[name] = match.group(1)
        return found


def runner_env(tmp_path: Path, base_port: int, firestore_port: int, **extra: str) -> dict[str, str]:
    # `.env` is read from the working directory (the repository): every variable that matters
    # here is set explicitly, and the environment wins over `.env`.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "LOCAL_BASE_PORT": str(base_port),
        "FIRESTORE_PORT": str(firestore_port),
        "GCP_PROJECT": "traccar-bridge-stack-test",
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": "",
        "LOG_LEVEL": "INFO",
        "LOCAL_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }
    if "FIRESTORE_EMULATOR_BIN" in os.environ:
        env["FIRESTORE_EMULATOR_BIN"] = os.environ["FIRESTORE_EMULATOR_BIN"]
    return env


def test_runner_serves_the_api_and_sigterm_leaves_no_process_behind(
    emulator: Emulator, tmp_path: Path
) -> None:
    # `emulator`: a missing emulator stops the session with the install message, as everywhere.
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    runner = Runner(runner_env(tmp_path, base_port, firestore_port))
    started: set[Proc] = set()
    try:
        runner.wait_until_ready()
        urls = runner.urls()
        assert urls["api"] == f"http://127.0.0.1:{base_port}"
        assert "no auth (API_TOKEN is empty)" in runner.output  # the open API is announced

        health = requests.get(urls["api"] + "/health", timeout=REQUEST_TIMEOUT)
        assert health.status_code == 200
        assert health.headers["Content-Type"].startswith("application/json")
        assert health.json() == {"status": "ok", "services": 0}
        webhooks = requests.get(urls["webhooks"] + "/health", timeout=REQUEST_TIMEOUT)
        assert webhooks.json() == {"status": "ok"}
        # The TLINK receiver is protected from the first start: a path token was made in the
        # local secrets and the banner gives the whole push URL.
        token = LocalSecretStore(tmp_path / "secrets").read("tlink-path-token")
        assert f"tlink push       {urls['webhooks']}/tlink/{token}" in runner.output
        push = (ROOT / "tests" / "data" / "tlink_push.json").read_bytes()
        bare = requests.post(urls["webhooks"] + "/tlink", data=push, timeout=REQUEST_TIMEOUT)
        with_token = requests.post(
            f"{urls['webhooks']}/tlink/{token}", data=push, timeout=REQUEST_TIMEOUT
        )
        assert (bare.status_code, with_token.status_code) == (404, 200), with_token.text

        started = descendants(runner.process.pid)
        commands = [proc.cmdline for proc in started]
        assert any("CloudFirestore" in command for command in commands), commands  # the JVM
        for name in FUNCTIONS:
            assert any(f"--target={name}" in command for command in commands), commands
        assert any("devtools.scheduler" in command for command in commands), commands
        # Traccar's commands reach the local API: the scheduled functions write its URL onto
        # Traccar's devices (`command.findHub.url`); the webhooks function gets none, as in
        # the cloud (it must never read the command key).
        assert f"traccar commands {urls['api']} (API_URL)" in runner.output
        api_urls = {
            name: environment_of(proc.pid).get("API_URL")
            for proc in started
            for name in FUNCTIONS
            if f"--target={name}" in proc.cmdline and "functions_framework" in proc.cmdline
        }
        assert api_urls == {
            "api": "",
            "sync_device": urls["api"],
            "refresh_devices": urls["api"],
            "webhooks": "",
        }

        runner.process.send_signal(signal.SIGTERM)
        assert runner.process.wait(timeout=STOP_TIMEOUT) == 0, runner.output

        @RetryResult(lambda left: not left, max_tries=20, delay=0.25, backoff=1)
        def left_behind() -> list[str]:
            return [proc.cmdline for proc in started if proc.alive()]

        left_behind()
        assert "stopped." in runner.output
        assert all(nothing_listens(base_port + i) for i in range(len(FUNCTIONS)))
        assert nothing_listens(firestore_port)
    finally:
        # Only on failure is anything still there: end exactly what the runner started.
        for proc in started | descendants(runner.process.pid):
            if proc.alive():
                os.kill(proc.pid, signal.SIGKILL)
        if runner.process.poll() is None:
            runner.process.kill()
        runner.process.wait()


def test_bad_configuration_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    env = runner_env(tmp_path, base_port, firestore_port, AUTO_REGISTER_TIMER="abc")

    result = subprocess.run(
        [sys.executable, "-m", "devtools.run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BAD_CONFIG_TIMEOUT,
        check=False,
    )

    assert result.returncode == 2
    assert "AUTO_REGISTER_TIMER" in result.stderr
    assert "starting" not in result.stdout + result.stderr
    # Nothing was started: no process anywhere uses the ports this run was given.
    ports = [f"--port={base_port + i}" for i in range(len(FUNCTIONS))] + [
        f"--port={firestore_port}"
    ]
    using = [proc.cmdline for proc in all_processes() if set(ports) & set(proc.cmdline.split())]
    assert using == []
    assert nothing_listens(firestore_port) and nothing_listens(base_port)


def stop_and_check_nothing_is_left(runner: Runner, signum: signal.Signals) -> set[Proc]:
    """Send `signum` to the runner; every process it started must be gone and nothing listen
    on its ports. Returns what it had started (for the caller's cleanup)."""
    started = descendants(runner.process.pid)
    runner.process.send_signal(signum)
    code = runner.process.wait(timeout=STOP_TIMEOUT)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0), runner.output

    # After a SIGKILL no cleanup ran: the kernel's death signal ends the children, which
    # then stop in their own time (gunicorn's workers, the JVM's shutdown).
    @RetryResult(lambda left: not left, max_tries=int(STOP_TIMEOUT * 4), delay=0.25, backoff=1)
    def left_behind() -> list[str]:
        return [proc.cmdline for proc in started if proc.alive()]

    left_behind()
    return started


def kill_leftovers(runner: Runner, started: set[Proc]) -> None:
    # Only on failure is anything still there: end exactly what the runner started.
    for proc in started | descendants(runner.process.pid):
        if proc.alive():
            os.kill(proc.pid, signal.SIGKILL)
    if runner.process.poll() is None:
        runner.process.kill()
    runner.process.wait()


def exports(tmp_path: Path) -> set[str]:
    return {path.name for path in (tmp_path / "data").glob("export-*")}


@pytest.mark.parametrize(
    "signum",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
    ids=lambda signum: signum.name,
)
def test_a_stop_signal_leaves_nothing_behind_and_the_next_start_finds_the_data(
    emulator: Emulator, tmp_path: Path, signum: signal.Signals
) -> None:
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    # Exports every second: a SIGKILL, which allows no last export, loses at most that.
    env = runner_env(tmp_path, base_port, firestore_port, LOCAL_EXPORT_INTERVAL="1")
    first = Runner(env)
    started: set[Proc] = set()
    try:
        first.wait_until_ready()
        assert "(started empty)" in first.output
        api = first.urls()["api"]
        put = requests.put(f"{api}/excluded-devices/kept-{signum.name}", timeout=REQUEST_TIMEOUT)
        assert put.status_code == 201, put.text
        if signum == signal.SIGKILL:
            # Two exports more: the second one began after the write.
            before = exports(tmp_path)

            @RetryResult(
                lambda found: len(found - before) >= 2, max_tries=40, delay=0.25, backoff=1
            )
            def newer_exports() -> set[str]:
                # Only the newest is kept: collect the names as they pass.
                before_and_new.update(exports(tmp_path))
                return before_and_new

            before_and_new: set[str] = set(before)
            newer_exports()
        started = descendants(first.process.pid)
        assert any("CloudFirestore" in proc.cmdline for proc in started)
        stop_and_check_nothing_is_left(first, signum)
        assert all(nothing_listens(base_port + i) for i in range(len(FUNCTIONS)))
        assert nothing_listens(firestore_port)
    finally:
        kill_leftovers(first, started)

    second = Runner(env)
    try:
        second.wait_until_ready()
        assert "loaded export-" in second.output
        excluded = requests.get(f"{api}/excluded-devices", timeout=REQUEST_TIMEOUT).json()
        assert [entry["id"] for entry in excluded] == [f"kept-{signum.name}"], excluded
        stop_and_check_nothing_is_left(second, signal.SIGTERM)
    finally:
        kill_leftovers(second, set())


def test_reset_starts_empty(emulator: Emulator, tmp_path: Path) -> None:
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    env = runner_env(tmp_path, base_port, firestore_port)
    first = Runner(env)
    try:
        first.wait_until_ready()
        api = first.urls()["api"]
        put = requests.put(f"{api}/excluded-devices/old", timeout=REQUEST_TIMEOUT)
        assert put.status_code == 201, put.text
        stop_and_check_nothing_is_left(first, signal.SIGTERM)  # a clean stop exports
    finally:
        kill_leftovers(first, set())
    assert exports(tmp_path)

    second = Runner(env, "--reset")
    try:
        second.wait_until_ready()
        assert "(started empty, RESET)" in second.output
        assert requests.get(f"{api}/excluded-devices", timeout=REQUEST_TIMEOUT).json() == []
        stop_and_check_nothing_is_left(second, signal.SIGTERM)
    finally:
        kill_leftovers(second, set())


@pytest.mark.parametrize("taken", ["function", "firestore"])
def test_a_port_in_use_stops_the_start_naming_it(tmp_path: Path, taken: str) -> None:
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    busy = base_port + 2 if taken == "function" else firestore_port
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", busy))
        listener.listen()
        result = subprocess.run(
            [sys.executable, "-m", "devtools.run"],
            cwd=ROOT,
            env=runner_env(tmp_path, base_port, firestore_port),
            capture_output=True,
            text=True,
            timeout=BAD_CONFIG_TIMEOUT,
            check=False,
        )

    assert result.returncode == 2, result.stdout + result.stderr
    variable = "LOCAL_BASE_PORT" if taken == "function" else "FIRESTORE_PORT"
    assert f"port already in use: {busy} (" in result.stderr
    assert variable in result.stderr
    assert "starting" not in result.stdout and "running" not in result.stdout
    assert all(nothing_listens(port) for port in (base_port, base_port + 1, firestore_port + 0))


def test_the_banner_waits_for_the_functions_not_any_server(tmp_path: Path) -> None:
    """Another HTTP server answering on a function's port is not taken for the function."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from devtools.run import answers_as_a_function

    class Plain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        assert not answers_as_a_function(url)
    finally:
        server.shutdown()
        server.server_close()
