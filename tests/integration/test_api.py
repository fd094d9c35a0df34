"""The REST API through functions-framework's app, on the emulator and the OsmAnd test server."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.models import Device, Location, Source
from shared.openapi import DOCUMENT, build_document
from shared.runtime import get_runtime
from shared.store import Store
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEYS = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")
SEED_LOCATION = {"id": "abc123", "lat": 48.8566, "lon": 2.3522, "timestamp": 1700000000}


def start_api(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> FlaskClient:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    app = functions_framework.create_app("api", str(ROOT / "functions/api/main.py"))
    return app.test_client()


@pytest.fixture
def api_env(
    emulator: Emulator,
    firestore_client: object,
    osmand: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    yield {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": TOKEN,
        "TRACCAR_SERVER_URL": osmand.url,
    }
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture
def api(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return start_api(monkeypatch, api_env)


@pytest.fixture
def store(firestore_client: Any) -> Store:
    store = Store(firestore_client)
    store.devices.put(KEYS)
    return store


def error_of(response: Any) -> str:
    assert response.is_json, response.data
    return response.get_json()["error"]


# --- auth and errors -------------------------------------------------------------------------


def test_health_and_versions_need_no_token(api: FlaskClient) -> None:
    assert api.get("/health").status_code == 200
    assert api.get("/versions").get_json()["version"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_every_other_route_needs_the_bearer_token(api: FlaskClient, headers: dict) -> None:
    for path in ("/services", "/locations", "/push-log", "/no/such/route"):
        response = api.get(path, headers=headers)
        assert response.status_code == 401
        assert "token" in error_of(response)


def test_an_unknown_route_is_a_json_404_after_auth(api: FlaskClient) -> None:
    response = api.get("/no/such/route", headers=AUTH)
    assert response.status_code == 404 and error_of(response)


def test_a_wrong_method_is_a_json_405(api: FlaskClient) -> None:
    response = api.post("/services", headers=AUTH)
    assert response.status_code == 405 and error_of(response)


# --- services --------------------------------------------------------------------------------


def test_service_create_update_delete_with_its_scheduler_job(
    api: FlaskClient, store: Store
) -> None:
    created = api.put("/devices/abc123/services", json={"timer": 120, "delta": 30}, headers=AUTH)
    updated = api.put("/devices/abc123/services", json={"timer": 600, "delta": 5}, headers=AUTH)

    assert created.status_code == 201 and updated.status_code == 200
    assert updated.get_json()["timer"] == 600
    [job] = store.local_jobs.list()
    assert (job.device_id, job.timer, job.delta) == ("abc123", 600, 5)
    listed = api.get("/services", headers=AUTH).get_json()
    assert [(s["id"], s["name"], s["timer"]) for s in listed] == [("abc123", "Keys", 600)]
    assert api.get("/devices/abc123/services", headers=AUTH).get_json()["delta"] == 5

    assert api.delete("/devices/abc123/services", headers=AUTH).status_code == 200
    assert store.local_jobs.list() == [] and store.services.list() == []
    assert api.delete("/devices/abc123/services", headers=AUTH).status_code == 404
    assert api.get("/devices/abc123/services", headers=AUTH).status_code == 404


def test_a_service_for_an_unknown_device_is_a_404(api: FlaskClient, store: Store) -> None:
    response = api.put("/devices/nobody/services", json={"timer": 120}, headers=AUTH)
    assert response.status_code == 404 and "nobody" in error_of(response)
    assert store.local_jobs.list() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"timer": "soon"}, "timer"), ({"timer": 10}, "timer"), ({"delta": 5}, "timer"),
     ({"timer": 120, "delta": -1}, "delta"), ([1, 2], "body")],
)  # fmt: skip
def test_a_malformed_service_body_is_a_400_naming_the_field(
    api: FlaskClient, store: Store, body: object, field: str
) -> None:
    response = api.put("/devices/abc123/services", json=body, headers=AUTH)
    assert response.status_code == 400
    assert error_of(response).startswith(field)


def test_a_body_that_is_not_json_is_a_400(api: FlaskClient, store: Store) -> None:
    response = api.put(
        "/devices/abc123/services",
        data="timer=1",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "JSON" in error_of(response)
    plain = api.put("/devices/abc123/services", data="{}", headers=AUTH)
    assert plain.status_code == 400 and "Content-Type" in error_of(plain)


# --- excluded devices ------------------------------------------------------------------------


def test_excluding_a_device_removes_its_service_and_forbids_a_new_one(
    api: FlaskClient, store: Store
) -> None:
    api.put("/devices/abc123/services", json={"timer": 120}, headers=AUTH)

    first = api.put("/excluded-devices/abc123", headers=AUTH)
    again = api.put("/excluded-devices/abc123", headers=AUTH)

    assert (first.status_code, again.status_code) == (201, 200)
    assert store.services.list() == [] and store.local_jobs.list() == []
    forbidden = api.put("/devices/abc123/services", json={"timer": 120}, headers=AUTH)
    assert forbidden.status_code == 403 and "excluded" in error_of(forbidden)
    assert [e["id"] for e in api.get("/excluded-devices", headers=AUTH).get_json()] == ["abc123"]

    assert api.delete("/excluded-devices/abc123", headers=AUTH).status_code == 200
    assert api.delete("/excluded-devices/abc123", headers=AUTH).status_code == 404
    allowed = api.put("/devices/abc123/services", json={"timer": 120}, headers=AUTH)
    assert allowed.status_code == 201


# --- locations -------------------------------------------------------------------------------


def test_post_location_saves_the_seed_compatible_hash(api: FlaskClient, store: Store) -> None:
    response = api.post("/locations", json=SEED_LOCATION, headers=AUTH)

    expected = hashlib.md5(b"abc12348.85662.35221700000000", usedforsecurity=False).hexdigest()
    assert response.status_code == 201
    assert response.get_json() == {"status": "saved", "hash": expected}
    newest = api.get("/locations", headers=AUTH).get_json()
    assert newest == [{**SEED_LOCATION, "attributes": {}}]


def test_filter_returns_only_the_locations_not_delivered_yet(
    api: FlaskClient, store: Store
) -> None:
    api.post("/locations", json=SEED_LOCATION, headers=AUTH)
    fresh = {**SEED_LOCATION, "timestamp": 1700000060}

    response = api.get(
        "/locations",
        query_string={"filter": json.dumps([SEED_LOCATION, fresh])},
        headers=AUTH,
    )

    assert response.status_code == 200
    assert [loc["timestamp"] for loc in response.get_json()] == [1700000060]


@pytest.mark.parametrize("value", ["not json", '{"id": 1}', '[{"id": "a", "lat": 91}]'])
def test_a_bad_filter_is_a_400(api: FlaskClient, value: str) -> None:
    response = api.get("/locations", query_string={"filter": value}, headers=AUTH)
    assert response.status_code == 400 and error_of(response).startswith("filter")


def test_single_push_reaches_traccar_and_is_logged(
    api: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    response = api.put("/traccar/devices/abc123/locations?single", json=SEED_LOCATION, headers=AUTH)

    assert response.status_code == 200
    [answer] = response.get_json()
    assert answer["status"] == "synced" and answer["location"]["lat"] == 48.8566
    [position] = osmand.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        "abc123",
        48.8566,
        2.3522,
    )
    log = api.get("/push-log", query_string={"device_id": "abc123"}, headers=AUTH).get_json()
    assert [e["outcome"] for e in log["entries"]] == ["accepted"] and log["next_cursor"] is None


def test_single_push_refused_by_traccar_reports_an_error_and_keeps_the_position(
    api: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    osmand.respond_with(503)
    response = api.put("/traccar/devices/abc123/locations?single", json=SEED_LOCATION, headers=AUTH)

    [answer] = response.get_json()
    assert answer["status"] == "error" and "503" in answer["message"]
    assert [e.location for e in store.delivery.outbox("abc123")] == [Location(**SEED_LOCATION)]


def test_single_push_with_another_id_in_the_body_is_a_400(api: FlaskClient, store: Store) -> None:
    response = api.put("/traccar/devices/other/locations?single", json=SEED_LOCATION, headers=AUTH)
    assert response.status_code == 400 and error_of(response).startswith("id")


# 2037-01-01: issue 13's flood, far beyond MAX_FUTURE_SKEW (300 s by default).
FROM_2037 = {**SEED_LOCATION, "timestamp": 2114380800}


def test_a_location_dated_ahead_of_the_clock_is_a_400_and_not_recorded(
    api: FlaskClient, store: Store
) -> None:
    response = api.post("/locations", json=FROM_2037, headers=AUTH)

    assert response.status_code == 400
    assert error_of(response).startswith("timestamp: 2114380800 is ")
    assert "ahead of the clock" in error_of(response)
    assert api.get("/locations", headers=AUTH).get_json() == []
    assert store.delivery.state("abc123").floor == 0


def test_a_single_push_dated_ahead_of_the_clock_is_a_400_and_not_pushed(
    api: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    response = api.put("/traccar/devices/abc123/locations?single", json=FROM_2037, headers=AUTH)

    assert response.status_code == 400 and "ahead of the clock" in error_of(response)
    assert error_of(response).startswith("timestamp")
    assert osmand.positions == []
    assert store.delivery.outbox("abc123") == []


def test_a_location_within_the_skew_is_taken(
    api: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    soon = {**SEED_LOCATION, "timestamp": int(time.time()) + 60}  # a clock a minute fast

    pushed = api.put("/traccar/devices/abc123/locations?single", json=soon, headers=AUTH)

    assert pushed.status_code == 200 and pushed.get_json()[0]["status"] == "synced"
    assert api.post("/locations", json=soon, headers=AUTH).status_code == 201
    assert len(osmand.positions) == 1


def test_manual_sync_of_an_unknown_device_is_a_404(api: FlaskClient) -> None:
    response = api.put("/traccar/devices/nobody/locations", headers=AUTH)
    assert response.status_code == 404


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "many"}, {"cursor": "nope"}])
def test_bad_push_log_queries_are_400(api: FlaskClient, query: dict) -> None:
    response = api.get("/push-log", query_string=query, headers=AUTH)
    assert response.status_code == 400 and error_of(response)


# --- notifications ---------------------------------------------------------------------------


def test_notify_test_without_smtp_settings_says_notifications_are_disabled(
    api: FlaskClient,
) -> None:
    response = api.post("/notify/test", headers=AUTH)
    assert response.status_code == 409 and "NOTIFY_SMTP_HOST" in error_of(response)


def test_notify_test_sends_a_real_email(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer() as smtp:
        api = start_api(
            monkeypatch,
            {
                **api_env,
                "NOTIFY_SMTP_HOST": "127.0.0.1",
                "NOTIFY_SMTP_PORT": str(smtp.port),
                "NOTIFY_EMAIL_FROM": "bridge@example.org",
                "NOTIFY_EMAIL_TO": "me@example.org",
            },
        )
        response = api.post("/notify/test", headers=AUTH)
        assert response.status_code == 200 and response.get_json() == {"status": "sent"}
        assert len(smtp.messages) == 1


def test_notify_test_reports_a_failed_send_as_a_failure(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer() as smtp:
        port = smtp.port  # a port nobody listens on once the server is gone
    api = start_api(
        monkeypatch,
        {
            **api_env,
            "NOTIFY_SMTP_HOST": "127.0.0.1",
            "NOTIFY_SMTP_PORT": str(port),
            "NOTIFY_EMAIL_FROM": "bridge@example.org",
            "NOTIFY_EMAIL_TO": "me@example.org",
        },
    )
    response = api.post("/notify/test", headers=AUTH)
    assert response.status_code == 502 and "not sent" in error_of(response)


# --- OpenAPI ---------------------------------------------------------------------------------


def test_the_checked_in_openapi_document_is_up_to_date() -> None:
    assert json.loads(DOCUMENT.read_text()) == build_document(), "run: make openapi"


def test_openapi_documents_exactly_the_routes_of_the_app(api: FlaskClient) -> None:
    # SPEC.md: every route but /health and /versions needs the token, this one too.
    assert api.get("/openapi.json").status_code == 401
    document = api.get("/openapi.json", headers=AUTH).get_json()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    spec = importlib.util.spec_from_file_location("api_main", ROOT / "functions/api/main.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    routes = {
        (method, rule.rule.replace("<", "{").replace(">", "}"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes == documented


# --- what Firestore would refuse is caught at the edge (issue 12) ----------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("__main__", "reserves"),
        ("x" * 1_600, "longer than"),
    ],
)
def test_an_attribute_firestore_would_refuse_is_a_400_and_the_device_stays_free(
    api: FlaskClient, store: Store, osmand: OsmAndServer, name: str, why: str
) -> None:
    """The issue's reproduction: `__main__` used to pass the API, be pushed, then fail the final
    commit (500, the lease held ten minutes, the position pushed again by every later run)."""
    refused = {**SEED_LOCATION, "attributes": {name: 1}}

    pushed = api.put("/traccar/devices/abc123/locations?single", json=refused, headers=AUTH)
    posted = api.post("/locations", json=refused, headers=AUTH)

    for response in (pushed, posted):
        assert response.status_code == 400 and why in error_of(response)
        assert "attributes" in error_of(response)
    assert osmand.positions == []
    # Nothing held the device: a genuine position right after is served at once, once.
    again = api.put("/traccar/devices/abc123/locations?single", json=SEED_LOCATION, headers=AUTH)
    assert again.status_code == 200 and again.get_json()[0]["status"] == "synced"
    assert len(osmand.positions) == 1
