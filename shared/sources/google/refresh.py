"""The hourly refresh of the Google account (`refresh_devices`), and the device list of the API.

`refresh_device_list` reads the account's trackers and Android phones from Nova into Firestore
`devices` (name, model, kind `tracker`/`phone`, first and last seen; the Traccar unique id is
the canonic id) and emails about each device that is new, except on the very first refresh
(`state/google_refresh`), when every device is new and an email per tracker would be noise.

`refresh` adds what the hourly run does on top:

- auto-registration (`AUTO_REGISTER_SERVICES`): every Google device that is not excluded and
  has no sync service gets one (`AUTO_REGISTER_TIMER` ± `AUTO_REGISTER_DELTA`), with an email;
- smart tracking's end for devices whose runs stopped.

The FCM installation token's expiry is not watched: the bridge uses it neither to listen (MCS
takes the GCM android_id/security_token) nor to locate (Nova gets the registration token), and
upstream runs for months without refreshing it (PROTOCOLS.md §5); an email about it was a false
alarm.

Google is not called at all when no credentials are stored or `state/auth` says
`auth_required`; the report says why. The sync services (and the scheduler's client) are made
where a registration is due: a cold run with nothing to do makes neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from shared.models import Device, ExcludedDevice, Model, Source
from shared.sources.google.errors import AuthExpired, CredentialsMissing, GoogleSourceError
from shared.store.google import RefreshState

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.services import Services
    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.smart_tracking import SmartTracker
    from shared.store import Repository
    from shared.store.google import AuthMark, RefreshDocument

logger = logging.getLogger(__name__)


class RefreshReport(Model):
    source: Literal["google"] = "google"
    # The account refreshed (its username), when the deployment knows one (ADR 0004).
    account: str | None = None
    status: Literal["ok", "skipped", "auth_required", "error"]
    reason: str | None = None
    devices: int = 0
    new: list[str] = Field(default_factory=list)
    auto_registered: list[str] = Field(default_factory=list)
    smart_tracking_ended: list[str] = Field(default_factory=list)


class GoogleRefresh:
    """The hourly refresh (`refresh`) and the API's device listing (`refresh_for_listing`).

    `services` and `notifier` are called when a registration or an email is due: a refresh
    with nothing to do makes neither (nor loads their modules).
    """

    def __init__(
        self,
        *,
        account: GoogleAccount,
        smart_tracking: SmartTracker,
        auth: AuthMark,
        devices: Repository[Device],
        excluded: Repository[ExcludedDevice] | None = None,
        state: RefreshDocument,
        services: Callable[[], Services],
        notifier: Callable[[], Notifier],
        auto_register: bool,
        auto_register_timer: int,
        auto_register_delta: int,
    ) -> None:
        self._account = account
        self._smart_tracking = smart_tracking
        self._auth = auth
        self._devices = devices
        self._excluded = excluded
        self._state = state
        self._services = services
        self._notifier = notifier
        self._auto_register = auto_register
        self._auto_register_timer = auto_register_timer
        self._auto_register_delta = auto_register_delta

    def skip_reason(self) -> str | None:
        """Why Google must not be called now, or None."""
        if self._auth.get().status == "auth_required":
            return "Google credentials expired (auth_required): upload new ones"
        try:
            self._account.credentials()
        except CredentialsMissing as exc:
            return exc.message
        return None

    def refresh_device_list(self) -> tuple[int, list[str]]:
        """Store the account's trackers; returns how many there are and the new ones' ids.

        Each records the account (ADR 0004). A tracker shared with another account of the
        deployment stays with the account that listed it first: one device, one sync."""
        credentials = self._account.credentials()
        username = credentials.username
        layout = self._account.layout
        listed = self._account.with_token(credentials, self._account.nova.list_devices)
        now = self._account.clock()
        known = {device.id: device for device in self._devices.list()}
        # A device removed (`DELETE /devices/<id>`) while excluded stays away; one excluded
        # but still listed is kept up to date, as before (issue 20).
        excluded = {e.id for e in self._excluded.list()} if self._excluded is not None else set()
        new = []
        for found in listed:
            existing = known.get(found.id)
            if existing is None and found.id in excluded:
                continue
            if (
                existing is not None
                and existing.source == Source.GOOGLE
                and not layout.owns(existing, username)
            ):
                continue  # another account's device (a tracker shared with it)
            if existing is None:
                new.append(found.id)
            self._devices.put(
                Device(
                    id=found.id,
                    source=Source.GOOGLE,
                    name=found.name,
                    traccar_unique_id=existing.traccar_unique_id if existing else found.id,
                    model=found.model,
                    kind=found.kind,
                    account=username,
                    first_seen=existing.first_seen if existing else now,
                    last_seen=now,
                )
            )
        if self._state.get().first_run_done:
            names = {found.id: found.name for found in listed}
            for device_id in new:
                self._notifier().new_device(names[device_id], device_id, Source.GOOGLE.value)
        else:
            self._state.put(RefreshState(first_run_done=True))
        if new:
            logger.info("new Google devices", extra={"devices": new})
        return len(listed), new

    def _register(self) -> list[str]:
        if not self._auto_register:
            return []
        # Cold start: the services module (its models, 2 ms measured) loads only when a
        # registration is due, not with every Google sync that builds this stack.
        from shared.services import ServiceSpec

        spec = ServiceSpec(timer=self._auto_register_timer, delta=self._auto_register_delta)
        layout = self._account.layout
        username = self._account.credentials().username
        return self._services().auto_register(
            Source.GOOGLE, spec, lambda device: layout.owns(device, username)
        )

    def refresh(self) -> RefreshReport:
        """The hourly run for the Google account (see the module docstring)."""
        ended = self._smart_tracking.sweep()
        reason = self.skip_reason()
        if reason is not None:
            logger.info("Google refresh skipped: %s", reason)
            return RefreshReport(status="skipped", reason=reason, smart_tracking_ended=ended)
        try:
            count, new = self.refresh_device_list()
        except AuthExpired as exc:
            return RefreshReport(
                status="auth_required", reason=exc.message, smart_tracking_ended=ended
            )
        except GoogleSourceError as exc:
            logger.warning("Google refresh failed: %s", exc.message)
            return RefreshReport(status="error", reason=exc.message, smart_tracking_ended=ended)
        return RefreshReport(
            status="ok",
            devices=count,
            new=new,
            auto_registered=self._register(),
            smart_tracking_ended=ended,
        )

    def refresh_for_listing(self) -> None:
        """`GET /devices` refreshes the Google list first; a failure leaves the stored list."""
        if self.skip_reason() is not None:
            return
        try:
            self.refresh_device_list()
        except GoogleSourceError as exc:
            logger.warning("Google device list not refreshed: %s", exc.message)
