"""Smartcar's Firestore documents, as typed models, and the repository that reads and writes them.

    webhook_events/smartcar_<eventId>   the idempotency claim of a delivery (TTL on `expire_at`)
    smartcar_events/<eventId>           the raw delivery, as received (TTL on `expire_at`)
    smartcar_vehicles/<vehicleId>       the vehicle, its latest signal per code, its last error
    smartcar_connect_states/<sha256>    a pending Connect `state` (single use, expires)
    smartcar_locks/<name>               a short lease (the token secret's read-modify-write)
    devices/<vehicleId>                 the bridge's device (shared with the other sources)

A delivery reads what it needs in one round trip (`read`: its claim, the vehicle, its device
and, when it may push, the vehicle's delivery state) and writes in one commit (`writes`): the
claim (created: a copy of the delivery committed first fails it; or a dead processing's pending
claim taken over), the raw event, the vehicle and the device, each on condition that nobody
wrote it since the read (`StaleRead` otherwise: read again and retry), and, when there is a
position, the vehicle's lease (`Pipeline.run`'s `along`); the claim is then pending until the
run's final commit marks it done (`claim_done`, `Pipeline.run`'s `along_outcome`).
The device document is the uniqueId mapping: it is created with `smartcar-<vehicleId>` and from
then on its `traccar_unique_id` is kept as it is, so an operator who edits it in Firestore maps
the vehicle to any Traccar device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, Field

from shared.firestore_limits import escaped
from shared.models import Device, DeviceState, Document, Source
from shared.store import options
from shared.store.claims import (
    ClaimStatus,
    StaleRead,
    Writes,
    claim_done,
    commit_if_unchanged,
    release_claim,
    stale_errors,
    unchanged_since,
    write_if_unchanged,
)
from shared.store.repository import Versioned, document_id, read_all

if TYPE_CHECKING:
    from google.cloud import firestore

WEBHOOK_EVENTS = "webhook_events"
EVENTS = "smartcar_events"
VEHICLES = "smartcar_vehicles"
CONNECT_STATES = "smartcar_connect_states"
LOCKS = "smartcar_locks"
DEVICES = "devices"

CLAIM_PREFIX = "smartcar_"


def unique_id_for(vehicle_id: str) -> str:
    """The Traccar uniqueId a new vehicle gets (its device document can change it later)."""
    return f"smartcar-{vehicle_id}"


def vehicle_device(
    vehicle_id: str, make: str | None, model: str | None, year: int | None, now: datetime
) -> Device:
    """The device a vehicle the bridge has not seen yet becomes, named "MAKE Model Year"."""
    described = " ".join(str(part) for part in (make, model, year) if part)
    return Device(
        id=vehicle_id,
        source=Source.SMARTCAR,
        name=described or vehicle_id,
        traccar_unique_id=unique_id_for(vehicle_id),
        model=described or None,
        first_seen=now,
        last_seen=now,
    )


class WebhookClaim(Document):
    """The idempotency record of one delivery: created before any push, or it is a repeat.

    `owner` is the processing that wrote it: a commit retried after its reply was lost finds
    its own claim (done, not a repeat), and a failing processing deletes its own claim only.
    Claims written before owners existed have "" (a repeat, whoever asks). `status` is
    "pending" while a position is on its way (claim and lease written, outcome not yet): a
    repeat then waits, or takes the claim over once the lease has ended (see `ClaimStatus`)."""

    id: str = Field(min_length=1)
    owner: str = ""
    status: ClaimStatus = "done"
    source: Source = Source.SMARTCAR
    event_id: str
    event_type: str
    vehicle_id: str | None = None
    received_at: AwareDatetime
    expire_at: AwareDatetime


class StoredEvent(Document):
    """A raw delivery. `body` is the text as received: Firestore cannot hold every JSON shape
    (arrays of arrays), and the raw text is what a later investigation wants anyway."""

    id: str = Field(min_length=1)
    event_type: str
    vehicle_id: str | None = None
    user_id: str | None = None
    delivery_id: str | None = None
    webhook_id: str | None = None
    version: str | None = None
    skipped: list[str] = Field(default_factory=list)
    received_at: AwareDatetime
    expire_at: AwareDatetime
    body: str


class SignalEntry(Document):
    """The latest value of one signal code; `error` is set while its newest state is a failure."""

    code: str
    name: str | None = None
    group: str | None = None
    body: dict[str, Any] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    measured_at: int | None = None  # epoch seconds of `body`
    error: str | None = None
    error_at: int | None = None
    event_id: str | None = None
    received_at: AwareDatetime


class VehicleRecord(Document):
    id: str = Field(min_length=1)
    user_id: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None
    traccar_unique_id: str | None = None
    connected_at: AwareDatetime | None = None
    last_event_id: str | None = None
    last_event_at: AwareDatetime | None = None
    last_error: list[dict[str, Any]] | None = None
    last_error_at: AwareDatetime | None = None
    signals: dict[str, SignalEntry] = Field(default_factory=dict)
    # When a delivery first brought a new signal code past SMARTCAR_MAX_SIGNALS_PER_VEHICLE:
    # set once, so the operator is notified once per vehicle, not once per delivery.
    signals_capped_at: AwareDatetime | None = None


class ConnectState(Document):
    id: str = Field(min_length=1)  # sha256 of the state: the state itself is never stored
    created_at: AwareDatetime
    expire_at: AwareDatetime


class LockRecord(Document):
    id: str = Field(min_length=1)
    owner: str
    until: AwareDatetime


def firestore_safe(value: Any) -> Any:
    """`value` as Firestore takes it (`shared.firestore_limits.escaped`, issue 12): an array
    directly inside an array as its JSON text, a reserved, empty or oversized name (a signal
    code, a body's field) renamed, broken UTF-8 spelt out, a map nested too deep as JSON
    text. A signal of that shape would otherwise make every delivery of the vehicle fail; the
    code itself is kept in its entry (`SignalEntry.code`)."""
    return escaped(value)


VehicleUpdate = Callable[[VehicleRecord], VehicleRecord]
# Reads and commits of one delivery racing other writers of its documents before it gives up
# (429: Smartcar retries); each lost race means a concurrent writer succeeded.
WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class DeliveryRead:
    """What one delivery reads, in one round trip, with the versions its writes depend on."""

    claim: Versioned[WebhookClaim]
    vehicle: Versioned[VehicleRecord]
    device: Versioned[Device]
    state: Versioned[DeviceState] | None  # read only for a delivery that may push


@dataclass(frozen=True)
class VehicleChange:
    """A vehicle's record and device as a delivery (or a Connect) leaves them, and the versions
    they were read at: each is written on condition nobody wrote it since."""

    vehicle: VehicleRecord
    device: Device
    read: DeliveryRead

    @property
    def before(self) -> VehicleRecord | None:
        return self.read.vehicle.value


def vehicle_change(
    read: DeliveryRead, *, new_device: Device, update: VehicleUpdate, now: datetime
) -> VehicleChange:
    """`new_device` is the vehicle's device as it would be created; a stored one is kept, its
    mapping untouched (`seen`). `update` turns the stored vehicle (a blank one for a new
    vehicle) into the new one."""
    stored = read.device.value
    device = seen(stored, new_device, now) if stored is not None else new_device
    after = update(read.vehicle.value or VehicleRecord(id=new_device.id))
    after = after.model_copy(update={"traccar_unique_id": device.traccar_unique_id})
    return VehicleChange(after, device, read)


class SmartcarStore:
    """The Smartcar collections over one Firestore client."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._claims = client.collection(WEBHOOK_EVENTS)
        self._events = client.collection(EVENTS)
        self._vehicles = client.collection(VEHICLES)
        self._states = client.collection(CONNECT_STATES)
        self._locks = client.collection(LOCKS)
        self._devices = client.collection(DEVICES)

    # Deliveries

    def read(
        self,
        vehicle_id: str | None,
        *,
        claim_id: str | None = None,
        state_ref: firestore.DocumentReference | None = None,
    ) -> DeliveryRead:
        """The delivery's claim, the vehicle and its device (with a `vehicle_id`) and the
        vehicle's delivery state (`state_ref`), as far as asked for, in one BatchGetDocuments."""
        refs = {}
        if claim_id is not None:
            refs["claim"] = self._claims.document(document_id(claim_id))
        if vehicle_id is not None:
            refs["vehicle"] = self._vehicles.document(document_id(vehicle_id))
            refs["device"] = self._devices.document(document_id(vehicle_id))
        if state_ref is not None:
            refs["state"] = state_ref
        found = dict(zip(refs, read_all(self._client, list(refs.values())), strict=True))

        def versioned(name: str, model: type[Document]) -> Versioned[Any]:
            snapshot = found.get(name)
            return Versioned(None) if snapshot is None else Versioned.of(snapshot, model)

        return DeliveryRead(
            claim=versioned("claim", WebhookClaim),
            vehicle=versioned("vehicle", VehicleRecord),
            device=versioned("device", Device),
            state=versioned("state", DeviceState) if state_ref is not None else None,
        )

    def writes(
        self,
        claim: WebhookClaim | None,
        event: StoredEvent | None,
        change: VehicleChange | None,
        *,
        claim_read: Versioned[WebhookClaim] | None = None,
    ) -> Writes:
        """A delivery's writes, for one commit: its claim (created, or a dead processing's
        pending one read as `claim_read` taken over), the raw event, and the vehicle and device,
        each on condition nobody wrote it since it was read."""

        def add(batch: firestore.WriteBatch) -> None:
            if claim is not None:
                claim_ref = self._claims.document(document_id(claim.id))
                read = claim_read or Versioned(None)
                write_if_unchanged(batch, claim_ref, read, claim.model_dump(mode="python"))
            if event is not None:
                event_ref = self._events.document(document_id(event.id))
                batch.set(event_ref, event.model_dump(mode="python"))
            if change is not None:
                device_id = document_id(change.device.id)
                write_if_unchanged(
                    batch,
                    self._devices.document(device_id),
                    change.read.device,
                    change.device.model_dump(mode="python"),
                )
                write_if_unchanged(
                    batch,
                    self._vehicles.document(device_id),
                    change.read.vehicle,
                    firestore_safe(change.vehicle.model_dump(mode="python")),
                )

        return add

    def commit(self, writes: Writes, *, claim: WebhookClaim | None = None) -> None:
        """Commit `writes` at once; `StaleRead` (nothing written) if a document they depend on
        changed since it was read, or a copy of the delivery took its `claim` first."""
        landed = None
        if claim is not None:
            landed = (self._claims.document(document_id(claim.id)), claim.owner)
        commit_if_unchanged(self._client, writes, claim=landed)

    def claim_done(self, claim: WebhookClaim) -> Writes:
        """The write marking `claim` done, for the run's final commit."""
        return claim_done(self._claims.document(document_id(claim.id)))

    def release(self, claim: WebhookClaim) -> None:
        """Forget a claim whose processing failed, so that Smartcar's retry is processed."""
        release_claim(self._claims.document(document_id(claim.id)), claim.owner)

    def record(
        self, *, new_device: Device, update: VehicleUpdate, now: datetime
    ) -> tuple[Device, VehicleRecord | None]:
        """Write a vehicle's change (Connect's, outside any delivery) in one commit; answers its
        device and the vehicle as it was before. Read again and retried when a concurrent write
        got in between (see `vehicle_change` for `new_device` and `update`)."""
        for _ in range(WRITE_ATTEMPTS):
            change = vehicle_change(
                self.read(new_device.id), new_device=new_device, update=update, now=now
            )
            try:
                self.commit(self.writes(None, None, change))
            except StaleRead:
                continue
            return change.device, change.before
        raise StaleRead(f"vehicle {new_device.id} kept changing while it was written")

    def count_vehicles(self) -> int:
        """How many vehicles are recorded: one aggregation query (one read per 1000 counted),
        asked only when a delivery names a vehicle the bridge has not seen."""
        # The stubs type an aggregation `get` as one result; it answers a list of lists.
        result: Any = self._vehicles.count().get(**options.reads())
        return int(result[0][0].value)

    # Views

    def vehicles(self) -> list[VehicleRecord]:
        return [
            VehicleRecord.model_validate(snapshot.to_dict())
            for snapshot in self._vehicles.order_by("id").stream(**options.reads())
        ]

    def vehicle(self, vehicle_id: str) -> VehicleRecord | None:
        return self.vehicle_read(vehicle_id).value

    def vehicle_read(self, vehicle_id: str) -> Versioned[VehicleRecord]:
        """The vehicle's record (one read), for a pull: what it compares its fetch with."""
        snapshot = self._vehicles.document(document_id(vehicle_id)).get(**options.reads())
        return Versioned.of(snapshot, VehicleRecord)

    def signals_write(
        self,
        read: Versioned[VehicleRecord],
        signals: dict[str, SignalEntry],
        *,
        fill: Mapping[str, Any] | None = None,
    ) -> Writes | None:
        """A pull's signals as the vehicle's latest (what the views show, what the next pull
        compares with), as a write for its run's final commit (`Fetched.writes`): written with
        the position's outcome, never before its push. None when no entry differs from `read`
        and there is nothing to `fill`.

        `fill`: top-level fields written only where the record, as read when the commit is
        built, has none (a pull that learned a vehicle's user id from its v2 tokens: a webhook
        that recorded one meanwhile keeps its own). The record is created when there is none.

        Only the entries whose reading differs from `read`'s (a value, a time, a failure: not
        only the pull's event id and time of receipt) are written, each replacing its own field
        (`signals.<code>`, a set merging those paths): a webhook delivery that wrote the record
        since the read neither fails the run's commit nor loses its other signals or fields.
        `signals` were merged newest first against `read` (`merge_signals`). A delivery may
        write a newer reading of the very signal the pull also changed in the seconds between
        the read and the commit (it arrives during the pull's run: handed off, its records
        committed at once): the record is read again as the commit is built, and an entry whose
        stored reading was measured after the pull's is left as stored (`_newer_stored`). The
        stored location is what the next position is checked against (an older one is never
        sent back: `signals.to_location`), so a pull must not put an older one in its place.
        Only the milliseconds between that read and the commit stay open."""
        # Imported here, as the store's other Firestore helpers: loaded only where it is used.
        from google.cloud.firestore_v1.field_path import FieldPath

        record = read.value
        assert record is not None  # a pull reads a record
        # Escaped as a delivery's record is (the whole document: the same names and depths).
        before = firestore_safe(record.model_dump(mode="python"))["signals"]
        merged = record.model_copy(update={"signals": signals})
        after = firestore_safe(merged.model_dump(mode="python"))["signals"]
        changed = {
            key: entry
            for key, entry in after.items()
            if _reading(before.get(key)) != _reading(entry)
        }
        wanted = {key: value for key, value in (fill or {}).items() if value is not None}
        if not changed and not wanted:
            return None
        ref = self._vehicles.document(document_id(record.id))
        # The id with them (`paths`): a record deleted meanwhile (outside a removal, which
        # deletes the device's state too and so fails the whole commit) comes back valid, if thin.

        def add(batch: firestore.WriteBatch) -> None:
            # Read when the commit is built (again for each attempt of the run's final commit).
            document = ref.get(**options.reads()).to_dict() or {}
            stored = document.get("signals") or {}
            kept = {
                key: entry
                for key, entry in changed.items()
                if not _newer_stored(stored.get(key), entry)
            }
            filled = {key: value for key, value in wanted.items() if document.get(key) is None}
            if not kept and not filled:
                return
            paths = ["id", *filled, *(FieldPath("signals", key) for key in kept)]
            data = {"id": record.id, **filled, **({"signals": kept} if kept else {})}
            batch.set(ref, data, merge=paths)

        return add

    # Connect states

    def put_state(self, state: ConnectState) -> None:
        self._states.document(document_id(state.id)).create(
            state.model_dump(mode="python"), **options.writes()
        )

    def take_state(self, state_id: str) -> ConnectState | None:
        """Remove and answer a pending state; None if unknown or taken by a concurrent call."""
        ref = self._states.document(document_id(state_id))
        snapshot = ref.get(**options.reads())
        if not snapshot.exists:
            return None
        try:
            # Only one of two racing exchanges deletes it: the state is single use.
            ref.delete(option=unchanged_since(snapshot.update_time), **options.writes())
        except stale_errors():
            return None
        return ConnectState.model_validate(snapshot.to_dict())

    # Locks

    def acquire_lock(self, name: str, owner: str, *, now: datetime, until: datetime) -> bool:
        """Take the lease `name` until `until`; False while someone else holds it."""
        ref = self._locks.document(document_id(name))
        record = LockRecord(id=name, owner=owner, until=until).model_dump(mode="python")
        try:
            ref.create(record, **options.writes())
            return True
        except stale_errors():
            pass  # held, or held once: is it still?
        snapshot = ref.get(**options.reads())
        if snapshot.exists and LockRecord.model_validate(snapshot.to_dict()).until > now:
            return False
        try:
            if snapshot.exists:
                # An expired lease: taken over only if nobody else took it since we read it.
                ref.update(record, option=unchanged_since(snapshot.update_time), **options.writes())
            else:
                ref.create(record, **options.writes())
        except stale_errors():
            return False
        return True

    def release_lock(self, name: str, owner: str) -> None:
        ref = self._locks.document(document_id(name))
        snapshot = ref.get(**options.reads())
        if not snapshot.exists or LockRecord.model_validate(snapshot.to_dict()).owner != owner:
            return  # expired and taken over: not ours to release
        try:
            ref.delete(option=unchanged_since(snapshot.update_time), **options.writes())
        except stale_errors():
            return  # released or taken over meanwhile


def _newer_stored(stored: Any, entry: dict[str, Any]) -> bool:
    """Whether a stored signal entry holds a reading measured after the one `entry` would
    write (both as stored: `measured_at` in epoch seconds)."""
    if not isinstance(stored, dict) or stored.get("body") is None:
        return False
    stored_at, own_at = stored.get("measured_at"), entry.get("measured_at")
    return isinstance(stored_at, int) and isinstance(own_at, int) and stored_at > own_at


def _reading(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored signal entry without what each merge stamps on it (the event that brought it,
    when): what tells a new reading from the same one fetched again."""
    if entry is None:
        return None
    return {key: value for key, value in entry.items() if key not in ("event_id", "received_at")}


def seen(device: Device, new_device: Device, now: datetime) -> Device:
    """A stored device seen again: `last_seen` moves, its mapping and `first_seen` stay; a name
    or model it lacks is filled in from what the vehicle says of itself."""
    update: dict[str, Any] = {"last_seen": now}
    if not device.name and new_device.name:
        update["name"] = new_device.name
    if not device.model and new_device.model:
        update["model"] = new_device.model
    return device.model_copy(update=update)
