"""Data for the status page's tests (issue 19): devices of each source, one failing with
positions in its outbox, one with a parked position, one excluded, and a push log with a
failure. Written straight into Firestore (the emulator), as the runs would have left it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.models import (
    Device,
    DeviceState,
    ExcludedDevice,
    Location,
    OutboxEntry,
    PushLogEntry,
    Service,
    Source,
    SyncResult,
)
from shared.store import Store, document_id

NOW = datetime.now(UTC).replace(microsecond=0)
# id, source, name, kind, (lat, lon, accuracy)
DEVICES = [
    ("keys", Source.GOOGLE, "Keys", "tracker", (48.8566, 2.3522, 12.0)),
    ("wallet", Source.GOOGLE, "Wallet", "tracker", (52.52, 13.405, 40.0)),
    ("van", Source.TLINK, "Van", None, (45.4642, 9.19, None)),
    ("car", Source.SMARTCAR, "Car", None, (51.5072, -0.1276, 5.0)),
]
FAILING = "wallet"
FAILING_ERROR = "Google did not answer the locate in time"
OUTBOX_ERROR = "Traccar answered 503"
EXCLUDED = "car"


def _location(device_id: str, lat: float, lon: float, accuracy: float | None, age: int) -> Location:
    when = int((NOW - timedelta(seconds=age)).timestamp())
    return Location(id=device_id, lat=lat, lon=lon, timestamp=when, accuracy=accuracy)


def _log(device: str, at: datetime, status: int | None, error: str | None) -> PushLogEntry:
    return PushLogEntry(
        id=device, lat=1.0, lon=1.0, timestamp=int(at.timestamp()), name=device, date="",
        maps_url="", traccar_status=status, synced_at=at.isoformat(), error=error,
        outcome="accepted" if error is None else "retry_later", device_id=device,
        attempted_at=at, expire_at=at + timedelta(days=30),
    )  # fmt: skip


def seed(client: Any, *, extra_devices: int = 0) -> Store:
    """Write the devices above (and `extra_devices` plain ones, for the cost figures)."""
    store = Store(client)
    rows = list(DEVICES) + [
        (f"extra-{i:03d}", Source.GOOGLE, f"Extra {i}", "tracker", (10.0 + i / 100, 10.0, 20.0))
        for i in range(extra_devices)
    ]
    for device_id, source, name, kind, (lat, lon, accuracy) in rows:
        store.devices.put(
            Device(id=device_id, source=source, name=name, kind=kind, traccar_unique_id=device_id)
        )
        if device_id != EXCLUDED:
            store.services.put(Service(id=device_id, name=name, timer=600, delta=5))
        failing = device_id == FAILING
        result = SyncResult(
            fetched=1, new=1, pushed=0 if failing else 1, outbox=2 if failing else 0
        )
        if failing:
            result.error = FAILING_ERROR
        state = DeviceState(
            id=device_id,
            last_location=_location(device_id, lat, lon, accuracy, 300),
            outbox_count=2 if failing else 0,
            parked_count=1 if device_id == "van" else 0,
            last_sync=NOW - timedelta(seconds=120),
            last_result=result,
        )
        ref = client.collection("device_state").document(document_id(device_id))
        ref.set(state.model_dump(mode="python"))
    for age in (3600, 1800):
        location = _location(FAILING, 52.5, 13.4, 30.0, age)
        entry = OutboxEntry(
            id=f"{FAILING}-{age}", device_id=FAILING, fingerprint=str(age), location=location,
            attempts=3, last_error=OUTBOX_ERROR,
        )  # fmt: skip
        client.collection("outbox").document(entry.id).set(entry.model_dump(mode="python"))
    parked = OutboxEntry(
        id="van-parked", device_id="van", fingerprint="p", parked=True, attempts=9,
        location=_location("van", 45.4, 9.1, None, 7200), last_error="Traccar answered 400",
    )  # fmt: skip
    client.collection("outbox").document(parked.id).set(parked.model_dump(mode="python"))
    store.excluded_devices.put(ExcludedDevice(id=EXCLUDED))
    for entry in (
        _log(FAILING, NOW - timedelta(minutes=10), None, "connection refused"),
        _log("keys", NOW - timedelta(minutes=2), 200, None),
    ):
        client.collection("push_log").document().set(entry.model_dump(mode="python"))
    return store
