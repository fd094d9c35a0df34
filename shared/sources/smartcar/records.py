"""Where the Smartcar source keeps its data in Firestore, as typed documents.

    webhook_events/smartcar_<eventId>   the idempotency claim of a delivery (TTL on `expire_at`)
    smartcar_events/<eventId>           the raw delivery, as received (TTL on `expire_at`)
    smartcar_vehicles/<vehicleId>       the vehicle, its latest signal per code, its last error
    smartcar_connect_states/<sha256>    a pending Connect `state` (single use, expires)
    smartcar_locks/<name>               a short lease (the token secret's read-modify-write)
    devices/<vehicleId>                 the bridge's device (shared with the other sources)

A delivery is written in one transaction: raw event, vehicle and device together or not at all.
The device document is the uniqueId mapping: it is created with `smartcar-<vehicleId>` and from
then on its `traccar_unique_id` is kept as it is, so an operator who edits it in Firestore maps
the vehicle to any Traccar device.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, Field

from shared.models import Device, Document, Source
from shared.store import document_id

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
    """The idempotency record of one delivery: created before any work, or it is a repeat."""

    id: str = Field(min_length=1)
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


class ConnectState(Document):
    id: str = Field(min_length=1)  # sha256 of the state: the state itself is never stored
    created_at: AwareDatetime
    expire_at: AwareDatetime


class LockRecord(Document):
    id: str = Field(min_length=1)
    owner: str
    until: AwareDatetime


def firestore_safe(value: Any) -> Any:
    """`value` with every array directly inside an array turned into its JSON text.

    Firestore refuses arrays of arrays; a signal body of that shape would otherwise make every
    delivery of the vehicle fail.
    """
    if isinstance(value, dict):
        return {key: firestore_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [
            json.dumps(item) if isinstance(item, list) else firestore_safe(item) for item in value
        ]
    return value


VehicleUpdate = Callable[[VehicleRecord], VehicleRecord]


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

    # Idempotency

    def claim(self, claim: WebhookClaim) -> bool:
        """Record the delivery; False if it was recorded already (atomic create, no read)."""
        from google.api_core.exceptions import AlreadyExists

        try:
            self._claims.document(document_id(claim.id)).create(claim.model_dump(mode="python"))
        except AlreadyExists:
            return False
        return True

    def release(self, claim_id: str) -> None:
        """Forget a claim whose processing failed, so that Smartcar's retry is processed."""
        self._claims.document(document_id(claim_id)).delete()

    # Deliveries

    def record_raw(self, event: StoredEvent) -> None:
        """Keep a delivery that concerns no vehicle the bridge tracks."""
        self._events.document(document_id(event.id)).set(event.model_dump(mode="python"))

    def record(
        self,
        event: StoredEvent | None,
        *,
        new_device: Device,
        update: VehicleUpdate,
        now: datetime,
    ) -> tuple[Device, VehicleRecord | None]:
        """Write a vehicle's delivery (or, without `event`, a Connect of it) in one transaction;
        answers its device and the vehicle as it was before.

        `new_device` is the vehicle's device as it would be created; a stored one is kept, its
        mapping untouched (`seen`). `update` turns the stored vehicle (a blank one for a new
        vehicle) into the new one. Firestore runs the transaction again on contention.
        """
        from google.cloud import firestore

        event_ref = self._events.document(document_id(event.id)) if event else None
        vehicle_ref = self._vehicles.document(document_id(new_device.id))
        device_ref = self._devices.document(document_id(new_device.id))

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> tuple[Device, VehicleRecord | None]:
            vehicle_snapshot = vehicle_ref.get(transaction=transaction)
            device_snapshot = device_ref.get(transaction=transaction)
            before = (
                VehicleRecord.model_validate(vehicle_snapshot.to_dict())
                if vehicle_snapshot.exists
                else None
            )
            device = (
                seen(Device.model_validate(device_snapshot.to_dict()), new_device, now)
                if device_snapshot.exists
                else new_device
            )
            after = update(before or VehicleRecord(id=new_device.id))
            after = after.model_copy(update={"traccar_unique_id": device.traccar_unique_id})
            transaction.set(device_ref, device.model_dump(mode="python"))
            transaction.set(vehicle_ref, firestore_safe(after.model_dump(mode="python")))
            if event is not None and event_ref is not None:
                transaction.set(event_ref, event.model_dump(mode="python"))
            return device, before

        return write(self._client.transaction())

    # Views

    def vehicles(self) -> list[VehicleRecord]:
        return [
            VehicleRecord.model_validate(snapshot.to_dict())
            for snapshot in self._vehicles.order_by("id").stream()
        ]

    def vehicle(self, vehicle_id: str) -> VehicleRecord | None:
        snapshot = self._vehicles.document(document_id(vehicle_id)).get()
        return VehicleRecord.model_validate(snapshot.to_dict()) if snapshot.exists else None

    # Connect states

    def put_state(self, state: ConnectState) -> None:
        self._states.document(document_id(state.id)).create(state.model_dump(mode="python"))

    def take_state(self, state_id: str) -> ConnectState | None:
        """Remove and answer a pending state; None if unknown or taken by a concurrent call."""
        from google.api_core.exceptions import FailedPrecondition, NotFound

        ref = self._states.document(document_id(state_id))
        snapshot = ref.get()
        if not snapshot.exists:
            return None
        try:
            # Only one of two racing exchanges deletes it: the state is single use.
            ref.delete(option=self._client.write_option(last_update_time=snapshot.update_time))
        except (NotFound, FailedPrecondition):
            return None
        return ConnectState.model_validate(snapshot.to_dict())

    # Locks

    def acquire_lock(self, name: str, owner: str, *, now: datetime, until: datetime) -> bool:
        """Take the lease `name` until `until`; False while someone else holds it."""
        from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

        ref = self._locks.document(document_id(name))
        record = LockRecord(id=name, owner=owner, until=until).model_dump(mode="python")
        try:
            ref.create(record)
            return True
        except AlreadyExists:
            pass
        snapshot = ref.get()
        if snapshot.exists and LockRecord.model_validate(snapshot.to_dict()).until > now:
            return False
        try:
            if snapshot.exists:
                # An expired lease: taken over only if nobody else took it since we read it.
                option = self._client.write_option(last_update_time=snapshot.update_time)
                ref.update(record, option=option)
            else:
                ref.create(record)
        except (AlreadyExists, NotFound, FailedPrecondition):
            return False
        return True

    def release_lock(self, name: str, owner: str) -> None:
        from google.api_core.exceptions import FailedPrecondition, NotFound

        ref = self._locks.document(document_id(name))
        snapshot = ref.get()
        if not snapshot.exists or LockRecord.model_validate(snapshot.to_dict()).owner != owner:
            return  # expired and taken over: not ours to release
        try:
            ref.delete(option=self._client.write_option(last_update_time=snapshot.update_time))
        except (NotFound, FailedPrecondition):
            return  # released or taken over meanwhile


def seen(device: Device, new_device: Device, now: datetime) -> Device:
    """A stored device seen again: `last_seen` moves, its mapping and `first_seen` stay; a name
    or model it lacks is filled in from what the vehicle says of itself."""
    update: dict[str, Any] = {"last_seen": now}
    if not device.name and new_device.name:
        update["name"] = new_device.name
    if not device.model and new_device.model:
        update["model"] = new_device.model
    return device.model_copy(update=update)
