"""The Google parts one function instance holds, as the composition root builds them.

`GoogleStack` takes every part made (keyword-only) and holds them for the callers: the sync
layer's source (`source`) and movement tracker (`smart_tracking`), the credential routes
(`account`), the hourly refresh and the API's listing (`refresh`), the expiry handling
(`expiry`), the API's fresh look (`fresh_locations`), named places (`places`) and ringing
(`ringer`).

The locate side (`source`, `places`, `ringer`) is given as factories and built, its modules
imported, on first use: the hourly refresh of an account builds the account and its refresh
only (cold start: the FCM lease, check-in, Spot, places and ring modules and their models were
≈ 5 ms of `refresh_devices`' first request; `tests/integration/test_cold_start.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import NotFound
from shared.models import Device, Location, Source

if TYPE_CHECKING:
    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.expiry import GoogleExpiry
    from shared.sources.google.places import NamedPlaces, SemanticLocation
    from shared.sources.google.refresh import GoogleRefresh
    from shared.sources.google.ring import Ringer
    from shared.sources.google.smart_tracking import SmartTracker
    from shared.sources.google.source import GoogleSource
    from shared.store import DeliveryRepository, Repository


class GoogleStack:
    def __init__(
        self,
        *,
        source: Callable[[NamedPlaces], GoogleSource],
        account: GoogleAccount,
        smart_tracking: SmartTracker,
        refresh: GoogleRefresh,
        expiry: GoogleExpiry,
        places: Callable[[], NamedPlaces],
        ringer: Callable[[], Ringer],
        devices: Repository[Device],
        delivery: DeliveryRepository,
    ) -> None:
        self._source = source
        self.account = account
        self.smart_tracking = smart_tracking
        self.refresh = refresh
        self.expiry = expiry
        self._places = places
        self._ringer = ringer
        self._devices = devices
        self._delivery = delivery

    @functools.cached_property
    def source(self) -> GoogleSource:
        """Built with the stack's own `places`: one instance for the source and the routes."""
        return self._source(self.places)

    @functools.cached_property
    def places(self) -> NamedPlaces:
        return self._places()

    @functools.cached_property
    def ringer(self) -> Ringer:
        return self._ringer()

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
