"""A webhook delivery's one read and one commit meeting lost replies, races and failures.

A delivery reads its claim, its documents and the device's delivery state in one round trip,
then writes claim, records and lease in one commit before the push, and the run's outcome in
a second (`shared/sources/*/webhook.py`). Here that commit loses its reply, another writer gets
in between the read and the commit (`faults.before`), or it fails for good: the delivery still
becomes exactly one position, no other writer's change is lost, and a delivery that failed
leaves no claim of its own behind (the vendor's retry is processed) and never removes another's.

A process that dies between the two commits (killed, out of memory, timed out) leaves its claim
pending: the vendor's retry, while the claim's lease runs, takes the claim over and hands the
position off to the device's outbox (answered at once), and the sweep delivers it once the lease
has ended. The death is simulated at the push: the push raises
`ProcessDied` (a BaseException: no handler of the code treats it as an error it may answer)
and, at that moment, the dying process's Firestore client is cut (`faults.cut()`), so whatever
cleanup its code still attempts never reaches the database, as after a SIGKILL.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
import requests
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import DeviceState, utc_now
from shared.pipeline import LEASE_DURATION, WEBHOOK_LEASE_DURATION, Pipeline
from shared.runtime import Runtime
from shared.sources.tlink import webhook as tlink
from shared.store import Lease
from shared.store.smartcar import SmartcarStore, VehicleRecord, vehicle_device
from shared.sync import Sync
from shared.traccar import OsmAndClient
from tests.conftest import PROJECT, Clock, make_settings, sweep
from tests.fakes.osmand import OsmAndServer
from tests.resilience.faults import FaultyClient

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN = "commits-smartcar-token-9b3e"
SMARTCAR = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
VEHICLE = SMARTCAR["vehicleId"]
TLINK = json.loads((DATA / "tlink_push_location.json").read_text())
UNLOCATED_PUSH = (DATA / "tlink_push.json").read_bytes()
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the zone of TLINK's naive times (default setting)
# Each delivery is measured ten minutes ago plus its number in seconds: later than the one
# before it however fast they go, so each is a position of its own.
SEQUENCE = itertools.count()
MEASURED_AGO = 600
TLINK_DEVICE = "tlink-2864"
DEVICE_IDS = {"smartcar": VEHICLE, "tlink": TLINK_DEVICE}
UNIQUE_IDS = {"smartcar": f"smartcar-{VEHICLE}", "tlink": TLINK_DEVICE}
ONE_READ_TWO_COMMITS = ["BatchGetDocuments", "Commit", "Commit"]
# A device's first delivery also counts the devices its receiver recorded (one aggregation
# read: RECEIVER_MAX_DEVICES, issue 13); every later one costs ONE_READ_TWO_COMMITS.
CAP_COUNT = "RunAggregationQuery"


@pytest.fixture
def client(emulator: Emulator, firestore_client: firestore.Client) -> FaultyClient:
    return FaultyClient(project=PROJECT)


def make_runtime(client: firestore.Client, osmand: OsmAndServer, tmp_path: Path) -> Runtime:
    settings = make_settings(
        tmp_path, traccar_server_url=osmand.url, tlink_allow_unauthenticated=True
    )
    runtime = Runtime(settings, firestore_client=client)
    runtime.secrets.add_version(settings.smartcar_management_token_secret, TOKEN)
    # The data migrated (issue 20) before the deliveries the tests count and fail: a deployed
    # instance checks the schema once, on its first request.
    # Its reads and writes are not the deliveries' own: left out of the calls counted.
    calls = client.faults.calls if isinstance(client, FaultyClient) else []
    made = len(calls)
    runtime.schema  # noqa: B018
    del calls[made:]
    return runtime


@pytest.fixture
def runtime(client: FaultyClient, osmand: OsmAndServer, tmp_path: Path) -> Runtime:
    osmand.add_known_id(f"smartcar-{VEHICLE}")
    osmand.add_known_id(TLINK_DEVICE)
    return make_runtime(client, osmand, tmp_path)


@pytest.fixture
def other(firestore_client: firestore.Client, osmand: OsmAndServer, tmp_path: Path) -> Runtime:
    """Another instance of the `webhooks` function (its own client): the concurrent writer."""
    return make_runtime(firestore_client, osmand, tmp_path)


def smartcar_event(*, located: bool = True) -> bytes:
    """A new delivery of the sample: its own eventId, measured some minutes ago."""
    event = copy.deepcopy(SMARTCAR)
    event["eventId"] = str(uuid.uuid4())
    measured = (int(time.time()) - MEASURED_AGO + next(SEQUENCE)) * 1000
    for signal in event["data"]["signals"]:
        signal["meta"] = {"oemUpdatedAt": measured, "fetchedAt": measured + 2000}
    event["meta"]["deliveredAt"] = measured + 3000
    if not located:
        event["data"]["signals"] = event["data"]["signals"][1:]
    return json.dumps(event).encode()


def deliver(
    runtime: Runtime, vendor: str, raw: bytes, *, sleep: Any = time.sleep
) -> dict[str, Any]:
    """One delivery through the receiver; its answer's body. `sleep`: how a receiver waits
    for a busy device."""
    if vendor == "smartcar":
        signature = hmac.new(TOKEN.encode(), raw, hashlib.sha256).hexdigest()
        return runtime.smartcar_stack(sleep=sleep).webhook.receive(raw, signature).body
    return runtime.tlink.webhook.receive(
        raw, signature_header=None, path_token=None, sleep=sleep
    ).body()


def tlink_push() -> bytes:
    """The located sample push, sent some minutes ago."""
    body = copy.deepcopy(TLINK)
    moment = datetime.now(SHANGHAI) - timedelta(seconds=MEASURED_AGO - next(SEQUENCE))
    body["time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in body["sensorsDates"]:
        sensor["times"] = moment.strftime("%H:%M:%S")
    return json.dumps(body).encode()


def new_delivery(vendor: str) -> bytes:
    return smartcar_event() if vendor == "smartcar" else tlink_push()


def pushed(answer: dict[str, Any]) -> bool:
    return answer.get("pushed") == 1 or answer.get("location") == "synced"


def queued(answer: dict[str, Any]) -> bool:
    """Handed off to the busy device's outbox (ADR 0002)."""
    return answer.get("status") == "queued" or answer.get("location") == "queued"


def claims(client: firestore.Client) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() for s in client.collection("webhook_events").stream()}


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_new_delivery_costs_one_read_and_two_commits_a_repeat_one_read(
    vendor: str, runtime: Runtime, client: FaultyClient, osmand: OsmAndServer
) -> None:
    first_of_device = deliver(runtime, vendor, new_delivery(vendor))
    assert client.faults.calls == ["BatchGetDocuments", CAP_COUNT, "Commit", "Commit"]
    del client.faults.calls[:]
    raw = new_delivery(vendor)

    first = deliver(runtime, vendor, raw)
    new = list(client.faults.calls)
    del client.faults.calls[:]
    again = deliver(runtime, vendor, raw)

    assert pushed(first_of_device) and pushed(first) and again["status"] == "duplicate"
    assert new == ONE_READ_TWO_COMMITS  # read; claim, records and lease; the run's outcome
    assert client.faults.calls == ["BatchGetDocuments"]
    assert len(osmand.positions) == 2


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_lost_reply_to_the_claim_and_lease_commit_still_pushes_once(
    vendor: str, runtime: Runtime, client: FaultyClient, osmand: OsmAndServer
) -> None:
    raw = new_delivery(vendor)
    # Firestore applies claim, records and lease; the reply is lost and the client retries,
    # which finds its own claim and lease written.
    client.faults.fail("Commit", lose_reply=True)

    answer = deliver(runtime, vendor, raw)

    assert client.faults.failed == ["Commit"]
    assert pushed(answer)
    assert deliver(runtime, vendor, raw)["status"] == "duplicate"
    assert len(osmand.positions) == 1
    state = runtime.store.delivery.state(DEVICE_IDS[vendor])
    assert state.lease_owner is None and len(state.delivered) == 1


@pytest.mark.parametrize(
    ("vendor", "raw", "status"),
    [
        ("smartcar", smartcar_event(located=False), "stored"),
        ("tlink", UNLOCATED_PUSH, "ok"),
    ],
)
def test_a_lost_reply_to_the_commit_of_a_delivery_without_position_is_no_repeat(
    vendor: str,
    raw: bytes,
    status: str,
    runtime: Runtime,
    client: FaultyClient,
    firestore_client: firestore.Client,
) -> None:
    client.faults.fail("Commit", lose_reply=True)

    answer = deliver(runtime, vendor, raw)

    assert client.faults.failed == ["Commit"]
    assert answer["status"] == status  # its own claim found: done, not a "duplicate"
    assert len(claims(firestore_client)) == 1
    assert deliver(runtime, vendor, raw)["status"] == "duplicate"


def test_an_operators_mapping_written_between_read_and_commit_is_kept_and_used(
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    deliver(runtime, "smartcar", smartcar_event())  # the vehicle and its device exist
    osmand.add_known_id("family-car")
    device = other.store.devices.get(VEHICLE)
    assert device is not None
    edited = device.model_copy(update={"traccar_unique_id": "family-car", "name": "Family car"})
    client.faults.before("Commit", lambda: other.store.devices.put(edited))

    answer = deliver(runtime, "smartcar", smartcar_event())

    assert answer["pushed"] == 1
    # The commit found the device changed since its read: read again, then written.
    assert client.faults.calls.count("BatchGetDocuments") >= 2
    assert [p.unique_id for p in osmand.positions] == [f"smartcar-{VEHICLE}", "family-car"]
    stored = runtime.store.devices.get(VEHICLE)
    assert stored is not None
    assert (stored.traccar_unique_id, stored.name) == ("family-car", "Family car")
    vehicle = firestore_client.document(f"smartcar_vehicles/{VEHICLE}").get().to_dict()
    assert vehicle["traccar_unique_id"] == "family-car"


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_copy_committed_between_read_and_commit_makes_this_one_a_duplicate(
    vendor: str, runtime: Runtime, client: FaultyClient, other: Runtime, osmand: OsmAndServer
) -> None:
    raw = new_delivery(vendor)
    copies: list[dict[str, Any]] = []
    client.faults.before("Commit", lambda: copies.append(deliver(other, vendor, raw)))

    answer = deliver(runtime, vendor, raw)

    assert pushed(copies[0])
    assert answer["status"] == "duplicate"
    assert len(osmand.positions) == 1


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_sync_run_taking_the_lease_between_read_and_commit_hands_the_delivery_off(
    vendor: str,
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    raw = new_delivery(vendor)
    device_id = DEVICE_IDS[vendor]
    now = utc_now()
    delivery = other.store.delivery
    runs: list[tuple[DeviceState, Lease]] = []

    def sync_run_starts() -> None:
        until = now + timedelta(minutes=10)
        runs.append(delivery.acquire(device_id, "sync-run", now=now, until=until))

    def sync_run_ends(_: float = 0) -> None:
        state, lease = runs.pop()
        delivery.release(lease, state)

    client.faults.before("Commit", sync_run_starts)

    # The commit found the state changed (nothing written), read again: the device is busy,
    # so the delivery is stored in its outbox with its claim done, and answered at once.
    answer = deliver(runtime, vendor, raw)

    assert queued(answer) and osmand.positions == []
    assert [claim["status"] for claim in claims(firestore_client).values()] == ["done"]
    assert deliver(runtime, vendor, raw)["status"] == "duplicate"
    sync_run_ends()  # a run that ends without delivering it (it failed before its push)
    assert sweep(runtime.sync) == [device_id]
    assert len(osmand.positions) == 1
    assert sweep(runtime.sync) == []
    assert len(osmand.positions) == 1


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_failing_copy_never_deletes_the_claim_of_the_copy_that_won(
    vendor: str,
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    raw = new_delivery(vendor)
    client.faults.before("Commit", lambda: deliver(other, vendor, raw))  # the winner
    client.faults.fail("Commit", code=grpc.StatusCode.INTERNAL)  # this copy's commit fails

    with pytest.raises((GoogleAPICallError, tlink.Unavailable)):
        deliver(runtime, vendor, raw)

    [claim] = claims(firestore_client).values()  # the winner's, kept
    assert deliver(runtime, vendor, raw)["status"] == "duplicate"
    assert deliver(other, vendor, raw)["status"] == "duplicate"
    assert claim["owner"] and len(osmand.positions) == 1


@pytest.mark.parametrize("smaller_writes_failing", [0, 1])
@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_final_commit_failing_for_good_neither_locks_the_device_nor_pushes_twice(
    vendor: str,
    smaller_writes_failing: int,
    runtime: Runtime,
    client: FaultyClient,
    osmand: OsmAndServer,
) -> None:
    raw = new_delivery(vendor)
    # Claim, records and lease are committed; after the push, the run's outcome is not
    # (issue 12), nor the first `smaller_writes_failing` smaller writes.
    client.faults.fail(
        "Commit", skip=1, times=1 + smaller_writes_failing, code=grpc.StatusCode.INTERNAL
    )

    answer = deliver(runtime, vendor, raw)

    assert pushed(answer)
    state = runtime.store.delivery.state(DEVICE_IDS[vendor])
    assert state.lease_owner is None and len(state.delivered) == 1  # released, recorded
    assert state.last_result is not None and "smaller write" in (state.last_result.error or "")
    # The vendor's retry of the same delivery pushes nothing again: its claim was marked done
    # with the smaller write, or, left pending by the bookkeeping-only one, is taken over and
    # the recorded fingerprint decides.
    retry = deliver(runtime, vendor, raw)
    if smaller_writes_failing == 0:
        assert retry["status"] == "duplicate"
    assert not pushed(retry)
    assert len(osmand.positions) == 1
    # The device's next delivery is served at once, not told the device is busy.
    assert pushed(deliver(runtime, vendor, new_delivery(vendor)))
    assert len(osmand.positions) == 2


def test_a_connect_writing_the_vehicle_between_read_and_commit_keeps_both_changes(
    runtime: Runtime, client: FaultyClient, other: Runtime, firestore_client: firestore.Client
) -> None:
    deliver(runtime, "smartcar", smartcar_event())
    now = utc_now()

    def connect() -> None:
        def connected(record: VehicleRecord) -> VehicleRecord:
            return record.model_copy(update={"connected_at": now})

        new_device = vehicle_device(VEHICLE, "TESLA", "Model 3", 2020, now)
        SmartcarStore(other.firestore_client).record(
            new_device=new_device, update=connected, now=now
        )

    client.faults.before("Commit", connect)
    raw = smartcar_event()
    answer = deliver(runtime, "smartcar", raw)

    assert answer["pushed"] == 1
    vehicle = VehicleRecord.model_validate(
        firestore_client.document(f"smartcar_vehicles/{VEHICLE}").get().to_dict()
    )
    assert vehicle.connected_at == now  # the Connect's change
    assert vehicle.last_event_id == json.loads(raw)["eventId"]  # and the delivery's


# --- A processing that dies between its two commits ---------------------------------------


class ProcessDied(BaseException):
    """The instance running a delivery is killed (OOM, scale-in, timeout)."""


class DyingSession(requests.Session):
    """The HTTP session of a process killed at its push: before the push is sent, or right
    after Traccar took it (`after_push`). Its Firestore client is cut at that moment."""

    def __init__(self, client: FaultyClient, *, after_push: bool) -> None:
        super().__init__()
        self._client = client
        self._after_push = after_push

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._after_push:
            super().request(*args, **kwargs)
        self._client.faults.cut()
        raise ProcessDied


def with_clock(runtime: Runtime, clock: Clock, session: requests.Session | None = None) -> Runtime:
    """`runtime` whose pipeline and sweep read `clock` (the lease's time; the sweep's query of
    due outboxes) and whose pipeline pushes through `session`."""
    settings = runtime.settings
    runtime.pipeline = Pipeline(  # type: ignore[misc]  # replaces the cached default
        delivery=runtime.store.delivery,
        osmand=OsmAndClient(session or runtime.http_session, str(settings.traccar_server_url)),
        traccar_api=runtime.traccar_api,
        retention=timedelta(days=settings.push_log_retention_days),
        clock=clock,
    )
    runtime.sync = Sync(  # type: ignore[misc]  # replaces the cached default
        devices=runtime.store.devices,
        delivery=runtime.store.delivery,
        pipeline=lambda: runtime.pipeline,
        sources=runtime.sources,
        trackers=runtime.trackers,
        max_future_skew=settings.max_future_skew,
        clock=clock,
    )
    return runtime


def no_wait(_: float) -> None:
    """A receiver's wait for a busy device, skipped (the clock stands still meanwhile)."""


def dies_in_its_push(
    vendor: str, raw: bytes, runtime: Runtime, client: FaultyClient, clock: Clock, *, after: bool
) -> None:
    """`runtime` (on `client`) takes `raw` and its process dies at the push."""
    with_clock(runtime, clock, DyingSession(client, after_push=after))
    # The dead process's code goes on only in this simulation, and reaches nothing: what
    # escapes is its death or the failure of the cleanup it still tried.
    with pytest.raises((ProcessDied, GoogleAPICallError)):
        deliver(runtime, vendor, raw)
    calls = [call for call in client.faults.calls if call != CAP_COUNT]  # a new device's count
    assert calls[:2] == ["BatchGetDocuments", "Commit"]  # claim and lease
    assert calls[2:] == client.faults.failed  # nothing after the death landed


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_delivery_whose_process_died_before_its_push_is_handed_off_and_swept_after_the_lease(
    vendor: str,
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    clock: Clock,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    raw = new_delivery(vendor)
    dies_in_its_push(vendor, raw, runtime, client, clock, after=False)
    [pending] = claims(firestore_client).values()  # claim, records and lease committed
    assert osmand.positions == []
    retry = with_clock(other, clock)

    clock.advance(30)  # the vendor retries while the dead processing's lease runs
    answer = deliver(retry, vendor, raw, sleep=no_wait)

    # Answered at once (no 429): the claim taken over and done, the position in the outbox.
    assert queued(answer) and osmand.positions == []
    [claim] = claims(firestore_client).values()
    assert (pending["status"], claim["status"]) == ("pending", "done")
    assert claim["owner"] != pending["owner"]  # taken over
    assert deliver(retry, vendor, raw)["status"] == "duplicate"
    assert sweep(retry.sync, now=clock.now) == []  # the dead processing's lease still runs
    # A webhook run's lease is a minute (issue 16: with the sweep every minute, a handed-off
    # delivery waits at most 2 minutes behind a holder that died), not a Google run's ten.
    clock.advance(WEBHOOK_LEASE_DURATION.total_seconds() - 30 - 1)
    assert sweep(retry.sync, now=clock.now) == []
    clock.advance(1)  # the lease has ended: the sweep delivers
    assert sweep(retry.sync, now=clock.now) == [DEVICE_IDS[vendor]]

    assert len(osmand.positions) == 1
    state = retry.store.delivery.state(DEVICE_IDS[vendor])
    assert state.lease_owner is None and len(state.delivered) == 1
    assert (state.outbox_count, state.handoff_since) == (0, None)
    assert deliver(retry, vendor, raw)["status"] == "duplicate"
    assert len(osmand.positions) == 1


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_delivery_whose_process_died_after_its_push_goes_out_again_at_least_once(
    vendor: str,
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    clock: Clock,
    osmand: OsmAndServer,
) -> None:
    raw = new_delivery(vendor)
    dies_in_its_push(vendor, raw, runtime, client, clock, after=True)
    assert len(osmand.positions) == 1  # Traccar has it; nothing recorded it
    retry = with_clock(other, clock)
    clock.advance(LEASE_DURATION.total_seconds() + 1)

    answer = deliver(retry, vendor, raw)

    # The crash case is at least once (docs/decisions/0002-delivery-state.md): the same
    # position twice, Traccar keeps both; never lost.
    assert pushed(answer)
    assert [p.unique_id for p in osmand.positions] == [UNIQUE_IDS[vendor]] * 2
    assert deliver(retry, vendor, raw)["status"] == "duplicate"


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_two_retries_taking_over_a_dead_processings_claim_push_once(
    vendor: str,
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    clock: Clock,
    osmand: OsmAndServer,
    tmp_path: Path,
) -> None:
    raw = new_delivery(vendor)
    dies_in_its_push(vendor, raw, runtime, client, clock, after=False)
    clock.advance(LEASE_DURATION.total_seconds() + 1)
    second_client = FaultyClient(project=PROJECT)
    second = with_clock(make_runtime(second_client, osmand, tmp_path), clock)
    first = with_clock(other, clock)
    # Both read the dead processing's pending claim; the first commits its takeover (and
    # delivers) between the second's read and its commit.
    answers: list[dict[str, Any]] = []
    second_client.faults.before("Commit", lambda: answers.append(deliver(first, vendor, raw)))

    answers.append(deliver(second, vendor, raw))

    assert pushed(answers[0])
    assert answers[1]["status"] == "duplicate"
    # Its takeover commit failed on the claim's version, wrote nothing; read again: done.
    assert second_client.faults.calls.count("Commit") == 1
    assert len(osmand.positions) == 1


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_a_done_claim_and_one_from_before_claims_had_a_status_are_repeats(
    vendor: str, runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    raw = new_delivery(vendor)
    assert pushed(deliver(runtime, vendor, raw))
    [(claim_id, claim)] = claims(firestore_client).items()
    assert claim["status"] == "done"  # marked by the run's final commit
    assert deliver(runtime, vendor, raw)["status"] == "duplicate"
    claim_ref = firestore_client.collection("webhook_events").document(claim_id)
    claim_ref.update({"status": firestore.DELETE_FIELD})  # as the code before it wrote it

    assert deliver(runtime, vendor, raw)["status"] == "duplicate"
    assert len(osmand.positions) == 1
