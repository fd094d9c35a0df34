"""A push for a device the bridge does not know is a 404 naming it; a failed scheduled run's
error and its time show in `GET /services` and `GET /devices` (issue 18).

The API and `sync_device` run in-process through functions-framework's apps, on the Firestore
emulator and the OsmAnd test server; the failing run is a real TLINK pull without the TLINK
credentials stored."""

from __future__ import annotations

from datetime import datetime

import functions_framework
import pytest
from flask.testing import FlaskClient

from shared.config import get_settings
from shared.models import Device, Source
from shared.runtime import get_runtime
from shared.store import Store
from tests.fakes.osmand import OsmAndServer
from tests.integration.test_api import AUTH, KEYS, ROOT, SEED_LOCATION, api_env, start_api

__all__ = ["api_env"]  # the fixture, imported to be found here

BOX = Device(id="tlink-77", source=Source.TLINK, name="Box", traccar_unique_id="tlink-77")


@pytest.fixture
def api(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return start_api(monkeypatch, api_env)


@pytest.fixture
def store(firestore_client: object) -> Store:
    store = Store(firestore_client)
    store.devices.put(KEYS)
    store.devices.put(BOX)
    return store


def test_a_push_for_an_unknown_device_is_a_404_naming_it_and_nothing_is_made_up(
    api: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    location = {**SEED_LOCATION, "id": "nobody-42"}

    response = api.put("/traccar/devices/nobody-42/locations?single", json=location, headers=AUTH)

    assert response.status_code == 404, response.data
    assert "nobody-42" in response.get_json()["error"]
    assert osmand.positions == []
    assert store.devices.get("nobody-42") is None
    log = api.get("/push-log", query_string={"device_id": "nobody-42"}, headers=AUTH).get_json()
    assert log["entries"] == []


def test_a_failed_scheduled_run_shows_its_error_and_time_in_services_and_devices(
    api: FlaskClient, store: Store, api_env: dict[str, str]
) -> None:
    assert api.put("/devices/tlink-77/services", json={"timer": 600}, headers=AUTH).status_code in (
        200,
        201,
    )
    get_runtime.cache_clear()
    get_settings.cache_clear()
    sync = functions_framework.create_app(
        "sync_device", str(ROOT / "functions/sync_device/main.py")
    ).test_client()

    failed = sync.post("/", json={"device_id": "tlink-77"})

    assert failed.status_code >= 400 and failed.is_json
    reason = failed.get_json()["error"]
    assert "TLINK credentials" in reason
    [service] = [s for s in api.get("/services", headers=AUTH).get_json() if s["id"] == "tlink-77"]
    assert service["last_error"] == reason
    assert datetime.fromisoformat(service["last_error_at"])
    devices = {d["id"]: d for d in api.get("/devices", headers=AUTH).get_json()}
    assert devices["tlink-77"]["last_error"] == reason
    assert devices["tlink-77"]["last_error_at"] == service["last_error_at"]
    assert devices["abc123"]["last_error"] is None  # a device that never failed
