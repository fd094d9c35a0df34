"""What needs the user about the Google account: one email per incident, `/health` until it clears.

Only what a human must act on is alerted (issue 14, point 3); a failure that the next run may
well not meet (a network error, a 5xx, one refused check-in) is that run's error and no more.

- `SIGN_IN` (Google answered `NeedsBrowser`, PROTOCOLS.md §5 OAuth): Google wants the user to
  sign in in a browser. Unlike `BadAuthentication` (the expiry handling, `expiry`), the AAS
  token is kept and the jobs keep their schedule; Google is asked again only after a backoff
  (`SIGN_IN_RETRY_BASE` doubling up to `SIGN_IN_RETRY_MAX`), since asking sooner does not clear
  it and each refusal may weigh against the account. A token obtained clears it.
- `MCS_LOGIN` (MCS refused the login, or the check-in before it, `MCS_REFUSALS_ALERT` sessions in
  a row): the stored GCM registration is probably dead, or port 5228 is blocked. A login clears it.
- `OWNER_KEY` (the owner key does not decrypt the identity keys and cannot be renewed): every
  locate fails until new credentials come. A decrypted update clears it.

Uploading new credentials clears them all (`cleared_by_upload`): they deserve a fresh try.

An incident opens with a conditional write (`AlertsDocument.open`): of runs hitting it at the
same time, exactly one sends the email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.models import utc_now
from shared.sources.google.errors import SignInRequired
from shared.store.google import GoogleAlert

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.store.google import AlertsDocument, CredentialsStateDocument

logger = logging.getLogger(__name__)

SIGN_IN = "google_sign_in"
MCS_LOGIN = "google_mcs_login"
OWNER_KEY = "google_owner_key"
SIGN_IN_RETRY_BASE = timedelta(hours=1)
SIGN_IN_RETRY_MAX = timedelta(hours=24)
# Sessions in a row whose login (or check-in) was refused before the user is told: one refusal
# is often Google's passing mood, three in a row (at least three timer periods) is not.
MCS_REFUSALS_ALERT = 3

SIGN_IN_MESSAGE = (
    "Google wants a browser sign-in for the account (NeedsBrowser): sign in at "
    "accounts.google.com from the region you deploy in, then upload new credentials "
    "(PUT /auth/secrets); until then Google is asked again every few hours"
)


def sign_in_backoff(attempts: int) -> timedelta:
    return min(SIGN_IN_RETRY_MAX, SIGN_IN_RETRY_BASE * 2 ** max(0, attempts - 1))


class GoogleAlerts:
    """Opens, reports and clears the account's alerts (see the module docstring).

    `notifier` is called when an email is due: the notifier's module loads then, not with
    every Google run.
    """

    def __init__(
        self,
        *,
        document: AlertsDocument,
        credentials_state: CredentialsStateDocument,
        notifier: Callable[[], Notifier],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._document = document
        self._credentials_state = credentials_state
        self._notifier = notifier
        self._clock = clock

    def open(self, name: str, reason: str, email: Callable[[Notifier], object]) -> bool:
        """Open the incident `name` (emailing once); True when this call opened it."""
        now = self._clock()
        if not self._document.open(name, GoogleAlert(reason=reason, since=now)):
            return False
        logger.error("Google alert: %s", reason, extra={"alert": name})
        try:
            email(self._notifier())
        except Exception:
            # The alert is recorded (and shown by /health); a lost email must not fail the run.
            logger.exception("could not send the email of the alert %s", name)
        return True

    def clear(self, name: str, known: dict[str, GoogleAlert] | None = None) -> None:
        alerts = self._document.get() if known is None else known
        if name in alerts:
            self._document.clear(name)
            logger.info("Google alert cleared", extra={"alert": name})

    def cleared_by_upload(self) -> None:
        self._document.clear(SIGN_IN, MCS_LOGIN, OWNER_KEY)

    # --- NeedsBrowser ---------------------------------------------------------------------------

    def before_token_request(self) -> None:
        """`SignInRequired` while the sign-in alert's backoff runs: Google is not asked."""
        alert = self._document.get().get(SIGN_IN)
        if alert is not None and alert.retry_at is not None and alert.retry_at > self._clock():
            raise SignInRequired(f"{SIGN_IN_MESSAGE}; next attempt at {alert.retry_at.isoformat()}")

    def token_obtained(self) -> None:
        self.clear(SIGN_IN)

    def sign_in_refused(self) -> SignInRequired:
        """Google answered `NeedsBrowser`: open the alert (or move its backoff on)."""
        now = self._clock()
        current = self._document.get().get(SIGN_IN)
        if current is None:
            retry_at = now + sign_in_backoff(1)
            if self.open(SIGN_IN, SIGN_IN_MESSAGE, lambda n: n.google_sign_in_required()):
                self._document.put(
                    SIGN_IN,
                    GoogleAlert(reason=SIGN_IN_MESSAGE, since=now, retry_at=retry_at),
                )
        else:
            attempts = current.attempts + 1
            retry_at = now + sign_in_backoff(attempts)
            self._document.put(
                SIGN_IN,
                current.model_copy(update={"retry_at": retry_at, "attempts": attempts}),
            )
        return SignInRequired(f"{SIGN_IN_MESSAGE}; next attempt at {retry_at.isoformat()}")

    # --- MCS ------------------------------------------------------------------------------------

    def mcs_refused(self, reason: str) -> None:
        """A session's check-in or login was refused; the `MCS_REFUSALS_ALERT`th in a row alerts."""
        refusals = self._credentials_state.add_mcs_refusal()
        if refusals >= MCS_REFUSALS_ALERT:
            message = (
                f"MCS (FCM) refused {refusals} sessions in a row, the last with: {reason}. "
                "Check that outbound TCP 5228 is open; otherwise the stored GCM registration is "
                "dead: make new credentials with GoogleFindMyTools and upload them "
                "(PUT /auth/secrets)"
            )
            self.open(MCS_LOGIN, message, lambda n: n.google_mcs_login_refused(message))

    def mcs_logged_in(self) -> None:
        if self._credentials_state.reset_mcs_refusals():
            self.clear(MCS_LOGIN)

    # --- the owner key --------------------------------------------------------------------------

    def owner_key_not_renewable(self, reason: str) -> None:
        message = (
            f"the stored owner key no longer decrypts the trackers' keys and cannot be renewed "
            f"({reason}): make new credentials with GoogleFindMyTools and upload them "
            "(PUT /auth/secrets)"
        )
        self.open(OWNER_KEY, message, lambda n: n.google_owner_key_not_renewable(message))

    def owner_key_works(self, known: dict[str, GoogleAlert] | None = None) -> None:
        self.clear(OWNER_KEY, known)

    def current(self) -> dict[str, GoogleAlert]:
        return self._document.get()
