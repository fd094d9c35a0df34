"""Issue 13, points 5 and 7, through functions-framework's app on the emulator: the API fails
closed without its token in the cloud, listings read bounded pages (a `Link` header to the
next), and `/health` costs one Firestore read and keeps its details behind the token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from google.cloud.firestore_v1.aggregation import AggregationQuery
from google.cloud.firestore_v1.client import Client
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.query import Query

from devtools.emulator import Emulator
from shared.models import AuthState, Device, Service, Source
from shared.store import MAX_PAGE_SIZE, Store
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer
from tests.integration.test_api import AUTH, KEYS, SEED_LOCATION, TOKEN, start_api

KEYS_SERVICE = Service(id="abc123", name="Keys", timer=600, delta=5)

# Routes that need the token, one per kind (reads, a write, a vendor's, an unknown path).
GUARDED = [
    ("GET", "/services"),
    ("GET", "/locations"),
    ("GET", "/push-log"),
    ("GET", "/devices"),
    ("PUT", "/devices/abc123/services"),
    ("POST", "/notify/test"),
    ("GET", "/smartcar/vehicles"),
    ("GET", "/tlink/users/u1/devices"),
    ("GET", "/no/such/route"),
]


@pytest.fixture
def base_env(
    emulator: Emulator,
    firestore_client: object,
    osmand: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "TRACCAR_SERVER_URL": osmand.url,
    }


@pytest.fixture
def api(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return start_api(monkeypatch, {**base_env, "API_TOKEN": TOKEN})


@pytest.fixture
def store(firestore_client: Any) -> Store:
    store = Store(firestore_client)
    store.devices.put(KEYS)
    return store


@pytest.fixture
def firestore_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Firestore read call made from now on (document gets, queries, aggregations)."""
    calls: list[str] = []

    def counted(cls: type, name: str) -> None:
        original: Callable[..., Any] = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(f"{cls.__name__}.{name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for cls, name in [
        (DocumentReference, "get"),
        (Query, "stream"),
        (CollectionReference, "stream"),
        (AggregationQuery, "get"),
        (Client, "get_all"),
    ]:
        counted(cls, name)
    return calls


def error_of(response: Any) -> str:
    assert response.is_json, response.data
    return response.get_json()["error"]


def next_page(response: Any) -> str | None:
    """The relative URL of the `Link: <...>; rel="next"` header, or None."""
    link = response.headers.get("Link")
    if link is None:
        return None
    target, _, relation = link.partition(";")
    assert relation.strip() == 'rel="next"', link
    return target.strip().removeprefix("<").removesuffix(">")


def walk(api: FlaskClient, url: str) -> list[list[Any]]:
    """Every page of a listing, following the Link headers from `url`."""
    pages: list[list[Any]] = []
    next_url: str | None = url
    while next_url is not None:
        response = api.get(next_url, headers=AUTH)
        assert response.status_code == 200, response.data
        pages.append(response.get_json())
        next_url = next_page(response)
        assert len(pages) < 20, "the cursor does not advance"
    return pages


# --- 5. fail closed --------------------------------------------------------------------------


@pytest.fixture
def cloud_without_token(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    return start_api(
        monkeypatch, {**base_env, "SECRETS_BACKEND": "secret_manager", "API_TOKEN": ""}
    )


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_without_a_token_in_the_cloud_every_route_is_a_503_naming_the_secret(
    cloud_without_token: FlaskClient, store: Store, method: str, path: str
) -> None:
    for headers in ({}, AUTH):
        response = cloud_without_token.open(path, method=method, json={}, headers=headers)

        assert response.status_code == 503, response.data
        assert "api-token" in error_of(response) and "API_TOKEN" in error_of(response)
    assert store.local_jobs.list() == [] and store.services.list() == []  # nothing done


def test_without_a_token_in_the_cloud_health_says_misconfigured(
    cloud_without_token: FlaskClient, store: Store
) -> None:
    response = cloud_without_token.get("/health")

    assert response.status_code == 503
    body = response.get_json()
    assert (body["status"], body["services"]) == ("misconfigured", 0)
    assert "api-token" in body["reason"]


def test_without_a_token_in_the_cloud_the_public_routes_stay_public(
    cloud_without_token: FlaskClient,
) -> None:
    assert cloud_without_token.get("/versions").status_code == 200
    # SPEC.md: every route but /health and /versions needs the token: fails closed here.
    assert cloud_without_token.get("/openapi.json").status_code == 503
    # Smartcar's return leg is guarded by its single-use state, not by the token: it gets
    # past the token check (a state too long is refused by the route's own validation).
    exchange = cloud_without_token.get("/smartcar/exchange", query_string={"state": "s" * 501})
    assert exchange.status_code == 400 and "state" in error_of(exchange)


def test_an_empty_token_with_the_local_backend_leaves_the_api_open(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    api = start_api(monkeypatch, {**base_env, "SECRETS_BACKEND": "local", "API_TOKEN": ""})

    assert api.get("/services").status_code == 200
    assert api.get("/health").get_json() == {"status": "ok", "services": 0}


# --- 7. /health: one read, details behind the token -------------------------------------------


def test_health_costs_one_firestore_read(
    api: FlaskClient, store: Store, firestore_reads: list[str]
) -> None:
    store.devices.put(
        Device(id="bike", source=Source.GOOGLE, name="Bike", traccar_unique_id="bike")
    )
    for device in ("abc123", "bike"):
        spec = {"timer": 600, "delta": 5}
        assert api.put(f"/devices/{device}/services", json=spec, headers=AUTH).status_code == 201
    assert api.delete("/devices/bike/services", headers=AUTH).status_code == 200

    firestore_reads.clear()
    for _ in range(3):
        assert api.get("/health").get_json() == {"status": "ok", "services": 1}
    assert firestore_reads == ["DocumentReference.get"] * 3


def test_health_counts_once_when_the_count_is_missing_then_reads_one_document(
    api: FlaskClient, store: Store, firestore_reads: list[str]
) -> None:
    # Written as an older version (or the expiry handling) wrote it: no services' count.
    store.services.put(KEYS_SERVICE)
    store.state.put("auth", AuthState(status="ok"))

    assert api.get("/health").get_json() == {"status": "ok", "services": 1}
    assert api.get("/health").get_json() == {"status": "ok", "services": 1}
    counted, then_one_read = (
        ["DocumentReference.get", "AggregationQuery.get"],
        ["DocumentReference.get"],
    )
    assert firestore_reads == counted + then_one_read


def test_health_shows_the_reason_only_with_the_token(api: FlaskClient, store: Store) -> None:
    refusal = "Google refused the token of someone@example.com"
    store.state.put("auth", AuthState(status="auth_required", reason=refusal))

    anonymous = api.get("/health")
    wrong = api.get("/health", headers={"Authorization": "Bearer wrong"})
    with_token = api.get("/health", headers=AUTH)

    assert anonymous.status_code == wrong.status_code == with_token.status_code == 503
    assert anonymous.get_json() == wrong.get_json() == {"status": "auth_required", "services": 0}
    assert with_token.get_json() == {"status": "auth_required", "services": 0, "reason": refusal}
    assert "someone" not in anonymous.get_data(as_text=True)


# --- 7. bounded listings ---------------------------------------------------------------------


def test_devices_are_listed_in_pages_by_id_with_a_link_to_the_next(
    api: FlaskClient, store: Store
) -> None:
    ids = sorted(["abc123", *(f"tracker-{n:02d}" for n in range(6))])
    for device_id in ids[1:]:
        store.devices.put(
            Device(id=device_id, source=Source.TLINK, name=device_id, traccar_unique_id=device_id)
        )

    first = api.get("/devices?limit=3", headers=AUTH)
    pages = walk(api, "/devices?limit=3")

    link = urlsplit(next_page(first) or "")
    assert link.path == "/devices" and parse_qs(link.query) == {"limit": ["3"], "cursor": [ids[2]]}
    assert [[d["id"] for d in page] for page in pages] == [ids[0:3], ids[3:6], ids[6:]]
    last = api.get(f"/devices?limit=3&cursor={ids[5]}", headers=AUTH)
    assert last.get_json()[0]["id"] == ids[6] and "Link" not in last.headers
    assert next_page(api.get("/devices", headers=AUTH)) is None  # 7 < the default 500


def test_locations_are_listed_in_pages_by_device(api: FlaskClient, store: Store) -> None:
    ids = [f"dev-{n}" for n in range(5)]
    for n, device_id in enumerate(ids):
        location = {**SEED_LOCATION, "id": device_id, "lat": 10.0 + n}
        assert api.post("/locations", json=location, headers=AUTH).status_code == 201

    pages = walk(api, "/locations?limit=2")

    assert [[loc["id"] for loc in page] for page in pages] == [ids[0:2], ids[2:4], ids[4:]]
    assert pages[2][0]["lat"] == 14.0


def test_the_push_log_keeps_its_page_body_and_adds_the_link(api: FlaskClient, store: Store) -> None:
    for n in range(3):
        location = {**SEED_LOCATION, "timestamp": 1700000000 + n}
        url = "/traccar/devices/abc123/locations?single"
        assert api.put(url, json=location, headers=AUTH).status_code == 200

    first = api.get("/push-log?device_id=abc123&limit=2", headers=AUTH)
    body = first.get_json()
    link = urlsplit(next_page(first) or "")
    second = api.get(f"{link.path}?{link.query}", headers=AUTH)

    assert len(body["entries"]) == 2 and body["next_cursor"]
    assert parse_qs(link.query) == {
        "device_id": ["abc123"],
        "limit": ["2"],
        "cursor": [body["next_cursor"]],
    }
    assert len(second.get_json()["entries"]) == 1 and second.get_json()["next_cursor"] is None
    assert "Link" not in second.headers


@pytest.mark.parametrize("path", ["/devices", "/locations", "/push-log"])
@pytest.mark.parametrize(
    "query", ["limit=0", f"limit={MAX_PAGE_SIZE + 1}", "limit=many", "cursor=", "cursor=a/b"]
)
def test_bad_limits_and_cursors_are_400(api: FlaskClient, path: str, query: str) -> None:
    response = api.get(f"{path}?{query}", headers=AUTH)
    assert response.status_code == 400 and error_of(response)


@pytest.mark.parametrize("path", ["/devices", "/locations", "/push-log"])
def test_the_largest_page_is_accepted(api: FlaskClient, store: Store, path: str) -> None:
    assert api.get(f"{path}?limit={MAX_PAGE_SIZE}", headers=AUTH).status_code == 200
