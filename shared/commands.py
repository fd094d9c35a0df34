"""Traccar's "Send command" through its Find Hub sender drives the bridge (PROTOCOLS.md §2b).

A device in Traccar whose attributes say `command.sender=findHub` gets, when a user sends it a
command, an empty-bodied `POST <api>/devices/<uniqueId>/<command>` with `Authorization: Bearer
<command key>`. Traccar waits about 5 s for the answer; a Google locate takes up to a minute.
So every command answers at once and the work outlives the answer:

    position-single     one sync of the device now, the position arriving with that run: its
                        sync job runs (Cloud Scheduler's RunJob, locally the loop's next
                        tick); a device without a service (none made, `position-stop`,
                        auto-registration off or not for it) gets a one-shot job made and
                        run, which its run deletes (`JobScheduler.run_once`); an excluded
                        device is refused (409): the user said not to sync it
    position-periodic   create or update the device's sync service with `interval` seconds
                        (the auto-registration timer when Traccar 6.8 sends none)
    position-stop       remove the device's sync service (none is no error)

`<uniqueId>` is the id the bridge pushes to Traccar with (`Device.traccar_unique_id`), which is
not always the bridge's own device id (TLINK, Smartcar). The command key is a secret of its own
(`traccar-command-key`), good for these routes only: Traccar shows device attributes to every
user who can see the device, so the API token must never be written there. It rotates as the
API token does (issue 20): its newest version works at once, the one before it for
`ROTATION_GRACE_HOURS` (the devices meanwhile carry the new one, `Runtime.command_attributes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import Conflict, NotConfigured, NotFound, Unauthorized
from shared.models import Device, ExcludedDevice
from shared.web import matches_rotated

if TYPE_CHECKING:
    from shared.scheduler import JobScheduler
    from shared.secrets import CachedSecrets
    from shared.services import Services
    from shared.store import DeviceRepository, Repository
    from shared.web import RotatedTokens

logger = logging.getLogger(__name__)

# Two devices sharing one Traccar unique id is a misconfiguration; two are enough to see it.
UNIQUE_ID_MATCHES = 2


class TraccarCommands:
    """The three Find Hub commands on the bridge's sync services."""

    def __init__(
        self,
        *,
        devices: DeviceRepository,
        excluded: Repository[ExcludedDevice],
        services: Callable[[], Services],
        scheduler: Callable[[], JobScheduler],
        key_versions: RotatedTokens,
        secrets: CachedSecrets,
        key_secret: str,
        default_timer: int,
        default_delta: int,
    ) -> None:
        self._devices = devices
        self._excluded = excluded
        # Callables: the services' and the scheduler's modules load when a command is valid.
        self._services = services
        self._scheduler = scheduler
        # The key's versions still accepted (`Runtime.accepted_versions`: the API token's).
        self._key_versions = key_versions
        self._secrets = secrets
        self._key_secret = key_secret
        self._default_timer = default_timer
        self._default_delta = default_delta

    def authorize(self, presented: str | None) -> None:
        """The request's bearer value must be the command key, or during the grace the version
        it replaced (constant time); 503 naming the secret when no key is stored, 401
        otherwise."""
        matched = matches_rotated((presented or "").encode(), self._key_versions)
        if matched is None:
            raise NotConfigured(self._not_stored())
        if not presented or not matched:
            raise Unauthorized("missing or wrong command key")

    def _not_stored(self) -> str:
        """Why no version is accepted: none stored (the read says how to store one with this
        backend), or only an empty one."""
        from shared.secrets import SecretNotFound, missing

        try:
            self._secrets.read(self._key_secret)
        except SecretNotFound as exc:
            return missing("Traccar command key", self._key_secret, exc)
        return f"secret {self._key_secret} is empty: store the command key"

    def device(self, unique_id: str) -> Device:
        """The bridge's device that pushes to Traccar as `unique_id`, or a 404 naming it."""
        found = self._devices.get(unique_id)
        if found is not None and found.traccar_unique_id == unique_id:
            return found  # the common case (Google): one read, no query
        matches = self._devices.with_traccar_unique_id(unique_id, limit=UNIQUE_ID_MATCHES)
        if not matches:
            raise NotFound(f"unknown device: no device pushes to Traccar as {unique_id}")
        if len(matches) > 1:
            raise Conflict(f"more than one device pushes to Traccar as {unique_id}")
        return matches[0]

    def locate_now(self, unique_id: str) -> None:
        """`position-single`: one sync of the device runs now, after this answer: its job's, or
        a one-shot job's when it has no service; an excluded device is a 409."""
        device = self.device(unique_id)
        if self._excluded.get(device.id) is not None:
            raise Conflict(
                f"device {unique_id} is excluded from syncing: "
                f"DELETE /excluded-devices/{unique_id} first"
            )
        scheduler = self._scheduler()
        try:
            scheduler.run(device.id)
        except NotFound:
            # No sync service: Traccar waits ~5 s and a Google locate takes up to a minute, so
            # the run is Cloud Scheduler's (locally the loop's), as a service's would be.
            scheduler.run_once(device.id)
        logger.info("sync run requested by a Traccar command", extra={"device_id": device.id})

    def periodic(self, unique_id: str, interval: int | None) -> None:
        """`position-periodic`: sync every `interval` seconds (the auto-registration timer
        without one), with the auto-registration jitter."""
        from shared.services import ServiceSpec

        device = self.device(unique_id)
        timer = interval if interval is not None else self._default_timer
        spec = ServiceSpec(timer=timer, delta=self._default_delta)
        self._services().upsert(device.id, spec)

    def stop(self, unique_id: str) -> None:
        """`position-stop`: remove the device's sync service, if it has one."""
        device = self.device(unique_id)
        self._services().delete(device.id)
