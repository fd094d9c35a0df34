"""The hourly refresh of TLINK's and Smartcar's devices (`refresh_devices`), as Google's does it.

For each vendor whose pulls are configured (TLINK: its credentials secret; Smartcar:
`SMARTCAR_CLIENT_ID`; otherwise the vendor is skipped, silently, and the others go on):

1. the vendor lists the account's devices and records the new ones (`Discovery.discover`:
   TLINK's `getDeviceSensorDatas` pages, Smartcar's `GET /connections` of every user the
   bridge knows); a failure is the vendor's report (`error`), the rest of the refresh goes on;
2. each device of the vendor first seen since the previous refresh (recorded by this listing,
   a webhook or a Connect) is mailed about once, unless excluded; the very first refresh mails
   nothing, as Google's; the window is moved before mailing, so no device is mailed twice;
3. with `AUTO_REGISTER_SERVICES`, every device of the vendor without a service that is not
   excluded gets one (`Services.auto_register`, `AUTO_REGISTER_TIMER` ± `AUTO_REGISTER_DELTA`;
   Smartcar's lengthened to fit `SMARTCAR_MONTHLY_CALLS`, `Services.fitting_spec`), **except a
   device whose vendor webhooks deliver its positions** (a TLINK device that pushed, a Smartcar
   vehicle a webhook delivered): it needs no pull, and a Smartcar pull spends the vehicle's
   monthly call budget. Those are listed in the report (`webhook_fed`); a pull service for one
   is a `PUT /devices/<id>/services` or Traccar's `position-periodic` away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import Field

from shared.errors import BridgeError
from shared.models import Device, ExcludedDevice, Model, Source, utc_now

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.services import Services
    from shared.store import Repository
    from shared.store.vendor_refresh import VendorRefreshDocument

logger = logging.getLogger(__name__)


class VendorRefreshReport(Model):
    source: Literal["tlink", "smartcar"]
    status: Literal["ok", "skipped", "error"]
    reason: str | None = None
    devices: int = 0  # the vendor's devices the bridge knows after the refresh
    new: list[str] = Field(default_factory=list)
    auto_registered: list[str] = Field(default_factory=list)
    # Devices left without a pull service: their vendor's webhooks deliver their positions.
    webhook_fed: list[str] = Field(default_factory=list)


class Discovery(Protocol):
    """What a vendor gives the refresh."""

    def discover(self) -> None:
        """List the account's devices and record the new ones (a `BridgeError` on failure)."""

    def webhook_fed(self, device: Device) -> bool:
        """Whether the vendor's webhooks deliver this device's positions."""


class VendorRefresh:
    """One vendor's hourly refresh (see the module docstring)."""

    def __init__(
        self,
        *,
        source: Source,  # TLINK or SMARTCAR
        skip_reason: Callable[[], str | None],
        discovery: Callable[[], Discovery],
        devices: Repository[Device],
        excluded: Repository[ExcludedDevice],
        state: VendorRefreshDocument,
        services: Callable[[], Services],
        notifier: Callable[[], Notifier],
        auto_register: bool,
        auto_register_timer: int,
        auto_register_delta: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._source = source
        # Callables: a vendor that is not configured loads none of its modules (cold start).
        self._skip_reason = skip_reason
        self._discovery = discovery
        self._devices = devices
        self._excluded = excluded
        self._state = state
        self._services = services
        self._notifier = notifier
        self._auto_register = auto_register
        self._timer = auto_register_timer
        self._delta = auto_register_delta
        self._clock = clock

    def refresh(self) -> VendorRefreshReport:
        """The vendor's report; whatever fails here is the report's, never the whole
        refresh's: the other vendors, the sweep and the alerts still run."""
        name: Literal["tlink", "smartcar"] = "tlink" if self._source == Source.TLINK else "smartcar"
        try:
            return self._refresh(name)
        except BridgeError as exc:
            logger.warning("%s refresh failed: %s", name, exc.message)
            return VendorRefreshReport(source=name, status="error", reason=exc.message)
        except Exception as exc:  # one vendor must not stop the others
            logger.exception("%s refresh failed", name)
            # Only the type: an unexpected error's text may hold what must not be shown.
            reason = f"unexpected {type(exc).__name__} (see the logs)"
            return VendorRefreshReport(source=name, status="error", reason=reason)

    def _refresh(self, name: Literal["tlink", "smartcar"]) -> VendorRefreshReport:
        reason = self._skip_reason()
        if reason is not None:
            return VendorRefreshReport(source=name, status="skipped", reason=reason)
        discovery = self._discovery()
        status: Literal["ok", "error"] = "ok"
        error = None
        try:
            discovery.discover()
        except BridgeError as exc:
            # The devices known already are still registered; the next hour lists again.
            logger.warning("%s device list not refreshed: %s", name, exc.message)
            status, error = "error", exc.message
        # After the listing: what it recorded falls in this refresh's window, not the next.
        listed_at = self._clock()
        devices = [d for d in self._devices.list() if d.source == self._source]
        excluded = {e.id for e in self._excluded.list()}
        new = self._new(devices, excluded, listed_at)
        registered, fed = self._register(discovery)
        return VendorRefreshReport(
            source=name,
            status=status,
            reason=error,
            devices=len(devices),
            new=[device.id for device in new],
            auto_registered=registered,
            webhook_fed=fed,
        )

    def _new(self, devices: list[Device], excluded: set[str], listed_at: datetime) -> list[Device]:
        """The devices first seen since the previous refresh (none on the very first), mailed
        about once: the window moves first, so a failure after it mails nobody twice."""
        since = self._state.get().listed_at
        self._state.put_listed_at(listed_at)
        if since is None:
            return []
        new = [d for d in devices if since < d.first_seen <= listed_at and d.id not in excluded]
        for device in new:
            self._notifier().new_device(device.name, device.id, self._source.value)
        if new:
            logger.info(
                "new %s devices", self._source.value, extra={"devices": [d.id for d in new]}
            )
        return new

    def _register(self, discovery: Discovery) -> tuple[list[str], list[str]]:
        if not self._auto_register:
            return [], []
        # Cold start: the services module loads when a vendor is configured, not otherwise.
        from shared.services import ServiceSpec

        fed: list[str] = []

        def pulled(device: Device) -> bool:
            if discovery.webhook_fed(device):
                fed.append(device.id)
                return False
            return True

        spec = ServiceSpec(timer=self._timer, delta=self._delta)
        # Smartcar's spec is lengthened there to fit the vehicle's monthly call budget.
        registered = self._services().auto_register(self._source, spec, pulled)
        return registered, fed


def missing_secret(read: Callable[[], object], what: str, name: str) -> str | None:
    """None when `read()` finds the secret, else why the vendor is skipped."""
    from shared.secrets import SecretNotFound

    try:
        read()
    except SecretNotFound:
        return f"no {what} stored (secret {name}): its devices are not listed"
    return None


__all__ = ["Discovery", "VendorRefresh", "VendorRefreshReport", "missing_secret"]
