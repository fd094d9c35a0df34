"""Smart tracking (seed 000, SPEC.md "Scheduling"): locate a moving tracker more often.

When a locate finds a device more than `SMART_TRACKING_DISTANCE` metres (great-circle) from its
newest delivered position, its scheduler job switches to `SMART_TRACKING_TIMER` ±
`SMART_TRACKING_DELTA` seconds for `SMART_TRACKING_DURATION` seconds; further movement extends
that. The first run after the end puts the job back on the service's own timer and delta.

State (`smart_tracking/<device id>`): the end time and the timer and delta the job had before.
The `Service` document keeps the user's timer all along, so `GET /services` shows what the user
asked for, and a `PUT /devices/<id>/services` during smart tracking is what the job returns to.
Only devices with an active (not paused) sync service are sped up: without a job there is
nothing to schedule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, Field

from shared.models import Document, Location, utc_now
from shared.store import Repository

if TYPE_CHECKING:
    from shared.runtime import Runtime

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


class SmartTrackingState(Document):
    id: str = Field(min_length=1)
    until: AwareDatetime
    since: AwareDatetime
    original_timer: int
    original_delta: int


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance between two positions (haversine), in metres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    d_phi = phi2 - phi1
    d_lambda = math.radians(b.lon - a.lon)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class SmartTracker:
    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._clock = clock
        self._states = Repository(runtime.store.client, "smart_tracking", SmartTrackingState)

    @property
    def enabled(self) -> bool:
        return self._settings.smart_tracking_enabled

    def observe(self, device_id: str, located: list[Location]) -> None:
        """A locate of `device_id` found `located`: start, extend or end smart tracking."""
        if not self.enabled:
            return
        now = self._clock()
        state = self._states.get(device_id)
        if state is not None and state.until <= now:
            self._restore(state)
            state = None
        if not located:
            return
        newest = max(located, key=lambda location: location.timestamp)
        delivered = self._runtime.store.delivery.state(device_id).last_location
        if delivered is None or newest.timestamp <= delivered.timestamp:
            return
        moved = distance_m(delivered, newest)
        if moved <= self._settings.smart_tracking_distance:
            return
        until = now + timedelta(seconds=self._settings.smart_tracking_duration)
        if state is not None:
            self._states.put(state.model_copy(update={"until": until}))
            return
        service = self._runtime.store.services.get(device_id)
        if service is None or service.paused:
            return
        self._runtime.scheduler.upsert(
            device_id,
            timer=self._settings.smart_tracking_timer,
            delta=self._settings.smart_tracking_delta,
        )
        self._states.put(
            SmartTrackingState(
                id=device_id,
                until=until,
                since=now,
                original_timer=service.timer,
                original_delta=service.delta,
            )
        )
        logger.info(
            "device moved: smart tracking on",
            extra={"device_id": device_id, "moved_m": round(moved), "until": until.isoformat()},
        )

    def sweep(self) -> list[str]:
        """End every smart tracking whose time is up (refresh_devices runs it hourly)."""
        if not self.enabled:
            return []
        now = self._clock()
        ended = [state for state in self._states.list() if state.until <= now]
        for state in ended:
            self._restore(state)
        return [state.id for state in ended]

    def _restore(self, state: SmartTrackingState) -> None:
        service = self._runtime.store.services.get(state.id)
        if service is not None:
            # The service's own values: the user may have changed them meanwhile.
            self._runtime.scheduler.upsert(state.id, timer=service.timer, delta=service.delta)
        self._states.delete(state.id)
        logger.info("smart tracking off", extra={"device_id": state.id})
