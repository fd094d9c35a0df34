"""`DELETE /devices/<id>` (issue 20) through functions-framework's app: the emulator, Traccar's
REST API and Smartcar's management API as local fakes over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.errors import RetryLater
from shared.models import (
    Device,
    DeviceState,
    ExcludedDevice,
    Location,
    OutboxEntry,
    Source,
    utc_now,
)
from shared.runtime import get_runtime
from shared.secrets import LocalSecretStore
from shared.store import Store
from shared.store.places import PlaceMapping, PlacesDocuments, PlaceSighting
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smartcar import FakeVehicle, SmartcarServer
from tests.fakes.traccar_api import FakeTraccarApi

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRACCAR_TOKEN = "traccar-api-token-0123"
MANAGEMENT_TOKEN = "sc-management-token-7f1e2d3c"
CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
KEYS = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")
BOILER = Device(id="tlink-2864", source=Source.TLINK, name="Boiler", traccar_unique_id="tlink-2864")
TESLA = Device(id=CAR, source=Source.SMARTCAR, name="Tesla", traccar_unique_id=f"smartcar-{CAR}")


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id="client",
        client_secret="secret",
        redirect_uri="https://bridge.example.test/smartcar/exchange",
        management_token=MANAGEMENT_TOKEN,
    ) as server:
        server.add_vehicle(FakeVehicle(CAR))
        yield server


@pytest.fixture
def traccar(osmand: OsmAndServer) -> Iterator[FakeTraccarApi]:
    with FakeTraccarApi(TRACCAR_TOKEN, devices=osmand.devices) as server:
        yield server


@pytest.fixture
def api(
    emulator: Emulator,
    firestore_client: firestore.Client,
    osmand: OsmAndServer,
    traccar: FakeTraccarApi,
    smartcar: SmartcarServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FlaskClient:
    monkeypatch.chdir(tmp_path)  # no stray .env
    secrets = LocalSecretStore(tmp_path / "secrets")
    secrets.add_version("traccar-api-token", TRACCAR_TOKEN)
    secrets.add_version("smartcar-management-token", MANAGEMENT_TOKEN)
    env = {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": TOKEN,
        "TRACCAR_SERVER_URL": osmand.url,
        "TRACCAR_API_URL": traccar.url,
        "SMARTCAR_MANAGEMENT_ORIGIN": smartcar.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    return functions_framework.create_app("api", str(ROOT / "functions/api/main.py")).test_client()


def seed(client: firestore.Client, device: Device, api: FlaskClient) -> None:
    """The device with a service and job, delivery state, two outbox entries and a push log."""
    store = Store(client)
    store.devices.put(device)
    answer = api.put(f"/devices/{device.id}/services", json={"timer": 21_600}, headers=AUTH)
    assert answer.status_code == 201, answer.data
    location = Location(id=device.id, lat=48.85, lon=2.35, timestamp=1_700_000_000)
    client.collection("device_state").document(device.id).set(
        DeviceState(id=device.id, last_location=location).model_dump(mode="python")
    )
    for n in range(2):
        entry = OutboxEntry(id=f"{device.id}-{n}", device_id=device.id, fingerprint=str(n),
                            location=location)  # fmt: skip
        client.collection("outbox").document(entry.id).set(entry.model_dump(mode="python"))
    expire = utc_now() + timedelta(days=1)
    client.collection("push_log").document().set(
        {"device_id": device.id, "attempted_at": utc_now(), "expire_at": expire}
    )


def ids(client: firestore.Client, collection: str) -> set[str]:
    return {snapshot.id for snapshot in client.collection(collection).stream()}


def error_of(response: Any) -> str:
    assert response.is_json, response.data
    return str(response.get_json()["error"])


def test_a_google_device_is_removed_with_all_it_has_and_the_answer_says_it_comes_back(
    api: FlaskClient, firestore_client: firestore.Client
) -> None:
    seed(firestore_client, KEYS, api)
    other = KEYS.model_copy(update={"id": "other1", "traccar_unique_id": "other1"})
    seed(firestore_client, other, api)

    answer = api.delete("/devices/abc123", headers=AUTH)

    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert body["status"] == "deleted" and body["source"] == "google"
    assert body["service_deleted"] is True and body["traccar"] == "kept"
    assert body["removed"]["outbox"] == 2 and body["removed"]["device_state"] == 1
    assert body["comes_back"] is True and "PUT /excluded-devices/abc123" in body["note"]
    assert ids(firestore_client, "devices") == {"other1"}
    assert ids(firestore_client, "services") == {"other1"}
    assert [job.device_id for job in Store(firestore_client).local_jobs.list()] == ["other1"]
    assert ids(firestore_client, "device_state") == {"other1"}
    assert ids(firestore_client, "outbox") == {"other1-0", "other1-1"}
    assert len(ids(firestore_client, "push_log")) == 2  # aged out by its TTL, not here
    # /health counts the services that are left.
    assert api.get("/health", headers=AUTH).get_json()["services"] == 1
    assert api.get("/devices/abc123/services", headers=AUTH).status_code == 404


def test_an_excluded_google_device_is_said_to_stay_away(
    api: FlaskClient, firestore_client: firestore.Client
) -> None:
    Store(firestore_client).devices.put(KEYS)
    Store(firestore_client).excluded_devices.put(ExcludedDevice(id="abc123"))

    body = api.delete("/devices/abc123", headers=AUTH).get_json()

    assert body["comes_back"] is False and "excluded" in body["note"]
    assert body["service_deleted"] is False
    assert ids(firestore_client, "excluded_devices") == {"abc123"}


def test_with_traccar_true_the_traccar_device_is_deleted_too(
    api: FlaskClient, firestore_client: firestore.Client, traccar: FakeTraccarApi
) -> None:
    seed(firestore_client, KEYS, api)

    answer = api.delete("/devices/abc123?traccar=true", headers=AUTH)

    assert answer.status_code == 200, answer.data
    assert answer.get_json()["traccar"] == "deleted"
    assert "abc123" not in traccar.devices
    # Asked again: the device is gone from the bridge as well.
    again = api.delete("/devices/abc123?traccar=true", headers=AUTH)
    assert again.status_code == 404 and "abc123" in error_of(again)


def test_a_traccar_device_that_does_not_exist_is_reported_not_found(
    api: FlaskClient, firestore_client: firestore.Client
) -> None:
    Store(firestore_client).devices.put(KEYS.model_copy(update={"traccar_unique_id": "ghost1"}))

    body = api.delete("/devices/abc123?traccar=true", headers=AUTH).get_json()

    assert body["traccar"] == "not_found" and body["status"] == "deleted"


def test_a_tlink_device_loses_its_readings_and_views(
    api: FlaskClient, firestore_client: firestore.Client
) -> None:
    seed(firestore_client, BOILER, api)
    now = utc_now()
    firestore_client.collection("tlink_devices").document("2864").set(
        {"id": "2864", "device_id": 2864, "user_id": "u1", "name": "Boiler", "sensors": {}}
    )
    firestore_client.collection("tlink_devices").document("77").set(
        {"id": "77", "device_id": 77, "user_id": "u1", "name": "Other", "sensors": {}}
    )
    for n in range(450):  # more than one delete batch
        firestore_client.collection("tlink_readings").document(f"2864_1_{n}").set(
            {
                "id": f"2864_1_{n}",
                "device_id": 2864,
                "sensor_id": 1,
                "time": now,
                "origin": "push",
                "expire_at": now,
            }
        )
    firestore_client.collection("tlink_readings").document("77_1_0").set(
        {
            "id": "77_1_0",
            "device_id": 77,
            "sensor_id": 1,
            "time": now,
            "origin": "push",
            "expire_at": now,
        }
    )

    answer = api.delete("/devices/tlink-2864", headers=AUTH)

    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert body["removed"]["readings"] == 450 and body["removed"]["tlink_device"] == 1
    assert body["comes_back"] is True and "push" in body["note"]
    assert ids(firestore_client, "tlink_devices") == {"77"}
    assert ids(firestore_client, "tlink_readings") == {"77_1_0"}
    latest = api.get("/tlink/users/u1/devices/2864/latest", headers=AUTH)
    assert latest.status_code == 404


def test_a_smartcar_vehicle_is_disconnected_at_smartcar(
    api: FlaskClient, firestore_client: firestore.Client, smartcar: SmartcarServer
) -> None:
    seed(firestore_client, TESLA, api)
    firestore_client.collection("smartcar_vehicles").document(CAR).set({"id": CAR, "signals": {}})

    answer = api.delete(f"/devices/{CAR}", headers=AUTH)

    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert body["smartcar"] == "disconnected" and body["removed"]["smartcar_vehicle"] == 1
    assert body["comes_back"] is False
    assert smartcar.disconnected == [CAR]
    assert ids(firestore_client, "smartcar_vehicles") == set()
    assert api.get(f"/smartcar/vehicles/{CAR}/latest-signals", headers=AUTH).status_code == 404
    # The management token never leaves the secrets adapter.
    assert MANAGEMENT_TOKEN not in answer.get_data(as_text=True)


def test_a_smartcar_failure_leaves_the_vehicle_to_remove_again(
    api: FlaskClient, firestore_client: firestore.Client, smartcar: SmartcarServer, tmp_path: Path
) -> None:
    Store(firestore_client).devices.put(TESLA)
    LocalSecretStore(tmp_path / "secrets").add_version("smartcar-management-token", "wrong")
    get_runtime().cached_secrets.forget("smartcar-management-token")

    refused = api.delete(f"/devices/{CAR}", headers=AUTH)

    assert refused.status_code == 503 and "smartcar-management-token" in error_of(refused)
    assert "wrong" not in refused.get_data(as_text=True)
    assert ids(firestore_client, "devices") == {CAR}


def test_an_unknown_device_is_a_404_naming_it(api: FlaskClient) -> None:
    answer = api.delete("/devices/no-such-device", headers=AUTH)

    assert answer.status_code == 404 and "no-such-device" in error_of(answer)


def test_a_bad_query_is_a_400(api: FlaskClient, firestore_client: firestore.Client) -> None:
    Store(firestore_client).devices.put(KEYS)

    answer = api.delete("/devices/abc123?traccar=perhaps", headers=AUTH)

    assert answer.status_code == 400 and "traccar" in error_of(answer)
    assert ids(firestore_client, "devices") == {"abc123"}


def test_removal_needs_the_bearer_token(api: FlaskClient) -> None:
    assert api.delete("/devices/abc123").status_code == 401


def test_a_removed_device_is_no_longer_named_at_the_places_it_was_seen(
    api: FlaskClient, firestore_client: firestore.Client
) -> None:
    """Issue 17 point 2: `GET /places` lists the devices seen at each name. A removed device's
    sightings go with it; the other devices' and the places the user mapped stay."""
    other = KEYS.model_copy(update={"id": "other1", "traccar_unique_id": "other1"})
    for device in (KEYS, other):
        Store(firestore_client).devices.put(device)
    places = PlacesDocuments(firestore_client)
    places.put(PlaceMapping(name="Home", lat=48.8566, lon=2.3522, accuracy=20))
    places.record(
        [
            PlaceSighting(name="Home", device_id="abc123", last_seen=1_700_000_300),
            PlaceSighting(name="Kitchen speaker", device_id="abc123", last_seen=1_700_000_200),
            PlaceSighting(name="Home", device_id="other1", last_seen=1_700_000_100),
        ]
    )

    answer = api.delete("/devices/abc123", headers=AUTH)

    assert answer.status_code == 200, answer.data
    assert answer.get_json()["removed"]["place_sightings"] == 2
    listed = api.get("/places", headers=AUTH)
    assert listed.status_code == 200, listed.data
    [home] = listed.get_json()  # the speaker was seen by the removed device only
    assert home["name"] == "Home" and home["lat"] == 48.8566  # the user's mapping stays
    assert home["devices"] == [{"id": "other1", "last_seen": 1_700_000_100}]
    assert home["last_seen"] == 1_700_000_100


def test_no_run_can_push_for_the_device_while_it_is_being_removed(
    api: FlaskClient,
    firestore_client: firestore.Client,
    traccar: FakeTraccarApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the Traccar delete and the local deletes, a sweep of the device's due outbox, a
    scheduled run or a webhook would push, and Traccar would get the device created again: the
    removal holds the device's delivery lease, which every run needs."""
    seed(firestore_client, KEYS, api)
    delivery = get_runtime().store.delivery
    seen: list[str] = []
    deleting = FakeTraccarApi._delete

    def delete_while_a_run_tries(self: FakeTraccarApi, caller: Any, device_id: str) -> Any:
        now = utc_now()
        try:
            delivery.acquire(KEYS.id, "a-sweep", now=now, until=now + timedelta(minutes=1))
            seen.append("lease taken: the run would push")
        except RetryLater:
            seen.append("busy")
        return deleting(self, caller, device_id)

    monkeypatch.setattr(FakeTraccarApi, "_delete", delete_while_a_run_tries)

    answer = api.delete("/devices/abc123?traccar=true", headers=AUTH)

    assert answer.status_code == 200, answer.data
    assert seen == ["busy"]
    assert "abc123" not in traccar.devices
    assert ids(firestore_client, "device_state") == set()


def test_a_device_a_run_holds_is_a_429_and_nothing_is_removed(
    api: FlaskClient, firestore_client: firestore.Client, traccar: FakeTraccarApi
) -> None:
    seed(firestore_client, KEYS, api)
    now = utc_now()
    get_runtime().store.delivery.acquire(
        KEYS.id, "a-run", now=now, until=now + timedelta(minutes=1)
    )

    answer = api.delete("/devices/abc123?traccar=true", headers=AUTH)

    assert answer.status_code == 429, answer.data
    assert api.get("/devices/abc123/services", headers=AUTH).status_code == 200
    assert ids(firestore_client, "devices") == {"abc123"}
    assert len(ids(firestore_client, "outbox")) == 2


def test_a_failed_removal_gives_the_lease_back(
    api: FlaskClient, firestore_client: firestore.Client, tmp_path: Path
) -> None:
    seed(firestore_client, TESLA, api)
    LocalSecretStore(tmp_path / "secrets").add_version("smartcar-management-token", "wrong")
    get_runtime().cached_secrets.forget("smartcar-management-token")

    assert api.delete(f"/devices/{CAR}", headers=AUTH).status_code == 503

    # The vehicle syncs on until the removal is asked again: no run finds it busy.
    now = utc_now()
    get_runtime().store.delivery.acquire(CAR, "next-run", now=now, until=now + timedelta(minutes=1))
