"""`Sync`: a source's positions, its own and those it brought along, each through its own run.

A source returns positions and nothing else (docs/decisions/0003-composition-root.md); when one
locate answered for several devices (a Google FCM session), the sync layer runs each device's
pipeline, after the device's own, and tells the movement tracker before anything is delivered.
Real parts: the Firestore emulator, the pipeline, the OsmAnd test server over a socket.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from shared.errors import BridgeError
from shared.models import Device, Location, Source
from shared.pipeline import Pipeline
from shared.runtime import Runtime
from shared.sync import FetchFailed, Sync
from shared.traccar import OsmAndClient
from tests.conftest import Clock
from tests.fakes.osmand import OsmAndServer

OWN = Device(id="own", source=Source.GOOGLE, name="Keys", traccar_unique_id="own")
OTHER = Device(id="other", source=Source.GOOGLE, name="Bag", traccar_unique_id="other")


class Brings:
    """A source whose one locate answers for the device and for others."""

    source = Source.GOOGLE

    def __init__(self, found: list[Location], error: BridgeError | None = None) -> None:
        self.found = found
        self.error = error
        self.asked: list[str] = []

    def fetch(self, device: Device) -> list[Location]:
        self.asked.append(device.id)
        if self.error is not None:
            raise self.error
        return self.found


class Tracker:
    """Records what it was told, and what Traccar had received by then."""

    def __init__(self, osmand: OsmAndServer) -> None:
        self.osmand = osmand
        self.told: list[tuple[str, int, int]] = []  # device, positions, Traccar's count then

    def observe(self, device_id: str, located: list[Location]) -> None:
        self.told.append((device_id, len(located), len(self.osmand.positions)))


def at(clock: Clock, device_id: str, age: int) -> Location:
    return Location(id=device_id, lat=48.85, lon=2.35, timestamp=int(clock.now.timestamp()) - age)


@pytest.fixture
def osmand_both() -> OsmAndServer:
    with OsmAndServer(known_ids=["own", "other"]) as server:
        yield server


def make_sync(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, source: Brings, tracker: Tracker
) -> Sync:
    pipeline = Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=lambda: None,
        retention=timedelta(days=7),
        clock=clock,
    )
    runtime.store.devices.put(OWN)
    runtime.store.devices.put(OTHER)
    return Sync(
        devices=runtime.store.devices,
        delivery=runtime.store.delivery,
        pipeline=lambda: pipeline,
        sources={Source.GOOGLE: source},
        trackers={Source.GOOGLE: tracker},
        max_future_skew=300,
        clock=clock,
    )


def test_positions_brought_along_go_through_their_own_devices_run(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    source = Brings([at(clock, "own", 30), at(clock, "other", 20), at(clock, "other", 10)])
    tracker = Tracker(osmand_both)
    sync = make_sync(runtime, osmand_both, clock, source, tracker)

    report = sync.sync_device("own")

    assert source.asked == ["own"]  # one locate for both
    assert (report.result.fetched, report.result.pushed) == (1, 1)
    assert sorted(p.unique_id for p in osmand_both.positions) == ["other", "other", "own"]
    assert runtime.store.delivery.state("other").last_location == at(clock, "other", 10)
    # Told of each device's locate before any position reached Traccar.
    assert tracker.told == [("own", 1, 0), ("other", 2, 0)]


def test_a_second_run_sends_nothing_twice(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    found = [at(clock, "own", 30), at(clock, "other", 20)]
    sync = make_sync(runtime, osmand_both, clock, Brings(found), Tracker(osmand_both))

    sync.sync_device("own")
    sync.sync_device("own")

    assert sorted(p.unique_id for p in osmand_both.positions) == ["other", "own"]


def test_a_busy_device_brought_along_is_skipped_and_the_run_still_succeeds(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    sync = make_sync(
        runtime,
        osmand_both,
        clock,
        Brings([at(clock, "own", 30), at(clock, "other", 20)]),
        Tracker(osmand_both),
    )
    # Another run holds the other device's lease.
    runtime.store.delivery.acquire(
        "other", "someone-else", now=clock.now, until=clock.now + timedelta(minutes=5)
    )

    report = sync.sync_device("own")

    assert report.result.pushed == 1
    assert [p.unique_id for p in osmand_both.positions] == ["own"]


def test_positions_of_a_device_the_bridge_does_not_know_are_dropped(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    sync = make_sync(
        runtime,
        osmand_both,
        clock,
        Brings([at(clock, "own", 30), at(clock, "stranger", 20)]),
        Tracker(osmand_both),
    )

    sync.sync_device("own")

    assert [p.unique_id for p in osmand_both.positions] == ["own"]
    assert runtime.store.devices.get("stranger") is None


def test_a_failing_source_still_drains_and_raises_its_error(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    failing = Brings([], error=BridgeError("Google unreachable"))
    tracker = Tracker(osmand_both)
    sync = make_sync(runtime, osmand_both, clock, failing, tracker)

    with pytest.raises(BridgeError, match="Google unreachable"):
        sync.sync_device("own")

    assert tracker.told == []  # nothing was located


def test_a_failed_locate_that_answered_for_others_delivers_theirs_and_raises_its_own_error(
    runtime: Runtime, osmand_both: OsmAndServer, clock: Clock
) -> None:
    own_error = BridgeError("device own: no answer")
    failing = Brings([], error=FetchFailed(own_error, brought_along=[at(clock, "other", 20)]))
    tracker = Tracker(osmand_both)
    sync = make_sync(runtime, osmand_both, clock, failing, tracker)

    with pytest.raises(BridgeError, match="device own: no answer") as caught:
        sync.sync_device("own")

    assert caught.value is own_error  # the device's own error, not the carrier
    assert [p.unique_id for p in osmand_both.positions] == ["other"]
    assert runtime.store.delivery.state("other").last_location == at(clock, "other", 20)
    assert tracker.told == [("other", 1, 0)]  # the device that failed was not located
