"""TLINK's Firestore documents: devices with their latest values, readings, processed pushes.

    tlink_devices/<deviceId>                     TlinkDevice (user binding, name, latest per sensor)
    tlink_readings/<deviceId>_<sensorId>_<epoch> TlinkReading (history; the id deduplicates)
    webhook_events/tlink-<sha256 of body>        TlinkEvent (idempotency, TTL on expire_at)
    state/tlink_refused_push                     the first push refused (its one notification)

`load` reads what an ingestion needs in one round trip (for a push also its event and the
device's delivery state); `writes` are one ingestion's writes (readings, device, the bridge's
`devices` entry and, for a push, its event), committed in one batch: all of it or nothing. A
push's writes go in the lease's commit when it has a position (`Pipeline.run`'s `along`), in
`commit` otherwise. The event is created with a precondition in that commit (or, over a dead
processing's pending event, updated on condition it did not change since the read), so a
concurrent copy of the push fails it (`StaleRead`: read again, where the copy's event is found)
and stores nothing twice. With a position, the event is pending until the run's final commit
marks it done (`event_done`, `Pipeline.run`'s `along_outcome`). Queries and the composite
indexes they need are listed in docs/tlink.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, Field

from shared.models import Device, DeviceState, Document
from shared.store.claims import (
    ClaimStatus,
    Writes,
    claim_done,
    commit_if_unchanged,
    release_claim,
    write_if_unchanged,
)
from shared.store.options import reads
from shared.store.options import writes as write_options  # `writes` is a method here
from shared.store.repository import Versioned, document_id, read_all
from shared.store.sealed import SealedState

if TYPE_CHECKING:
    from google.cloud import firestore

# --- The documents -------------------------------------------------------------------------


class SensorState(Document):
    """The latest value of one sensor, inside its device's document."""

    sensor_id: int
    type_id: int | None = None
    name: str | None = None  # from the pull API; pushes carry no names
    unit: str | None = None
    value: str | None = None
    re_val: str | None = None
    is_alarm: str | None = None
    is_line: str | None = None
    switcher: str | None = None  # a switch sensor's state (types 2 and 5)
    time: AwareDatetime | None = None


class TlinkDevice(Document):
    """`tlink_devices/<deviceId>`: a TLINK device, its user and its sensors' latest values."""

    id: str = Field(min_length=1)
    device_id: int
    user_id: str | None = None
    parent_user_id: str | None = None
    name: str = ""
    # The device's position as the pull API reports it (often a fixed, configured place).
    lat: float | None = None
    lng: float | None = None
    last_push: AwareDatetime | None = None
    last_pull: AwareDatetime | None = None
    sensors: dict[str, SensorState] = Field(default_factory=dict)
    # When a new sensor was first refused for the device's sensor cap: its one notification.
    sensor_cap_notified: AwareDatetime | None = None


class TlinkReading(Document):
    """`tlink_readings/<deviceId>_<sensorId>_<epoch>`: one sensor value at one time."""

    id: str = Field(min_length=1)
    device_id: int
    sensor_id: int
    type_id: int | None = None
    user_id: str | None = None
    time: AwareDatetime
    value: str | None = None
    re_val: str | None = None
    is_alarm: str | None = None
    switcher: str | None = None
    origin: str  # "push" | "api"
    expire_at: AwareDatetime


class TlinkEvent(Document):
    """`webhook_events/tlink-<sha256>`: a push already processed (redeliveries are no-ops).

    `owner` is the processing that wrote it: a commit retried after its reply was lost finds
    its own event (done, not a redelivery), and a failing processing deletes its own only.
    Events written before owners existed have "" (a redelivery, whoever asks). `status` is
    "pending" while the push's position is on its way (event and lease written, outcome not
    yet): a redelivery then waits, or takes the event over once the lease has ended."""

    id: str = Field(min_length=1)
    owner: str = ""
    status: ClaimStatus = "done"
    source: str = "tlink"
    device_id: int
    received_at: AwareDatetime
    expire_at: AwareDatetime
    # What of the push was not taken, and why (a location sensor of an unknown encoding).
    skipped: list[str] = Field(default_factory=list)


class CachedToken(Document):
    """`state/tlink_token`: the current access token, shared by the instances until it expires."""

    access_token: str
    expires_at: AwareDatetime
    obtained_at: AwareDatetime
    grant: str


class TokenDocument:
    """`state/tlink_token`: the access token the instances share until it expires, sealed
    (`shared.store.sealed`): the public webhooks function cannot read it."""

    NAME = "tlink_token"

    def __init__(self, state: SealedState) -> None:
        self._state = state

    def get(self) -> CachedToken | None:
        return self._state.get(self.NAME, CachedToken)

    def put(self, token: CachedToken) -> None:
        self._state.put(self.NAME, token)


# --- The repository ------------------------------------------------------------------------

DEVICES = "tlink_devices"
READINGS = "tlink_readings"
EVENTS = "webhook_events"
BRIDGE_DEVICES = "devices"
STATE = "state"
REFUSED_PUSH = "tlink_refused_push"  # the first refused push, notified once (delete to re-arm)


@dataclass(frozen=True)
class Loaded:
    """What one ingestion reads, in one round trip."""

    device: TlinkDevice | None
    bridge: Device | None  # the bridge's `devices` entry
    # A push's event as read (found done: the push was processed before; pending: a copy's
    # position is on its way, or its processing died).
    event: Versioned[TlinkEvent] = field(default_factory=lambda: Versioned(None))
    state: Versioned[DeviceState] | None = None  # the delivery state, for a push's lease


class TlinkRepository:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._devices = client.collection(DEVICES)
        self._readings = client.collection(READINGS)
        self._events = client.collection(EVENTS)
        self._bridge_devices = client.collection(BRIDGE_DEVICES)

    def load(
        self,
        device_id: int,
        bridge_id: str,
        *,
        event_id: str | None = None,
        state_ref: firestore.DocumentReference | None = None,
    ) -> Loaded:
        """The device's TLINK document, its `devices` entry and, when asked for, a push's event
        and the delivery state (`state_ref`), read in one round trip."""
        refs = {
            "device": self._devices.document(str(device_id)),
            "bridge": self._bridge_devices.document(document_id(bridge_id)),
        }
        if event_id is not None:
            refs["event"] = self._events.document(document_id(event_id))
        if state_ref is not None:
            refs["state"] = state_ref
        found = dict(zip(refs, read_all(self._client, list(refs.values())), strict=True))
        data = {name: snapshot.to_dict() for name, snapshot in found.items() if snapshot.exists}
        return Loaded(
            device=TlinkDevice.model_validate(data["device"]) if "device" in data else None,
            bridge=Device.model_validate(data["bridge"]) if "bridge" in data else None,
            event=Versioned.of(found["event"], TlinkEvent) if "event" in found else Versioned(None),
            state=Versioned.of(found["state"], DeviceState) if "state" in found else None,
        )

    def writes(
        self,
        *,
        device: TlinkDevice,
        changed_sensors: Iterable[str],
        readings: Iterable[TlinkReading],
        bridge_device: Device,
        bridge_exists: bool,
        event: TlinkEvent | None = None,
        event_read: Versioned[TlinkEvent] | None = None,
    ) -> Writes:
        """One ingestion's writes, for one commit; `event` is created, or written over the
        pending event read as `event_read` if nobody wrote it since (a precondition either way)."""
        # Merged, and only the sensors that changed: a concurrent ingestion of the same device
        # that touched other sensors keeps its values.
        data = device.model_dump(exclude={"sensors"})
        sensors = {key: device.sensors[key].model_dump() for key in changed_sensors}
        if sensors:  # an empty map would replace the stored one under merge
            data["sensors"] = sensors
        stored_readings = list(readings)

        def add(batch: firestore.WriteBatch) -> None:
            if event is not None:
                ref = self._events.document(document_id(event.id))
                write_if_unchanged(batch, ref, event_read or Versioned(None), event.model_dump())
            for reading in stored_readings:
                batch.set(self._readings.document(document_id(reading.id)), reading.model_dump())
            batch.set(self._devices.document(device.id), data, merge=True)
            bridge_ref = self._bridge_devices.document(document_id(bridge_device.id))
            if bridge_exists:
                fields = {"source", "name", "traccar_unique_id", "last_seen"}
                batch.set(bridge_ref, bridge_device.model_dump(include=fields), merge=True)
            else:
                batch.set(bridge_ref, bridge_device.model_dump())

        return add

    def commit(self, writes: Writes, *, event: TlinkEvent | None = None) -> None:
        """Commit one ingestion's `writes` at once; `StaleRead` (nothing written) if a copy of
        the push created its `event` first."""
        landed = None
        if event is not None:
            landed = (self._events.document(document_id(event.id)), event.owner)
        commit_if_unchanged(self._client, writes, claim=landed)

    def event_done(self, event: TlinkEvent) -> Writes:
        """The write marking a push's event done, for the run's final commit."""
        return claim_done(self._events.document(document_id(event.id)))

    def release_event(self, event: TlinkEvent) -> None:
        """Delete a push's own event so that its redelivery is processed again."""
        release_claim(self._events.document(document_id(event.id)), event.owner)

    def count_devices(self) -> int:
        """How many TLINK devices are recorded: one aggregation query, billed as one read per
        1000 documents counted, asked only when a push names a device not recorded yet."""
        # The stubs type an aggregation `get` as one result; it answers a list of lists.
        result: Any = self._devices.count().get(**reads())
        return int(result[0][0].value)

    def record_refused_push(self, reason: str, at: datetime) -> bool:
        """Record `state/tlink_refused_push` if no refused push was recorded before: True for
        the first one (created atomically, so two instances never both get True)."""
        from google.api_core.exceptions import AlreadyExists

        ref = self._client.collection(STATE).document(REFUSED_PUSH)
        try:
            ref.create({"reason": reason, "at": at}, **write_options())
        except AlreadyExists:
            return False
        return True

    def device(self, device_id: int) -> TlinkDevice | None:
        snapshot = self._devices.document(str(device_id)).get(**reads())
        return TlinkDevice.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def _user_query(self, user_id: str, device_id: int | None) -> firestore.Query:
        from google.cloud.firestore import FieldFilter

        # An indexed value has Firestore's id limits (1500 bytes): refuse it as a bad id (400).
        query = self._devices.where(filter=FieldFilter("user_id", "==", document_id(user_id)))
        if device_id is not None:
            query = query.where(filter=FieldFilter("device_id", "==", device_id))
        return query

    def user_devices(
        self, user_id: str, *, device_id: int | None, offset: int, limit: int
    ) -> list[TlinkDevice]:
        """One page of the user's devices, by device id (index: user_id, device_id)."""
        query = self._user_query(user_id, device_id).order_by("device_id")
        return [
            TlinkDevice.model_validate(snapshot.to_dict())
            for snapshot in query.offset(offset).limit(limit).stream(**reads())
        ]

    def count_user_devices(self, user_id: str, device_id: int | None) -> int:
        # The stubs type a query's aggregation `get` as one result; it answers a list of lists.
        result: Any = self._user_query(user_id, device_id).count().get(**reads())
        return int(result[0][0].value)

    def history(
        self,
        device_id: int,
        sensor_id: int,
        *,
        start: datetime | None,
        end: datetime | None,
        offset: int,
        limit: int,
    ) -> list[TlinkReading]:
        """A sensor's readings, newest first (index: device_id, sensor_id, time desc)."""
        from google.cloud import firestore

        query = self._readings.where(
            filter=firestore.FieldFilter("device_id", "==", device_id)
        ).where(filter=firestore.FieldFilter("sensor_id", "==", sensor_id))
        if start is not None:
            query = query.where(filter=firestore.FieldFilter("time", ">=", start))
        if end is not None:
            query = query.where(filter=firestore.FieldFilter("time", "<=", end))
        query = query.order_by("time", direction=firestore.Query.DESCENDING)
        return [
            TlinkReading.model_validate(snapshot.to_dict())
            for snapshot in query.offset(offset).limit(limit).stream(**reads())
        ]
