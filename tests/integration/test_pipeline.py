"""The pipeline on the Firestore emulator against the OsmAnd test server: nothing lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from test_utils import orchestrate

from shared.errors import BridgeError, RetryLater
from shared.models import Device, DeviceState, Location, Source
from shared.pipeline import BACKOFF_BASE, DELIVERED_CAP, PARK_AFTER_ATTEMPTS, Pipeline
from shared.runtime import Runtime
from shared.secrets import LocalSecretStore
from shared.store import Store
from shared.traccar import OsmAndClient
from tests.conftest import Clock, make_settings, sweep
from tests.fakes.firestore_counter import CountingClient, Counts
from tests.fakes.osmand import OsmAndServer
from tests.fakes.traccar_api import FakeTraccarApi

DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")


def make_pipeline(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Pipeline:
    return Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=runtime.traccar_api,
        retention=timedelta(days=runtime.settings.push_log_retention_days),
        clock=clock,
        device_user_id=runtime.settings.traccar_device_user_id,
        device_group_id=runtime.settings.traccar_device_group_id,
    )


@pytest.fixture
def pipeline(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Pipeline:
    runtime.store.devices.put(DEVICE)
    return make_pipeline(runtime, osmand, clock)


def positions(clock: Clock, *ages: int, device_id: str = "abc123") -> list[Location]:
    """Locations `ages` seconds before the clock's now, in the order given."""
    now = int(clock.now.timestamp())
    return [
        Location(id=device_id, lat=48.85 + age / 1e4, lon=2.35, timestamp=now - age) for age in ages
    ]


def fixed(locations: list[Location]) -> Callable[[], list[Location]]:
    return lambda: locations


def arrived(osmand: OsmAndServer) -> list[int]:
    return [int(p.fix_time.timestamp()) for p in osmand.positions]


def test_new_positions_reach_traccar_in_timestamp_order_once(
    pipeline: Pipeline, osmand: OsmAndServer, clock: Clock
) -> None:
    batch = positions(clock, 60, 300, 120)

    first = pipeline.run(DEVICE, fixed(batch)).result
    second = pipeline.run(DEVICE, fixed(batch)).result

    assert arrived(osmand) == sorted(loc.timestamp for loc in batch)
    assert (first.fetched, first.new, first.pushed, first.outbox) == (3, 3, 3, 0)
    assert (second.fetched, second.new, second.pushed) == (3, 0, 0)


def test_a_refused_position_is_not_recorded_and_waits_in_the_outbox(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    batch = positions(clock, 200, 100)
    osmand.respond_with(503)

    report = pipeline.run(DEVICE, fixed(batch))

    assert osmand.positions == []
    assert [item.status for item in report.locations] == ["error", "queued"]
    assert (report.result.failed, report.result.outbox) == (1, 2)
    assert runtime.sync.undelivered(batch) == batch
    outbox = runtime.store.delivery.outbox("abc123")
    assert [entry.location for entry in outbox] == sorted(batch, key=lambda loc: loc.timestamp)
    assert outbox[0].attempts == 1 and "503" in outbox[0].last_error
    assert outbox[1].attempts == 0
    assert outbox[0].next_attempt == clock.now + BACKOFF_BASE


def test_the_outbox_is_drained_first_oldest_first_once_traccar_recovers(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    osmand.respond_with(503)
    pipeline.run(DEVICE, fixed(positions(clock, 300, 200)))
    osmand.reset()
    clock.advance(BACKOFF_BASE.total_seconds())

    report = pipeline.run(DEVICE, fixed(positions(clock, 30)))

    now = int(clock.now.timestamp())
    assert arrived(osmand) == [now - 360, now - 260, now - 30]
    assert (report.result.pushed, report.result.outbox) == (3, 0)
    assert runtime.store.delivery.outbox("abc123") == []
    assert runtime.store.delivery.state("abc123").outbox_count == 0


def test_while_backing_off_new_positions_queue_behind_the_waiting_ones(
    pipeline: Pipeline, osmand: OsmAndServer, clock: Clock
) -> None:
    osmand.respond_with(503)
    pipeline.run(DEVICE, fixed(positions(clock, 100)))
    osmand.reset()
    clock.advance(10)  # still inside the one-minute backoff

    waiting = pipeline.run(DEVICE, fixed(positions(clock, 5)))
    assert osmand.positions == []
    assert [item.status for item in waiting.locations] == ["queued", "queued"]

    clock.advance(60)
    pipeline.run(DEVICE, fixed([]))
    assert len(osmand.positions) == 2
    assert arrived(osmand) == sorted(arrived(osmand))


def test_an_explicit_retry_ignores_the_backoff(
    pipeline: Pipeline, osmand: OsmAndServer, clock: Clock
) -> None:
    osmand.respond_with(503)
    pipeline.run(DEVICE, fixed(positions(clock, 100)))
    osmand.reset()

    report = pipeline.run(DEVICE, fixed([]), force=True)

    assert report.result.pushed == 1 and len(osmand.positions) == 1


def test_one_push_log_document_per_attempt_with_the_seed_fields(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    osmand.respond_with(503, times=1)
    location = positions(clock, 3600)[0].model_copy(update={"loc_status": "CROWDSOURCED"})
    pipeline.run(DEVICE, fixed([location]))
    clock.advance(1)
    pipeline.run(DEVICE, fixed([]), force=True)

    entries, cursor = runtime.store.delivery.push_log(device_id="abc123", limit=10)

    assert cursor is None
    assert [(e.outcome, e.traccar_status) for e in entries] == [
        ("accepted", 200),
        ("retry_later", 503),
    ]
    accepted = entries[0]
    assert (accepted.id, accepted.lat, accepted.lon, accepted.timestamp) == (
        "abc123",
        location.lat,
        location.lon,
        location.timestamp,
    )
    assert accepted.loc_status == "CROWDSOURCED" and accepted.name == "Keys"
    assert accepted.date == "2026-11-22T11:00:00Z"
    assert accepted.synced_at.endswith("Z")
    assert accepted.maps_url == f"https://maps.google.com/?q={location.lat},{location.lon}"
    assert accepted.expire_at - accepted.attempted_at == timedelta(days=90)
    assert entries[1].error and "503" in entries[1].error


def test_a_position_too_large_for_traccar_goes_once_with_its_dropped_attributes_logged(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    # 300 readings of long UTF-8 names: far past Traccar's 16 KiB body (PROTOCOLS.md §1).
    readings = {f"{'湿度传感器读数' * 2}{index:03d}": 55.0 for index in range(300)}
    [location] = positions(clock, 60)
    big = location.model_copy(update={"attributes": {**readings, "ignition": True}})

    first = pipeline.run(DEVICE, fixed([big])).result
    again = pipeline.run(DEVICE, fixed([big])).result

    assert (first.pushed, first.outbox, again.new) == (1, 0, 0)
    [position] = osmand.positions
    assert position.attributes["ignition"] is True
    [entry], _ = runtime.store.delivery.push_log(device_id="abc123", limit=5)
    assert entry.outcome == "accepted" and entry.dropped_attributes
    assert set(entry.dropped_attributes) == set(readings) - set(position.attributes)


def test_push_log_retention_is_configurable(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    short = Runtime(
        make_settings(tmp_path, push_log_retention_days=7),
        firestore_client=runtime.firestore_client,
    )
    short.store.devices.put(DEVICE)
    make_pipeline(short, osmand, clock).run(DEVICE, fixed(positions(clock, 1)))

    [entry], _ = short.store.delivery.push_log(device_id="abc123", limit=5)
    assert entry.expire_at - entry.attempted_at == timedelta(days=7)


def test_push_log_pages_with_a_cursor(pipeline: Pipeline, runtime: Runtime, clock: Clock) -> None:
    for age in (50, 40, 30):
        pipeline.run(DEVICE, fixed(positions(clock, age)))
        clock.advance(1)

    first, cursor = runtime.store.delivery.push_log(device_id="abc123", limit=2)
    second, end = runtime.store.delivery.push_log(device_id="abc123", limit=2, start_after=cursor)

    assert len(first) == 2 and len(second) == 1 and end is None
    times = [e.attempted_at for e in first + second]
    assert times == sorted(times, reverse=True)


def test_unknown_device_without_traccar_api_waits_and_says_why(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    stranger = DEVICE.model_copy(update={"id": "stranger", "traccar_unique_id": "stranger"})

    report = pipeline.run(stranger, fixed(positions(clock, 10, device_id="stranger")))

    assert report.result.outbox == 1 and osmand.positions == []
    message = report.locations[0].message or ""
    assert "TRACCAR_API_URL" in message and "stranger" in message
    [entry], _ = runtime.store.delivery.push_log(device_id="stranger", limit=5)
    assert entry.outcome == "unknown_device" and entry.traccar_status == 400


def test_unknown_device_is_created_in_traccar_then_pushed(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    with FakeTraccarApi("api-token-123456", devices=osmand.devices) as api:
        settings = make_settings(tmp_path, traccar_api_url=api.url)
        LocalSecretStore(settings.secrets_dir).add_version(
            settings.traccar_api_token_secret, "api-token-123456"
        )
        provisioning = Runtime(settings, firestore_client=runtime.firestore_client)
        tag = Device(id="tag-9", source=Source.GOOGLE, name="Dog", traccar_unique_id="tag-9")

        report = make_pipeline(provisioning, osmand, clock).run(
            tag, fixed(positions(clock, 10, device_id="tag-9"))
        )

        assert [(d.unique_id, d.name) for d in api.created] == [("tag-9", "Dog")]
    assert report.result.pushed == 1
    assert [p.unique_id for p in osmand.positions] == ["tag-9"]


def test_a_device_made_with_the_service_account_is_linked_to_the_configured_user(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    # PROTOCOLS.md §2: a device the service account creates is linked to nobody, on no map.
    with FakeTraccarApi(
        "admin-token-0", devices=osmand.devices, service_account_token="svc"
    ) as api:
        family = api.add_user("family@example.com", "pw-family-0")
        settings = make_settings(tmp_path, traccar_api_url=api.url, traccar_device_user_id=family)
        LocalSecretStore(settings.secrets_dir).add_version(settings.traccar_api_token_secret, "svc")
        provisioning = Runtime(settings, firestore_client=runtime.firestore_client)
        tag = Device(id="tag-9", source=Source.GOOGLE, name="Dog", traccar_unique_id="tag-9")

        report = make_pipeline(provisioning, osmand, clock).run(
            tag, fixed(positions(clock, 10, device_id="tag-9"))
        )

        assert report.result.pushed == 1
        assert api.linked_users("tag-9") == {family}
        assert api.record("tag-9")["category"] == "person"


def test_basic_credentials_create_the_device_and_an_expired_token_keeps_positions_waiting(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    with FakeTraccarApi("week-old-token", devices=osmand.devices) as api:
        api.expire_token("week-old-token")
        api.add_user("bridge@example.com", "pw:bridge", administrator=True)
        settings = make_settings(tmp_path, traccar_api_url=api.url)
        secrets = LocalSecretStore(settings.secrets_dir)
        secrets.add_version(settings.traccar_api_token_secret, "week-old-token")
        expired = Runtime(settings, firestore_client=runtime.firestore_client)
        car = Device(id="car-1", source=Source.SMARTCAR, name="Car", traccar_unique_id="car-1")

        waiting = make_pipeline(expired, osmand, clock).run(
            car, fixed(positions(clock, 10, device_id="car-1"))
        )
        assert (waiting.result.pushed, waiting.result.outbox) == (0, 1)
        assert "expire" in (waiting.locations[0].message or "")

        basic = make_settings(tmp_path, traccar_api_url=api.url, traccar_api_auth="basic")
        secrets.add_version(settings.traccar_api_token_secret, "bridge@example.com:pw:bridge")
        clock.advance(3600)
        renewed = Runtime(basic, firestore_client=runtime.firestore_client)
        delivered = make_pipeline(renewed, osmand, clock).run(car, fixed([]), force=True)

        assert (delivered.result.pushed, delivered.result.outbox) == (1, 0)
        assert api.record("car-1")["category"] == "car"
    assert [p.unique_id for p in osmand.positions] == ["car-1"]


def test_reads_per_run_do_not_grow_with_the_stored_history(
    emulator: object, firestore_client: object, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    counts = Counts()
    runtime = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url),
        firestore_client=CountingClient(counts, project=firestore_client.project),  # type: ignore[attr-defined]
    )
    runtime.store.devices.put(DEVICE)
    pipeline = make_pipeline(runtime, osmand, clock)
    costs = []
    now = int(clock.now.timestamp())
    for history in (10, DELIVERED_CAP):
        delivered = {f"{i:032x}": now - 10_000 + i % 5_000 for i in range(history)}
        runtime.firestore_client.collection("device_state").document("abc123").set(
            DeviceState(id="abc123", delivered=delivered).model_dump()
        )
        new = positions(clock, history % 97 + 1, history % 89 + 2)
        counts.reset()
        pipeline.run(DEVICE, fixed(new))
        costs.append((counts.reads, counts.writes))

    assert costs[0] == costs[1]
    reads, writes = costs[0]
    assert reads <= 3
    assert writes == len(new) + 2


def test_a_sweep_with_nothing_handed_off_costs_one_read_whatever_the_devices(
    emulator: object, firestore_client: object, osmand: OsmAndServer, tmp_path: Path
) -> None:
    """The sweep job runs every few minutes (issue 16): idle, it is one query answering
    nothing (billed as one read), however many devices have a state."""
    counts = Counts()
    runtime = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url),
        firestore_client=CountingClient(counts, project=firestore_client.project),  # type: ignore[attr-defined]
    )
    states = runtime.firestore_client.collection("device_state")
    for number in range(30):
        states.document(f"device-{number}").set(DeviceState(id=f"device-{number}").model_dump())
    sync = runtime.sync
    runtime.schema  # noqa: B018 - an instance's first request checks the schema, once
    counts.reset()

    assert sweep(sync) == []

    assert (counts.reads, counts.writes) == (1, 0)


def test_a_failed_fetch_releases_the_lease(
    pipeline: Pipeline, osmand: OsmAndServer, clock: Clock
) -> None:
    def broken() -> list[Location]:
        raise ConnectionError("vendor down")

    with pytest.raises(ConnectionError):
        pipeline.run(DEVICE, broken)

    assert pipeline.run(DEVICE, fixed(positions(clock, 5))).result.pushed == 1


def test_a_lease_left_by_a_crashed_run_expires(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    runtime.store.delivery.acquire("abc123", "crashed", now=clock.now, until=clock.now)
    clock.advance(1)

    assert pipeline.run(DEVICE, fixed(positions(clock, 5))).result.pushed == 1


def test_a_run_overlapping_another_is_turned_away_and_nothing_is_pushed_twice(
    pipeline: Pipeline, osmand: OsmAndServer, clock: Clock
) -> None:
    batch = positions(clock, 20, 10)
    inside, release = threading.Event(), threading.Event()

    def slow_fetch() -> list[Location]:
        inside.set()
        release.wait(10)
        return batch

    first = threading.Thread(target=pipeline.run, args=(DEVICE, slow_fetch))
    first.start()
    assert inside.wait(10)
    with pytest.raises(RetryLater) as busy:
        pipeline.run(DEVICE, fixed(batch))
    release.set()
    first.join(10)

    assert busy.value.retry_after > 0
    assert arrived(osmand) == [loc.timestamp for loc in batch]


def test_every_interleaving_of_two_runs_taking_the_lease_pushes_once(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    store: Store = runtime.store
    pipeline = make_pipeline(runtime, osmand, clock)
    calls = iter(range(1_000))
    lock = threading.Lock()
    outcomes: list[str] = []
    for scenario in range(6):
        osmand.add_known_id(f"race-{scenario}")

    def one_run() -> None:
        with lock:
            scenario = next(calls) // 2  # both runs of one scenario share a device
        device_id = f"race-{scenario}"
        device = Device(id=device_id, source=Source.TLINK, traccar_unique_id=device_id)
        store.devices.put(device)
        try:
            pushed = pipeline.run(device, fixed(positions(clock, 7, device_id=device_id)))
            outcomes.append(f"pushed {pushed.result.pushed}")
        except RetryLater:
            outcomes.append("busy")

    scenarios = orchestrate.orchestrate(one_run, one_run, name="lease")

    assert scenarios == (2, 2)
    per_device: dict[str, int] = {}
    for position in osmand.positions:
        per_device[position.unique_id] = per_device.get(position.unique_id, 0) + 1
    assert len(per_device) == 6  # every ordering of the two runs' two turns
    assert set(per_device.values()) == {1}
    assert "busy" in outcomes  # some interleavings really did race


def test_sync_device_drains_the_outbox_even_without_a_source(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    runtime_osmand = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url),
        firestore_client=runtime.firestore_client,
    )
    runtime_osmand.store.devices.put(DEVICE)
    osmand.respond_with(503)
    runtime_osmand.pipeline.run(DEVICE, fixed(positions(clock, 10)))
    osmand.reset()

    report = runtime_osmand.sync.sync_device("abc123", force=True)

    assert report.result.pushed == 1 and len(osmand.positions) == 1


def fail_runs(pipeline: Pipeline, osmand: OsmAndServer, clock: Clock, runs: int) -> None:
    for _ in range(runs):
        osmand.respond_with(503)
        clock.advance(3600)  # past any backoff
        pipeline.run(DEVICE, fixed([]))
    osmand.reset()


def test_a_position_refused_again_and_again_while_traccar_takes_the_next_is_parked(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    poison, good = positions(clock, 200, 100)
    osmand.respond_with(503)
    pipeline.run(DEVICE, fixed([poison, good]))
    fail_runs(pipeline, osmand, clock, PARK_AFTER_ATTEMPTS - 2)
    assert runtime.store.delivery.outbox("abc123")[0].attempts == PARK_AFTER_ATTEMPTS - 1

    osmand.respond_with(503, times=1)  # Traccar refuses the old one only
    clock.advance(3600)
    report = pipeline.run(DEVICE, fixed([]))

    assert arrived(osmand) == [good.timestamp]
    assert report.result.outbox == 1
    [parked] = runtime.store.delivery.outbox("abc123")
    assert parked.location == poison and parked.parked
    state = runtime.store.delivery.state("abc123")
    assert (state.outbox_count, state.parked_count, state.retry_at) == (0, 1, None)

    # Later positions are no longer held back, and the parked one is left alone...
    later = positions(clock, 10)
    assert pipeline.run(DEVICE, fixed(later)).result.pushed == 1
    assert arrived(osmand) == [good.timestamp, later[0].timestamp]
    # ...until a manual sync retries it.
    retried = pipeline.run(DEVICE, fixed([]), force=True)
    assert retried.result.pushed == 1 and retried.result.outbox == 0
    assert runtime.store.delivery.state("abc123").parked_count == 0


def test_while_traccar_is_down_nothing_is_parked(
    pipeline: Pipeline, runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    batch = positions(clock, 200, 100)
    osmand.respond_with(503)
    pipeline.run(DEVICE, fixed(batch))
    fail_runs(pipeline, osmand, clock, PARK_AFTER_ATTEMPTS + 2)

    outbox = runtime.store.delivery.outbox("abc123")
    assert [entry.parked for entry in outbox] == [False, False]
    assert outbox[0].attempts == PARK_AFTER_ATTEMPTS + 3
    assert osmand.positions == []


class VendorDown:
    """A source whose vendor is unreachable (a TLINK or Smartcar outage, say)."""

    source = Source.TLINK

    def fetch(self, device: Device) -> list[Location]:
        raise BridgeError(f"vendor unreachable for {device.id}")


def test_a_failing_source_does_not_hold_back_what_waits_for_traccar(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, tmp_path: Path
) -> None:
    vendor_down = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url),
        firestore_client=runtime.firestore_client,
        sources={Source.TLINK: VendorDown()},
    )
    device = Device(id="tl-1", source=Source.TLINK, traccar_unique_id="tl-1")
    vendor_down.store.devices.put(device)
    osmand.add_known_id("tl-1")
    osmand.respond_with(503)
    vendor_down.pipeline.run(device, fixed(positions(clock, 10, device_id="tl-1")))
    osmand.reset()

    with pytest.raises(BridgeError, match="vendor unreachable"):
        vendor_down.sync.sync_device("tl-1", force=True)

    assert [p.unique_id for p in osmand.positions] == ["tl-1"]
    assert vendor_down.store.delivery.state("tl-1").outbox_count == 0
