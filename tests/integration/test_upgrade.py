"""Upgrading over data an older bridge wrote (issue 20, point 1).

`tests/data/firestore-0d16ee4/` is what commit 0d16ee4 wrote, made by running that commit's
code and fakes (`devtools/old_snapshot.py`, README there). Each test loads it into an emulator
of its own and runs today's code on it: the data migrates on first use, `/health` does not
migrate (its one read stays one), every route answers, each source's run and the webhooks work.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.runtime import Runtime, get_runtime
from shared.store.migrations import CURRENT_VERSION, Migrations, Step
from tests.conftest import PROJECT, make_settings
from tests.fakes.osmand import OsmAndServer
from tests.fakes.tlink import FakeTlink

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests/data/firestore-0d16ee4/export/export.overall_export_metadata"
TOKEN = "upgrade-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOGLE = ["canonic-0", "canonic-1", "canonic-2"]
CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
VAN = "1c2d3e4f-0000-4b0c-9d3e-aaaaaaaaaaaa"


@pytest.fixture
def old_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[firestore.Client]:
    """An emulator holding 0d16ee4's data (the session's own emulator stays untouched)."""
    emulator = Emulator()
    emulator.start(log_path=tmp_path / "firestore-upgrade.log", import_file=SNAPSHOT)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.address)
    try:
        yield firestore.Client(project=PROJECT)
    finally:
        emulator.stop()
        get_settings.cache_clear()
        get_runtime.cache_clear()


def doc(client: firestore.Client, path: str) -> dict | None:
    snapshot = client.document(path).get()
    return snapshot.to_dict() if snapshot.exists else None


def start_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, osmand: OsmAndServer) -> FlaskClient:
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {
        "GCP_PROJECT": PROJECT,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": TOKEN,
        "TRACCAR_SERVER_URL": osmand.url,
        "GOOGLE_REFRESH_ON_LISTING": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    return functions_framework.create_app("api", str(ROOT / "functions/api/main.py")).test_client()


def test_the_snapshot_is_the_old_layout(old_data: firestore.Client) -> None:
    # What the migrations are for: a plain access token readable by every function, no version.
    token = doc(old_data, "state/google_token")
    assert token is not None and "sealed" not in token
    assert doc(old_data, "state/schema") is None
    assert {s.id for s in old_data.collection("outbox").stream()}  # canonic-2's waiting position


def test_health_reads_old_data_without_migrating(
    old_data: firestore.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    osmand: OsmAndServer,
) -> None:  # fmt: skip
    api = start_api(monkeypatch, tmp_path, osmand)

    answer = api.get("/health")

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert doc(old_data, "state/schema") is None  # no migration, no read beyond its own


def test_every_api_route_works_on_old_data_after_the_upgrade(
    old_data: firestore.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    osmand: OsmAndServer,
) -> None:  # fmt: skip
    api = start_api(monkeypatch, tmp_path, osmand)

    devices = api.get("/devices", headers=AUTH)
    assert devices.status_code == 200, devices.get_data(as_text=True)
    # `id` is the uniqueId Traccar shows (issue 18), `vendor_id` the id stored.
    ids = {d["id"]: d["vendor_id"] for d in devices.get_json()}
    assert {**{g: g for g in GOOGLE}, "tlink-2864": "tlink-2864", f"smartcar-{CAR}": CAR,
            f"smartcar-{VAN}": VAN}.items() <= ids.items()  # fmt: skip
    assert doc(old_data, "state/schema") == {
        "version": CURRENT_VERSION, "lease_owner": None, "lease_until": None,
    }  # fmt: skip
    # The plain tokens 0d16ee4 cached are gone; today's code fetches and seals new ones.
    assert doc(old_data, "state/google_token") is None
    assert doc(old_data, "state/tlink_token") is None

    services = api.get("/services", headers=AUTH)
    assert services.status_code == 200
    # Listed under the uniqueId Traccar shows, the stored id beside it (issue 18).
    listed = {(s["id"], s["vendor_id"]) for s in services.get_json()}
    assert listed >= {("canonic-0", "canonic-0"), ("tlink-2864", "tlink-2864")}
    assert (f"smartcar-{CAR}", CAR) in listed
    paused = next(s for s in services.get_json() if s["vendor_id"] == VAN)
    assert paused["paused"] is True and paused["paused_by_user"] is False
    for path in (
        "/locations",
        "/push-log",
        "/excluded-devices",
        "/smartcar/vehicles",
        f"/smartcar/vehicles/{CAR}/latest-signals",
        "/devices/canonic-0/services",
        f"/devices/smartcar-{CAR}/services",  # the id Traccar shows resolves on old data
        "/status.json",
    ):
        answer = api.get(path, headers=AUTH)
        assert answer.status_code == 200, (path, answer.get_data(as_text=True))
    locations = {loc["id"] for loc in api.get("/locations", headers=AUTH).get_json()}
    assert {"canonic-0", "canonic-1"} <= locations
    assert api.get("/push-log", headers=AUTH).get_json()
    assert api.get("/excluded-devices", headers=AUTH).get_json()[0]["id"] == "canonic-9"


def test_runs_and_webhook_deliveries_work_on_old_data(
    old_data: firestore.Client, tmp_path: Path, osmand: OsmAndServer
) -> None:
    with FakeTlink() as tlink:
        tlink.add_device("385", _cold_room("7.5", "2019-05-10 15:16:21"))
        for unique_id in ("tlink-2864", f"smartcar-{CAR}", "canonic-2"):
            osmand.add_known_id(unique_id)
        settings = make_settings(tmp_path, tlink_api_url=tlink.url, traccar_server_url=osmand.url)
        runtime = Runtime(settings, firestore_client=old_data)
        runtime.secrets.add_version(
            "tlink-credentials", json.dumps(tlink.credentials(userId="385"))
        )

        # TLINK: a pull of the device 0d16ee4 pulled and received a push for.
        report = runtime.sync.sync_device("tlink-2864")
        assert report.result.pushed == 1, report.result
        assert doc(old_data, "state/schema")["version"] == CURRENT_VERSION  # type: ignore[index]
        views = runtime.tlink.views
        assert views is not None

        # The outbox 0d16ee4 left (Traccar did not know canonic-2) is delivered by the run.
        state = runtime.store.delivery.state("canonic-2")
        assert state.outbox_count == 1
        runtime.pipeline.run(runtime.store.devices.get("canonic-2"), list, force=True)  # type: ignore[arg-type]
        assert "canonic-2" in {p.unique_id for p in osmand.positions}
        assert runtime.store.delivery.state("canonic-2").outbox_count == 0


def test_instances_migrate_once_at_a_time_and_a_crash_resumes(old_data: firestore.Client) -> None:
    ran: list[int] = []

    def step(number: int, *, fail: bool = False) -> Step:
        def run(_client: firestore.Client) -> None:
            ran.append(number)
            if fail:
                raise RuntimeError("instance killed")

        return Step(number, f"step {number}", run)

    # A crash during step 2: step 1 stays recorded, the lease stays until it expires.
    with pytest.raises(RuntimeError):
        Migrations(old_data, steps=(step(1), step(2, fail=True))).ensure_current()
    assert doc(old_data, "state/schema")["version"] == 1  # type: ignore[index]

    # Another instance waits for the live lease, then answers "retry later".
    from shared.errors import RetryLater

    with pytest.raises(RetryLater):
        Migrations(old_data, steps=(step(1), step(2)), wait_seconds=0.2).ensure_current()

    # Once the lease has expired, instances racing each other resume at step 2, run it once.
    later = datetime.now(UTC) + timedelta(minutes=5)
    ran.clear()
    results: list[int] = []

    def instance() -> None:
        migrations = Migrations(old_data, steps=(step(1), step(2)), clock=lambda: later)
        results.append(migrations.ensure_current())

    threads = [threading.Thread(target=instance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2, 2, 2, 2]
    assert ran == [2]
    # Up to date: one read, nothing run.
    Migrations(old_data, steps=(step(1), step(2))).ensure_current()
    assert ran == [2]


def _cold_room(value: str, update: str) -> dict[str, object]:
    return {
        "id": 2864, "deviceName": "Cold room", "lat": "31.2304", "lng": "121.4737", "isLine": 1,
        "sensorsList": [
            {"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1, "value": value,
             "unit": "℃", "isLine": 1, "isAlarms": "1", "updateDate": update},
        ],
    }  # fmt: skip


def test_the_one_google_account_of_old_data_is_the_first_account_without_a_manual_step(
    old_data: firestore.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    osmand: OsmAndServer,
) -> None:  # fmt: skip
    # Issue 17, point 1 (ADR 0004): 0d16ee4 kept one account's credentials in `google-secrets`
    # and its state in `state/auth`, `state/fcm_lease`...; they are the first account's as is.
    from tests.fakes.nova import FakeGoogle
    from tests.unit.google.encryptor import Report

    (tmp_path / "google").mkdir()
    with FakeGoogle(tmp_path / "google", trackers=3) as google:
        google.trackers[0].recent = Report("own", timestamp=1_790_000_000, latitude=1, longitude=2)
        for name, value in google.environment().items():
            monkeypatch.setenv(name, value)
        api = start_api(monkeypatch, tmp_path, osmand)
        google.store_secrets(get_runtime().secrets)  # what 0d16ee4's upload left
        auth_before = doc(old_data, "state/auth")
        osmand.add_known_id("canonic-0")

        listed = api.get("/auth/accounts", headers=AUTH)
        synced = api.put("/traccar/devices/canonic-0/locations", headers=AUTH)
        second = google.add_account("second@example.com")
        added = api.put("/auth/secrets", json=second.secrets(), headers=AUTH)

        assert listed.status_code == 200, listed.get_json()
        [account] = listed.get_json()
        assert account["username"] == google.username and account["devices"] == 3
        assert synced.status_code == 200, synced.get_json()
        assert "canonic-0" in {p.unique_id for p in osmand.positions}
        assert added.status_code == 200
        # The old account's secret and documents stay where they were.
        assert sorted(p.name for p in (tmp_path / "secrets/google-secrets").iterdir()) == ["1"]
        assert doc(old_data, "google_accounts/primary")["username"] == google.username  # type: ignore[index]
        auth_after = doc(old_data, "state/auth") or {}
        assert auth_after.get("status") == (auth_before or {}).get("status", "ok")
        assert doc(old_data, "state/fcm_lease") is not None
        named = api.post(f"/auth/token-status?account={google.username}", headers=AUTH)
        assert named.status_code == 200 and named.get_json()["credentials"]["stored"] is True
