"""The API's Smartcar routes through functions-framework: Connect against a local Smartcar (real
sockets, the official SDK unchanged), and the vehicle views over the emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import functions_framework
import pytest
import requests
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.models import utc_now
from shared.runtime import Runtime, get_runtime
from shared.secrets import LocalSecretStore
from shared.sources.smartcar import connect
from tests.conftest import PROJECT, make_settings
from tests.fakes.smartcar import ALL_PERMISSIONS, FakeVehicle, SmartcarServer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TOKEN = "test-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIENT_ID = "8229df9f-91a0-4ff0-a1ae-a1f38ee24d07"
CLIENT_SECRET = "sc-client-secret-b7d1f0a2"
REDIRECT_URI = "https://bridge.example.test/smartcar/exchange"
MANAGEMENT_TOKEN = "sc-management-token-7f1e2d3c"
CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
VAN = "1c2d3e4f-0000-4b0c-9d3e-aaaaaaaaaaaa"
REQUEST_TIMEOUT = 10.0


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI
    ) as server:
        server.add_vehicle(FakeVehicle(CAR))
        server.add_vehicle(FakeVehicle(VAN, permissions=ALL_PERMISSIONS - {"read_vehicle_info"}))
        yield server


@pytest.fixture
def env(
    emulator: Emulator,
    firestore_client: firestore.Client,
    smartcar: SmartcarServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    secrets = LocalSecretStore(tmp_path / "secrets")
    secrets.add_version("smartcar-client-secret", CLIENT_SECRET)
    secrets.add_version("smartcar-management-token", MANAGEMENT_TOKEN)
    yield {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "API_TOKEN": TOKEN,
        "SMARTCAR_CLIENT_ID": CLIENT_ID,
        "SMARTCAR_REDIRECT_URI": REDIRECT_URI,
        "SMARTCAR_API_ORIGIN": smartcar.url,
        "SMARTCAR_AUTH_ORIGIN": smartcar.token_url,
        "SMARTCAR_CONNECT_ORIGIN": smartcar.url,
        "SMARTCAR_VEHICLE_API_URL": smartcar.vehicle_api_url,
        "SMARTCAR_IAM_TOKEN_URL": smartcar.iam_token_url,
    }
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture
def api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    return functions_framework.create_app("api", str(ROOT / "functions/api/main.py")).test_client()


def consent(authorize_url: str) -> str:
    """The user at Smartcar Connect: answers the query string Smartcar sends the browser back."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI
    return back.query


def start_connect(api: FlaskClient) -> str:
    started = api.get("/smartcar/connect", headers=AUTH)
    assert started.status_code == 302, started.data
    return started.headers["Location"]


def documents(client: firestore.Client, collection: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() for s in client.collection(collection).stream()}


# --- Connect ---------------------------------------------------------------------------------


def test_connect_redirects_to_smartcar_with_a_fresh_single_use_state(
    api: FlaskClient, smartcar: SmartcarServer, firestore_client: firestore.Client
) -> None:
    answer = api.get("/smartcar/connect", headers=AUTH)

    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert answer.get_json()["authorize_url"] == location
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == smartcar.url + "/oauth/authorize"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == REDIRECT_URI
    assert query["response_type"] == "code" and query["mode"] == "live"
    assert query["scope"] == (
        "read_vehicle_info read_location read_odometer read_battery read_charge"
    )
    # Only the state's hash is stored.
    state = query["state"]
    stored = documents(firestore_client, "smartcar_connect_states")
    assert list(stored) == [hashlib.sha256(state.encode()).hexdigest()]
    assert state not in json.dumps(stored, default=str)
    assert api.get("/smartcar/connect", headers=AUTH).headers["Location"] != location


def test_connect_needs_the_bearer_token(api: FlaskClient) -> None:
    answer = api.get("/smartcar/connect")

    assert answer.status_code == 401 and "Location" not in answer.headers


def test_a_completed_connect_stores_the_tokens_and_records_the_vehicles(
    api: FlaskClient, smartcar: SmartcarServer, firestore_client: firestore.Client, tmp_path: Path
) -> None:
    query = consent(start_connect(api))

    answer = api.get(f"/smartcar/exchange?{query}")  # a browser: no bearer token

    assert answer.status_code == 200, answer.data
    body = answer.get_json()
    assert body["status"] == "connected" and body["user_id"] == smartcar.user.id
    assert body["vehicles"] == [
        {"id": CAR, "make": "TESLA", "model": "Model 3", "year": 2020,
         "traccar_unique_id": f"smartcar-{CAR}"},
        {"id": VAN, "make": None, "model": None, "year": None,
         "traccar_unique_id": f"smartcar-{VAN}"},
    ]  # fmt: skip
    devices = documents(firestore_client, "devices")
    assert (devices[CAR]["name"], devices[CAR]["source"]) == ("TESLA Model 3 2020", "smartcar")
    assert devices[VAN]["name"] == VAN
    # API v3: no user tokens; the application token and the user id list the vehicles.
    assert not (tmp_path / "secrets" / "smartcar-tokens").exists()
    assert smartcar.grants() == ["client_credentials"]
    [listed_connections] = [r for r in smartcar.requests if r.path == "/v3/connections"]
    assert listed_connections.headers["sc-user-id"] == smartcar.user.id

    listed = api.get("/smartcar/vehicles", headers=AUTH).get_json()
    assert [(v["id"], v["user_id"], v["connected_at"] is not None) for v in listed] == [
        (VAN, smartcar.user.id, True), (CAR, smartcar.user.id, True)]  # fmt: skip


OTHER_USER = "7d3c1b2a-1111-4c5d-8e9f-0a1b2c3d4e5f"
OTHER_CAR = "5e6f7a8b-2222-4c5d-8e9f-0a1b2c3d4e5f"


@pytest.mark.parametrize("honoured", [True, False], ids=["filtered", "filter-ignored"])
def test_the_connections_are_asked_for_the_user_and_only_theirs_are_recorded(
    api: FlaskClient, smartcar: SmartcarServer, firestore_client: firestore.Client, honoured: bool
) -> None:
    # The application has another user's car; a Smartcar that ignored the user filter would
    # list it too: the bridge keeps only the connections whose user is the one connecting.
    smartcar.other_connections.append((OTHER_USER, FakeVehicle(OTHER_CAR)))
    smartcar.honour_user_filter = honoured

    answer = api.get(f"/smartcar/exchange?{consent(start_connect(api))}")

    assert answer.status_code == 200, answer.data
    assert {vehicle["id"] for vehicle in answer.get_json()["vehicles"]} == {CAR, VAN}
    assert OTHER_CAR not in documents(firestore_client, "devices")
    # The query names of Smartcar's v3 specs (tests/fakes/smartcar.py says where from).
    [listed] = [r for r in smartcar.requests if r.path == "/v3/connections"]
    assert listed.query == {
        "filter[userId]": smartcar.user.id, "page[number]": "1", "page[size]": "100"
    }  # fmt: skip


def test_a_state_is_single_use(api: FlaskClient, smartcar: SmartcarServer) -> None:
    query = consent(start_connect(api))
    assert api.get(f"/smartcar/exchange?{query}").status_code == 200

    replay = api.get(f"/smartcar/exchange?{query}")

    assert replay.status_code == 400 and "used already" in replay.get_json()["error"]
    assert smartcar.grants() == ["client_credentials"]


def test_a_forged_or_missing_state_is_refused_before_smartcar_is_asked(
    api: FlaskClient, smartcar: SmartcarServer
) -> None:
    query = parse_qs(consent(start_connect(api)))
    user_id = query["user_id"][0]

    forged = api.get(f"/smartcar/exchange?user_id={user_id}&state=forged-state-value")
    missing = api.get(f"/smartcar/exchange?user_id={user_id}")

    assert forged.status_code == 400 and "state: unknown" in forged.get_json()["error"]
    assert missing.status_code == 400 and "state: missing" in missing.get_json()["error"]
    assert smartcar.grants() == []


def test_an_expired_state_is_refused(
    api: FlaskClient, smartcar: SmartcarServer, env: dict[str, str], tmp_path: Path,
    firestore_client: firestore.Client,
) -> None:  # fmt: skip
    runtime = Runtime(
        make_settings(
            tmp_path,
            smartcar_client_id=CLIENT_ID,
            smartcar_redirect_uri=REDIRECT_URI,
            smartcar_api_origin=smartcar.url,
            smartcar_auth_origin=smartcar.token_url,
            smartcar_connect_origin=smartcar.url,
            smartcar_vehicle_api_url=smartcar.vehicle_api_url,
            smartcar_iam_token_url=smartcar.iam_token_url,
        ),
        firestore_client=firestore_client,
    )
    long_ago = utc_now() - connect.STATE_LIFETIME - timedelta(seconds=1)
    started = runtime.smartcar_stack(clock=lambda: long_ago).connect.start()

    answer = api.get(f"/smartcar/exchange?{consent(started.authorize_url)}")

    assert answer.status_code == 400 and "expired" in answer.get_json()["error"]
    assert smartcar.grants() == []


def test_a_denied_consent_is_reported(api: FlaskClient, smartcar: SmartcarServer) -> None:
    smartcar.deny_next_consent()

    answer = api.get(f"/smartcar/exchange?{consent(start_connect(api))}")

    assert answer.status_code == 400
    assert "access_denied: User denied access" in answer.get_json()["error"]


def test_a_user_id_smartcar_lists_no_vehicle_of_is_a_bad_request(
    api: FlaskClient, smartcar: SmartcarServer, firestore_client: firestore.Client
) -> None:
    state = parse_qs(consent(start_connect(api)))["state"][0]

    answer = api.get(f"/smartcar/exchange?user_id=somebody-else&state={state}")

    assert answer.status_code == 400
    assert "user_id: Smartcar lists no vehicle" in answer.get_json()["error"]
    assert documents(firestore_client, "devices") == {}


def test_a_redirect_without_a_user_id_is_a_bad_request(api: FlaskClient) -> None:
    state = parse_qs(consent(start_connect(api)))["state"][0]

    answer = api.get(f"/smartcar/exchange?state={state}")

    assert answer.status_code == 400 and "user_id: missing" in answer.get_json()["error"]


def test_connect_without_a_redirect_uri_says_which_variable_is_missing(
    api: FlaskClient, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMARTCAR_REDIRECT_URI", "")
    get_settings.cache_clear()
    get_runtime.cache_clear()

    answer = api.get("/smartcar/connect", headers=AUTH)

    assert answer.status_code == 503 and "SMARTCAR_REDIRECT_URI" in answer.get_json()["error"]


# --- Views -----------------------------------------------------------------------------------


def test_the_vehicle_views_show_what_the_webhooks_stored(
    api: FlaskClient, env: dict[str, str]
) -> None:
    raw = (DATA / "smartcar_vehicle_state_v4.json").read_bytes()
    signature = hmac.new(MANAGEMENT_TOKEN.encode(), raw, hashlib.sha256).hexdigest()
    api.get("/health")  # the API's runtime, on the emulator and the test's secrets
    get_runtime().smartcar.webhook.receive(raw, signature)

    vehicles = api.get("/smartcar/vehicles", headers=AUTH)
    latest = api.get(f"/smartcar/vehicles/{CAR}/latest-signals", headers=AUTH)

    assert vehicles.status_code == 200
    [vehicle] = vehicles.get_json()
    assert (vehicle["id"], vehicle["make"], vehicle["traccar_unique_id"]) == (
        CAR, "TESLA", f"smartcar-{CAR}")  # fmt: skip
    assert "location-preciselocation" in vehicle["signals"]
    assert latest.status_code == 200
    signals = {entry["code"]: entry for entry in latest.get_json()["signals"]}
    assert signals["tractionbattery-stateofcharge"]["body"] == {"unit": "percent", "value": 78}
    assert signals["motion-currentspeed"]["body"] is None
    assert signals["motion-currentspeed"]["error"] == "COMPATIBILITY:VEHICLE_NOT_CAPABLE"


def test_an_unknown_vehicle_has_no_latest_signals(api: FlaskClient) -> None:
    answer = api.get("/smartcar/vehicles/nobody/latest-signals", headers=AUTH)

    assert answer.status_code == 404 and "nobody" in answer.get_json()["error"]


def test_the_vehicle_views_need_the_bearer_token(api: FlaskClient) -> None:
    assert api.get("/smartcar/vehicles").status_code == 401
    assert api.get(f"/smartcar/vehicles/{CAR}/latest-signals").status_code == 401
