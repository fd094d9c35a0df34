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

from shared.errors import NotFound
from shared.models import Location, utc_now
from shared.store.google import SmartTrackingState

if TYPE_CHECKING:
    from shared.services import Services
    from shared.store import DeliveryRepository, Repository

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


def distance_m(a: Location, b: Location) -> float:
    """Great-circle distance between two positions (haversine), in metres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    d_phi = phi2 - phi1
    d_lambda = math.radians(b.lon - a.lon)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class SmartTracker:
    """Told of every Google locate before delivery (`shared.sync.MovementTracker`).

    `services` is called only when a job is to be retimed or restored: the scheduler's client
    is made then, not on every sync of a tracker that did not move.
    """

    def __init__(
        self,
        *,
        states: Repository[SmartTrackingState],
        delivery: DeliveryRepository,
        services: Callable[[], Services],
        enabled: bool,
        distance: float,
        duration: int,
        timer: int,
        delta: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._states = states
        self._delivery = delivery
        self._services = services
        self.enabled = enabled
        self._distance = distance
        self._duration = duration
        self._timer = timer
        self._delta = delta
        self._clock = clock

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
        delivered = self._delivery.state(device_id).last_location
        if delivered is None or newest.timestamp <= delivered.timestamp:
            return
        moved = distance_m(delivered, newest)
        if moved <= self._distance:
            return
        until = now + timedelta(seconds=self._duration)
        if state is not None:
            self._states.put(state.model_copy(update={"until": until}))
            return
        services = self._services()
        try:
            service = services.get(device_id)
        except NotFound:
            return
        if service.paused or not services.retime(device_id, timer=self._timer, delta=self._delta):
            return
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
        # The service's own values: the user may have changed them meanwhile.
        self._services().restore_timer(state.id)
        self._states.delete(state.id)
        logger.info("smart tracking off", extra={"device_id": state.id})
