"""TLINK's Firestore collections: devices with their latest values, readings, processed pushes.

    tlink_devices/<deviceId>                     TlinkDevice (user binding, name, latest per sensor)
    tlink_readings/<deviceId>_<sensorId>_<epoch> TlinkReading (history; the id deduplicates)
    webhook_events/tlink-<sha256 of body>        TlinkEvent (idempotency, TTL on expire_at)

`save` writes one ingestion (readings, device, the bridge's `devices` entry and, for a push,
its event) in one batch: all of it or nothing. The event is written with a create precondition
inside that batch, so a redelivered push fails the whole batch (`DuplicateDelivery`) and stores
nothing twice. Queries and the composite indexes they need are listed in docs/tlink.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.models import Device
from shared.sources.tlink.models import TlinkDevice, TlinkEvent, TlinkReading
from shared.store import document_id

if TYPE_CHECKING:
    from google.cloud import firestore

DEVICES = "tlink_devices"
READINGS = "tlink_readings"
EVENTS = "webhook_events"
BRIDGE_DEVICES = "devices"


class DuplicateDelivery(Exception):
    """The push's event exists already: it was processed (or is being processed) before."""


class TlinkRepository:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._devices = client.collection(DEVICES)
        self._readings = client.collection(READINGS)
        self._events = client.collection(EVENTS)
        self._bridge_devices = client.collection(BRIDGE_DEVICES)

    def load(self, device_id: int, bridge_id: str) -> tuple[TlinkDevice | None, Device | None]:
        """The device's TLINK document and its `devices` entry, read in one round trip."""
        tlink_ref = self._devices.document(str(device_id))
        bridge_ref = self._bridge_devices.document(document_id(bridge_id))
        found = {
            snapshot.reference.path: snapshot.to_dict()
            for snapshot in self._client.get_all([tlink_ref, bridge_ref])
            if snapshot.exists
        }
        tlink = found.get(tlink_ref.path)
        bridge = found.get(bridge_ref.path)
        return (
            TlinkDevice.model_validate(tlink) if tlink is not None else None,
            Device.model_validate(bridge) if bridge is not None else None,
        )

    def save(
        self,
        *,
        device: TlinkDevice,
        changed_sensors: Iterable[str],
        readings: Iterable[TlinkReading],
        bridge_device: Device,
        bridge_exists: bool,
        event: TlinkEvent | None = None,
    ) -> None:
        """Write one ingestion at once; `DuplicateDelivery` (nothing written) if `event` exists."""
        from google.api_core.exceptions import AlreadyExists

        batch = self._client.batch()
        if event is not None:
            batch.create(self._events.document(document_id(event.id)), event.model_dump())
        for reading in readings:
            batch.set(self._readings.document(document_id(reading.id)), reading.model_dump())
        # Merged, and only the sensors that changed: a concurrent ingestion of the same device
        # that touched other sensors keeps its values.
        data = device.model_dump(exclude={"sensors"})
        sensors = {key: device.sensors[key].model_dump() for key in changed_sensors}
        if sensors:  # an empty map would replace the stored one under merge
            data["sensors"] = sensors
        batch.set(self._devices.document(device.id), data, merge=True)
        bridge_ref = self._bridge_devices.document(document_id(bridge_device.id))
        if bridge_exists:
            fields = {"source", "name", "traccar_unique_id", "last_seen"}
            batch.set(bridge_ref, bridge_device.model_dump(include=fields), merge=True)
        else:
            batch.set(bridge_ref, bridge_device.model_dump())
        try:
            batch.commit()
        except AlreadyExists:
            raise DuplicateDelivery(event.id if event else "") from None

    def forget_event(self, event_id: str) -> None:
        """Delete a push's event so that its redelivery is processed again."""
        self._events.document(document_id(event_id)).delete()

    def device(self, device_id: int) -> TlinkDevice | None:
        snapshot = self._devices.document(str(device_id)).get()
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
            for snapshot in query.offset(offset).limit(limit).stream()
        ]

    def count_user_devices(self, user_id: str, device_id: int | None) -> int:
        result = self._user_query(user_id, device_id).count().get()
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
            for snapshot in query.offset(offset).limit(limit).stream()
        ]
