"""`make demo` (`python -m devtools.demo`) as a newcomer starts and stops it.

The demo starts `make run`'s stack beside simulated vendors (the test fakes) and a Traccar
stand-in printing every position it receives. Within a minute of its start, positions of the
Google trackers and phone, the Smartcar vehicle and the TLINK device must have reached the
stand-in, the API must list the devices and their services must have run; SIGTERM must end
the demo and everything it started. It keeps to its own folder, refuses a cloud runtime, and
is never packaged for deployment.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from devtools.emulator import Emulator, free_port
from devtools.package import package
from tests.e2e.test_local_stack import (
    FUNCTIONS,
    REQUEST_TIMEOUT,
    ROOT,
    Proc,
    Runner,
    descendants,
    free_port_block,
    kill_leftovers,
    nothing_listens,
    runner_env,
    stop_and_check_nothing_is_left,
)

FIRST_POSITIONS_WITHIN = 60.0  # seconds from the start: the "within a minute"
GOOGLE = ("demo-keys", "demo-backpack", "demo-phone")
VEHICLE_ID = "7e1d2c3b-4a59-4e68-8f70-91a2b3c4d5e6"
TLINK = "tlink-2864"
AUTH = {"Authorization": "Bearer demo"}  # the demo's own token, printed in its banner


class Demo(Runner):
    module = "devtools.demo"

    def received(self) -> set[str]:
        """The Traccar unique ids the stand-in printed a position for."""
        return set(re.findall(r"^TRACCAR <- (\S+) ", self.output, re.MULTILINE))


def test_positions_of_every_vendor_arrive_within_a_minute_and_sigterm_ends_it_all(
    emulator: Emulator, tmp_path: Path
) -> None:
    # `emulator`: a missing emulator stops the session with the install message, as everywhere.
    base_port, firestore_port = free_port_block(len(FUNCTIONS)), free_port()
    folder = tmp_path / "demo"
    env = runner_env(tmp_path, base_port, firestore_port, DEMO_DIR=str(folder))
    started_at = time.monotonic()
    demo = Demo(env)
    started: set[Proc] = set()
    wanted = {*GOOGLE, f"smartcar-{VEHICLE_ID}", TLINK}
    try:
        while not wanted <= demo.received():
            if demo.process.poll() is not None:
                pytest.fail(f"the demo exited ({demo.process.returncode}):\n{demo.output}")
            if time.monotonic() - started_at > FIRST_POSITIONS_WITHIN:
                missing = sorted(wanted - demo.received())
                pytest.fail(f"no position of {missing} within a minute:\n{demo.output}")
            time.sleep(0.25)
        print(f"every vendor's first position after {time.monotonic() - started_at:.1f} s")
        assert "DEMO: simulated vendors, local only" in demo.output
        api = demo.urls()["api"]
        assert api == f"http://127.0.0.1:{base_port}"

        devices = requests.get(api + "/devices", headers=AUTH, timeout=REQUEST_TIMEOUT)
        assert devices.status_code == 200, devices.text
        ids = {device["id"] for device in devices.json()}
        assert set(GOOGLE) | {TLINK} <= ids, ids
        assert any(VEHICLE_ID in device_id for device_id in ids), ids
        # The Google and TLINK services ran through the scheduler loop ("locate now").
        services = requests.get(api + "/services", headers=AUTH, timeout=REQUEST_TIMEOUT).json()
        ran = {service["id"] for service in services if service["last_sync"] is not None}
        assert set(GOOGLE) <= ran, services
        log = requests.get(api + "/push-log", headers=AUTH, timeout=REQUEST_TIMEOUT).json()
        # A device's first push finds it unknown to Traccar (400), the bridge creates it there
        # and pushes again: every device has a 200 in the push log.
        pushed = {entry["id"] for entry in log["entries"] if entry["traccar_status"] == 200}
        assert set(GOOGLE) | {TLINK} <= pushed and any(VEHICLE_ID in i for i in pushed), log

        # Its own folder only: data and secrets under DEMO_DIR, not where `make run` keeps them.
        assert (folder / "secrets" / "smartcar-management-token").is_dir()
        assert not (tmp_path / "secrets").exists() and not (tmp_path / "data").exists()

        started = descendants(demo.process.pid)
        assert any("CloudFirestore" in proc.cmdline for proc in started)
        stop_and_check_nothing_is_left(demo, signal.SIGTERM)
        assert "stopped." in demo.output
        assert all(nothing_listens(base_port + i) for i in range(len(FUNCTIONS)))
        assert nothing_listens(firestore_port)
    finally:
        kill_leftovers(demo, started)


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("variable", ["K_SERVICE", "FUNCTION_TARGET"])
def test_the_demo_refuses_a_cloud_runtime(tmp_path: Path, variable: str) -> None:
    folder = tmp_path / "demo"
    env = runner_env(tmp_path, free_port_block(len(FUNCTIONS)), free_port(), DEMO_DIR=str(folder))

    result = run_demo({**env, variable: "api"})

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{variable} is set" in result.stderr and "cloud" in result.stderr
    assert not folder.exists()  # nothing made, nothing started
    assert "starting" not in result.stdout


def test_the_demo_never_empties_a_folder_it_did_not_make(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    env = runner_env(tmp_path, free_port_block(len(FUNCTIONS)), free_port(), DEMO_DIR=str(folder))

    result = run_demo(env)

    assert result.returncode != 0
    assert "not a demo folder" in result.stderr
    assert (folder / "notes.txt").read_text() == "keep me"


def test_no_deployed_zip_holds_the_demo_or_the_tests(tmp_path: Path) -> None:
    for path in package(ROOT, tmp_path, source_date_epoch=0).values():
        names = zipfile.ZipFile(path).namelist()
        assert not [name for name in names if name.startswith(("tests/", "devtools/"))], path
        assert not [name for name in names if "demo" in name], path
