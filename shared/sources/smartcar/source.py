"""The Smartcar pull source: a vehicle's position read from Smartcar, for sync jobs.

API v3 (PROTOCOLS.md §3): a vehicle whose user id is known (`user_of`: recorded by Connect's
redirect or a webhook's `data.user.id`) is read with one `GET /vehicles/{id}/signals` (one call
of the monthly budget per pull), with the instance's application token and `sc-user-id`; when
Smartcar refuses the token (its hour ended early) a new one is fetched and the read repeated
once. Every signal is read as a webhook delivery's are (`signals.read_signals`): the same
attributes, units and names on both paths. Once a v3 read succeeded, the vehicle's v2 tokens,
if any, are dropped (`TokenStore.forget_vehicle`).

A vehicle connected before the upgrade whose user id is not known yet is read as before, with
its v2 tokens: the location, odometer and battery in one batch request, with an access token
refreshed when it nears its end, or once more when Smartcar refuses it.

A vehicle whose permissions do not include the location gives no position. A position dated
more than `MAX_FUTURE_SKEW` ahead of the clock is skipped and logged: recorded, it would stand
above every genuine position to come (issue 13).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from shared.models import AttributeValue, Device, Location, Source, too_far_ahead, utc_now
from shared.sources.smartcar.client import SmartcarApi, SmartcarClient, VehicleSnapshot
from shared.sources.smartcar.errors import SmartcarAuthError, SmartcarResponseError
from shared.sources.smartcar.signals import METRES_PER_KM
from shared.sources.smartcar.tokens import ApplicationToken, TokenStore

logger = logging.getLogger(__name__)


class SmartcarSource:
    source = Source.SMARTCAR

    def __init__(
        self,
        *,
        client: Callable[[], SmartcarClient],
        api: Callable[[], SmartcarApi],
        app_token: ApplicationToken,
        user_of: Callable[[str], str | None],
        tokens: TokenStore,
        max_future_skew: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._api = api
        self._app_token = app_token
        # The vehicle's Smartcar user id, when known (one Firestore read).
        self._user_of = user_of
        self._tokens = tokens
        self._max_future_skew = max_future_skew
        self._clock = clock

    def fetch(self, device: Device) -> list[Location]:
        user_id = self._user_of(device.id)
        location = self._v3(device, user_id) if user_id is not None else self._v2(device)
        if location is None:
            return []
        if too_far_ahead(location.timestamp, now=self._clock(), skew=self._max_future_skew):
            logger.warning(
                "Smartcar position dated ahead of the clock skipped (MAX_FUTURE_SKEW)",
                extra={"vehicle_id": device.id, "timestamp": location.timestamp},
            )
            return []
        return [location]

    def _v3(self, device: Device, user_id: str) -> Location | None:
        # Imported here: the payload models load only where a vehicle is read.
        from shared.sources.smartcar import signals
        from shared.sources.smartcar.payloads import Signal

        api = self._api()
        token = self._app_token()
        try:
            found = api.signals(device.id, user_id, token)
        except SmartcarAuthError:
            found = api.signals(device.id, user_id, self._app_token(refused=token))
        # The v2 tokens are of no more use for this vehicle: dropped (a no-op once done).
        self._tokens.forget_vehicle(device.id)
        parsed = []
        for raw in found.signals:
            try:
                parsed.append(Signal.model_validate(raw))
            except ValidationError:
                logger.info("Smartcar signal not understood", extra={"vehicle_id": device.id})
        reading = signals.read_signals(parsed)
        if not reading.located:
            return None
        try:
            return Location(
                id=device.id,
                lat=reading.lat,
                lon=reading.lon,
                timestamp=reading.located_at or int(self._clock().timestamp()),
                speed=reading.speed,
                bearing=reading.bearing,
                battery=reading.battery,
                source=Source.SMARTCAR,
                attributes=reading.attributes,
            )
        except ValidationError as exc:
            raise SmartcarResponseError(
                f"Smartcar's location of vehicle {device.id} is not a position: "
                f"{exc.errors()[0]['msg']}"
            ) from None

    def _v2(self, device: Device) -> Location | None:
        """A vehicle connected before API v3, its user id not known yet: its v2 tokens."""
        client = self._client()
        tokens = self._tokens
        token = tokens.access_token(device.id, client)
        try:
            snapshot = client.snapshot(device.id, token)
        except SmartcarAuthError:
            token = tokens.access_token(device.id, client, refused=token)
            snapshot = client.snapshot(device.id, token)
        return self._location(device, snapshot)

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
