"""Google credentials expiring, and coming back (SPEC.md, "Google credentials expiring").

When Google refuses the AAS token (`BadAuthentication`, twice: `auth`), `expire` runs the
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

`NeedsBrowser` is not an expiry: the token stays and nothing is paused (`alerts`).

`restore` is the other way: new credentials were stored; `state/auth` goes back to `ok` and
every paused Google sync job resumes.

With several accounts (ADR 0004) each has its own handling: the state is the account's
(`layout`), only the jobs of the account's devices pause and resume, and the email names the
account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.models import Device, Source
from shared.sources.google.credentials import GoogleSecrets, read_secrets, write_secrets
from shared.sources.google.errors import AuthExpired, AuthFailed, CredentialsMissing
from shared.sources.google.layout import AccountLayout

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.secrets import SecretStore
    from shared.services import Services
    from shared.sources.google.auth import TokenProvider
    from shared.store.google import AuthMark

logger = logging.getLogger(__name__)

EXPIRED_MESSAGE = (
    "Google refused the stored credentials ({error}): upload new ones with PUT /auth/secrets "
    "or PUT /auth/aas-token"
)


class GoogleExpiry:
    """The expiry handling and its way back (see the module docstring).

    `services` is called when jobs are to be paused or resumed, `notifier` when the email is
    due: the scheduler's client is made (and the notifier's module loaded) then, not when a
    Google sync merely starts (a cold start would pay for them on every run).
    """

    def __init__(
        self,
        *,
        auth: AuthMark,
        secrets: SecretStore,
        secret_name: str,
        tokens: TokenProvider,
        services: Callable[[], Services],
        notifier: Callable[[], Notifier],
        layout: AccountLayout | None = None,
    ) -> None:
        self._layout = layout or AccountLayout.first()
        self._auth = auth
        self._secrets = secrets
        self._secret_name = secret_name
        self._tokens = tokens
        self._services = services
        self._notifier = notifier

    def expire(self, credentials: GoogleSecrets, error: str) -> AuthExpired | AuthFailed:
        """Run the expiry handling (once); returns the error the refused run should raise."""
        if self._replaced(credentials):
            return AuthFailed(
                "Google refused credentials that have been replaced since; the next run uses "
                "the new ones"
            )
        message = EXPIRED_MESSAGE.format(error=error)
        username = credentials.username
        if not self._auth.mark_required(f"Google answered {error}", username=username):
            return AuthExpired(message)
        logger.error("Google credentials expired; pausing Google syncs", extra={"error": error})

        def owned(device: Device) -> bool:
            return self._layout.owns(device, username)

        steps: tuple[tuple[str, Callable[[], object]], ...] = (
            (
                "pause the Google sync jobs",
                lambda: self._services().pause_source(Source.GOOGLE, owned),
            ),
            ("remove the dead aas_token", lambda: self._strip_aas_token(credentials)),
            ("forget the access token", self._tokens.invalidate),
            ("send the expiry email", lambda: self._notifier().google_token_expired(username)),
        )
        for what, step in steps:
            try:
                step()
            except Exception:
                # The state says auth_required already; the remaining steps still matter.
                logger.exception("expiry handling: could not %s", what)
        return AuthExpired(message)

    def restore(self, username: str | None = None) -> int:
        """New credentials are stored: clear `auth_required`, resume the account's paused
        Google sync jobs."""
        self._auth.mark_ok("credentials uploaded", username=username)
        return self._services().resume_source(
            Source.GOOGLE, lambda device: self._layout.owns(device, username)
        )

    def _strip_aas_token(self, dead: GoogleSecrets) -> None:
        current = read_secrets(self._secrets, self._secret_name)
        if current.aas_token != dead.aas_token:
            return  # replaced meanwhile: not ours to remove
        write_secrets(
            self._secrets, self._secret_name, current.model_copy(update={"aas_token": None})
        )

    def _replaced(self, credentials: GoogleSecrets) -> bool:
        """True when another AAS token was stored since `credentials` were read.

        A version without any token is the refused one, stripped by a concurrent expiry handling.
        """
        try:
            current = read_secrets(self._secrets, self._secret_name)
        except CredentialsMissing:
            return True
        return current.aas_token is not None and current.aas_token != credentials.aas_token
