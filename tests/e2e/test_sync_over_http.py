"""`api` and `sync_device` as deployed processes, on the emulator, feeding the OsmAnd server.

A position Traccar refuses waits in the outbox; the scheduled run honours the backoff and
loses nothing; the manual sync delivers it; the push log tells the story.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import Device, Source
from shared.store import Store
from tests.e2e.functions import (
    REQUEST_TIMEOUT,
    Function,
    environment,
    running,
)
from tests.fakes.osmand import OsmAndServer

TOKEN = "e2e-sync-token-7d2e41"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCATION = {"id": "abc123", "lat": 48.8566, "lon": 2.3522, "timestamp": 1700000000}


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["abc123"]) as server:
        yield server


@pytest.fixture(scope="module")
def deployed(
    emulator: Emulator, traccar: OsmAndServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Function]]:
    workdir = tmp_path_factory.mktemp("sync-e2e")
    env = environment(emulator.address, workdir, API_TOKEN=TOKEN, TRACCAR_SERVER_URL=traccar.url)
    specs = [(name, name, {}) for name in ("api", "sync_device")]
    with running(specs, env=env, workdir=workdir) as functions:
        yield functions


@pytest.fixture
def store(firestore_client: firestore.Client, traccar: OsmAndServer) -> Store:
    traccar.reset()
    traccar.clear_positions()
    store = Store(firestore_client)
    store.devices.put(
        Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")
    )
    return store


def call(function: Function, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, function.url + path, timeout=REQUEST_TIMEOUT, **kwargs)


def test_a_refused_position_waits_then_reaches_traccar_exactly_once(
    deployed: dict[str, Function], store: Store, traccar: OsmAndServer, tmp_path: Path
) -> None:
    api, sync = deployed["api"], deployed["sync_device"]
    service = call(api, "PUT", "/devices/abc123/services", json={"timer": 120}, headers=AUTH)
    assert service.status_code == 201

    traccar.respond_with(503)
    refused = call(api, "PUT", "/traccar/devices/abc123/locations?single", json=LOCATION,
                   headers=AUTH)  # fmt: skip
    assert [answer["status"] for answer in refused.json()] == ["error"]

    # The scheduled run honours the backoff: nothing pushed, nothing lost.
    traccar.reset()
    waiting = call(sync, "POST", "/", json={"device_id": "abc123"})
    assert waiting.status_code == 200
    assert waiting.json() == {
        "fetched": 0, "new": 0, "pushed": 0, "failed": 0, "outbox": 1, "skipped": 0,
    }  # fmt: skip
    assert traccar.positions == []

    # The manual sync retries at once.
    retried = call(api, "PUT", "/traccar/devices/abc123/locations", headers=AUTH)
    assert [answer["status"] for answer in retried.json()] == ["synced"]
    after = call(sync, "POST", "/", json={"device_id": "abc123"}).json()
    assert (after["pushed"], after["outbox"]) == (0, 0)

    [position] = traccar.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        "abc123",
        48.8566,
        2.3522,
    )
    assert int(position.fix_time.timestamp()) == 1700000000
    log = call(api, "GET", "/push-log", params={"device_id": "abc123"}, headers=AUTH).json()
    assert [entry["outcome"] for entry in log["entries"]] == ["accepted", "retry_later"]
    services = call(api, "GET", "/services", headers=AUTH).json()
    assert services[0]["last_result"]["outbox"] == 0


def test_sync_device_answers_json_errors(deployed: dict[str, Function], store: Store) -> None:
    sync = deployed["sync_device"]
    unknown = call(sync, "POST", "/", json={"device_id": "nobody"})
    malformed = call(sync, "POST", "/", json={"device": "abc123"})

    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("device_id")
