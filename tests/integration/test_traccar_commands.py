"""Traccar's "Send command" (Find Hub sender, PROTOCOLS.md §2b) drives the bridge.

The API runs on a real socket; the fake Traccar (`tests/fakes/traccar_api.py`) sends each
command as Traccar does: an empty POST with the device's `command.findHub.key`, waiting 5 s.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
import requests
from werkzeug.serving import make_server

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.models import Device, ExcludedDevice, LocalJob, Source, utc_now
from shared.runtime import get_runtime
from shared.scheduler import job_id_for, once_job_id
from shared.secrets import LocalSecretStore
from shared.store import Store
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer
from tests.fakes.traccar_api import FakeTraccarApi

ROOT = Path(__file__).resolve().parents[2]
API_TOKEN = "test-api-token-0123456789"
COMMAND_KEY = "traccar-command-key-9f8e7d6c"
TRACCAR_TOKEN = "traccar-token-0123"
KEYS = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")
# A TLINK device pushes under another id than the bridge's own.
SENSOR = Device(id="tlink_385_2864", source=Source.TLINK, name="Box", traccar_unique_id="t2864")


@pytest.fixture
def bridge(
    emulator: Emulator,
    firestore_client: Any,
    osmand: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The api function on a real socket; its URL."""
    monkeypatch.chdir(tmp_path)
    env = {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": API_TOKEN,
        "TRACCAR_SERVER_URL": osmand.url,
        "AUTO_REGISTER_TIMER": "900",
        "AUTO_REGISTER_DELTA": "7",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    app = functions_framework.create_app("api", str(ROOT / "functions/api/main.py"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        get_settings.cache_clear()
        get_runtime.cache_clear()


@pytest.fixture
def store(firestore_client: Any) -> Store:
    store = Store(firestore_client)
    store.devices.put(KEYS)
    store.devices.put(SENSOR)
    return store


@pytest.fixture
def key(tmp_path: Path) -> str:
    LocalSecretStore(tmp_path / "secrets").add_version("traccar-command-key", COMMAND_KEY)
    return COMMAND_KEY


@pytest.fixture
def traccar(osmand: OsmAndServer, bridge: str, key: str) -> Iterator[FakeTraccarApi]:
    """Traccar with both devices set up for the Find Hub sender, as the bridge sets them."""
    with FakeTraccarApi(TRACCAR_TOKEN, devices=osmand.devices) as server:
        session = requests.Session()
        attributes = {
            "command.sender": "findHub",
            "command.findHub.url": bridge,
            "command.findHub.key": key,
        }
        auth = {"Authorization": f"Bearer {TRACCAR_TOKEN}"}
        osmand.devices.add("t2864", "Box")
        for unique_id in ("abc123", "t2864"):
            server.link(unique_id, user_id=1)
            device = {**server.record(unique_id), "attributes": attributes}
            updated = session.put(
                f"{server.url}/api/devices/{device['id']}", json=device, headers=auth, timeout=5
            )
            assert updated.status_code == 200, updated.text
        yield server


def local_job(store: Store, device_id: str) -> LocalJob | None:
    return store.local_jobs.get(job_id_for(device_id))


def put_service(bridge: str, device_id: str, timer: int = 600) -> None:
    answer = requests.put(
        f"{bridge}/devices/{device_id}/services",
        json={"timer": timer},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    assert answer.status_code in (200, 201), answer.text


def test_locate_now_answers_202_empty_at_once_and_makes_the_job_due(
    bridge: str, store: Store, traccar: FakeTraccarApi
) -> None:
    put_service(bridge, "abc123")
    job = local_job(store, "abc123")
    assert job is not None and job.next_run > utc_now()
    started = time.monotonic()
    sent = traccar.send_command("abc123", "position-single")
    assert time.monotonic() - started < 2
    assert (sent.status, sent.body) == (202, b"")
    job = local_job(store, "abc123")
    assert job is not None and job.next_run <= utc_now()


def sync_device_app() -> Any:
    """The sync_device function, with the bridge's environment (the fixture's)."""
    return functions_framework.create_app(
        "sync_device", str(ROOT / "functions/sync_device/main.py")
    )


@pytest.mark.parametrize("stopped_first", [False, True])
def test_locate_now_of_a_device_without_a_service_runs_a_one_shot_job_its_run_deletes(
    bridge: str, store: Store, traccar: FakeTraccarApi, stopped_first: bool
) -> None:
    if stopped_first:  # position-stop removed the service the device had
        put_service(bridge, "abc123")
        traccar.send_command("abc123", "position-stop")

    sent = traccar.send_command("abc123", "position-single")

    assert (sent.status, sent.body) == (202, b"")
    once = store.local_jobs.get(once_job_id("abc123"))
    assert once is not None and once.once and once.next_run <= utc_now()
    assert store.services.get("abc123") is None  # one run, no service made
    assert local_job(store, "abc123") is None
    # The run the job starts (what the local loop posts, as Cloud Scheduler does) deletes it.
    sync_device_app().test_client().post("/", json={"device_id": "abc123", "once": True})
    assert store.local_jobs.get(once_job_id("abc123")) is None


def test_locate_now_of_an_excluded_device_is_refused_naming_the_exclusion(
    bridge: str, store: Store, key: str
) -> None:
    store.excluded_devices.put(ExcludedDevice(id="abc123"))

    answer = requests.post(
        f"{bridge}/devices/abc123/position-single",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )

    assert answer.status_code == 409
    assert "excluded" in answer.json()["error"]
    assert "DELETE /excluded-devices/abc123" in answer.json()["error"]
    assert store.local_jobs.get(once_job_id("abc123")) is None


def test_periodic_with_an_interval_makes_the_service_with_that_timer_and_the_jitter(
    store: Store, traccar: FakeTraccarApi
) -> None:
    sent = traccar.send_command("abc123", "position-periodic", frequency=300)
    assert (sent.status, sent.body) == (200, b"")
    service = store.services.get("abc123")
    assert service is not None and (service.timer, service.delta) == (300, 7)
    traccar.send_command("abc123", "position-periodic", frequency=1200)
    service = store.services.get("abc123")
    assert service is not None and service.timer == 1200


def test_periodic_from_traccar_6_8_without_interval_takes_the_auto_registration_timer(
    store: Store, traccar: FakeTraccarApi
) -> None:
    sent = traccar.send_command(
        "abc123", "position-periodic", frequency=300, traccar_version=(6, 8)
    )
    assert "interval" not in sent.url
    service = store.services.get("abc123")
    assert service is not None and (service.timer, service.delta) == (900, 7)


@pytest.mark.parametrize("interval", ["abc", "5", "-60", "999999", ""])
def test_periodic_with_an_invalid_interval_is_a_json_400(
    bridge: str, store: Store, key: str, interval: str
) -> None:
    answer = requests.post(
        f"{bridge}/devices/abc123/position-periodic?interval={interval}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert "interval" in answer.json()["error"]
    assert store.services.get("abc123") is None


def test_stop_removes_the_service_and_its_job_and_is_200_without_one(
    bridge: str, store: Store, traccar: FakeTraccarApi
) -> None:
    put_service(bridge, "abc123")
    assert traccar.send_command("abc123", "position-stop").status == 200
    assert store.services.get("abc123") is None
    assert local_job(store, "abc123") is None
    assert traccar.send_command("abc123", "position-stop").status == 200


def test_a_device_is_found_by_the_unique_id_it_pushes_with(
    store: Store, traccar: FakeTraccarApi
) -> None:
    traccar.send_command("t2864", "position-periodic", frequency=600)
    service = store.services.get("tlink_385_2864")
    assert service is not None and service.timer == 600


def test_an_unknown_device_is_a_json_404_naming_it(bridge: str, store: Store, key: str) -> None:
    answer = requests.post(
        f"{bridge}/devices/nobody-here/position-single",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    assert answer.status_code == 404
    assert "nobody-here" in answer.json()["error"]


def test_the_api_token_does_not_open_the_command_routes_nor_the_key_the_others(
    bridge: str, store: Store, key: str
) -> None:
    for path in ("position-single", "position-periodic", "position-stop"):
        for headers in ({}, {"Authorization": f"Bearer {API_TOKEN}"}, {"Authorization": key}):
            answer = requests.post(f"{bridge}/devices/abc123/{path}", headers=headers, timeout=5)
            assert answer.status_code == 401, (path, headers)
            assert API_TOKEN not in answer.text and key not in answer.text
    answer = requests.get(
        f"{bridge}/services", headers={"Authorization": f"Bearer {key}"}, timeout=5
    )
    assert answer.status_code == 401
    assert store.services.get("abc123") is None


def test_without_a_stored_command_key_the_routes_answer_503_naming_the_secret(
    bridge: str, store: Store
) -> None:
    answer = requests.post(
        f"{bridge}/devices/abc123/position-single",
        headers={"Authorization": "Bearer anything"},
        timeout=5,
    )
    assert answer.status_code == 503
    assert "traccar-command-key" in answer.json()["error"]


def age_versions(directory: Path, name: str, hours: float) -> None:
    """Make every stored version of `name` `hours` older (the local store dates them by mtime)."""
    for path in (directory / name).iterdir():
        stamp = path.stat().st_mtime - hours * 3600
        os.utime(path, (stamp, stamp))


def test_a_rotated_command_key_opens_the_routes_with_both_during_the_grace_then_the_new_alone(
    bridge: str, store: Store, key: str, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    new_key = "traccar-command-key-rotated-5a4b3c"

    def status(presented: str) -> int:
        answer = requests.post(
            f"{bridge}/devices/abc123/position-stop",
            headers={"Authorization": f"Bearer {presented}"},
            timeout=5,
        )
        assert presented not in answer.text
        return answer.status_code

    assert status(key) == 200  # the instance has listed the key's one version
    # A re-listing at most every `min_reread` seconds; 0 here: the new key must work at once,
    # not after the listing's `max_age`.
    get_runtime().cached_secrets.min_reread = 0.0
    age_versions(secrets_dir, "traccar-command-key", 100)
    LocalSecretStore(secrets_dir).add_version("traccar-command-key", new_key)
    assert status(new_key) == 200
    assert status(key) == 200  # ROTATION_GRACE_HOURS (24) since the new key was added
    assert status("a-wrong-key") == 401

    age_versions(secrets_dir, "traccar-command-key", 25)  # the new key added 25 h ago
    get_runtime().cached_secrets.forget("traccar-command-key")
    assert status(new_key) == 200
    assert status(key) == 401
