"""The sweep retries every outbox whose backoff has ended, on the emulator and the OsmAnd fake.

A webhook-only device (a TLINK device without pull credentials, a Smartcar vehicle) has no run
of its own: before, a position Traccar refused waited for the device's next webhook (days, for
a parked car), and `traccar_down` stayed open until then. The sweep (`refresh_devices
?sweep=only`, every minute) now runs the pipeline of each device whose `retry_at` has passed,
with nothing fetched: its outbox goes out oldest first, once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import functions_framework
import pytest
import requests
from flask.testing import FlaskClient
from google.cloud import firestore
from google.cloud.firestore import FieldFilter

from shared.config import get_settings
from shared.errors import BridgeError
from shared.models import REFRESH_DEVICES_LIFETIME, Device, DeviceState, Location, Source
from shared.pipeline import BACKOFF_BASE, PULL_LEASE_DURATION, Pipeline
from shared.runtime import Runtime, get_runtime
from shared.store import DeliveryRepository, Store
from shared.sync import SWEEP_MARGIN, Sync
from shared.traccar import OsmAndClient
from tests.conftest import PROJECT, Clock, make_settings, sweep
from tests.fakes.firestore_counter import CountingClient, Counts
from tests.fakes.osmand import HttpRequest, HttpResponse, OsmAndServer
from tests.integration.test_tlink_webhook import (  # noqa: F401 - fixtures
    JSON,
    ROOT,
    env,
    pushed_at,
    start,
)

TLINK_DEVICE = "tlink-2864"
DEVICE = Device(id="abc123", source=Source.GOOGLE, name="Keys", traccar_unique_id="abc123")


@pytest.fixture
def tlink(start: Callable[..., FlaskClient]) -> FlaskClient:  # noqa: F811
    """The webhooks function taking TLINK pushes (test_tlink_webhook's setup)."""
    return start()


@pytest.fixture
def stored(firestore_client: firestore.Client) -> Store:
    return Store(firestore_client)


def clocked_sync(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Sync:
    """The runtime's sync on a settable clock (the sweep's "a minute later")."""
    pipeline = Pipeline(
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(requests.Session(), osmand.url),
        traccar_api=runtime.traccar_api,
        retention=timedelta(days=runtime.settings.push_log_retention_days),
        clock=clock,
    )
    return Sync(
        devices=runtime.store.devices,
        delivery=runtime.store.delivery,
        pipeline=lambda: pipeline,
        sources={},
        trackers={},
        max_future_skew=runtime.settings.max_future_skew,
        clock=clock,
    )


def refresh_devices() -> FlaskClient:
    get_settings.cache_clear()
    get_runtime.cache_clear()
    app = functions_framework.create_app(
        "refresh_devices", str(ROOT / "functions/refresh_devices/main.py")
    )
    return app.test_client()


def arrived(osmand: OsmAndServer) -> list[int]:
    return [int(p.fix_time.timestamp()) for p in osmand.positions]


def refused_then_waiting(pipeline: Pipeline, clock: Clock, *ages: int) -> list[Location]:
    """Positions `ages` seconds old that Traccar refused (503): they wait in the outbox."""
    now = int(clock.now.timestamp())
    batch = [Location(id="abc123", lat=48.85, lon=2.35 + age / 1e4, timestamp=now - age)
             for age in ages]  # fmt: skip
    assert pipeline.run(DEVICE, lambda: batch).result.outbox == len(batch)
    return batch


def test_a_webhook_only_devices_refused_positions_go_out_with_the_sweep_oldest_first_once(
    tlink: FlaskClient, stored: Store, osmand: OsmAndServer
) -> None:
    now = datetime.now(UTC)
    newer, older = now - timedelta(minutes=10), now - timedelta(minutes=20)
    osmand.respond_with(503)  # Traccar down

    first = tlink.post("/tlink", data=pushed_at(newer), headers=JSON).get_json()
    second = tlink.post("/tlink", data=pushed_at(older), headers=JSON).get_json()

    assert (first["location"], second["location"]) == ("error", "error")
    assert len(stored.delivery.outbox(TLINK_DEVICE)) == 2
    osmand.reset()  # Traccar is back
    # Still inside the backoff: the sweep job (the function) leaves the device alone.
    assert refresh_devices().post("/?sweep=only").get_json() == {"swept": []}
    assert osmand.positions == []

    after_backoff = Clock(now + 2 * BACKOFF_BASE + timedelta(seconds=30))  # two refusals: 2 min
    later = clocked_sync(get_runtime(), osmand, after_backoff)
    assert sweep(later, now=after_backoff.now) == [TLINK_DEVICE]

    assert arrived(osmand) == [int(older.timestamp()), int(newer.timestamp())]
    assert stored.delivery.outbox(TLINK_DEVICE) == []
    state = stored.delivery.state(TLINK_DEVICE)
    assert (state.outbox_count, state.retry_at, state.failures) == (0, None, 0)
    assert sweep(later, now=after_backoff.now) == [] and len(osmand.positions) == 2


def test_the_sweep_job_delivers_a_due_outbox(
    runtime: Runtime, osmand: OsmAndServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through `refresh_devices?sweep=only`, as Cloud Scheduler calls it every minute."""
    runtime.store.devices.put(DEVICE)
    past = Clock(datetime.now(UTC) - timedelta(minutes=5))
    osmand.respond_with(503)
    batch = refused_then_waiting(clocked_sync(runtime, osmand, past).pipeline, past, 30, 90)
    osmand.reset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCP_PROJECT", PROJECT)  # the emulator's address is set already
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("TRACCAR_SERVER_URL", osmand.url)
    sweep = refresh_devices()

    assert sweep.post("/?sweep=only").get_json() == {"swept": ["abc123"]}
    assert arrived(osmand) == sorted(location.timestamp for location in batch)
    assert sweep.post("/?sweep=only").get_json() == {"swept": []}
    assert len(osmand.positions) == 2


def test_a_device_traccar_still_refuses_backs_off_between_sweeps(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    runtime.store.devices.put(DEVICE)
    sync = clocked_sync(runtime, osmand, clock)
    osmand.respond_with(503)
    refused_then_waiting(sync.pipeline, clock, 30)
    clock.advance(BACKOFF_BASE.total_seconds())

    # Tried: refused again, two minutes of backoff.
    assert sweep(sync, now=clock.now) == ["abc123"]
    tried = len(osmand.requests)
    clock.advance(BACKOFF_BASE.total_seconds())
    assert sweep(sync, now=clock.now) == [] and len(osmand.requests) == tried
    osmand.reset()
    clock.advance(BACKOFF_BASE.total_seconds())
    assert sweep(sync, now=clock.now) == ["abc123"] and len(osmand.positions) == 1


def test_a_sweep_with_nothing_due_is_one_query_answering_nothing(
    emulator: object, firestore_client: object, osmand: OsmAndServer, tmp_path: Path
) -> None:
    """Idle, and with devices backing off or already delivered: one read, no write."""
    counts = Counts()
    runtime = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url),
        firestore_client=CountingClient(counts, project=firestore_client.project),  # type: ignore[attr-defined]
    )
    now = datetime.now(UTC)
    states = runtime.firestore_client.collection("device_state")
    for number in range(30):
        states.document(f"device-{number}").set(DeviceState(id=f"device-{number}").model_dump())
    backing_off = DeviceState(id="waiting", outbox_count=1, failures=3, retry_at=now + timedelta(
        minutes=4))  # fmt: skip
    states.document("waiting").set(backing_off.model_dump())
    runtime.store.devices.put(DEVICE)
    osmand.respond_with(503)
    clock = Clock(now - timedelta(minutes=5))
    sync = clocked_sync(runtime, osmand, clock)
    refused_then_waiting(sync.pipeline, clock, 30)
    osmand.reset()
    clock.now = now
    assert sweep(sync, now=clock.now) == ["abc123"]
    runtime.schema  # noqa: B018 - an instance's first request checks the schema, once
    counts.reset()

    assert sweep(runtime.sync) == []

    assert (counts.reads, counts.writes) == (1, 0)


def two_due(runtime: Runtime, osmand: OsmAndServer, clock: Clock) -> Sync:
    """abc123 (Google) and car-1 (Smartcar), each with a position Traccar refused, abc123 due
    first; the backoff has ended and Traccar is back."""
    other = Device(id="car-1", source=Source.SMARTCAR, traccar_unique_id="car-1")
    osmand.add_known_id("car-1")
    for device in (DEVICE, other):
        runtime.store.devices.put(device)
    sync = clocked_sync(runtime, osmand, clock)
    osmand.respond_with(503)
    refused_then_waiting(sync.pipeline, clock, 30)
    clock.advance(10)
    waiting = Location(id="car-1", lat=1.0, lon=2.0, timestamp=int(clock.now.timestamp()))
    sync.pipeline.run(other, lambda: [waiting])
    osmand.reset()
    clock.advance(BACKOFF_BASE.total_seconds() + 10)
    return sync


def test_the_longest_due_goes_first_and_the_budget_bounds_a_sweep(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    sync = two_due(runtime, osmand, clock)

    # One device, then no time.
    assert sweep(sync, now=clock.now, budget=timedelta(0)) == ["abc123"]
    assert sweep(sync, now=clock.now, budget=timedelta(0)) == ["car-1"]
    assert [p.unique_id for p in osmand.positions] == ["abc123", "car-1"]


def spoil_outbox(firestore_client: firestore.Client, device_id: str) -> None:
    """The device's outbox entries become unreadable (a field written by a newer release, a
    bad hand edit): reading them fails validation, not with an error of ours."""
    outbox = firestore_client.collection("outbox")
    for snapshot in outbox.where(filter=FieldFilter("device_id", "==", device_id)).stream():
        snapshot.reference.update({"location.lat": "not a number"})


def test_a_device_whose_run_fails_is_logged_and_passed_over_and_goes_behind_the_others(
    runtime: Runtime,
    osmand: OsmAndServer,
    clock: Clock,
    firestore_client: firestore.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, the first due device's `ValidationError` ended every sweep: car-1, due behind
    it, was never delivered, minute after minute."""
    sync = two_due(runtime, osmand, clock)
    spoil_outbox(firestore_client, "abc123")

    assert sweep(sync, now=clock.now) == ["car-1"]

    assert [p.unique_id for p in osmand.positions] == ["car-1"]
    [failed] = [r for r in caplog.records if r.message.startswith("sweep: a device's run failed")]
    assert failed.levelname == "ERROR" and failed.exc_info is not None
    assert failed.__dict__["device_id"] == "abc123"
    state = runtime.store.delivery.state("abc123")
    # Behind the others: due again after the backoff of one more failure (2 minutes).
    assert (state.failures, state.retry_at) == (2, clock.now + 2 * BACKOFF_BASE)
    assert state.lease_owner is None and state.outbox_count == 1
    assert state.last_error is not None and "ValidationError" in state.last_error
    assert sweep(sync, now=clock.now) == []  # not tried again each minute
    clock.advance(2 * BACKOFF_BASE.total_seconds())
    assert sweep(sync, now=clock.now) == []  # tried again: fails again, backs off further
    assert runtime.store.delivery.state("abc123").retry_at == clock.now + 4 * BACKOFF_BASE


def test_an_unreadable_due_state_does_not_stop_the_sweep(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock, firestore_client: firestore.Client
) -> None:
    """A state document the model refuses, due first: listed by its id alone, its run fails
    alone and is put back; the devices behind it are swept."""
    sync = two_due(runtime, osmand, clock)
    firestore_client.collection("device_state").document("abc123").update({"outbox_count": "many"})

    assert sweep(sync, now=clock.now) == ["car-1"]

    assert [p.unique_id for p in osmand.positions] == ["car-1"]
    raw = firestore_client.collection("device_state").document("abc123").get().to_dict() or {}
    assert raw["retry_at"] > clock.now  # behind the others


def test_the_sweep_job_answers_and_delivers_the_others_when_a_device_fails(
    runtime: Runtime,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Through `refresh_devices?sweep=only`: before, it answered 500 every minute."""
    two_due(runtime, osmand, Clock(datetime.now(UTC) - timedelta(minutes=5)))
    spoil_outbox(firestore_client, "abc123")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCP_PROJECT", PROJECT)  # the emulator's address is set already
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("TRACCAR_SERVER_URL", osmand.url)

    answer = refresh_devices().post("/?sweep=only")

    assert (answer.status_code, answer.get_json()) == (200, {"swept": ["car-1"]})
    assert [p.unique_id for p in osmand.positions] == ["car-1"]


def test_a_sweep_starts_no_run_without_a_margin_before_its_functions_deadline(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    """Before, the first due device always ran, however little time the function had left:
    killed between its push and its commit, its position went again and its lease stayed."""
    sync = two_due(runtime, osmand, clock)
    short = clock.now + SWEEP_MARGIN - timedelta(seconds=1)

    assert sync.sweep_due_outboxes(deadline=short) == [] and osmand.positions == []
    enough = clock.now + SWEEP_MARGIN
    assert sync.sweep_due_outboxes(deadline=enough) == ["abc123", "car-1"]


class LeaseWatchingTraccar(OsmAndServer):
    """The OsmAnd fake noting, as each push arrives (the run waits for its answer), the lease
    of the device pushed as Firestore holds it."""

    def __init__(self, delivery: DeliveryRepository) -> None:
        super().__init__(known_ids=["abc123"])
        self._delivery = delivery
        self.leases: dict[str, datetime | None] = {}

    def handle(self, request: HttpRequest) -> HttpResponse:
        form = parse_qs(request.body.decode())  # a push is a form-encoded POST body
        device_id = form.get("id", [""])[0]
        self.leases[device_id] = self._delivery.state(device_id).lease_until
        return super().handle(request)


def test_a_sweep_run_holds_its_lease_until_after_its_functions_deadline(
    runtime: Runtime, clock: Clock
) -> None:
    """A Smartcar run swept 10 s into refresh_devices' 300 s held the 200 s lease of a pull:
    a live run could lose it to another, and both push the same position."""
    with LeaseWatchingTraccar(runtime.store.delivery) as traccar:
        sync = two_due(runtime, traccar, clock)
        deadline = clock.now + REFRESH_DEVICES_LIFETIME - timedelta(seconds=10)

        assert sync.sweep_due_outboxes(deadline=deadline) == ["abc123", "car-1"]

    lease_until = traccar.leases["car-1"]
    assert lease_until is not None and lease_until > deadline
    assert lease_until - clock.now > PULL_LEASE_DURATION


def test_a_busy_device_is_skipped_and_its_own_run_pushes_nothing_twice(
    runtime: Runtime, osmand: OsmAndServer, clock: Clock
) -> None:
    """A device with a sync service is swept too: its lease and fingerprints keep the sweep
    and its own runs from pushing a position twice."""
    runtime.store.devices.put(DEVICE)
    sync = clocked_sync(runtime, osmand, clock)
    osmand.respond_with(503)
    batch = refused_then_waiting(sync.pipeline, clock, 30)
    osmand.reset()
    clock.advance(BACKOFF_BASE.total_seconds())
    state, lease = runtime.store.delivery.acquire(
        "abc123", "its-own-run", now=clock.now, until=clock.now + timedelta(minutes=10)
    )

    # Busy: left to the lease holder.
    assert sweep(sync, now=clock.now) == [] and osmand.positions == []

    runtime.store.delivery.release(lease, state)
    assert sweep(sync, now=clock.now) == ["abc123"]
    # The device's own next run brings the same position again: delivered already.
    assert sync.pipeline.run(DEVICE, lambda: batch).result.pushed == 0
    assert len(osmand.positions) == 1


def test_an_explicit_retry_of_a_webhook_only_tlink_device_says_what_it_delivered(
    tlink: FlaskClient, stored: Store, osmand: OsmAndServer
) -> None:
    """`PUT /traccar/devices/<id>/locations` without pull credentials: the pull's 503 names
    the missing secret and what the outbox's retry delivered."""
    osmand.respond_with(503)
    tlink.post("/tlink", data=pushed_at(datetime.now(UTC)), headers=JSON)
    osmand.reset()

    with pytest.raises(BridgeError) as failed:
        get_runtime().sync.sync_device(TLINK_DEVICE, force=True)

    assert failed.value.status == 503
    assert "TLINK credentials" in failed.value.message
    assert "1 position(s) delivered, 0 still waiting" in failed.value.message
    assert len(osmand.positions) == 1 and stored.delivery.outbox(TLINK_DEVICE) == []
