"""The Google chain as deployed: `api`, `refresh_devices` and `sync_device` as functions-framework
processes, over real sockets to local fakes of Google's OAuth, Nova and MCS (TLS) endpoints,
the Firestore emulator, Traccar's OsmAnd endpoint and Google's Spot API (HTTP/2 gRPC).

Upload the credentials, let the hourly refresh find and register the trackers, let a scheduled
run locate them (one FCM session for all), look at a tracker's fresh location; then Google
revokes the AAS token: the next run answers 503, `/health` too, the jobs are paused, until a
new token is uploaded. Then the account's owner key is rotated between two syncs: the second
renews it over the Spot API and stores it, the third reads it and asks nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.store import Store
from tests.e2e.functions import (
    Function,
    environment,
    running,
)
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import LAST_KNOWN, Report

TOKEN = "e2e-google-token-93c1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_790_000_000
SYNC_TIMEOUT = 30.0  # seconds: a locate waits for its FCM answer


@pytest.fixture(scope="module")
def google(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path_factory.mktemp("google"), trackers=2) as fake:
        for index, tracker in enumerate(fake.trackers):
            tracker.network = [
                Report("crowdsourced", timestamp=T0 - 300, latitude=45.0 + index, longitude=5.0,
                       time_offset=0x0ABC_DE00)
            ]  # fmt: skip
            tracker.recent = Report("own", timestamp=T0, latitude=46.0 + index, longitude=6.0,
                                    status=LAST_KNOWN, is_own_report=True)  # fmt: skip
        yield fake


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["canonic-0", "canonic-1"]) as server:
        yield server


@pytest.fixture(scope="module")
def deployed(
    emulator: Emulator,
    google: FakeGoogle,
    traccar: OsmAndServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Function]]:
    workdir = tmp_path_factory.mktemp("google-e2e")
    env = environment(
        emulator.address,
        workdir,
        API_TOKEN=TOKEN,
        TRACCAR_SERVER_URL=traccar.url,
        FCM_TIMEOUT="10",
        **google.environment(),
    )
    specs = [(name, name, {}) for name in ("api", "refresh_devices", "sync_device")]
    with running(specs, env=env, workdir=workdir) as functions:
        yield functions


def call(function: Function, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, function.url + path, timeout=SYNC_TIMEOUT, **kwargs)


def test_upload_refresh_sync_and_expiry_over_real_sockets(
    deployed: dict[str, Function],
    google: FakeGoogle,
    traccar: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    api, refresh, sync = deployed["api"], deployed["refresh_devices"], deployed["sync_device"]
    store = Store(firestore_client)

    uploaded = call(api, "PUT", "/auth/secrets", json=google.secrets(), headers=AUTH)
    assert uploaded.json() == {
        "status": "ok", "services_restarted": 0, "account": google.username,
    }  # fmt: skip

    refreshed = call(refresh, "POST", "/", json={}).json()
    report = refreshed["sources"][0]
    assert (report["status"], report["auto_registered"]) == ("ok", ["canonic-0", "canonic-1"])

    synced = call(sync, "POST", "/", json={"device_id": "canonic-0"})
    assert synced.status_code == 200, synced.text
    assert synced.json()["pushed"] == 2
    # One MCS session located both trackers; both reached Traccar, each oldest first.
    assert len(google.mcs.logins) == 1
    for device in ("canonic-0", "canonic-1"):
        latitudes = [p.latitude for p in traccar.positions if p.unique_id == device]
        offset = 1.0 if device == "canonic-1" else 0.0
        assert latitudes == [45.0 + offset, 46.0 + offset]

    fresh = call(api, "GET", "/devices/canonic-1/locations?last", headers=AUTH)
    assert fresh.status_code == 200 and fresh.json()["lat"] == 47.0

    google.auth.revoke()
    refused = call(api, "GET", "/devices/canonic-0/locations", headers=AUTH)
    assert refused.status_code == 503 and "BadAuthentication" in refused.json()["error"]
    assert call(api, "GET", "/health").status_code == 503
    assert all(service.paused for service in store.services.list())

    google.auth.add_account(google.username, "aas_et/renewed", google.identity.android_id)
    renewed = call(api, "PUT", "/auth/aas-token", json={"aas_token": "aas_et/renewed"},
                   headers=AUTH)  # fmt: skip
    assert renewed.json() == {
        "status": "ok", "services_restarted": 2, "account": google.username,
    }  # fmt: skip
    assert call(api, "GET", "/health").status_code == 200
    assert call(api, "GET", "/devices/canonic-0/locations?last", headers=AUTH).status_code == 200


def test_secrets_never_reach_the_function_logs(
    deployed: dict[str, Function], google: FakeGoogle
) -> None:
    text = "".join(function.log_text() for function in deployed.values())
    credentials = google.secrets()["fcm_credentials"]
    for value in (
        google.aas_token,
        google.owner_key.hex(),
        credentials["keys"]["private"],
        credentials["gcm"]["security_token"],
        *(issued.token for issued in google.auth.issued),
    ):
        assert value not in text


def test_an_owner_key_rotated_between_syncs_is_renewed_once_over_the_spot_api(
    deployed: dict[str, Function], google: FakeGoogle, traccar: OsmAndServer
) -> None:
    api = deployed["api"]
    google.auth.add_account(google.username, google.aas_token, google.identity.android_id)
    assert call(api, "PUT", "/auth/secrets", json=google.secrets(), headers=AUTH).ok
    assert call(deployed["refresh_devices"], "POST", "/", json={}).ok  # the trackers known

    def manual_sync(at: int) -> list[int]:
        google.trackers[0].recent = Report("own", timestamp=at, latitude=44.0, longitude=4.0,
                                           status=LAST_KNOWN, is_own_report=True)  # fmt: skip
        answer = call(api, "PUT", "/traccar/devices/canonic-0/locations", headers=AUTH)
        assert answer.status_code == 200, answer.text
        return [
            int(p.fix_time.timestamp()) for p in traccar.positions if p.unique_id == "canonic-0"
        ]

    assert T0 + 1000 in manual_sync(T0 + 1000)
    # An end-to-end-encryption reset on the phone: a new owner key (version 2) wraps the
    # trackers' identity keys; the uploaded secrets.json still holds version 1's.
    google.rotate_owner_key()
    assert T0 + 2000 in manual_sync(T0 + 2000)
    assert [request.version for request in google.spot.requests] == [-1]
    # The renewed key was stored: the next run reads it and asks the Spot API nothing.
    assert T0 + 3000 in manual_sync(T0 + 3000)
    assert len(google.spot.requests) == 1
