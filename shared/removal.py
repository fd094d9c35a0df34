"""Removing a device (`DELETE /devices/<id>`, issue 20): everything the bridge keeps about it.

In this order, so that a failure leaves a removal that can simply be asked again:

1. the device's delivery lease, held until its documents are gone, and the sync service and
   its scheduler job (no run starts any more): a run, a sweep of its outbox or a webhook arriving
   meanwhile neither pushes (which would create the device in Traccar again right after step 2
   deleted it) nor keeps anything (a webhook's position is handed off to the outbox deleted in
   step 4); a device busy with a run is a 429, to be asked again once the run ended;
2. with `traccar=True`, the Traccar device (found by its unique id; its positions go with it);
3. a Smartcar vehicle is disconnected from the application at Smartcar (no more webhooks);
4. the device's documents: delivery state, outbox, smart tracking, the vendor's readings and
   views, the named places it was seen at (`GET /places` names it no longer), and the device
   itself (`shared.store.removal`). The push log ages out by its TTL.

The vendor calls come before the local deletes: when one fails (502, or 503 naming what to
set) the device is still listed and the same request finishes the job later.

What comes back by itself is said in the answer: a Google device is listed again by the next
refresh of the account unless it is excluded; a TLINK device with its next push or pull.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from shared.errors import BridgeError, NotFound
from shared.models import Device, ExcludedDevice, Model, Source, utc_now

if TYPE_CHECKING:
    from shared.services import Services
    from shared.store import DeliveryRepository, Repository
    from shared.store.removal import DeviceRecords
    from shared.traccar import TraccarApi

TLINK_PREFIX = "tlink-"
# The removal's hold on the device's delivery lease: longer than its Traccar and Smartcar calls
# take (each bounded by its client's timeouts); the deleted state document ends it sooner.
REMOVAL_LEASE_DURATION = timedelta(minutes=2)


class TraccarFailed(BridgeError):
    """Traccar's REST API did not delete the device: 502, nothing removed locally yet."""

    status = 502


class DeviceRemoved(Model):
    """The answer of `DELETE /devices/<id>`."""

    status: Literal["deleted"] = "deleted"
    id: str
    source: Source | None
    service_deleted: bool
    # What became of the Traccar device: "kept" (not asked), "deleted", "not_found".
    traccar: Literal["kept", "deleted", "not_found"]
    # A Smartcar vehicle: "disconnected", or "not_connected" (Smartcar had no connection).
    smartcar: Literal["disconnected", "not_connected"] | None = None
    # How many documents of each kind were deleted (device, device_state, outbox, readings...).
    removed: dict[str, int]
    # Whether the device comes back by itself, and how to keep it away.
    comes_back: bool
    note: str


class DeviceRemoval:
    def __init__(
        self,
        *,
        services: Services,
        devices: Repository[Device],
        excluded: Repository[ExcludedDevice],
        records: DeviceRecords,
        delivery: DeliveryRepository,
        traccar_api: Callable[[], TraccarApi | None],
        smartcar_disconnect: Callable[[str], bool],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._services = services
        self._devices = devices
        self._excluded = excluded
        self._records = records
        self._delivery = delivery
        self._traccar_api = traccar_api
        self._smartcar_disconnect = smartcar_disconnect
        self._clock = clock

    def remove(self, device_id: str, *, traccar: bool = False) -> DeviceRemoved:
        device = self._devices.get(device_id)
        if device is None:
            # A service left without its device (an older removal by hand) is still cleaned.
            if not self._services.delete(device_id):
                raise NotFound(f"unknown device: {device_id}")
            removed = self._records.forget(device_id)
            return DeviceRemoved(
                id=device_id,
                source=None,
                service_deleted=True,
                traccar="kept",
                removed=removed,
                comes_back=False,
                note=f"device {device_id} was not listed; its sync service was removed",
            )
        now = self._clock()
        # RetryLater (429) while a run holds it, before anything changed: that run may be
        # pushing right now.
        state, lease = self._delivery.acquire(
            device_id, f"removal-{uuid.uuid4().hex}", now=now, until=now + REMOVAL_LEASE_DURATION
        )
        try:
            service_deleted = self._services.delete(device_id)
            traccar_outcome: Literal["kept", "deleted", "not_found"] = "kept"
            if traccar:
                traccar_outcome = self._delete_in_traccar(device)
            smartcar: Literal["disconnected", "not_connected"] | None = None
            if device.source == Source.SMARTCAR:
                connected = self._smartcar_disconnect(device.id)
                smartcar = "disconnected" if connected else "not_connected"
            tlink = _tlink_number(device)
            removed = self._records.forget(device_id, tlink_device=tlink)
        except BaseException:
            # The device syncs on until the removal is asked again, which must not find its
            # own lease held (a 429): given back, unless the state is gone already.
            with contextlib.suppress(Exception):
                self._delivery.release(lease, state)
            raise
        comes_back, note = self._what_comes_back(device)
        return DeviceRemoved(
            id=device_id,
            source=device.source,
            service_deleted=service_deleted,
            traccar=traccar_outcome,
            smartcar=smartcar,
            removed=removed,
            comes_back=comes_back,
            note=note,
        )

    def _delete_in_traccar(self, device: Device) -> Literal["deleted", "not_found"]:
        from shared.errors import ConfigError
        from shared.traccar import TraccarAuthError, TraccarError

        try:
            api = self._traccar_api()
            if api is None:
                raise ConfigError(
                    "traccar=true needs Traccar's REST API: set TRACCAR_API_URL and store its "
                    "credentials (TRACCAR_API_TOKEN_SECRET)"
                )
            deleted = api.delete_device(device.traccar_unique_id)
        except TraccarAuthError as exc:
            raise ConfigError(str(exc)) from None
        except TraccarError as exc:
            raise TraccarFailed(f"{exc}; nothing was removed, ask again") from None
        return "deleted" if deleted else "not_found"

    def _what_comes_back(self, device: Device) -> tuple[bool, str]:
        if device.source == Source.GOOGLE:
            if self._excluded.get(device.id) is not None:
                return False, "excluded: the next refresh of the Google account leaves it out"
            return True, (
                "a Google device is listed again by the next refresh of the account (hourly, "
                f"or GET /devices); to keep it away, PUT /excluded-devices/{device.id}"
            )
        if device.source == Source.TLINK:
            return True, "a TLINK device is recorded again with its next push or pull"
        return False, "disconnected at Smartcar: it comes back only through Smartcar Connect"


def _tlink_number(device: Device) -> int | None:
    """The TLINK deviceId of `tlink-<n>`, whose readings are keyed by it."""
    if device.source != Source.TLINK:
        return None
    number = device.id.removeprefix(TLINK_PREFIX)
    return int(number) if number.isdigit() else None
