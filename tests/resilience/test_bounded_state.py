"""The delivery state stays bounded and exact however long the history, written change by change.

A run's final write sends only the fingerprints it added and pruned (shared/store.py); these
tests read the document back from the emulator and compare it with the window the pipeline's
own rule (`prune_delivered`) says it must hold: at the cap, and when a whole window is pruned
at once (more changes than one update lists, so the map is replaced).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from shared.models import Device, DeviceState, Location, Source
from shared.pipeline import DEDUP_WINDOW, DELIVERED_CAP, Pipeline, horizon_of, prune_delivered
from shared.runtime import Runtime
from shared.store.delivery import MAX_FIELD_CHANGES
from shared.traccar import OsmAndClient
from tests.conftest import Clock
from tests.fakes.osmand import OsmAndServer

DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")


@pytest.fixture
def pipeline(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Pipeline:
    return Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=lambda: None,
        retention=timedelta(days=90),
        clock=clock,
    )


def store_full_window(runtime: Runtime, clock: Clock) -> DeviceState:
    """A state at the cap: DELIVERED_CAP fingerprints, one a minute up to now."""
    now = int(clock.now.timestamp())
    delivered = {f"{i:032x}": now - 60 * (i + 1) for i in range(DELIVERED_CAP)}
    state = DeviceState(id="abc123", delivered=delivered, floor=now - 60 * (DELIVERED_CAP + 1))
    runtime.firestore_client.collection("device_state").document("abc123").set(
        state.model_dump(mode="python")
    )
    return state


def new_positions(clock: Clock, count: int) -> list[Location]:
    now = int(clock.now.timestamp())
    return [
        Location(id="abc123", lat=48.85, lon=2.35 + i / 1e4, timestamp=now - i)
        for i in range(count)
    ]


def test_at_the_cap_each_run_stores_exactly_the_newest_window(
    pipeline: Pipeline, runtime: Runtime, clock: Clock
) -> None:
    before = store_full_window(runtime, clock)
    for _ in range(3):
        clock.advance(600)
        fresh = new_positions(clock, 4)
        expected, floor = prune_delivered(
            {**before.delivered, **{loc.fingerprint(): loc.timestamp for loc in fresh}},
            before.floor,
            clock.now,
        )

        assert pipeline.run(DEVICE, lambda fresh=fresh: fresh).result.pushed == 4

        after = runtime.store.delivery.state("abc123")
        assert after.delivered == expected and after.floor == floor
        assert len(after.delivered) == DELIVERED_CAP
        before = after


def test_a_window_pruned_at_once_replaces_the_map(
    pipeline: Pipeline, runtime: Runtime, clock: Clock
) -> None:
    store_full_window(runtime, clock)
    newest_stored = int(clock.now.timestamp()) - 60
    assert DELIVERED_CAP > MAX_FIELD_CHANGES  # so this run takes the replace-the-map path
    clock.advance((DEDUP_WINDOW + timedelta(days=1)).total_seconds())  # a week without news
    fresh = new_positions(clock, 2)

    assert pipeline.run(DEVICE, lambda: fresh).result.pushed == 2

    after = runtime.store.delivery.state("abc123")
    assert after.delivered == {loc.fingerprint(): loc.timestamp for loc in fresh}
    assert after.floor == newest_stored  # what fell out of the window counts as delivered


FLOOD = int(datetime(2037, 1, 1, tzinfo=UTC).timestamp())


def flood(count: int, start: int = 0) -> list[Location]:
    """Positions dated 2037, as issue 13's attacker pushed them: each its own fingerprint."""
    return [
        Location(id="abc123", lat=10.0, lon=(start + i) / 1e4, timestamp=FLOOD + start + i)
        for i in range(count)
    ]


def test_a_flood_dated_2037_does_not_hide_the_genuine_position_after_it(
    pipeline: Pipeline, runtime: Runtime, clock: Clock, osmand: OsmAndServer
) -> None:
    # What the flood left under the unbounded floor: the map full of 2037 fingerprints, the
    # floor and the newest position in 2037.
    recorded = flood(DELIVERED_CAP + 100)
    runtime.firestore_client.collection("device_state").document("abc123").set(
        DeviceState(
            id="abc123",
            delivered={loc.fingerprint(): loc.timestamp for loc in recorded[:DELIVERED_CAP]},
            floor=recorded[-1].timestamp,
            last_location=recorded[-1],
        ).model_dump(mode="python")
    )
    # More of it, through the pipeline itself (no source or route lets one through any more).
    for batch in range(3):
        more = flood(20, start=DELIVERED_CAP + 100 + 20 * batch)
        pipeline.run(DEVICE, lambda more=more: more)
        pipeline.mark_delivered(flood(1, start=10_000 + batch)[0])
        after = runtime.store.delivery.state("abc123")
        assert after.floor <= horizon_of(clock.now)
    flooded = len(osmand.positions)

    clock.advance(60)
    genuine = Location(id="abc123", lat=48.85, lon=2.35, timestamp=int(clock.now.timestamp()) - 5)
    report = pipeline.run(DEVICE, lambda: [genuine])

    assert report.result.pushed == 1
    [position] = osmand.positions[flooded:]
    assert (position.latitude, int(position.fix_time.timestamp())) == (48.85, genuine.timestamp)
    state = runtime.store.delivery.state("abc123")
    assert state.floor <= int((clock.now - DEDUP_WINDOW).timestamp())
    assert state.last_location == genuine
    assert genuine.fingerprint() in state.delivered
    # Delivered once: the same position again is a duplicate, not a second push.
    assert pipeline.run(DEVICE, lambda: [genuine]).result.pushed == 0
    assert len(osmand.positions) == flooded + 1
