"""Firestore calls failing in the middle of a sync run: ridden out or a clean failure, never a loss.

The faults are injected on the wire under the official client (`tests/resilience/faults.py`),
so the client's own retry policy meets them as it would meet a flaky network: a call that
never reached Firestore, or one Firestore applied whose reply was lost.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import requests

from devtools.emulator import Emulator
from shared.models import Device, Location, Source
from shared.pipeline import BACKOFF_BASE, LEASE_DURATION, Pipeline
from shared.runtime import Runtime
from shared.store import DeliveryRepository
from shared.traccar import OsmAndClient
from tests.conftest import PROJECT, Clock, make_settings
from tests.fakes.osmand import OsmAndServer
from tests.resilience.faults import FaultyClient

DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")


@pytest.fixture
def client(emulator: Emulator, firestore_client: object) -> FaultyClient:
    return FaultyClient(project=PROJECT)


@pytest.fixture
def runtime(client: FaultyClient, tmp_path: Path) -> Runtime:
    return Runtime(make_settings(tmp_path), firestore_client=client)


@pytest.fixture
def pipeline(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Pipeline:
    return Pipeline(
        delivery=DeliveryRepository(runtime.firestore_client),
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=lambda: None,
        retention=timedelta(days=90),
        clock=clock,
    )


def positions(clock: Clock, *ages: int) -> list[Location]:
    now = int(clock.now.timestamp())
    return [Location(id="abc123", lat=48.85 + a / 1e4, lon=2.35, timestamp=now - a) for a in ages]


def arrived(osmand: OsmAndServer) -> list[int]:
    return [int(position.fix_time.timestamp()) for position in osmand.positions]


@pytest.mark.parametrize(
    "rpc",
    [
        "BatchGetDocuments",  # the state read that takes the lease
        "Commit",  # the lease write
        "RunQuery",  # the outbox read
    ],
)
def test_a_transient_unavailable_on_a_call_of_the_run_is_retried_and_nothing_is_lost(
    rpc: str,
    pipeline: Pipeline,
    client: FaultyClient,
    runtime: Runtime,
    osmand: OsmAndServer,
    clock: Clock,
) -> None:
    waiting = positions(clock, 300)
    osmand.respond_with(503, times=1)
    pipeline.run(DEVICE, lambda: waiting)  # one position waits in the outbox
    clock.advance(BACKOFF_BASE.total_seconds())
    fresh = positions(clock, 20, 10)
    client.faults.fail(rpc, times=2)

    report = pipeline.run(DEVICE, lambda: [*fresh, *waiting])

    assert client.faults.failed == [rpc, rpc] and client.faults.pending == 0
    assert report.result.pushed == 3 and report.result.outbox == 0
    assert arrived(osmand) == sorted(loc.timestamp for loc in waiting + fresh)
    assert runtime.sync.undelivered(waiting + fresh) == []


@pytest.mark.parametrize("history", ["first run", "later run"])
def test_a_lost_reply_to_the_lease_write_does_not_lock_the_device_out(
    history: str, pipeline: Pipeline, client: FaultyClient, osmand: OsmAndServer, clock: Clock
) -> None:
    if history == "later run":
        pipeline.run(DEVICE, lambda: positions(clock, 100))
        clock.advance(60)
    fresh = positions(clock, 5)
    client.faults.fail("Commit", lose_reply=True)  # the lease is written, the reply is lost

    report = pipeline.run(DEVICE, lambda: fresh)

    assert client.faults.failed == ["Commit"]
    assert report.result.pushed == 1
    assert arrived(osmand)[-1] == fresh[0].timestamp


def test_a_lost_reply_to_the_final_write_still_reports_the_run_as_done(
    pipeline: Pipeline, client: FaultyClient, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    fresh = positions(clock, 20, 10)
    # Firestore applies the final batch (the run's second Commit), its reply is lost.
    client.faults.fail("Commit", skip=1, lose_reply=True)

    report = pipeline.run(DEVICE, lambda: fresh)

    assert client.faults.failed == ["Commit"]
    assert report.result.pushed == 2
    assert runtime.sync.undelivered(fresh) == []
    clock.advance(60)
    assert pipeline.run(DEVICE, lambda: fresh).result.pushed == 0
    assert arrived(osmand) == [loc.timestamp for loc in fresh]


@pytest.mark.parametrize(
    ("code", "smaller_writes_failing", "logged"),
    [
        (grpc.StatusCode.INTERNAL, 0, True),  # the smaller write with the push log
        (grpc.StatusCode.INVALID_ARGUMENT, 0, True),  # what a reserved field name gives
        (grpc.StatusCode.INTERNAL, 1, False),  # the bookkeeping alone
    ],
)
def test_a_final_write_failing_for_good_releases_the_lease_and_records_what_traccar_accepted(
    code: grpc.StatusCode,
    smaller_writes_failing: int,
    logged: bool,
    pipeline: Pipeline,
    client: FaultyClient,
    runtime: Runtime,
    osmand: OsmAndServer,
    clock: Clock,
) -> None:
    fresh = positions(clock, 20, 10)
    # The lease write goes through; the final batch fails with an error no client retries,
    # and so do the first `smaller_writes_failing` smaller writes.
    client.faults.fail("Commit", skip=1, times=1 + smaller_writes_failing, code=code)

    report = pipeline.run(DEVICE, lambda: fresh)

    assert report.result.pushed == 2
    assert report.result.error is not None and "smaller write" in report.result.error
    assert runtime.sync.undelivered(fresh) == []
    state = runtime.store.delivery.state(DEVICE.id)
    assert state.lease_owner is None  # released at once, not in LEASE_DURATION
    assert state.last_result is not None and state.last_result.error == report.result.error
    entries, _ = runtime.store.delivery.push_log(device_id=DEVICE.id, limit=10)
    assert len(entries) == (2 if logged else 0)
    assert all("final commit failed" in (entry.error or "") for entry in entries)
    clock.advance(1)  # the device's next run, right away: served, and pushes nothing again
    assert pipeline.run(DEVICE, lambda: fresh).result.pushed == 0
    assert arrived(osmand) == [loc.timestamp for loc in fresh]


def test_when_nothing_can_be_recorded_the_run_says_so_and_the_next_run_pushes_nothing_again(
    pipeline: Pipeline, client: FaultyClient, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    fresh = positions(clock, 20, 10)
    # The final batch and both smaller writes fail.
    client.faults.fail("Commit", skip=1, times=3, code=grpc.StatusCode.INTERNAL)

    report = pipeline.run(DEVICE, lambda: fresh)

    assert report.result.pushed == 2
    assert report.result.error is not None and "nothing could be recorded" in report.result.error
    assert runtime.sync.undelivered(fresh) == fresh  # not in Firestore ...
    clock.advance(LEASE_DURATION.total_seconds())  # the lease could not be released
    again = pipeline.run(DEVICE, lambda: fresh)  # ... but this instance remembers them
    assert again.result.pushed == 0 and again.result.error is None
    assert runtime.sync.undelivered(fresh) == []  # and its commit recorded them
    assert arrived(osmand) == [loc.timestamp for loc in fresh]


def test_a_final_write_failing_for_good_keeps_the_refused_positions_in_the_outbox(
    pipeline: Pipeline, client: FaultyClient, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    fresh = positions(clock, 30, 20, 10)
    osmand.respond_with(503, times=1)  # the first one is refused: all three wait, in order
    client.faults.fail("Commit", skip=1, code=grpc.StatusCode.INTERNAL)

    report = pipeline.run(DEVICE, lambda: fresh)

    assert report.result.pushed == 0 and report.result.outbox == 3
    assert runtime.store.delivery.state(DEVICE.id).outbox_count == 3
    clock.advance(BACKOFF_BASE.total_seconds())
    assert pipeline.run(DEVICE, lambda: []).result.pushed == 3  # from the outbox
    assert arrived(osmand) == [loc.timestamp for loc in fresh]
