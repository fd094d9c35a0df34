"""`make run`'s runner (`python -m devtools.run`) as a user starts and stops it.

The runner starts its own Firestore emulator, the four functions and the scheduler loop. The
test notes every process below the runner (walking /proc), sends SIGTERM, and checks that the
runner exits promptly and that none of those processes, the emulator's JVM included, is left.
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

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.run"],
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
