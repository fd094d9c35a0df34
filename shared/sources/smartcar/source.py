"""The Smartcar pull source: a vehicle's position read with its stored tokens, for sync jobs.

`SmartcarSource.fetch` asks Smartcar for the vehicle's location, odometer and battery in one
batch request, with an access token refreshed when it nears its end; when Smartcar refuses
the token anyway (revoked, clock skew) it refreshes once and asks again. A vehicle whose
permissions do not include the location gives no position; odometer and battery are attributes
when permitted, in the units the webhook path uses (`signals`). A position dated more than
`MAX_FUTURE_SKEW` ahead of the clock is skipped and logged: recorded, it would stand above every
genuine position to come (issue 13).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from shared.models import AttributeValue, Device, Location, Source, too_far_ahead, utc_now
from shared.sources.smartcar.client import SmartcarClient, VehicleSnapshot
from shared.sources.smartcar.errors import SmartcarAuthError, SmartcarResponseError
from shared.sources.smartcar.signals import METRES_PER_KM
from shared.sources.smartcar.tokens import TokenStore

logger = logging.getLogger(__name__)


class SmartcarSource:
    source = Source.SMARTCAR

    def __init__(
        self,
        *,
        client: Callable[[], SmartcarClient],
        tokens: TokenStore,
        max_future_skew: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._max_future_skew = max_future_skew
        self._clock = clock

    def fetch(self, device: Device) -> list[Location]:
        client = self._client()
        tokens = self._tokens
        token = tokens.access_token(device.id, client)
        try:
            snapshot = client.snapshot(device.id, token)
        except SmartcarAuthError:
            token = tokens.access_token(device.id, client, refused=token)
            snapshot = client.snapshot(device.id, token)
        location = self._location(device, snapshot)
        if location is None:
            return []
        if too_far_ahead(location.timestamp, now=self._clock(), skew=self._max_future_skew):
            logger.warning(
                "Smartcar position dated ahead of the clock skipped (MAX_FUTURE_SKEW)",
                extra={"vehicle_id": device.id, "timestamp": location.timestamp},
            )
            return []
        return [location]

    def _location(self, device: Device, snapshot: VehicleSnapshot) -> Location | None:
        if snapshot.latitude is None or snapshot.longitude is None:
            return None
        attributes: dict[str, AttributeValue] = {}
        if snapshot.odometer_km is not None:
            attributes["odometer"] = round(snapshot.odometer_km * METRES_PER_KM, 1)
        if snapshot.battery_percent is not None:
            attributes["stateOfCharge"] = snapshot.battery_percent
        if snapshot.range_km is not None:
            attributes["range"] = round(snapshot.range_km, 3)
        try:
            return Location(
                id=device.id,
                lat=snapshot.latitude,
                lon=snapshot.longitude,
                timestamp=snapshot.measured_at or int(self._clock().timestamp()),
                battery=snapshot.battery_percent,
                source=Source.SMARTCAR,
                attributes=attributes,
            )
        except ValidationError as exc:
            raise SmartcarResponseError(
                f"Smartcar's location of vehicle {device.id} is not a position: "
                f"{exc.errors()[0]['msg']}"
            ) from None
