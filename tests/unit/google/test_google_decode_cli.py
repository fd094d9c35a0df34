"""`python -m shared.sources.google decode`: documented JSON in report order, or a clear error."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.sources.google.__main__ import main
from tests.unit.google.encryptor import AGGREGATED, LAST_KNOWN, Report, Tracker

REPO = Path(__file__).resolve().parents[3]

NETWORK = [
    Report(
        "crowdsourced",
        timestamp=1_700_000_100,
        latitude=48.8566,
        longitude=2.3522,
        altitude=35,
        accuracy=12.3,
        time_offset=4_321,
    ),
    Report("semantic", timestamp=1_700_000_200, place="Office"),
    Report(
        "own",
        timestamp=1_700_000_300,
        latitude=-33.8688,
        longitude=151.2093,
        altitude=-12,
        accuracy=4.5,
        status=AGGREGATED,
        is_own_report=True,
    ),
]
RECENT = Report(
    "own",
    timestamp=1_700_000_500,
    latitude=51.5072,
    longitude=-0.1276,
    accuracy=3.0,
    status=LAST_KNOWN,
    is_own_report=True,
)
EXPECTED = [
    {
        "latitude": 48.8566,
        "longitude": 2.3522,
        "altitude": 35,
        "accuracy": 12.3,
        "timestamp": 1_700_000_100,
        "status": "CROWDSOURCED",
        "is_own_report": False,
    },
    {
        "latitude": -33.8688,
        "longitude": 151.2093,
        "altitude": -12,
        "accuracy": 4.5,
        "timestamp": 1_700_000_300,
        "status": "AGGREGATED",
        "is_own_report": True,
    },
    {
        "latitude": 51.5072,
        "longitude": -0.1276,
        "altitude": 0,
        "accuracy": 3.0,
        "timestamp": 1_700_000_500,
        "status": "LAST_KNOWN",
        "is_own_report": True,
    },
]


@pytest.fixture
def tracker() -> Tracker:
    return Tracker(canonic_id="cli-tracker")


@pytest.fixture
def update_file(tmp_path: Path, tracker: Tracker) -> Path:
    path = tmp_path / "update.bin"
    path.write_bytes(tracker.device_update(NETWORK, RECENT))
    return path


def test_module_command_prints_the_locations_as_json_in_report_order(update_file, tracker):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.sources.google",
            "decode",
            "--owner-key",
            tracker.owner_key.hex(),
            str(update_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == EXPECTED
    assert "semantic report 'Office' has no coordinates" in completed.stderr


def test_keys_are_exactly_the_documented_ones(update_file, tracker, capsys):
    assert main(["decode", "--owner-key", tracker.owner_key.hex(), str(update_file)]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert [list(item) for item in printed] == [
        ["latitude", "longitude", "altitude", "accuracy", "timestamp", "status", "is_own_report"]
    ] * 3


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_text_encoded_updates_decode_the_same(encoding, tmp_path, tracker, capsys):
    raw = tracker.device_update(NETWORK, RECENT)
    text = raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()
    path = tmp_path / "update.txt"
    path.write_text(text + "\n")

    status = main(
        ["decode", "--encoding", encoding, "--owner-key", tracker.owner_key.hex(), str(path)]
    )

    assert status == 0
    assert json.loads(capsys.readouterr().out) == EXPECTED


def test_wrong_owner_key_exits_non_zero_naming_the_device(update_file, capsys):
    status = main(["decode", "--owner-key", os.urandom(32).hex(), str(update_file)])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.startswith("error: device cli-tracker: identity key fails")
    assert "Traceback" not in captured.err


def test_owner_key_that_is_not_hex_exits_non_zero(update_file, capsys):
    assert main(["decode", "--owner-key", "not-a-key", str(update_file)]) == 1
    assert capsys.readouterr().err == "error: owner key is not hexadecimal\n"


def test_file_that_is_not_a_device_update_exits_non_zero(tmp_path, capsys):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\xff" * 8)

    assert main(["decode", "--owner-key", os.urandom(32).hex(), str(path)]) == 1
    assert capsys.readouterr().err.startswith("error: payload is not a DeviceUpdate protobuf")


def test_missing_file_exits_non_zero(tmp_path, capsys):
    missing = tmp_path / "absent.bin"

    assert main(["decode", "--owner-key", os.urandom(32).hex(), str(missing)]) == 1
    assert capsys.readouterr().err == f"error: cannot read {missing}: No such file or directory\n"


def test_devices_command_prints_trackers_and_phones_of_a_saved_device_list(tmp_path, capsys):
    from tests.fakes.google_auth import FakeGoogleAuth
    from tests.fakes.nova import FakeNova, FakeTracker

    nova = FakeNova(FakeGoogleAuth(), None)  # type: ignore[arg-type]  # never started
    nova.add(FakeTracker(Tracker(canonic_id="tag-1", name="Keys")))
    nova.add(FakeTracker(Tracker(canonic_id="phone-1", name="Pixel", phone=True), model="Pixel 8"))
    saved = tmp_path / "devices.bin"
    saved.write_bytes(nova.device_list())

    assert main(["devices", str(saved)]) == 0

    assert json.loads(capsys.readouterr().out) == [
        {"id": "tag-1", "name": "Keys", "kind": "tracker", "model": "Acme Tag"},
        {"id": "phone-1", "name": "Pixel", "kind": "phone", "model": "Pixel 8"},
    ]


def test_devices_command_rejects_a_file_that_is_not_a_device_list(tmp_path, capsys):
    saved = tmp_path / "devices.bin"
    saved.write_bytes(b"\xff\xff\xff")

    assert main(["devices", str(saved)]) == 1
    assert capsys.readouterr().err.startswith("error: the device list is not")
