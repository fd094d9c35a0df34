"""Traccar unreachable for a stretch while positions keep arriving: each arrives once, in order.

The OsmAnd test server refuses connections (`stop()`, then `start()` on the same port),
answers 503, or reads the request and closes without a reply, for several runs; the sync
runs go on every few minutes on an injected clock (so the pipeline's backoff really holds some
of them back), the source reporting new positions and re-reporting recent ones as Google's
does. Once Traccar is back, every position reaches it exactly once, in timestamp order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.models import Device, Location, Source
from shared.pipeline import BACKOFF_MAX, Pipeline
from shared.runtime import Runtime
from shared.traccar import OsmAndClient
from tests.conftest import Clock
from tests.fakes.osmand import OsmAndServer

RUN_EVERY = timedelta(minutes=5)  # a sync service's timer
REPORTED_AGAIN = 3  # the source's answer includes this many already-seen positions
# Enough runs after recovery for the backoff (at most BACKOFF_MAX) to let the outbox drain.
DRAIN_RUNS = int(BACKOFF_MAX / RUN_EVERY) + 2
# A read timeout far below the client's 15 s keeps the "answers too late" case fast.
SHORT_READ_TIMEOUT = 0.3
LATE_ANSWER_WAIT = 5.0  # seconds for the stalled request to be stored after all


def _outage(osmand: OsmAndServer, mode: str) -> Callable[[], object]:
    """Put Traccar in `mode`; returns what ends it."""
    if mode == "refuses connections":
        osmand.stop()
        return osmand.start
    if mode == "answers 503":
        osmand.respond_with(503)
    elif mode == "closes without a reply":
        osmand.close_without_reply()
    else:
        raise ValueError(mode)
    return osmand.reset


class Vendor:
    """A vendor with `new` more positions of the device at every fetch, and recent ones again."""

    def __init__(self, device_id: str, clock: Clock) -> None:
        self.device_id = device_id
        self.clock = clock
        self.reported: list[Location] = []

    def fetch(self, new: int = 1) -> list[Location]:
        now = int(self.clock.now.timestamp())
        for index in range(new):
            age = 30 * (new - index)  # seconds before now, oldest first
            self.reported.append(
                Location(
                    id=self.device_id,
                    lat=48.85,
                    lon=2.35 + len(self.reported) / 1e4,
                    timestamp=now - age,
                )
            )
        answer = self.reported[-(new + REPORTED_AGAIN) :]
        return list(reversed(answer))  # vendors do not promise any order


def make_pipeline(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, **timeouts: float
) -> Pipeline:
    return Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url, **timeouts),
        traccar_api=lambda: None,
        retention=timedelta(days=90),
        clock=clock,
    )


def run_for(pipeline: Pipeline, device: Device, source: Vendor, clock: Clock, runs: int) -> None:
    for _ in range(runs):
        clock.advance(RUN_EVERY.total_seconds())
        pipeline.run(device, source.fetch)


def timestamps(osmand: OsmAndServer, unique_id: str) -> list[int]:
    return [int(p.fix_time.timestamp()) for p in osmand.positions if p.unique_id == unique_id]


def drain(pipeline: Pipeline, device: Device, clock: Clock, runtime: Runtime) -> None:
    for _ in range(DRAIN_RUNS):
        clock.advance(RUN_EVERY.total_seconds())
        pipeline.run(device, list)  # nothing new: only what waits
        if runtime.store.delivery.state(device.id).outbox_count == 0:
            return
    raise AssertionError("the outbox did not drain after Traccar came back")


@pytest.mark.parametrize("mode", ["refuses connections", "answers 503", "closes without a reply"])
def test_after_an_outage_every_position_arrives_exactly_once_in_timestamp_order(
    mode: str, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    device = Device(id="abc123", source=Source.GOOGLE, traccar_unique_id="abc123")
    pipeline = make_pipeline(runtime, osmand, clock)
    source = Vendor("abc123", clock)

    run_for(pipeline, device, source, clock, 2)
    end_outage = _outage(osmand, mode)
    run_for(pipeline, device, source, clock, 6)  # 30 minutes down: backoff reaches 16 min
    assert runtime.store.delivery.state("abc123").outbox_count > 0
    end_outage()
    run_for(pipeline, device, source, clock, 2)
    drain(pipeline, device, clock, runtime)

    expected = sorted(location.timestamp for location in source.reported)
    assert len(expected) == 10
    assert timestamps(osmand, "abc123") == expected


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    schedule=st.lists(
        st.tuples(
            st.sampled_from(["up", "refuses connections", "answers 503", "closes without a reply"]),
            st.integers(min_value=0, max_value=3),  # new positions that run
        ),
        min_size=3,
        max_size=10,
    )
)
def test_any_schedule_of_outages_delivers_every_position_once_in_order(
    schedule: list[tuple[str, int]], runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    device_id = f"fuzz-{len(osmand.devices.all())}"  # a fresh device per example
    osmand.add_known_id(device_id)
    device = Device(id=device_id, source=Source.TLINK, traccar_unique_id=device_id)
    pipeline = make_pipeline(runtime, osmand, clock)
    source = Vendor(device_id, clock)

    for mode, new in schedule:
        end_outage = None if mode == "up" else _outage(osmand, mode)
        clock.advance(RUN_EVERY.total_seconds())
        pipeline.run(device, lambda new=new: source.fetch(new))
        if end_outage is not None:
            end_outage()
    drain(pipeline, device, clock, runtime)

    assert timestamps(osmand, device_id) == sorted(loc.timestamp for loc in source.reported)


def test_an_answer_too_late_is_pushed_again_at_least_once_and_nothing_is_lost(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    device = Device(id="abc123", source=Source.GOOGLE, traccar_unique_id="abc123")
    pipeline = make_pipeline(runtime, osmand, clock, read_timeout=SHORT_READ_TIMEOUT)
    source = Vendor("abc123", clock)
    # Traccar stores the position but answers after the client gave up: the bridge cannot
    # know it arrived, so it keeps it and pushes it again (OsmAnd has no idempotency key).
    osmand.stall(SHORT_READ_TIMEOUT * 3, times=1)

    run_for(pipeline, device, source, clock, 1)
    deadline = time.monotonic() + LATE_ANSWER_WAIT
    while not osmand.positions and time.monotonic() < deadline:
        time.sleep(0.05)  # Traccar stores it, late
    run_for(pipeline, device, source, clock, 2)
    drain(pipeline, device, clock, runtime)

    arrived = timestamps(osmand, "abc123")
    expected = sorted(location.timestamp for location in source.reported)
    assert sorted(set(arrived)) == expected  # none lost
    assert arrived == sorted(arrived)  # in order, the late one twice in a row
    assert len(arrived) == len(expected) + 1
