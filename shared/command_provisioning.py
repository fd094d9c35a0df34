"""The hourly pass that gives existing Traccar devices the Find Hub sender's attributes (issue 15).

The pipeline writes `command.sender=findHub`, `command.findHub.url` and `command.findHub.key`
(PROTOCOLS.md §2b) onto a device only when it creates or finds one after Traccar said it does
not know it. A device that existed before (made by an older version of the bridge, or by hand
in Traccar) never meets that path, and a rotated command key would reach no device. So the
hourly `refresh_devices` run calls `CommandProvisioning.run`: for every device the bridge
knows, its Traccar device carries the current attributes. Its cost is bounded: one Firestore
query of the devices, one `GET /api/devices`, and one PUT per device whose attributes differ
(none in the steady state).

Nothing happens without `API_URL` or a stored command key (`Runtime.command_attributes`), nor
without `TRACCAR_API_URL`. Refused credentials are said once, as the pipeline says them
(`TraccarApiWatch`); any Traccar failure ends the pass for this hour, reported, never raised:
the rest of the hourly run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from shared.models import Model

if TYPE_CHECKING:
    from shared.pipeline import TraccarApiStatus
    from shared.store import DeviceRepository
    from shared.traccar import TraccarApi

logger = logging.getLogger(__name__)


class CommandProvisioningReport(Model):
    """What the pass did, for the run's answer and its log."""

    status: Literal["done", "skipped", "failed"]
    reason: str | None = None  # why skipped or failed; never holds a secret
    found: int = 0  # the bridge's devices Traccar lists
    missing: int = 0  # the bridge's devices Traccar does not list (created on their first push)
    updated: list[str] = Field(
        default_factory=list
    )  # Traccar unique ids whose attributes were written
    failed: list[str] = Field(default_factory=list)  # Traccar unique ids it refused to update


class CommandProvisioning:
    def __init__(
        self,
        *,
        devices: DeviceRepository,
        traccar_api: Callable[[], TraccarApi | None],
        command_attributes: Callable[[], dict[str, str] | None],
        api_status: TraccarApiStatus | None = None,
    ) -> None:
        self._devices = devices
        # Callables, read per run: new credentials or a rotated key count from the next run.
        self._traccar_api = traccar_api
        self._command_attributes = command_attributes
        self._api_status = api_status

    def run(self) -> CommandProvisioningReport:
        attributes = self._command_attributes()
        if attributes is None:
            return CommandProvisioningReport(
                status="skipped", reason="API_URL or the Traccar command key is not set"
            )
        # Cold start: Traccar's client loads only when there is something to provision.
        from shared.traccar import TraccarAuthError, TraccarError

        try:
            api = self._traccar_api()
            if api is None:
                return CommandProvisioningReport(
                    status="skipped", reason="TRACCAR_API_URL is unset"
                )
            unique_ids = {device.traccar_unique_id for device in self._devices.list()}
            if not unique_ids:
                return CommandProvisioningReport(status="done")
            result = api.ensure_attributes(unique_ids, attributes)
        except TraccarError as exc:
            if self._api_status is not None and isinstance(exc, TraccarAuthError):
                self._api_status.unauthorized(str(exc))  # once per incident
            logger.warning(
                "Traccar devices not given the command attributes this run",
                extra={"reason": str(exc)},
            )
            return CommandProvisioningReport(status="failed", reason=str(exc))
        if self._api_status is not None:
            self._api_status.working()
        if result.updated:
            logger.info(
                "command attributes written onto Traccar devices",
                extra={"updated": len(result.updated)},
            )
        return CommandProvisioningReport(
            status="done",
            found=result.found,
            missing=result.missing,
            updated=list(result.updated),
            failed=list(result.failed),
        )
