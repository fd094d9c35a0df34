"""The Google routes of the API through functions-framework's app, over the local Google fakes.

Credentials upload and replacement, token status, the device list, fresh locations, and the
expiry seen from the API (`/health` 503 until new credentials come). No secret may appear in
any answer or any log line.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.logs import configure_logging
from shared.models import Device, Source
from shared.runtime import get_runtime
from shared.store import Store
from tests.conftest import PROJECT
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import Report

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "google-api-test-token-5b1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_790_000_000
SECRET_NAME = "google-secrets"


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        for index, tracker in enumerate(fake.trackers):
            tracker.network = [Report("own", timestamp=T0 - 60, latitude=10.0, longitude=20.0)]
            tracker.recent = Report("own", timestamp=T0 + index, latitude=11.0, longitude=21.0)
        yield fake


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line of the test, as the functions write them (JSON, redacted)."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    configure_logging()


@pytest.fixture
def api(
    emulator: Emulator,
    firestore_client: Any,
    google: FakeGoogle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FlaskClient]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    with OsmAndServer(known_ids=["canonic-0", "canonic-1"]) as traccar:
        env = {
            "GCP_PROJECT": PROJECT,
            "FIRESTORE_EMULATOR_HOST": emulator.address,
            "SECRETS_DIR": str(tmp_path / "secrets"),
            "API_TOKEN": TOKEN,
            "TRACCAR_SERVER_URL": traccar.url,
            **google.environment(),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        get_runtime.cache_clear()
        app = functions_framework.create_app("api", str(ROOT / "functions/api/main.py"))
        yield app.test_client()
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture
def store(firestore_client: Any) -> Store:
    return Store(firestore_client)


def uploaded(restarted: int) -> dict[str, object]:
    """The answer of a credentials upload for the fake's account."""
    return {"status": "ok", "services_restarted": restarted, "account": "owner@example.com"}


def error_of(response: Any) -> str:
    assert response.is_json, response.data
    return response.get_json()["error"]


def secret_values(google: FakeGoogle) -> list[str]:
    """Every credential string of the account (and the access tokens Google issued)."""
    credentials = google.secrets()["fcm_credentials"]
    return [
        google.aas_token,
        google.owner_key.hex(),
        google.shared_key.hex(),
        credentials["keys"]["private"],
        credentials["keys"]["secret"],
        credentials["gcm"]["security_token"],
        credentials["fcm"]["registration"]["token"],
        credentials["fcm"]["installation"]["token"],
        *(issued.token for issued in google.auth.issued),
    ]


def upload(api: FlaskClient, google: FakeGoogle) -> Any:
    return api.put("/auth/secrets", json=google.secrets(), headers=AUTH)


# --- credentials -----------------------------------------------------------------------------


def test_uploaded_secrets_are_stored_as_a_new_version_and_never_echoed(
    api: FlaskClient, google: FakeGoogle, tmp_path: Path, logs: io.StringIO
) -> None:
    first = upload(api, google)
    again = upload(api, google)

    assert first.status_code == 200
    assert first.get_json() == uploaded(0)
    assert again.status_code == 200
    folder = tmp_path / "secrets" / SECRET_NAME
    versions = sorted(path.name for path in folder.iterdir())
    assert versions == ["1.disabled", "2"]  # the older version is disabled
    assert json.loads((folder / "2").read_text()) == google.secrets()
    for value in secret_values(google):
        assert value not in first.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("fcm_credentials", "keys", "private"), "fcm_credentials.keys.private: Field required"),
        (("fcm_credentials", "gcm", "android_id"), "fcm_credentials.gcm.android_id: Field req"),
        (("aas_token",), "aas_token: Field required"),
        (("owner_key",), "owner_key: Field required"),
    ],
)
def test_secrets_missing_a_key_are_refused_with_a_400_naming_it(
    api: FlaskClient, google: FakeGoogle, tmp_path: Path, path: tuple[str, ...], expected: str
) -> None:
    document = google.secrets()
    node = document
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]

    response = api.put("/auth/secrets", json=document, headers=AUTH)

    assert response.status_code == 400
    assert error_of(response).startswith(expected)
    assert not (tmp_path / "secrets" / SECRET_NAME).exists()


def test_a_malformed_owner_key_is_refused_without_echoing_it(
    api: FlaskClient, google: FakeGoogle
) -> None:
    document = {**google.secrets(), "owner_key": "f00d" * 8}  # 16 bytes

    response = api.put("/auth/secrets", json=document, headers=AUTH)

    assert response.status_code == 400
    assert error_of(response).startswith("owner_key: ")
    assert "f00d" not in error_of(response)


def test_the_aas_token_route_replaces_only_the_token(
    api: FlaskClient, google: FakeGoogle, tmp_path: Path
) -> None:
    assert api.put("/auth/aas-token", json={"aas_token": "aas_et/x"}, headers=AUTH).status_code == (
        409
    )
    upload(api, google)

    response = api.put("/auth/aas-token", json={"aas_token": "aas_et/replaced"}, headers=AUTH)
    bad = api.put("/auth/aas-token", json={"token": "aas_et/replaced"}, headers=AUTH)

    assert response.get_json() == uploaded(0)
    stored = json.loads((tmp_path / "secrets" / SECRET_NAME / "2").read_text())
    assert stored == {**google.secrets(), "aas_token": "aas_et/replaced"}
    assert bad.status_code == 400 and error_of(bad).startswith("aas_token: Field required")


def test_token_status_tells_presence_age_and_expiry_but_no_token(
    api: FlaskClient, google: FakeGoogle
) -> None:
    empty = api.post("/auth/token-status", headers=AUTH).get_json()
    assert empty["credentials"]["stored"] is False
    assert empty["access_token"]["cached"] is False

    upload(api, google)
    api.get("/devices", headers=AUTH)  # gets an access token
    response = api.post("/auth/token-status", headers=AUTH)

    status = response.get_json()
    assert status["credentials"] == {
        "stored": True, "aas_token_present": True, "auth_status": "ok",
        "auth_reason": "credentials uploaded", "uploaded_at": status["credentials"]["uploaded_at"],
    }  # fmt: skip
    assert status["access_token"]["cached"] is True and status["access_token"]["valid"] is True
    assert 0 <= status["access_token"]["age_seconds"] < 60
    assert 6 * 86400 < status["fcm_installation"]["expires_in_seconds"] <= 7 * 86400
    assert status["fcm_installation"]["expiring_soon"] is False
    for value in secret_values(google):
        assert value not in response.get_data(as_text=True)


# --- devices and locations -------------------------------------------------------------------


def test_the_device_list_is_refreshed_from_google_and_shows_every_source(
    api: FlaskClient, google: FakeGoogle, store: Store
) -> None:
    store.devices.put(Device(id="tlink-7", source=Source.TLINK, traccar_unique_id="tlink-7"))
    assert [d["id"] for d in api.get("/devices", headers=AUTH).get_json()] == ["tlink-7"]

    upload(api, google)
    devices = api.get("/devices", headers=AUTH).get_json()

    fields = ("id", "source", "name", "traccar_unique_id", "model")
    assert [tuple(device[field] for field in fields) for device in devices] == [
        ("canonic-0", "google", "Tracker 0", "canonic-0", "Acme Tag"),
        ("canonic-1", "google", "Tracker 1", "canonic-1", "Acme Tag"),
        ("tlink-7", "tlink", "", "tlink-7", None),
    ]  # fmt: skip


def test_fresh_locations_locate_the_tracker_now_and_last_gives_the_newest(
    api: FlaskClient, google: FakeGoogle, store: Store
) -> None:
    upload(api, google)
    api.get("/devices", headers=AUTH)

    every = api.get("/devices/canonic-1/locations", headers=AUTH)
    newest = api.get("/devices/canonic-1/locations?last", headers=AUTH)

    assert every.status_code == 200
    assert [(loc["lat"], loc["timestamp"]) for loc in every.get_json()] == [
        (10.0, T0 - 60), (11.0, T0 + 1),
    ]  # fmt: skip
    assert newest.get_json()["timestamp"] == T0 + 1
    assert [locate.canonic_id for locate in google.nova.locates] == ["canonic-1", "canonic-1"]
    # A look, not a sync: nothing was delivered.
    assert store.delivery.state("canonic-1").last_location is None


def test_locations_of_unknown_devices_and_of_devices_without_any_are_404(
    api: FlaskClient, store: Store
) -> None:
    store.devices.put(Device(id="tlink-7", source=Source.TLINK, traccar_unique_id="tlink-7"))

    assert api.get("/devices/nobody/locations", headers=AUTH).status_code == 404
    assert api.get("/devices/tlink-7/locations", headers=AUTH).get_json() == []
    assert api.get("/devices/tlink-7/locations?last", headers=AUTH).status_code == 404


def test_locating_without_credentials_is_a_503_saying_what_to_upload(
    api: FlaskClient, store: Store
) -> None:
    store.devices.put(Device(id="canonic-0", source=Source.GOOGLE, traccar_unique_id="canonic-0"))

    response = api.get("/devices/canonic-0/locations", headers=AUTH)

    assert response.status_code == 503 and "PUT /auth/secrets" in error_of(response)


# --- expiry, end to end through the API ----------------------------------------------------------


def test_expired_credentials_make_health_503_until_new_ones_are_uploaded(
    api: FlaskClient, google: FakeGoogle, store: Store, logs: io.StringIO
) -> None:
    upload(api, google)
    api.get("/devices", headers=AUTH)
    put = api.put("/devices/canonic-0/services", json={"timer": 600}, headers=AUTH)
    assert put.status_code == 201
    google.auth.revoke()  # the cached access token dies with it: Nova answers 401

    refused = api.get("/devices/canonic-0/locations", headers=AUTH)
    health = api.get("/health")

    assert refused.status_code == 503 and "BadAuthentication" in error_of(refused)
    assert health.status_code == 503 and health.get_json()["status"] == "auth_required"
    assert store.services.get("canonic-0").paused is True

    google.aas_token = "aas_et/brand-new"
    google.auth.add_account(google.username, google.aas_token, google.identity.android_id)
    restored = upload(api, google)

    assert restored.get_json() == uploaded(1)
    assert api.get("/health").status_code == 200
    assert store.services.get("canonic-0").paused is False
    assert api.get("/devices/canonic-0/locations?last", headers=AUTH).status_code == 200

    # Nothing secret was logged along the way, though a log line was written with one.
    logging.getLogger("test").error("a careless line: %s", google.aas_token)
    text = logs.getvalue()
    assert "Google credentials expired" in text and "[REDACTED]" in text
    for value in secret_values(google):
        assert value not in text


# --- named places (issue 17, point 2) ------------------------------------------------------------


def test_places_are_mapped_listed_and_removed_and_bad_bodies_name_the_field(
    api: FlaskClient,
) -> None:
    created = api.put("/places/Home", json={"lat": 48.85, "lon": 2.35}, headers=AUTH)
    updated = api.put(
        "/places/Home", json={"lat": 48.86, "lon": 2.35, "accuracy": 15}, headers=AUTH
    )
    no_lat = api.put("/places/Home", json={"lon": 2.35}, headers=AUTH)
    bad_accuracy = api.put("/places/Home", json={"lat": 1, "lon": 2, "accuracy": -1}, headers=AUTH)
    blank = api.put("/places/%20", json={"lat": 1, "lon": 2}, headers=AUTH)

    assert created.status_code == 201
    assert created.get_json() == {
        "name": "Home", "lat": 48.85, "lon": 2.35, "accuracy": 30.0, "last_seen": None,
        "devices": [],
    }  # fmt: skip
    assert updated.status_code == 200 and updated.get_json()["accuracy"] == 15.0
    assert no_lat.status_code == 400 and error_of(no_lat).startswith("lat: ")
    assert bad_accuracy.status_code == 400 and error_of(bad_accuracy).startswith("accuracy: ")
    assert blank.status_code == 400 and error_of(blank).startswith("name: ")
    listed = api.get("/places", headers=AUTH).get_json()
    assert [(p["name"], p["lat"]) for p in listed] == [("Home", 48.86)]

    assert api.delete("/places/Home", headers=AUTH).get_json() == {
        "status": "deleted", "name": "Home",
    }  # fmt: skip
    assert api.delete("/places/Home", headers=AUTH).status_code == 404
    assert api.get("/places", headers=AUTH).get_json() == []


def test_the_fresh_look_shows_unmapped_places_by_name_and_mapped_ones_as_positions(
    api: FlaskClient, google: FakeGoogle
) -> None:
    google.trackers[0].network = [
        Report("semantic", timestamp=T0 - 30, place="Garage"),
        Report("semantic", timestamp=T0 - 20, place="Home"),
    ]
    upload(api, google)
    api.get("/devices", headers=AUTH)
    api.put("/places/Home", json={"lat": 48.85, "lon": 2.35}, headers=AUTH)

    found = api.get("/devices/canonic-0/locations", headers=AUTH).get_json()
    newest = api.get("/devices/canonic-0/locations?last", headers=AUTH).get_json()

    assert [(f.get("place") or f["attributes"].get("place"), f.get("lat")) for f in found] == [
        ("Garage", None), ("Home", 48.85), (None, 11.0),
    ]  # fmt: skip
    assert found[0] == {
        "id": "canonic-0", "place": "Garage", "timestamp": T0 - 30, "loc_status": "SEMANTIC",
        "is_own_report": False,
    }  # fmt: skip
    assert newest["timestamp"] == T0 and newest["lat"] == 11.0
    places = {p["name"]: p for p in api.get("/places", headers=AUTH).get_json()}
    assert places["Garage"]["devices"] == [{"id": "canonic-0", "last_seen": T0 - 30}]


# --- ringing a tracker (issue 17, point 3) -------------------------------------------------------


def test_ringing_starts_and_stops_the_sound_through_nova(
    api: FlaskClient, google: FakeGoogle
) -> None:
    upload(api, google)
    api.get("/devices", headers=AUTH)

    started = api.post("/devices/canonic-1/sound", headers=AUTH)
    stopped = api.delete("/devices/canonic-1/sound", headers=AUTH)

    assert started.status_code == 200
    assert started.get_json() == {"id": "canonic-1", "action": "start", "accepted": True}
    assert stopped.get_json() == {"id": "canonic-1", "action": "stop", "accepted": True}
    fcm_token = google.secrets()["fcm_credentials"]["fcm"]["registration"]["token"]
    assert [(s.canonic_id, s.action, s.component, s.fcm_token) for s in google.nova.sounds] == [
        ("canonic-1", "start", 0, fcm_token), ("canonic-1", "stop", 0, fcm_token),
    ]  # fmt: skip
    assert len({s.request_uuid for s in google.nova.sounds}) == 2  # a fresh one each
    assert google.nova.locates == []  # a sound request is no locate


def test_ringing_answers_whether_nova_took_it_and_refuses_other_sources_and_unknown_devices(
    api: FlaskClient, google: FakeGoogle, store: Store
) -> None:
    upload(api, google)
    store.devices.put(Device(id="gone", source=Source.GOOGLE, traccar_unique_id="gone"))
    store.devices.put(Device(id="tlink-7", source=Source.TLINK, traccar_unique_id="tlink-7"))

    refused = api.post("/devices/gone/sound", headers=AUTH)  # no longer in the Google account
    other = api.post("/devices/tlink-7/sound", headers=AUTH)
    unknown = api.delete("/devices/nobody/sound", headers=AUTH)

    assert refused.status_code == 200
    answer = refused.get_json()
    assert answer["accepted"] is False and "404" in answer["message"]
    assert other.status_code == 400 and "tlink" in error_of(other)
    assert unknown.status_code == 404 and "nobody" in error_of(unknown)
    assert google.nova.sounds == []


def test_ringing_without_credentials_is_a_503_saying_what_to_upload(
    api: FlaskClient, store: Store
) -> None:
    store.devices.put(Device(id="canonic-0", source=Source.GOOGLE, traccar_unique_id="canonic-0"))

    response = api.post("/devices/canonic-0/sound", headers=AUTH)

    assert response.status_code == 503 and "PUT /auth/secrets" in error_of(response)


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (bytes([0xFA, 0x01, 0x02, 0x08, 0x07]), "component 7 is no DeviceComponent"),
        (bytes([0xF2, 0x01, 0x00, 0xFA, 0x01, 0x00]), "locateTracker and startSound at once"),
        (b"", "no action at all"),
    ],
)
def test_the_nova_fake_refuses_a_malformed_sound_request(
    api: FlaskClient, google: FakeGoogle, action: bytes, why: str
) -> None:
    """The fake checks the fields PROTOCOLS.md §5 names, so the bridge's tests prove them."""
    import requests

    from tests.unit.google.encryptor import bytes_field, varint_field

    upload(api, google)
    api.get("/devices", headers=AUTH)  # an access token the fake accepts
    scope = varint_field(2, 2) + bytes_field(3, bytes_field(1, bytes_field(1, b"canonic-0")))
    metadata = bytes_field(2, b"uuid-1") + bytes_field(4, bytes_field(1, b"fcm-token"))
    body = bytes_field(1, scope) + bytes_field(2, action) + bytes_field(3, metadata)
    response = requests.post(
        f"{google.nova.nova_url}/nbe_execute_action",
        data=body,
        headers={
            "Authorization": f"Bearer {google.auth.issued[-1].token}",
            "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
            "User-Agent": "fmd/20006320; gzip",
        },
        timeout=5,
    )

    assert response.status_code == 400, why
    assert google.nova.sounds == []
