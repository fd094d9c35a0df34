"""The Google parts one function instance holds, as the composition root builds them.

`GoogleStack` takes every part made (keyword-only) and holds them for the callers: the sync
layer's source (`source`) and movement tracker (`smart_tracking`), the credential routes
(`account`), the hourly refresh and the API's listing (`refresh`), the expiry handling
(`expiry`), the API's fresh look (`fresh_locations`), named places (`places`) and ringing
(`ringer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import NotFound
from shared.models import Device, Location, Source
from shared.sources.google.places import SemanticLocation

if TYPE_CHECKING:
    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.expiry import GoogleExpiry
    from shared.sources.google.places import NamedPlaces
    from shared.sources.google.refresh import GoogleRefresh
    from shared.sources.google.ring import Ringer
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
        places: NamedPlaces,
        ringer: Ringer,
        devices: Repository[Device],
        delivery: DeliveryRepository,
    ) -> None:
        self.source = source
        self.account = account
        self.smart_tracking = smart_tracking
        self.refresh = refresh
        self.expiry = expiry
        self.places = places
        self.ringer = ringer
        self._devices = devices
        self._delivery = delivery

    def fresh_locations(self, device_id: str) -> list[Location | SemanticLocation]:
        """`GET /devices/<id>/locations`: a Google tracker is located now (nothing is pushed),
        with the places without coordinates it was reported at; another device shows its
        newest delivered position. Oldest first."""
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device: {device_id}")
        found: list[Location | SemanticLocation]
        if device.source == Source.GOOGLE:
            located, unmapped = self.source.look_now(device)
            found = [*located, *unmapped]
        else:
            newest = self._delivery.state(device_id).last_location
            found = [newest] if newest is not None else []
        return sorted(found, key=lambda location: location.timestamp)


__all__ = ["GoogleStack"]
