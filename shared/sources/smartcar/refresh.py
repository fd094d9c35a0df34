"""Smartcar's part of the hourly refresh (`shared.device_refresh`): the connected vehicles.

`discover` lists the connections (`GET /connections`, API v3: the application token and
`sc-user-id`) of every user the bridge knows (the user ids its vehicle records hold, from
Connect's redirect or a webhook's `data.user.id`) and records each vehicle not known yet as
Connect does. Listing connections reads no vehicle, so it spends none of a vehicle's monthly
call budget (PROTOCOLS.md §3 counts vehicle requests). A user Smartcar refuses to list fails
that user only; the first failure is the report's. A vehicle is fed by webhooks once a
delivery came for it (`last_event_at`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from shared.models import utc_now
from shared.sources.smartcar.connect import record_connected_vehicle
from shared.sources.smartcar.errors import SmartcarAuthError, SmartcarError

if TYPE_CHECKING:
    from shared.models import Device
    from shared.sources.smartcar.client import SmartcarApi
    from shared.sources.smartcar.tokens import ApplicationToken
    from shared.store.smartcar import SmartcarStore

logger = logging.getLogger(__name__)


class SmartcarDiscovery:
    def __init__(
        self,
        *,
        store: SmartcarStore,
        api: Callable[[], SmartcarApi],
        app_token: ApplicationToken,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._api = api
        self._app_token = app_token
        self._clock = clock

    def discover(self) -> None:
        vehicles = self._store.vehicles()
        users = sorted({vehicle.user_id for vehicle in vehicles if vehicle.user_id})
        if not users:
            return
        known = {vehicle.id for vehicle in vehicles}
        api = self._api()
        failure: SmartcarError | None = None
        for user_id in users:
            token = self._app_token()
            try:
                try:
                    described = api.connections(user_id, token)
                except SmartcarAuthError:
                    described = api.connections(user_id, self._app_token(refused=token))
            except SmartcarError as exc:
                logger.warning("Smartcar connections not listed", extra={
                    "smartcar_user": user_id, "error": exc.message})  # fmt: skip
                failure = failure or exc
                continue
            now = self._clock()
            for vehicle in described:
                if vehicle.id not in known:
                    record_connected_vehicle(self._store, vehicle, user_id, now)
                    known.add(vehicle.id)
        if failure is not None:
            raise failure

    def webhook_fed(self, device: Device) -> bool:
        record = self._store.vehicle(device.id)
        return record is not None and record.last_event_at is not None


__all__ = ["SmartcarDiscovery"]
