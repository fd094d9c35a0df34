"""Smart tracking: a tracker that moved is located every SMART_TRACKING_TIMER ± DELTA seconds
for SMART_TRACKING_DURATION seconds; state in the Firestore emulator, jobs in the local
scheduler backend, time from an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.models import Device, Location, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec
from shared.sources.google.smart_tracking import SmartTracker, distance_m
from tests.conftest import Clock, make_settings
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import Report

DEVICE = "canonic-0"
T0 = 1_790_000_000
HOME = (48.8566, 2.3522)


def at(lat: float, lon: float, timestamp: int) -> Location:
    return Location(id=DEVICE, lat=lat, lon=lon, timestamp=timestamp, source=Source.GOOGLE)


def job(runtime: Runtime) -> tuple[int, int]:
    [local] = runtime.store.local_jobs.list()
    return local.timer, local.delta


def smart_tracker(runtime: Runtime, clock: Clock) -> SmartTracker:
    return runtime.google_stack(clock=clock).smart_tracking


@pytest.fixture
def runtime(tmp_path: Path, firestore_client) -> Runtime:
    settings = make_settings(
        tmp_path,
        smart_tracking_enabled=True,
        smart_tracking_distance=100,
        smart_tracking_timer=60,
        smart_tracking_delta=10,
        smart_tracking_duration=900,
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.store.devices.put(Device(id=DEVICE, source=Source.GOOGLE, traccar_unique_id=DEVICE))
    runtime.services.upsert(DEVICE, ServiceSpec(timer=600, delta=5))
    runtime.pipeline.mark_delivered(at(*HOME, T0))  # the newest delivered position
    return runtime


def test_haversine_distance_is_the_great_circle_distance() -> None:
    paris, london = at(48.8566, 2.3522, 0), at(51.5074, -0.1278, 0)
    assert distance_m(paris, london) == pytest.approx(343_500, rel=0.005)
    assert distance_m(paris, paris) == 0


def test_a_move_beyond_the_distance_switches_the_job_for_the_duration(
    runtime: Runtime, clock: Clock
) -> None:
    tracker = smart_tracker(runtime, clock)

    tracker.observe(DEVICE, [at(48.8566, 2.3522 + 0.002, T0 + 60)])  # ~146 m east

    assert job(runtime) == (60, 10)
    service = runtime.store.services.get(DEVICE)
    assert (service.timer, service.delta) == (600, 5)  # the user's setting is kept


def test_a_move_within_the_distance_or_an_older_report_changes_nothing(
    runtime: Runtime, clock: Clock
) -> None:
    tracker = smart_tracker(runtime, clock)

    tracker.observe(DEVICE, [at(48.8566, 2.3522 + 0.001, T0 + 60)])  # ~73 m
    tracker.observe(DEVICE, [at(45.0, 5.0, T0 - 60)])  # far, but older than what was delivered
    tracker.observe(DEVICE, [])

    assert job(runtime) == (600, 5)


def test_further_moves_extend_it_and_the_first_run_after_the_end_restores_the_job(
    runtime: Runtime, clock: Clock
) -> None:
    tracker = smart_tracker(runtime, clock)
    far = at(48.87, 2.3522, T0 + 60)  # ~1.5 km north
    tracker.observe(DEVICE, [far])
    clock.advance(600)
    tracker.observe(DEVICE, [far.model_copy(update={"timestamp": T0 + 660})])  # still moving
    clock.advance(600)  # 1200 s after the start, 600 after the last move

    tracker.observe(DEVICE, [])
    assert job(runtime) == (60, 10)

    clock.advance(301)
    tracker.observe(DEVICE, [])
    assert job(runtime) == (600, 5)


def test_the_job_returns_to_what_the_user_set_meanwhile(runtime: Runtime, clock: Clock) -> None:
    tracker = smart_tracker(runtime, clock)
    tracker.observe(DEVICE, [at(48.87, 2.3522, T0 + 60)])
    runtime.services.upsert(DEVICE, ServiceSpec(timer=1200, delta=30))
    clock.advance(901)

    assert tracker.sweep() == [DEVICE]
    assert job(runtime) == (1200, 30)


def test_a_device_without_an_active_service_is_not_sped_up(runtime: Runtime, clock: Clock) -> None:
    service = runtime.store.services.get(DEVICE)
    runtime.store.services.put(service.model_copy(update={"paused": True}))

    smart_tracker(runtime, clock).observe(DEVICE, [at(48.87, 2.3522, T0 + 60)])

    assert job(runtime) == (600, 5)


def test_smart_tracking_is_off_unless_enabled(
    tmp_path: Path, firestore_client, clock: Clock
) -> None:
    runtime = Runtime(make_settings(tmp_path), firestore_client=firestore_client)
    runtime.store.devices.put(Device(id=DEVICE, source=Source.GOOGLE, traccar_unique_id=DEVICE))
    runtime.services.upsert(DEVICE, ServiceSpec(timer=600, delta=5))
    runtime.pipeline.mark_delivered(at(*HOME, T0))

    smart_tracker(runtime, clock).observe(DEVICE, [at(48.87, 2.3522, T0 + 60)])

    assert job(runtime) == (600, 5)


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=1) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        yield fake


def test_a_sync_that_finds_the_tracker_moved_switches_its_job(
    tmp_path: Path, firestore_client, google: FakeGoogle, clock: Clock
) -> None:
    with OsmAndServer(known_ids=[DEVICE]) as traccar:
        settings = make_settings(
            tmp_path, **google.settings(), traccar_server_url=traccar.url,
            smart_tracking_enabled=True,
        )  # fmt: skip
        runtime = Runtime(settings, firestore_client=firestore_client)
        google.store_secrets(runtime.secrets)
        runtime.store.devices.put(Device(id=DEVICE, source=Source.GOOGLE, traccar_unique_id=DEVICE))
        runtime.services.upsert(DEVICE, ServiceSpec(timer=600, delta=5))
        runtime.pipeline.mark_delivered(at(*HOME, T0))
        google.trackers[0].recent = Report("own", timestamp=T0 + 600, latitude=48.87,
                                           longitude=2.3522)  # fmt: skip
        runtime.google = runtime.google_stack(clock=clock)

        report = runtime.sync.sync_device(DEVICE)

    assert report.result.pushed == 1
    assert job(runtime) == (60, 10)


def test_a_companion_located_in_the_same_session_is_smart_tracked_too(
    tmp_path: Path, firestore_client, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        FakeGoogle(tmp_path, trackers=2) as google,
        OsmAndServer(known_ids=["canonic-0", "canonic-1"]) as traccar,
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(google.ca_file))
        settings = make_settings(
            tmp_path, **google.settings(), traccar_server_url=traccar.url,
            smart_tracking_enabled=True,
        )  # fmt: skip
        runtime = Runtime(settings, firestore_client=firestore_client)
        google.store_secrets(runtime.secrets)
        for fake in google.trackers:
            canonic = fake.tracker.canonic_id
            runtime.store.devices.put(
                Device(id=canonic, source=Source.GOOGLE, traccar_unique_id=canonic)
            )
            runtime.services.upsert(canonic, ServiceSpec(timer=600, delta=5))
            runtime.pipeline.mark_delivered(at(*HOME, T0).model_copy(update={"id": canonic}))
            fake.recent = Report("own", timestamp=T0 + 600, latitude=48.87, longitude=2.3522)
        runtime.google = runtime.google_stack(clock=clock)

        runtime.sync.sync_device("canonic-0")

    jobs = {job.device_id: (job.timer, job.delta) for job in runtime.store.local_jobs.list()}
    assert jobs == {"canonic-0": (60, 10), "canonic-1": (60, 10)}
    assert runtime.store.delivery.state("canonic-1").last_location.lat == 48.87
