"""The hourly refresh of the Google account (`refresh_devices`), and the device list of the API.

`refresh_device_list` reads the account's trackers from Nova into Firestore `devices` (name,
model, first and last seen; the Traccar unique id is the canonic id) and emails about each
device that is new, except on the very first refresh (`state/google_refresh`), when every device
is new and an email per tracker would be noise.

`refresh` adds what the hourly run does on top:

- auto-registration (`AUTO_REGISTER_SERVICES`): every Google device that is not excluded and
  has no sync service gets one (`AUTO_REGISTER_TIMER` ± `AUTO_REGISTER_DELTA`), with an email;
- the FCM installation expiry watch: one email when it expires within 24 hours, remembered in
  `state/google_credentials` so later runs stay quiet (a new upload resets it);
- smart tracking's end for devices whose runs stopped.

Google is not called at all when no credentials are stored or `state/auth` says
`auth_required`; the report says why. The notifier and the services module are imported where
an email or a registration is due: a cold run with nothing to do loads neither.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from shared.errors import Conflict, Forbidden
from shared.models import Device, Document, Model, Source
from shared.sources.google.account import FCM_EXPIRY_WARNING_SECONDS
from shared.sources.google.credentials import CREDENTIALS_STATE
from shared.sources.google.errors import AuthExpired, CredentialsMissing, GoogleSourceError

if TYPE_CHECKING:
    from shared.runtime import Runtime
    from shared.sources.google.source import GoogleSource

logger = logging.getLogger(__name__)

REFRESH_STATE = "google_refresh"


class RefreshState(Document):
    """`state/google_refresh`: whether the first refresh (no new-device emails) happened."""

    first_run_done: bool = False


class RefreshReport(Model):
    source: Literal["google"] = "google"
    status: Literal["ok", "skipped", "auth_required", "error"]
    reason: str | None = None
    devices: int = 0
    new: list[str] = Field(default_factory=list)
    auto_registered: list[str] = Field(default_factory=list)
    fcm_expiry_notified: bool = False
    smart_tracking_ended: list[str] = Field(default_factory=list)


def skip_reason(runtime: Runtime, google: GoogleSource) -> str | None:
    """Why Google must not be called now, or None."""
    if runtime.store.state.auth().status == "auth_required":
        return "Google credentials expired (auth_required): upload new ones"
    try:
        google.account.credentials()
    except CredentialsMissing as exc:
        return exc.message
    return None


def refresh_device_list(runtime: Runtime, google: GoogleSource) -> tuple[int, list[str]]:
    """Store the account's trackers; returns how many there are and the new ones' ids."""
    listed = google.account.list_devices()
    now = google.account.clock()
    store = runtime.store
    known = {device.id: device for device in store.devices.list()}
    new = []
    for found in listed:
        existing = known.get(found.id)
        if existing is None:
            new.append(found.id)
        store.devices.put(
            Device(
                id=found.id,
                source=Source.GOOGLE,
                name=found.name,
                traccar_unique_id=existing.traccar_unique_id if existing else found.id,
                model=found.model,
                first_seen=existing.first_seen if existing else now,
                last_seen=now,
            )
        )
    state = store.state.get(REFRESH_STATE, RefreshState) or RefreshState()
    if state.first_run_done:
        from shared.notify import Notifier

        notifier = Notifier.from_settings(runtime.settings)
        names = {found.id: found.name for found in listed}
        for device_id in new:
            notifier.new_device(names[device_id], device_id, Source.GOOGLE.value)
    else:
        store.state.put(REFRESH_STATE, RefreshState(first_run_done=True))
    if new:
        logger.info("new Google devices", extra={"devices": new})
    return len(listed), new


def _auto_register(runtime: Runtime) -> list[str]:
    settings = runtime.settings
    if not settings.auto_register_services:
        return []
    from shared.notify import Notifier
    from shared.services import ServiceSpec, upsert_service

    store = runtime.store
    excluded = {e.id for e in store.excluded_devices.list()}
    served = {s.id for s in store.services.list()}
    spec = ServiceSpec(timer=settings.auto_register_timer, delta=settings.auto_register_delta)
    notifier = Notifier.from_settings(settings)
    registered = []
    for device in store.devices.list():
        if device.source != Source.GOOGLE or device.id in excluded or device.id in served:
            continue
        try:
            _, created = upsert_service(runtime, device.id, spec)
        except (Forbidden, Conflict) as exc:
            # Excluded or registered meanwhile by a concurrent run or user.
            logger.info("not auto-registered: %s", exc.message, extra={"device_id": device.id})
            continue
        if created:
            registered.append(device.id)
            notifier.device_auto_registered(device.name, device.id, spec.timer, spec.delta)
    return registered


def _watch_fcm_expiry(runtime: Runtime, google: GoogleSource) -> bool:
    """Email once when the FCM installation token expires within 24 h; True if sent now."""
    from google.cloud import firestore

    account = google.account
    expires_at = account.fcm_expiry(account.credentials())
    now = account.clock()
    if expires_at is None or (expires_at - now).total_seconds() > FCM_EXPIRY_WARNING_SECONDS:
        return False
    client = runtime.store.client
    ref = client.collection("state").document(CREDENTIALS_STATE)

    @firestore.transactional
    def claim(transaction: firestore.Transaction) -> bool:
        # One email per expiry, even with two runs at once: the first to write it wins.
        snapshot = ref.get(transaction=transaction)
        data = snapshot.to_dict() if snapshot.exists else {}
        if data.get("fcm_expiry_notified_for") == expires_at:
            return False
        transaction.set(ref, {**data, "fcm_expiry_notified_for": expires_at})
        return True

    if not claim(client.transaction()):
        return False
    from shared.notify import Notifier

    Notifier.from_settings(runtime.settings).fcm_token_expiring(expires_at)
    return True


def refresh(runtime: Runtime, google: GoogleSource) -> RefreshReport:
    """The hourly run for the Google account (see the module docstring)."""
    ended = google.smart_tracking.sweep()
    reason = skip_reason(runtime, google)
    if reason is not None:
        logger.info("Google refresh skipped: %s", reason)
        return RefreshReport(status="skipped", reason=reason, smart_tracking_ended=ended)
    try:
        count, new = refresh_device_list(runtime, google)
    except AuthExpired as exc:
        return RefreshReport(status="auth_required", reason=exc.message, smart_tracking_ended=ended)
    except GoogleSourceError as exc:
        logger.warning("Google refresh failed: %s", exc.message)
        return RefreshReport(status="error", reason=exc.message, smart_tracking_ended=ended)
    return RefreshReport(
        status="ok",
        devices=count,
        new=new,
        auto_registered=_auto_register(runtime),
        fcm_expiry_notified=_watch_fcm_expiry(runtime, google),
        smart_tracking_ended=ended,
    )


def refresh_for_listing(runtime: Runtime, google: GoogleSource) -> None:
    """`GET /devices` refreshes the Google list first; a failure leaves the stored list."""
    if skip_reason(runtime, google) is not None:
        return
    try:
        refresh_device_list(runtime, google)
    except GoogleSourceError as exc:
        logger.warning("Google device list not refreshed: %s", exc.message)
