"""The Google parts one function instance holds, as the composition root builds them.

`GoogleStack` takes every part made (keyword-only) and holds them for the callers: the sync
layer's source (`source`) and movement tracker (`smart_tracking`), the credential routes
(`account`), the hourly refresh and the API's listing (`refresh`), the expiry handling
(`expiry`), and the API's fresh look (`fresh_locations`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import NotFound
from shared.models import Device, Location, Source

if TYPE_CHECKING:
    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.expiry import GoogleExpiry
    from shared.sources.google.refresh import GoogleRefresh
    from shared.sources.google.smart_tracking import SmartTracker
    from shared.sources.google.source import GoogleSource
    from shared.store import DeliveryRepository, Repository


class GoogleStack:
    def __init__(
        self,
        *,
        source: GoogleSource,
        account: GoogleAccount,
        smart_tracking: SmartTracker,
        refresh: GoogleRefresh,
        expiry: GoogleExpiry,
        devices: Repository[Device],
        delivery: DeliveryRepository,
    ) -> None:
        self.source = source
        self.account = account
        self.smart_tracking = smart_tracking
        self.refresh = refresh
        self.expiry = expiry
        self._devices = devices
        self._delivery = delivery

    def fresh_locations(self, device_id: str) -> list[Location]:
        """`GET /devices/<id>/locations`: a Google tracker is located now (nothing is pushed);
        another device shows its newest delivered position. Oldest first."""
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device: {device_id}")
        if device.source == Source.GOOGLE:
            found = self.source.locate_now(device)
        else:
            newest = self._delivery.state(device_id).last_location
            found = [newest] if newest is not None else []
        return sorted(found, key=lambda location: location.timestamp)


__all__ = ["GoogleStack"]
