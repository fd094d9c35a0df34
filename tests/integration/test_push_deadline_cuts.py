"""Pushes a deadline cut (`PushResult.cut`: sent, Traccar not answered in time, maybe stored),
on the emulator and the OsmAnd fake, whose `stall` answers late and then stores the position,
as a slow Traccar does (its decoder stores before the HTTP answer goes out: PROTOCOLS.md).

Before, a cut push waited due at once: each later webhook of the device pushed it again (cut
again under the same slow Traccar, stored again: N webhooks, N + 1 copies), sweep runs had no
push deadline (a backlog against a slow Traccar outlived the function: killed between its
pushes and its commit, pushed again), and cuts counted towards parking a position.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from flask.testing import FlaskClient

import shared.sync
from shared.models import Device, Location, Source
from shared.pipeline import CUT_RETRY_AFTER, PARK_AFTER_ATTEMPTS, Pipeline
from shared.runtime import Runtime, get_runtime
from shared.store import Store
from shared.sync import SWEEP_COMMIT_RESERVE, Sync
from shared.traccar import Deadline, OsmAndClient, PushOutcome
from tests.conftest import Clock, sweep
from tests.fakes.osmand import OsmAndServer
from tests.integration.test_tlink_webhook import (  # noqa: F401 - fixtures
    JSON,
    env,
    pushed_at,
    start,
    store,
    webhooks,
)

TLINK_DEVICE = "tlink-2864"
DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")


def clocked(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> tuple[Pipeline, Sync]:
    """The runtime's pipeline and sync on a settable clock ("a minute later")."""
    pipeline = Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=runtime.traccar_api,
        retention=timedelta(days=runtime.settings.push_log_retention_days),
        clock=clock,
    )
    sync = Sync(
        devices=runtime.store.devices,
        delivery=runtime.store.delivery,
        pipeline=lambda: pipeline,
        sources={},
        trackers={},
        max_future_skew=runtime.settings.max_future_skew,
        clock=clock,
    )
    return pipeline, sync


def fix_times(osmand: OsmAndServer) -> list[int]:
    return [int(p.fix_time.timestamp()) for p in osmand.positions]


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    ends = time.monotonic() + seconds
    while not condition() and time.monotonic() < ends:
        time.sleep(0.05)


def test_a_cut_push_waits_so_later_webhooks_queue_behind_it_and_it_is_stored_twice_at_most(
    webhooks: FlaskClient,  # noqa: F811 - the fixture
    store: Store,  # noqa: F811
    osmand: OsmAndServer,
) -> None:
    # Traccar answers (and stores) after 13 s: the first webhook's push is cut at 12 s.
    # Before, the second webhook pushed the cut position again (cut again, stored again) and
    # the sweep a third time: three copies in Traccar.
    now = datetime.now(UTC)
    first_at, second_at = now - timedelta(seconds=90), now - timedelta(seconds=30)
    osmand.stall(13.0, times=2)

    first = webhooks.post("/tlink", data=pushed_at(first_at), headers=JSON).get_json()
    started = time.monotonic()
    second = webhooks.post("/tlink", data=pushed_at(second_at), headers=JSON).get_json()
    second_took = time.monotonic() - started
    osmand.reset()  # Traccar is fast again

    assert (first["location"], second["location"]) == ("queued", "queued")
    assert second_took < 2.0  # queued behind the cut push: no push, no wait for Traccar
    wait_for(lambda: len(osmand.positions) == 1)  # the cut push, stored late
    assert fix_times(osmand) == [int(first_at.timestamp())]
    state = store.delivery.state(TLINK_DEVICE)
    # Not Traccar failing: no failure counted, no attempt towards parking; due in a minute.
    assert (state.failures, state.outbox_count) == (0, 2)
    assert state.retry_at is not None and state.retry_at > datetime.now(UTC)
    assert [entry.attempts for entry in store.delivery.outbox(TLINK_DEVICE)] == [0, 0]
    assert sweep(get_runtime().sync) == []  # not due yet

    after_wait = Clock(now + CUT_RETRY_AFTER + timedelta(seconds=5))
    _, later = clocked(get_runtime(), osmand, after_wait)
    assert sweep(later, now=after_wait.now) == [TLINK_DEVICE]

    # The first position twice (the cut push stored late, the sweep's), the second once.
    assert fix_times(osmand) == [int(t.timestamp()) for t in (first_at, first_at, second_at)]
    assert store.delivery.outbox(TLINK_DEVICE) == []
    assert sweep(later, now=after_wait.now) == [] and len(osmand.positions) == 3


def test_a_sweep_stops_pushing_by_its_deadline_and_commits_what_it_pushed(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a sweep run pushed its whole backlog however long Traccar took: past the
    # function's deadline it was killed before its commit, and everything went again.
    runtime.store.devices.put(DEVICE)
    pipeline, sync = clocked(runtime, osmand, clock)
    base = int(clock.now.timestamp())
    backlog = [Location(id="abc123", lat=48.85, lon=2.35 + i / 1e4, timestamp=base - 60 + i)
               for i in range(3)]  # fmt: skip
    osmand.respond_with(503)
    assert pipeline.run(DEVICE, lambda: backlog).result.outbox == 3
    osmand.reset()
    clock.advance(120)
    osmand.stall(1.5)  # a slow Traccar: each push answered (and stored) after 1.5 s
    # A function 7.5 s from its end may still start a run (the margin, shortened for the
    # test): its pushes end SWEEP_COMMIT_RESERVE before, 2.5 s from now.
    monkeypatch.setattr(shared.sync, "SWEEP_MARGIN", timedelta(seconds=5))
    push_for = 2.5
    deadline_in = SWEEP_COMMIT_RESERVE.total_seconds() + push_for
    started = time.monotonic()

    swept = sync.sweep_due_outboxes(deadline=clock.now + timedelta(seconds=deadline_in))

    assert swept == ["abc123"]
    assert time.monotonic() - started < push_for + 1.0  # pushes ended, then the commit
    # One push answered, the second cut (stored late), the third not tried; the cut one
    # waits like a webhook's (no failure counted, no attempt towards parking).
    wait_for(lambda: len(osmand.positions) == 2)
    assert fix_times(osmand) == [backlog[0].timestamp, backlog[1].timestamp]
    state = runtime.store.delivery.state("abc123")
    assert (state.outbox_count, state.lease_owner, state.failures) == (2, None, 1)
    assert backlog[0].fingerprint() in state.delivered
    assert state.retry_at == clock.now + CUT_RETRY_AFTER
    waiting = runtime.store.delivery.outbox("abc123")
    assert [entry.attempts for entry in waiting] == [0, 0]  # the first 503 was the pushed one
    assert "deadline" in (waiting[0].last_error or "")


def test_cuts_do_not_count_towards_parking_a_position(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    # Before, each cut counted as an attempt: a position cut PARK_AFTER_ATTEMPTS - 1 times
    # and then refused once was parked (kept out of the way for good) while Traccar was only
    # slow, and the position after it went ahead of it.
    pipeline, _ = clocked(runtime, osmand, clock)
    base = int(clock.now.timestamp())
    older, newer = (Location(id="abc123", lat=48.85, lon=2.35 + i / 1e4, timestamp=base - 60 + i)
                    for i in range(2))  # fmt: skip
    osmand.stall(1.6)  # slower than each run's deadline: every push is cut
    for run in range(PARK_AFTER_ATTEMPTS - 1):
        fetched = [older, newer] if run == 0 else []
        report = pipeline.run(DEVICE, fetched.copy, push_by=Deadline.after(1.0))
        assert report.locations[0].status == "queued"
        clock.advance((CUT_RETRY_AFTER + timedelta(seconds=1)).total_seconds())
    osmand.reset()
    osmand.respond_with(503, times=1)  # then Traccar refuses it once, and would take the next

    report = pipeline.run(DEVICE, list)

    assert [loc.status for loc in report.locations] == ["error", "queued"]
    state = runtime.store.delivery.state("abc123")
    assert (state.parked_count, state.outbox_count, state.failures) == (0, 2, 1)
    assert [entry.parked for entry in runtime.store.delivery.outbox("abc123")] == [False, False]


def test_after_its_wait_a_cut_push_goes_again_only_with_a_run_that_cannot_cut_it(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    # A webhook's run (12 s at most) pushing it again under a Traccar still slow could be cut
    # and store it once more: it queues behind it; the sweep's run (no cut possible) pushes it.
    pipeline, _ = clocked(runtime, osmand, clock)
    base = int(clock.now.timestamp())
    cut, newer = (Location(id="abc123", lat=48.85, lon=2.35 + i / 1e4, timestamp=base - 60 + i)
                  for i in range(2))  # fmt: skip
    osmand.stall(1.6, times=1)
    assert pipeline.run(DEVICE, lambda: [cut], push_by=Deadline.after(1.0)).result.outbox == 1
    wait_for(lambda: len(osmand.positions) == 1)  # stored late
    clock.advance((CUT_RETRY_AFTER + timedelta(seconds=1)).total_seconds())

    webhook_like = pipeline.run(DEVICE, lambda: [newer], force=True, push_by=Deadline.after(12.0))

    assert [loc.status for loc in webhook_like.locations] == ["queued", "queued"]
    assert len(osmand.requests) == 1 and len(osmand.positions) == 1
    state = runtime.store.delivery.state("abc123")
    assert state.retry_at is not None and state.retry_at <= clock.now  # due: the sweep's

    swept = pipeline.run(DEVICE, list, push_by=Deadline.after(25.0))

    assert [loc.status for loc in swept.locations] == ["synced", "synced"]
    assert fix_times(osmand) == [cut.timestamp, cut.timestamp, newer.timestamp]
    assert runtime.store.delivery.outbox("abc123") == []


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """A listening socket whose backlog is full: a further connection is never made (its SYN
    goes unanswered), as with a Traccar host that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    time.sleep(0.2)
    host, port = server.getsockname()
    yield f"http://{host}:{port}/"
    for filler in fillers:
        filler.close()
    server.close()


def test_a_connection_the_deadline_cut_is_not_sent_rather_than_maybe_stored(
    unaccepting: str,
) -> None:
    client = OsmAndClient(requests.Session(), unaccepting, connect_timeout=5.0, read_timeout=15.0)
    location = Location(id="abc123", lat=48.85, lon=2.35, timestamp=1_700_000_000)
    started = time.monotonic()

    result = client.push(location, "abc123", deadline=Deadline.after(1.0))

    assert time.monotonic() - started < 2.0
    assert (result.outcome, result.status) == (PushOutcome.RETRY_LATER, None)
    # Nothing was sent: Traccar cannot have stored it (no wait before it is pushed again).
    assert (result.tried, result.cut) == (False, False)
    assert "not sent" in (result.error or "")
