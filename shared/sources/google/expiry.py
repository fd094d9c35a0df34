"""Google credentials expiring, and coming back (SPEC.md, "Google credentials expiring").

When Google refuses the AAS token (`BadAuthentication` / `NeedsBrowser`), `expire` runs the
expiry handling exactly once, however many runs hit the refusal at the same time: a conditional
Firestore write turns `state/auth` from `ok` into `auth_required`, and only the run whose write
made that change goes on to

1. pause every Google sync job (scheduler job paused, `Service.paused` set);
2. store a new version of the secret without the dead `aas_token` (older versions disabled);
3. forget the cached access token;
4. send one email.

`/health` answers 503 from then on (it reads `state/auth`). Each step is attempted even when an
earlier one failed: the state already says what happened, and a missed email is worse than a
logged scheduler error.

A run whose credentials were replaced while it was talking to Google (a new upload raced its
refusal) does nothing of that: the new credentials deserve a try.

`restore` is the other way: new credentials were stored; `state/auth` goes back to `ok` and
every paused Google sync job resumes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.errors import NotFound
from shared.models import AuthState, Source
from shared.sources.google.auth import TokenProvider
from shared.sources.google.credentials import GoogleSecrets, read_secrets, write_secrets
from shared.sources.google.errors import AuthExpired, AuthFailed, CredentialsMissing

if TYPE_CHECKING:
    from shared.runtime import Runtime

logger = logging.getLogger(__name__)

AUTH_STATE = "auth"
EXPIRED_MESSAGE = (
    "Google refused the stored credentials ({error}): upload new ones with PUT /auth/secrets "
    "or PUT /auth/aas-token"
)


def _mark_auth_required(runtime: Runtime, reason: str) -> bool:
    """Turn `state/auth` into `auth_required`; True only for the run that changed it.

    Optimistic, like the leases: read, then write on condition that nobody wrote in between
    (`last_update_time`, or `create` when there is no document yet). Of runs racing here,
    exactly one write succeeds; the others learn it at once (no transaction backoff).
    """
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition

    client = runtime.store.client
    ref = client.collection("state").document(AUTH_STATE)
    snapshot = ref.get()
    if snapshot.exists and snapshot.get("status") == "auth_required":
        return False
    data = AuthState(status="auth_required", reason=reason).model_dump(mode="python")
    try:
        if snapshot.exists:
            ref.update(data, option=client.write_option(last_update_time=snapshot.update_time))
        else:
            ref.create(data)
    except (AlreadyExists, FailedPrecondition):
        return False
    return True


def google_services(runtime: Runtime) -> list[str]:
    """Ids of the sync services whose device is a Google tracker."""
    google = {d.id for d in runtime.store.devices.list() if d.source == Source.GOOGLE}
    return [s.id for s in runtime.store.services.list() if s.id in google]


def _pause_google_services(runtime: Runtime) -> int:
    paused = 0
    for service_id in google_services(runtime):
        service = runtime.store.services.get(service_id)
        if service is None or service.paused:
            continue
        try:
            runtime.scheduler.pause(service_id)
        except NotFound:
            logger.warning("no scheduler job to pause", extra={"device_id": service_id})
        runtime.store.services.put(service.model_copy(update={"paused": True}))
        paused += 1
    return paused


def _strip_aas_token(runtime: Runtime, dead: GoogleSecrets) -> None:
    name = runtime.settings.google_secret_name
    current = read_secrets(runtime.secrets, name)
    if current.aas_token != dead.aas_token:
        return  # replaced meanwhile: not ours to remove
    write_secrets(runtime.secrets, name, current.model_copy(update={"aas_token": None}))


def _replaced(runtime: Runtime, credentials: GoogleSecrets) -> bool:
    """True when another AAS token was stored since `credentials` were read.

    A version without any token is the refused one, stripped by a concurrent expiry handling.
    """
    try:
        current = read_secrets(runtime.secrets, runtime.settings.google_secret_name)
    except CredentialsMissing:
        return True
    return current.aas_token is not None and current.aas_token != credentials.aas_token


def expire(
    runtime: Runtime, credentials: GoogleSecrets, error: str, tokens: TokenProvider
) -> AuthExpired | AuthFailed:
    """Run the expiry handling (once); returns the error the refused run should raise."""
    if _replaced(runtime, credentials):
        return AuthFailed(
            "Google refused credentials that have been replaced since; the next run uses the "
            "new ones"
        )
    message = EXPIRED_MESSAGE.format(error=error)
    if not _mark_auth_required(runtime, f"Google answered {error}"):
        return AuthExpired(message)
    logger.error("Google credentials expired; pausing Google syncs", extra={"error": error})
    from shared.notify import Notifier  # loaded only when the credentials die

    steps = (
        ("pause the Google sync jobs", lambda: _pause_google_services(runtime)),
        ("remove the dead aas_token", lambda: _strip_aas_token(runtime, credentials)),
        ("forget the access token", tokens.invalidate),
        ("send the expiry email", Notifier.from_settings(runtime.settings).google_token_expired),
    )
    for what, step in steps:
        try:
            step()
        except Exception:
            # The state says auth_required already; the remaining steps still matter.
            logger.exception("expiry handling: could not %s", what)
    return AuthExpired(message)


def restore(runtime: Runtime) -> int:
    """New credentials are stored: clear `auth_required`, resume paused Google sync jobs."""
    runtime.store.state.put(AUTH_STATE, AuthState(status="ok", reason="credentials uploaded"))
    restarted = 0
    for service_id in google_services(runtime):
        service = runtime.store.services.get(service_id)
        if service is None or not service.paused:
            continue
        try:
            runtime.scheduler.resume(service_id)
        except NotFound:
            runtime.scheduler.upsert(service_id, timer=service.timer, delta=service.delta)
        runtime.store.services.put(service.model_copy(update={"paused": False}))
        restarted += 1
    return restarted
