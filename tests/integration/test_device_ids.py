"""One id per device, everywhere (issue 18, point 5): every API route naming a device takes the
uniqueId Traccar shows for it, the id the bridge stores it under keeps working, and every
answer naming a device (`GET /devices`, `/services`, `/excluded-devices`, `/push-log`,
`/locations`, a device's locations and pushes) names it by the uniqueId, with the stored id as
`vendor_id` where a listing shows devices.

A Smartcar vehicle is stored under its bare vehicle id while Traccar knows it as
`smartcar-<id>`: here it is made by a signed delivery, as Smartcar makes it. The API runs
in-process through functions-framework on the Firestore emulator, pushing to the OsmAnd test
server; the removal's disconnect goes to the local Smartcar's management API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.models import Device, Source
from shared.runtime import get_runtime
from shared.secrets import LocalSecretStore
from shared.store import Store
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smartcar import FakeVehicle, SmartcarServer
from tests.integration.test_smartcar_webhook import TOKEN as MANAGEMENT_TOKEN
from tests.integration.test_smartcar_webhook import UNIQUE_ID, VEHICLE, fresh, sign

ROOT = Path(__file__).resolve().parents[2]
API_TOKEN = "test-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SERVICE = {"timer": 21_600}  # within SMARTCAR_MONTHLY_CALLS


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id="client",
        client_secret="secret",
        redirect_uri="https://bridge.example.test/smartcar/exchange",
        management_token=MANAGEMENT_TOKEN,
    ) as server:
        server.add_vehicle(FakeVehicle(VEHICLE))
        yield server


@pytest.fixture
def api(
    emulator: Emulator,
    firestore_client: firestore.Client,
    osmand: OsmAndServer,
    smartcar: SmartcarServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FlaskClient:
    monkeypatch.chdir(tmp_path)  # no stray .env
    LocalSecretStore(tmp_path / "secrets").add_version(
        "smartcar-management-token", MANAGEMENT_TOKEN
    )
    env = {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": API_TOKEN,
        "TRACCAR_SERVER_URL": osmand.url,
        "SMARTCAR_MANAGEMENT_ORIGIN": smartcar.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    osmand.add_known_id(UNIQUE_ID)
    client = functions_framework.create_app("api", str(ROOT / "functions/api/main.py"))
    return client.test_client()


@pytest.fixture
def vehicle(api: FlaskClient) -> Device:
    """The vehicle as the bridge stores it after Smartcar's first delivery."""
    raw = json.dumps(fresh()).encode()
    answer = get_runtime().smartcar.webhook.receive(raw, sign(raw)).body
    assert answer["status"] == "processed", answer
    device = get_runtime().store.devices.get(VEHICLE)
    assert device is not None and device.traccar_unique_id == UNIQUE_ID
    return device


def error_of(response: Any) -> str:
    return str(response.get_json()["error"])


def test_devices_lists_the_traccar_unique_id_as_id_and_the_stored_one_as_vendor_id(
    api: FlaskClient, vehicle: Device
) -> None:
    [listed] = api.get("/devices", headers=AUTH).get_json()

    assert (listed["id"], listed["vendor_id"], listed["traccar_unique_id"]) == (
        UNIQUE_ID, VEHICLE, UNIQUE_ID)  # fmt: skip
    assert listed["source"] == "smartcar"
    # The status page addresses its actions by the `id` it lists, which every route takes.
    [shown] = api.get("/status.json", headers=AUTH).get_json()["devices"]
    assert (shown["id"], shown["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    synced = api.put(f"/traccar/devices/{shown['id']}/locations", headers=AUTH)
    # Found and pulled from Smartcar: this stack has no Smartcar app configured.
    assert synced.status_code == 503 and "smartcar-client-secret" in error_of(synced)


def test_every_device_route_takes_the_smartcar_unique_id(
    api: FlaskClient, vehicle: Device, osmand: OsmAndServer, smartcar: SmartcarServer
) -> None:
    path = f"/devices/{UNIQUE_ID}"

    created = api.put(f"{path}/services", json=SERVICE, headers=AUTH)
    assert created.status_code == 201, created.data
    # One service, shown under the uniqueId: the bare id finds the same one.
    assert (created.get_json()["id"], created.get_json()["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    assert api.get(f"/devices/{VEHICLE}/services", headers=AUTH).get_json()["timer"] == 21_600
    shown = api.get(f"{path}/services", headers=AUTH)
    assert shown.status_code == 200 and shown.get_json()["id"] == UNIQUE_ID
    [listed] = api.get("/services", headers=AUTH).get_json()
    assert (listed["id"], listed["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    # Its next run is expected a timer after its last (the delivery's, here a set one).
    ran = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    get_runtime().store.delivery.state_ref(VEHICLE).set({"last_sync": ran}, merge=True)
    [listed] = api.get("/services", headers=AUTH).get_json()
    assert datetime.fromisoformat(listed["next_sync"]) == ran + timedelta(seconds=21_600)
    paused = api.post(f"{path}/services/pause", headers=AUTH).get_json()
    assert paused["paused_by_user"] is True and paused["next_sync"] is None
    assert api.post(f"{path}/services/resume", headers=AUTH).get_json()["paused"] is False
    assert api.put(f"{path}/services", json={"timer": 43_200}, headers=AUTH).status_code == 200

    # A push with the body naming the device as the path does.
    # Newer than the delivery's (a minute ago), so it is the newest position below.
    location = {"id": UNIQUE_ID, "lat": 48.8566, "lon": 2.3522, "timestamp": int(time.time())}
    pushed = api.put(f"/traccar/devices/{UNIQUE_ID}/locations?single", json=location, headers=AUTH)
    assert pushed.status_code == 200, pushed.data
    assert [item["status"] for item in pushed.get_json()] == ["synced"]
    assert pushed.get_json()[0]["location"]["id"] == UNIQUE_ID
    assert osmand.positions[-1].unique_id == UNIQUE_ID
    log = api.get("/push-log", query_string={"device_id": UNIQUE_ID}, headers=AUTH).get_json()
    assert log["entries"]
    assert {(e["id"], e["device_id"], e["vendor_id"]) for e in log["entries"]} == {
        (UNIQUE_ID, UNIQUE_ID, VEHICLE)
    }
    [newest] = api.get("/locations", headers=AUTH).get_json()
    assert newest["id"] == UNIQUE_ID

    # The newest delivered position (a Google tracker would be located now).
    located = api.get(f"{path}/locations?last", headers=AUTH)
    assert located.status_code == 200, located.data
    assert (located.get_json()["lat"], located.get_json()["lon"]) == (48.8566, 2.3522)
    assert located.get_json()["id"] == UNIQUE_ID
    by_vendor_id = api.get(f"/devices/{VEHICLE}/locations", headers=AUTH).get_json()
    assert by_vendor_id and {item["id"] for item in by_vendor_id} == {UNIQUE_ID}
    # Ringing is Google's: the vehicle is found and refused for its source, not "unknown".
    rung = api.post(f"{path}/sound", headers=AUTH)
    assert rung.status_code == 400 and "smartcar" in error_of(rung)

    deleted = api.delete(f"{path}/services", headers=AUTH)
    assert deleted.status_code == 200
    assert (deleted.get_json()["id"], deleted.get_json()["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    assert api.get(f"/devices/{VEHICLE}/services", headers=AUTH).status_code == 404

    excluded = api.put(f"/excluded-devices/{VEHICLE}", headers=AUTH)
    assert excluded.status_code == 201
    assert (excluded.get_json()["id"], excluded.get_json()["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    [listed_excluded] = api.get("/excluded-devices", headers=AUTH).get_json()
    assert (listed_excluded["id"], listed_excluded["vendor_id"]) == (UNIQUE_ID, VEHICLE)
    refused = api.put(f"/devices/{UNIQUE_ID}/services", json=SERVICE, headers=AUTH)
    assert refused.status_code == 403  # the uniqueId sees the same exclusion
    assert api.delete(f"/excluded-devices/{UNIQUE_ID}", headers=AUTH).status_code == 200
    assert [e["id"] for e in api.get("/excluded-devices", headers=AUTH).get_json()] == []

    removed = api.delete(path, headers=AUTH)
    assert removed.status_code == 200, removed.data
    assert removed.get_json()["smartcar"] == "disconnected"
    assert smartcar.disconnected == [VEHICLE]
    assert api.get("/devices", headers=AUTH).get_json() == []
    # Gone: the uniqueId no longer resolves, and the 404 names it as given.
    again = api.delete(path, headers=AUTH)
    assert again.status_code == 404 and UNIQUE_ID in error_of(again)


def test_the_bare_vehicle_id_still_works(api: FlaskClient, vehicle: Device) -> None:
    created = api.put(f"/devices/{VEHICLE}/services", json=SERVICE, headers=AUTH)
    assert created.status_code == 201, created.data
    shown = api.get(f"/devices/{UNIQUE_ID}/services", headers=AUTH).get_json()
    assert (shown["id"], shown["vendor_id"]) == (UNIQUE_ID, VEHICLE)

    location = {"id": VEHICLE, "lat": 48.8566, "lon": 2.3522, "timestamp": 1_700_000_000}
    pushed = api.put(f"/traccar/devices/{VEHICLE}/locations?single", json=location, headers=AUTH)
    assert pushed.status_code == 200 and pushed.get_json()[0]["status"] == "synced"
    assert api.delete(f"/devices/{VEHICLE}", headers=AUTH).status_code == 200


def test_a_uniqueid_the_user_mapped_works_and_is_listed(
    api: FlaskClient, vehicle: Device, firestore_client: firestore.Client
) -> None:
    # The user maps the vehicle to another Traccar device (shared/store/smartcar.py).
    Store(firestore_client).devices.put(
        vehicle.model_copy(update={"traccar_unique_id": "my-model-3"})
    )

    created = api.put("/devices/my-model-3/services", json=SERVICE, headers=AUTH)

    assert created.status_code == 201 and created.get_json()["vendor_id"] == VEHICLE
    [listed] = api.get("/devices", headers=AUTH).get_json()
    assert (listed["id"], listed["vendor_id"]) == ("my-model-3", VEHICLE)
    [service] = api.get("/services", headers=AUTH).get_json()
    assert (service["id"], service["vendor_id"]) == ("my-model-3", VEHICLE)
    # The old uniqueId names no device any more.
    assert api.get(f"/devices/{UNIQUE_ID}/services", headers=AUTH).status_code == 404


def test_an_unknown_id_is_still_a_404_naming_it(api: FlaskClient, vehicle: Device) -> None:
    for method, path in (
        ("PUT", "/devices/smartcar-nobody/services"),
        ("GET", "/devices/smartcar-nobody/services"),
        ("DELETE", "/devices/smartcar-nobody"),
        ("PUT", "/traccar/devices/smartcar-nobody/locations"),
    ):
        answer = api.open(path, method=method, json=SERVICE, headers=AUTH)
        assert answer.status_code == 404, (method, path, answer.data)
        assert "smartcar-nobody" in error_of(answer), (method, path)


def test_two_devices_sharing_a_uniqueid_are_a_conflict_naming_both(
    api: FlaskClient, vehicle: Device, firestore_client: firestore.Client
) -> None:
    twin = Device(id="tlink-5", source=Source.TLINK, traccar_unique_id=UNIQUE_ID)
    Store(firestore_client).devices.put(twin)

    answer = api.put(f"/devices/{UNIQUE_ID}/services", json=SERVICE, headers=AUTH)

    # As a Traccar command naming it is (shared/commands.py): the caller picks one by the
    # vendor_id `GET /devices` lists beside the uniqueId.
    assert answer.status_code == 409
    assert all(name in error_of(answer) for name in (UNIQUE_ID, VEHICLE, "tlink-5"))
    assert api.put(f"/devices/{VEHICLE}/services", json=SERVICE, headers=AUTH).status_code == 201


def test_positions_given_under_the_uniqueid_are_recorded_for_the_device(
    api: FlaskClient, vehicle: Device
) -> None:
    """The seed's `POST /locations` and `GET /locations?filter=` take the uniqueId too: one
    record per device, whichever id a script sends."""
    location = {"id": UNIQUE_ID, "lat": 45.0, "lon": 7.0, "timestamp": int(time.time()) - 5}
    other = {**location, "timestamp": location["timestamp"] - 60}

    saved = api.post("/locations", json=location, headers=AUTH)
    assert saved.status_code == 201, saved.data

    # Checked against the vehicle's record under either id; answered as given.
    for named in (UNIQUE_ID, VEHICLE):
        candidates = [{**location, "id": named}, {**other, "id": named}]
        query = {"filter": json.dumps(candidates)}
        left = api.get("/locations", query_string=query, headers=AUTH).get_json()
        assert [(item["id"], item["timestamp"]) for item in left] == [
            (named, other["timestamp"])
        ], named
    # No second device record was made under the uniqueId.
    assert get_runtime().store.delivery.state(VEHICLE).last_location is not None
    newest = api.get("/locations", headers=AUTH).get_json()
    assert [(item["id"], item["lat"]) for item in newest] == [(UNIQUE_ID, 45.0)]


def test_a_refused_caller_costs_no_device_read(api: FlaskClient, vehicle: Device) -> None:
    # Authentication runs first: an id Firestore refuses is a 401 without the token, not a 400.
    assert api.get("/devices/__odd__/services").status_code == 401
    assert api.get("/devices/__odd__/services", headers=AUTH).status_code == 400


def test_an_id_too_long_to_query_is_looked_up_by_id_alone(api: FlaskClient) -> None:
    """A 1 500-byte id is a valid document id but an equality filter Firestore refuses
    ("too large to be used in a query"): no uniqueId that long is indexed whole, so the lookup
    by uniqueId is skipped rather than answered with a 500 (found by schemathesis)."""
    longest = "0" * 1_500
    location = {"id": longest, "lat": 0.0, "lon": 0.0, "timestamp": 0}

    assert api.post("/locations", json=location, headers=AUTH).status_code == 201
    answer = api.get(f"/devices/{longest}/services", headers=AUTH)
    assert answer.status_code == 404, answer.data
    # What a Traccar command naming it looks up too (shared/commands.py).
    assert get_runtime().store.devices.with_traccar_unique_id(longest, limit=2) == []
