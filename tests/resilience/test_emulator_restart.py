"""The Firestore emulator itself going away: restarted in the middle of a run, or down a while.

Each test runs its own official emulator (own port) and stops and restarts it; a restarted
emulator has lost every document, which is what a run meeting a database reset would see.
Wanted: the run fails with a clear error, nothing it pushed is recorded as delivered, and a
later run delivers again (at least once, never lost); a function answers a JSON 503 within
the store's deadline rather than hanging, and serves again once Firestore is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest
import requests
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.errors import Conflict
from shared.models import Device, Location, Source
from shared.pipeline import Pipeline
from shared.runtime import get_runtime
from shared.store import FIRESTORE_DEADLINE, DeliveryRepository
from shared.traccar import OsmAndClient
from tests.conftest import PROJECT, Clock
from tests.fakes.osmand import OsmAndServer

ROOT = Path(__file__).resolve().parents[2]
DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")
# After an outage, gRPC reconnects with a backoff: the first calls may still fail (503).
RECOVERY_DEADLINE = 20.0  # seconds


@pytest.fixture(scope="module")
def emulator_to_restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    instance = Emulator()
    instance.start(log_path=tmp_path_factory.mktemp("restarted") / "firestore.log")
    yield instance
    instance.stop()


@pytest.fixture
def own_emulator(emulator_to_restart: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The test's own emulator, running and empty; Firestore clients made now use it."""
    if not emulator_to_restart.ready():
        emulator_to_restart.start()
    emulator_to_restart.wipe(PROJECT)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_to_restart.address)
    return emulator_to_restart


def positions(clock: Clock, *ages: int) -> list[Location]:
    now = int(clock.now.timestamp())
    return [Location(id="abc123", lat=48.85 + a / 1e4, lon=2.35, timestamp=now - a) for a in ages]


def test_a_database_reset_during_a_run_fails_it_clearly_and_the_next_run_records_it(
    own_emulator: Emulator, osmand: OsmAndServer, clock: Clock
) -> None:
    delivery = DeliveryRepository(firestore.Client(project=PROJECT))
    pipeline = Pipeline(
        delivery=delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=lambda: None,
        retention=timedelta(days=90),
        clock=clock,
    )
    fresh = positions(clock, 20, 10)

    def fetch_while_the_emulator_restarts() -> list[Location]:
        own_emulator.stop()  # the lease is taken by now
        own_emulator.start()  # same port, every document lost
        return fresh

    with pytest.raises(Conflict, match="vanished during the run"):
        pipeline.run(DEVICE, fetch_while_the_emulator_restarts)

    assert [int(p.fix_time.timestamp()) for p in osmand.positions] == [f.timestamp for f in fresh]
    assert delivery.state("abc123").delivered == {}  # nothing recorded as delivered
    # The instance remembers what Traccar accepted (issue 12): its next run records it
    # without pushing it again.
    report = pipeline.run(DEVICE, lambda: fresh)
    assert report.result.pushed == 0
    assert len(delivery.state("abc123").delivered) == 2
    clock.advance(60)
    assert pipeline.run(DEVICE, lambda: fresh).result.pushed == 0
    assert [int(p.fix_time.timestamp()) for p in osmand.positions] == [f.timestamp for f in fresh]


@pytest.fixture
def sync_function(
    own_emulator: Emulator, osmand: OsmAndServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlaskClient]:
    """`sync_device` through functions-framework's app, configured by its environment only."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("GCP_PROJECT", PROJECT)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("TRACCAR_SERVER_URL", osmand.url)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    source = str(ROOT / "functions/sync_device/main.py")
    yield functions_framework.create_app("sync_device", source).test_client()
    get_settings.cache_clear()
    get_runtime.cache_clear()


def test_sync_device_answers_a_json_503_while_firestore_is_down_then_serves_again(
    own_emulator: Emulator, sync_function: FlaskClient
) -> None:
    unknown = {"device_id": "not-a-device"}
    assert sync_function.post("/", json=unknown).status_code == 404  # Firestore answers

    own_emulator.stop()
    started = time.monotonic()
    down = sync_function.post("/", json=unknown)
    waited = time.monotonic() - started

    assert down.status_code == 503, down.data
    assert "Firestore" in down.get_json()["error"]
    assert down.headers["Retry-After"]
    assert waited < FIRESTORE_DEADLINE + 2  # the store's deadline, not the client's minutes

    own_emulator.start()
    answers = []
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while time.monotonic() < deadline and (not answers or answers[-1].status_code == 503):
        answers.append(sync_function.post("/", json=unknown))
    assert answers[-1].status_code == 404, answers[-1].data  # the same instance serves again
    assert "not-a-device" in answers[-1].get_json()["error"]
    assert all(a.status_code == 503 and a.is_json for a in answers[:-1])
