"""`Sync`: a source's positions, its own and those it brought along, each through its own run.

A source returns positions and nothing else (docs/decisions/0003-composition-root.md); when one
locate answered for several devices (a Google FCM session), the sync layer runs each device's
pipeline, after the device's own, and tells the movement tracker before anything is delivered.
Real parts: the Firestore emulator, the pipeline, the OsmAnd test server over a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import requests

from shared.errors import BridgeError, NotFound, RetryLater
from shared.models import Device, Location, Source
from shared.pipeline import Pipeline
from shared.runtime import Runtime
from shared.scheduler import CloudSchedulerJobs, once_job_id
from shared.sync import FetchFailed, Sync
from shared.traccar import OsmAndClient
from tests.conftest import Clock
from tests.fakes.cloud_scheduler import FakeCloudScheduler
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
    runtime: Runtime,
    osmand: OsmAndServer,
    clock: Clock,
    source: Brings,
    tracker: Tracker,
    *,
    delete_once: Callable[[str], object] | None = None,
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
        delete_once=delete_once,
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


# --- A "locate now" one-shot job's run (sync_device with "once": true) ---------------------

ONCE_JOB = f"projects/p/locations/europe-west1/jobs/{once_job_id('own')}"


@pytest.fixture
def cloud_scheduler() -> Iterator[FakeCloudScheduler]:
    with FakeCloudScheduler() as fake:
        yield fake


@pytest.fixture
def jobs(cloud_scheduler: FakeCloudScheduler) -> CloudSchedulerJobs:
    """Cloud Scheduler's official client over the gRPC fake; the one-shot job of "own" made
    and run, as Traccar's "locate now" does (`run_once`)."""
    jobs = CloudSchedulerJobs(
        cloud_scheduler.client(),
        project="p",
        region="europe-west1",
        sync_device_url="https://europe-west1-p.cloudfunctions.net/sync_device",
        service_account_email="scheduler@p.iam.gserviceaccount.com",
    )
    jobs.run_once("own")
    assert cloud_scheduler.job_names() == [ONCE_JOB]
    return jobs


def test_a_one_shot_run_whose_job_cannot_be_deleted_still_syncs_and_says_what_to_apply(
    runtime: Runtime,
    osmand_both: OsmAndServer,
    clock: Clock,
    cloud_scheduler: FakeCloudScheduler,
    jobs: CloudSchedulerJobs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Terraform granting sync_device cloudscheduler.jobs.delete not applied yet: the delete
    # answers PERMISSION_DENIED. The run went on 500 before syncing anything.
    cloud_scheduler.deny("cloudscheduler.jobs.delete")
    source = Brings([at(clock, "own", 30)])
    sync = make_sync(
        runtime, osmand_both, clock, source, Tracker(osmand_both), delete_once=jobs.delete_once
    )

    with caplog.at_level(logging.WARNING, logger="shared.sync"):
        report = sync.scheduled_sync("own", jitter_seconds=0, once=True)

    assert (report.result.fetched, report.result.pushed) == (1, 1)
    assert [p.unique_id for p in osmand_both.positions] == ["own"]
    [warning] = [r for r in caplog.records if "one-shot job" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "cloudscheduler.jobs.delete" in warning.getMessage()
    assert "infra/terraform" in warning.getMessage()
    assert cloud_scheduler.job_names() == [ONCE_JOB]  # its yearly run tries again


def test_a_one_shot_run_told_to_retry_keeps_its_job_and_the_retry_locates_and_deletes_it(
    runtime: Runtime,
    osmand_both: OsmAndServer,
    clock: Clock,
    cloud_scheduler: FakeCloudScheduler,
    jobs: CloudSchedulerJobs,
) -> None:
    # Another run holds the device's lease: 429, which Cloud Scheduler retries. The job was
    # deleted before the run, so the retry never came and the locate was dropped.
    source = Brings([at(clock, "own", 30)])
    sync = make_sync(
        runtime, osmand_both, clock, source, Tracker(osmand_both), delete_once=jobs.delete_once
    )
    state, lease = runtime.store.delivery.acquire(
        "own", "another run", now=clock.now, until=clock.now + timedelta(minutes=1)
    )

    with pytest.raises(RetryLater):
        sync.scheduled_sync("own", jitter_seconds=0, once=True)

    assert cloud_scheduler.job_names() == [ONCE_JOB]  # kept for Cloud Scheduler's retry
    runtime.store.delivery.release(lease, state)

    report = sync.scheduled_sync("own", jitter_seconds=0, once=True)  # the retry

    assert report.result.pushed == 1 and [p.unique_id for p in osmand_both.positions] == ["own"]
    assert cloud_scheduler.job_names() == []


def test_a_one_shot_run_refused_for_good_deletes_its_job(
    runtime: Runtime,
    osmand_both: OsmAndServer,
    clock: Clock,
    cloud_scheduler: FakeCloudScheduler,
    jobs: CloudSchedulerJobs,
) -> None:
    # The device was removed since "locate now": a retry would meet the same 404.
    source = Brings([])
    sync = make_sync(
        runtime, osmand_both, clock, source, Tracker(osmand_both), delete_once=jobs.delete_once
    )
    runtime.store.devices.delete("own")

    with pytest.raises(NotFound):
        sync.scheduled_sync("own", jitter_seconds=0, once=True)

    assert cloud_scheduler.job_names() == []
