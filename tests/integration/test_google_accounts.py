"""Several Google accounts in one deployment (issue 17, point 1; ADR 0004), through the API.

Two accounts on the same Google fakes (`FakeGoogle.add_account`: each has its own AAS token,
GCM registration, owner key and trackers; Nova answers for the bearer's account only), the
Firestore emulator, the local secrets adapter and the local scheduler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.runtime import get_runtime
from shared.sources.google.layout import account_key
from shared.store import Store
from tests.conftest import PROJECT
from tests.fakes.nova import FakeAccount, FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import Report

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "google-accounts-test-token-7c2f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_790_000_000
SECOND = "Family.Member+tags@example.org"
SECOND_SECRET = f"google-secrets-{account_key(SECOND)}"


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        for tracker in fake.trackers:
            tracker.recent = Report("own", timestamp=T0, latitude=11.0, longitude=21.0)
        yield fake


@pytest.fixture
def second(google: FakeGoogle) -> FakeAccount:
    account = google.add_account(SECOND)
    tag = account.add_tracker("family-0", "Family keys")
    tag.recent = Report("own", timestamp=T0, latitude=52.5, longitude=13.4)
    return account


@pytest.fixture
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["canonic-0", "canonic-1", "family-0"]) as server:
        yield server


@pytest.fixture
def api(
    emulator: Emulator,
    firestore_client: Any,
    google: FakeGoogle,
    traccar: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FlaskClient]:
    monkeypatch.chdir(tmp_path)  # no stray .env
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
def store(firestore_client: firestore.Client) -> Store:
    return Store(firestore_client)


def two_accounts(api: FlaskClient, google: FakeGoogle, second: FakeAccount) -> None:
    assert api.put("/auth/secrets", json=google.secrets(), headers=AUTH).status_code == 200
    answer = api.put("/auth/secrets", json=second.secrets(), headers=AUTH)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["account"] == SECOND
    assert api.get("/devices", headers=AUTH).status_code == 200


def secret_folder(tmp_path: Path, name: str) -> list[str]:
    return sorted(path.name for path in (tmp_path / "secrets" / name).iterdir())


def test_each_account_has_its_own_secret_and_devices_and_a_second_upload_replaces(
    api: FlaskClient, google: FakeGoogle, second: FakeAccount, store: Store, tmp_path: Path
) -> None:
    two_accounts(api, google, second)
    again = api.put("/auth/secrets", json=second.secrets(), headers=AUTH)

    assert again.status_code == 200
    # The first account keeps the original secret; the second has its own, replaced in place.
    assert secret_folder(tmp_path, "google-secrets") == ["1"]
    assert secret_folder(tmp_path, SECOND_SECRET) == ["1.disabled", "2"]
    stored = json.loads((tmp_path / "secrets" / SECOND_SECRET / "2").read_text())
    assert stored["username"] == SECOND
    devices = {d.id: d.account for d in store.devices.list()}
    assert devices == {"canonic-0": google.username, "canonic-1": google.username,
                       "family-0": SECOND}  # fmt: skip

    listed = api.get("/auth/accounts", headers=AUTH)

    assert listed.status_code == 200
    accounts = {a["username"]: a for a in listed.get_json()}
    assert set(accounts) == {google.username, SECOND}
    assert accounts[SECOND]["devices"] == 1 and accounts[google.username]["devices"] == 2
    assert accounts[SECOND]["status"] == "ok" and accounts[SECOND]["credentials_stored"] is True
    body = listed.get_data(as_text=True)
    for value in (google.aas_token, second.aas_token, second.owner_key.hex(),
                  second.identity.security_token):  # fmt: skip
        assert value not in body


def test_the_account_parameter_is_needed_once_there_are_several(
    api: FlaskClient, google: FakeGoogle, second: FakeAccount, tmp_path: Path
) -> None:
    assert api.put("/auth/secrets", json=google.secrets(), headers=AUTH).status_code == 200
    # One account: no parameter needed.
    assert api.post("/auth/token-status", headers=AUTH).get_json()["account"] == google.username
    assert api.put("/auth/secrets", json=second.secrets(), headers=AUTH).status_code == 200

    unnamed = api.post("/auth/token-status", headers=AUTH)
    unnamed_token = api.put("/auth/aas-token", json={"aas_token": "aas_et/x"}, headers=AUTH)
    unknown = api.post("/auth/token-status?account=nobody@example.com", headers=AUTH)
    # Google account names compare without regard to case.
    named = api.post(f"/auth/token-status?account={quote(SECOND.upper())}", headers=AUTH)
    replaced = api.put(
        f"/auth/aas-token?account={quote(SECOND)}", json={"aas_token": "aas_et/new"}, headers=AUTH
    )

    assert unnamed.status_code == 400 and unnamed.get_json()["error"].startswith("account: ")
    assert unnamed_token.status_code == 400
    assert unknown.status_code == 404
    assert named.status_code == 200 and named.get_json()["account"] == SECOND
    assert replaced.status_code == 200 and replaced.get_json()["account"] == SECOND
    stored = json.loads((tmp_path / "secrets" / SECOND_SECRET / "2").read_text())
    assert stored["aas_token"] == "aas_et/new"
    assert secret_folder(tmp_path, "google-secrets") == ["1"]  # the first account untouched


def test_a_device_is_located_with_its_own_accounts_credentials(
    api: FlaskClient, google: FakeGoogle, second: FakeAccount, traccar: OsmAndServer
) -> None:
    two_accounts(api, google, second)

    synced = api.put("/traccar/devices/family-0/locations", headers=AUTH)
    fresh = api.get("/devices/family-0/locations?last", headers=AUTH)
    rung = api.post("/devices/family-0/sound", headers=AUTH)

    assert synced.status_code == 200, synced.get_json()
    assert [p.unique_id for p in traccar.positions] == ["family-0"]
    assert fresh.status_code == 200 and fresh.get_json()["lat"] == 52.5
    assert rung.status_code == 200 and rung.get_json()["accepted"] is True
    # Located with the second account's FCM registration, never the first's.
    assert {r.fcm_token for r in google.nova.locates} == {second.identity.token}


def test_a_refused_token_pauses_only_that_accounts_jobs_and_health_names_it_with_the_token(
    api: FlaskClient, google: FakeGoogle, second: FakeAccount, store: Store
) -> None:
    two_accounts(api, google, second)
    for device in ("canonic-0", "family-0"):
        created = api.put(f"/devices/{device}/services", json={"timer": 600}, headers=AUTH)
        assert created.status_code == 201
    google.auth.revoke(SECOND)

    refused = api.get("/devices/family-0/locations", headers=AUTH)
    health = api.get("/health", headers=AUTH)
    public = api.get("/health")

    assert refused.status_code == 503 and "BadAuthentication" in refused.get_json()["error"]
    assert store.services.get("family-0").paused is True
    assert store.services.get("canonic-0").paused is False  # the other account keeps running
    assert health.status_code == 503
    assert health.get_json()["accounts_auth_required"] == [SECOND]
    assert public.status_code == 503
    assert public.get_json()["auth_required_count"] == 1
    assert SECOND not in public.get_data(as_text=True)
    accounts = {a["username"]: a for a in api.get("/auth/accounts", headers=AUTH).get_json()}
    assert accounts[SECOND]["status"] == "auth_required"
    assert accounts[google.username]["status"] == "ok"
    # The status page (issue 19) shows each device's account and that account's state.
    page = api.get("/status.json", headers=AUTH).get_json()
    shown = {d["id"]: (d["account"], d["account_status"]) for d in page["devices"]}
    assert shown == {"canonic-0": (google.username, "ok"), "canonic-1": (google.username, "ok"),
                     "family-0": (SECOND, "auth_required")}  # fmt: skip
    # The first account still syncs.
    assert api.put("/traccar/devices/canonic-0/locations", headers=AUTH).status_code == 200

    # New credentials for that account: its jobs resume, /health is well again.
    second.aas_token = "aas_et/renewed"
    google.auth.add_account(SECOND, second.aas_token, second.identity.android_id)
    restored = api.put("/auth/secrets", json=second.secrets(), headers=AUTH)

    assert restored.get_json()["services_restarted"] == 1
    assert store.services.get("family-0").paused is False
    assert api.get("/health").status_code == 200


def test_deleting_an_account_removes_its_services_jobs_credentials_and_state(
    api: FlaskClient,
    google: FakeGoogle,
    second: FakeAccount,
    store: Store,
    firestore_client: firestore.Client,
) -> None:
    two_accounts(api, google, second)
    for device in ("canonic-0", "family-0"):
        created = api.put(f"/devices/{device}/services", json={"timer": 600}, headers=AUTH)
        assert created.status_code == 201
    assert api.put("/traccar/devices/family-0/locations", headers=AUTH).status_code == 200
    key = account_key(SECOND)
    assert firestore_client.document(f"state/fcm_lease-{key}").get().exists

    removed = api.delete(f"/auth/accounts/{SECOND}", headers=AUTH)
    unknown = api.delete("/auth/accounts/nobody@example.com", headers=AUTH)

    assert removed.status_code == 200, removed.get_json()
    assert removed.get_json()["services_deleted"] == ["family-0"]
    assert unknown.status_code == 404
    assert store.services.get("family-0") is None
    assert {job.device_id for job in store.local_jobs.list()} == {"canonic-0"}
    assert store.services.get("canonic-0") is not None
    assert [a["username"] for a in api.get("/auth/accounts", headers=AUTH).get_json()] == [
        google.username
    ]
    assert not firestore_client.document(f"state/fcm_lease-{key}").get().exists
    assert key not in (firestore_client.document("state/auth").get().to_dict() or {}).get(
        "google_accounts", {}
    )
    # Its credentials are no longer readable; with one account left, no parameter is needed.
    status = api.post("/auth/token-status", headers=AUTH)
    assert status.status_code == 200 and status.get_json()["account"] == google.username


def test_a_further_accounts_alert_is_its_own_and_named_only_with_the_token(
    api: FlaskClient, google: FakeGoogle, second: FakeAccount
) -> None:
    two_accounts(api, google, second)
    google.auth.revoke(SECOND)  # its cached access token dies: Nova answers 401 ...
    google.auth.needs_browser()  # ... and a new one is refused NeedsBrowser

    refused = api.get("/devices/family-0/locations", headers=AUTH)
    health = api.get("/health", headers=AUTH).get_json()
    public = api.get("/health").get_json()
    accounts = {a["username"]: a for a in api.get("/auth/accounts", headers=AUTH).get_json()}

    assert refused.status_code == 503
    assert [(a["name"], a.get("account")) for a in health["alerts"]] == [("google_sign_in", SECOND)]
    assert health["status"] == "ok"  # a sign-in request pauses nothing (issue 14, point 6)
    assert [a.get("account") for a in public["alerts"]] == [None]
    assert accounts[SECOND]["alerts"] == ["google_sign_in"]
    assert accounts[google.username]["alerts"] == []
