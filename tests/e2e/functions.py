"""Starting a function the way Cloud Functions runs it: a `functions-framework` process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from test_utils.retry import RetryErrors

from devtools.emulator import free_port, stop_process_group
from tests.conftest import PROJECT

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT = 10.0  # seconds for one request to a local function
# A cold functions-framework start imports Flask, gunicorn and pydantic: seconds on a busy box.
START_TRIES = 120
START_DELAY = 0.25


@dataclass
class Function:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class FunctionDied(Exception):
    pass


def start(target: str, *, env: dict[str, str], workdir: Path, label: str) -> Function:
    port = free_port()
    log = workdir / f"{label}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                f"--source={ROOT / 'functions' / target / 'main.py'}",
                f"--target={target}",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops gunicorn's worker too
        )
    return Function(label, f"http://127.0.0.1:{port}", process, log)


def wait_until_answering(function: Function) -> None:
    @RetryErrors(requests.ConnectionError, max_tries=START_TRIES, delay=START_DELAY, backoff=1)
    def answer() -> None:
        if function.process.poll() is not None:
            raise FunctionDied(f"{function.name} exited:\n{function.log_text()}")
        requests.get(function.url + "/", timeout=REQUEST_TIMEOUT)  # any HTTP answer will do

    answer()


def environment(emulator_address: str, workdir: Path, **settings: str) -> dict[str, str]:
    """A function's whole environment: the emulator, the test project, local secrets under
    `workdir`, no `.env` (the working directory is `workdir`), plus `settings`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "FIRESTORE_EMULATOR_HOST": emulator_address,
        "GCP_PROJECT": PROJECT,
        "SECRETS_DIR": str(workdir / "secrets"),
        "SECRETS_BACKEND": "local",
        "SCHEDULER_BACKEND": "local",
        **settings,
    }


@contextmanager
def running(
    specs: list[tuple[str, str, dict[str, str]]], *, env: dict[str, str], workdir: Path
) -> Iterator[dict[str, Function]]:
    """Start `(target, label, extra settings)` processes, wait until each answers, stop them
    all (their whole process groups) on the way out."""
    started: dict[str, Function] = {}
    try:
        for target, label, extra in specs:
            started[label] = start(target, env={**env, **extra}, workdir=workdir, label=label)
        for function in started.values():
            wait_until_answering(function)
        yield started
    finally:
        for function in started.values():
            stop_process_group(function.process)
