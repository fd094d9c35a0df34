"""Running the pipeline for one device: what `sync_device` and the API's manual sync call.

The pipeline's module (and Traccar's client with it) is loaded by `runtime.pipeline` when a
run starts: a cold instance answering "unknown device" never imports it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import BadRequest, BridgeError, NotFound
from shared.models import Device, Location, Source

if TYPE_CHECKING:
    from shared.pipeline import RunReport
    from shared.runtime import Runtime

logger = logging.getLogger(__name__)


def device_or_404(runtime: Runtime, device_id: str) -> Device:
    device = runtime.store.devices.get(device_id)
    if device is None:
        raise NotFound(f"unknown device: {device_id}")
    return device


def sync_device(runtime: Runtime, device_id: str, *, force: bool = False) -> RunReport:
    """Fetch the device's positions from its source and push what is new.

    The outbox is drained even when the source cannot fetch the device (none for its vendor,
    the vendor down, no credentials): what waits for Traccar never depends on the vendor. The
    vendor's error is raised after the drain, so the caller still sees the run failed.
    """
    device = device_or_404(runtime, device_id)
    source = runtime.sources.get(device.source)
    if source is None:
        logger.warning(
            "no source can fetch this device; draining its outbox only",
            extra={"device_id": device.id, "source": device.source.value},
        )
        return runtime.pipeline.run(device, list, force=force)
    failures: list[BridgeError] = []

    def fetch() -> list[Location]:
        try:
            return source.fetch(device)
        except BridgeError as exc:
            failures.append(exc)
            return []

    report = runtime.pipeline.run(device, fetch, force=force)
    if failures:
        logger.warning(
            "the source failed; the outbox was drained anyway",
            extra={"device_id": device.id, "error": failures[0].message,
                   "pushed": report.result.pushed},
        )  # fmt: skip
        raise failures[0]
    return report


def scheduled_sync(
    runtime: Runtime,
    device_id: str,
    *,
    jitter_seconds: int,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """A scheduler job's run: cron fires on the minute, so the jitter is applied here."""
    if jitter_seconds:
        sleep(random.uniform(0, jitter_seconds))  # noqa: S311 - spreading load, not crypto
    return sync_device(runtime, device_id)


def push_locations(runtime: Runtime, device: Device, locations: list[Location]) -> RunReport:
    """Push given positions (the API's `?single`) through the same pipeline as a sync run."""
    return runtime.pipeline.run(device, lambda: locations, force=True)


def push_single(runtime: Runtime, device_id: str, location: Location) -> RunReport:
    """Push one given position now (`PUT /traccar/devices/<id>/locations?single`).

    A device the bridge has not seen yet is pushed under its own id, so a user can replay a
    position for any device Traccar knows.
    """
    if location.id != device_id:
        raise BadRequest(f"id: the location's id {location.id!r} is not {device_id!r}")
    device = runtime.store.devices.get(device_id) or Device(
        id=device_id,
        source=location.source or Source.GOOGLE,
        name=device_id,
        traccar_unique_id=device_id,
    )
    return push_locations(runtime, device, [location])


def latest_locations(runtime: Runtime) -> list[Location]:
    """The newest delivered position of every device."""
    return [s.last_location for s in runtime.store.delivery.states() if s.last_location]


def undelivered(runtime: Runtime, locations: list[Location]) -> list[Location]:
    """The given positions Traccar has not accepted yet (the seed's `?filter=`)."""
    from shared.pipeline import is_delivered

    states = {
        device_id: runtime.store.delivery.state(device_id)
        for device_id in {location.id for location in locations}
    }
    return [loc for loc in locations if not is_delivered(states[loc.id], loc)]


def mark_delivered(runtime: Runtime, location: Location) -> str:
    return runtime.pipeline.mark_delivered(location)
