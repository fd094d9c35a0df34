"""The Google account as the rest of the bridge sees it: credentials, tokens, the device list.

`GoogleAccount` (one per function instance, built by the runtime's Google stack) reads the stored
credentials, gets access tokens (running the expiry handling when Google refuses the AAS
token) and calls Nova with a token, fetching a fresh one once when Nova answers 401.

The credential routes of the API are its methods too: `upload_secrets` (`PUT /auth/secrets`),
`replace_aas_token` (`PUT /auth/aas-token`) and `token_status` (`POST /auth/token-status`).
None of them returns or logs a secret: the secrets adapter registers every value it stores for
log redaction, and the answers carry states and times only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from shared.errors import Conflict
from shared.models import AuthState, Model, utc_now
from shared.sources.google.auth import BrowserSignIn, TokenProvider, TokenRejected
from shared.sources.google.client import GoogleDevice, NovaClient, NovaUnauthorized
from shared.sources.google.credentials import (
    GoogleSecrets,
    GoogleSecretsUpload,
    fcm_installation_expiry,
    read_secrets,
    write_secrets,
)
from shared.sources.google.errors import CredentialsMissing
from shared.sources.google.layout import AccountLayout
from shared.store.google import CredentialsState

if TYPE_CHECKING:
    from shared.secrets import SecretStore
    from shared.sources.google.alerts import GoogleAlerts
    from shared.sources.google.expiry import GoogleExpiry
    from shared.store.google import AuthMark, CredentialsStateDocument

logger = logging.getLogger(__name__)

T = TypeVar("T")
FCM_EXPIRY_WARNING_SECONDS = 24 * 3600


class GoogleAccount:
    def __init__(
        self,
        *,
        secrets: SecretStore,
        secret_name: str,
        tokens: TokenProvider,
        nova: NovaClient,
        expiry: GoogleExpiry,
        credentials_state: CredentialsStateDocument,
        auth: AuthMark,
        alerts: GoogleAlerts,
        layout: AccountLayout | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        # Which account of the deployment this is, and so its secret and documents (ADR 0004).
        self.layout = layout or AccountLayout.first()
        self._secrets = secrets
        self._secret_name = secret_name
        self.tokens = tokens
        self.nova = nova
        self._expiry = expiry
        self._credentials_state = credentials_state
        self._auth = auth
        self.alerts = alerts
        self.clock = clock

    def credentials(self) -> GoogleSecrets:
        """The stored credentials (`CredentialsMissing` if none)."""
        return read_secrets(self._secrets, self._secret_name)

    def access_token(self, credentials: GoogleSecrets) -> str:
        """A token; Google's twice-confirmed `BadAuthentication` runs the expiry handling,
        `NeedsBrowser` opens the sign-in alert (the token is kept, asked again after a
        backoff, the jobs keep their schedule: issue 14, point 6)."""
        try:
            return self.tokens.token(credentials, gate=self.alerts)
        except TokenRejected as exc:
            raise self._expiry.expire(credentials, exc.error) from None
        except BrowserSignIn:
            raise self.alerts.sign_in_refused() from None

    def spot_token(self, credentials: GoogleSecrets) -> str:
        """A token for the Spot API (owner key renewal), Google's refusals handled as for
        `access_token`: the same AAS token is refused, whichever scope it is asked for."""
        try:
            return self.tokens.spot_token(credentials, gate=self.alerts)
        except TokenRejected as exc:
            raise self._expiry.expire(credentials, exc.error) from None
        except BrowserSignIn:
            raise self.alerts.sign_in_refused() from None

    def with_token(self, credentials: GoogleSecrets, call: Callable[[str], T]) -> T:
        """`call(token)`; after a 401, once more with a fresh token."""
        try:
            return call(self.access_token(credentials))
        except NovaUnauthorized:
            logger.info("Nova refused the cached access token; getting a new one")
            self.tokens.invalidate()
            return call(self.access_token(credentials))

    def list_devices(self) -> list[GoogleDevice]:
        return self.with_token(self.credentials(), self.nova.list_devices)

    def credentials_state(self) -> CredentialsState:
        return self._credentials_state.get()

    def auth_state(self) -> AuthState:
        """The account's auth state (`ok`, or `auth_required` once Google refused it)."""
        return self._auth.get()

    def fcm_expiry(self, credentials: GoogleSecrets) -> datetime | None:
        state = self.credentials_state()
        return state.fcm_expires_at or fcm_installation_expiry(credentials, state.uploaded_at)

    # --- the credential routes --------------------------------------------------------------

    def upload_secrets(self, upload: GoogleSecretsUpload) -> int:
        """Store a whole secrets.json; returns how many paused sync jobs resumed."""
        write_secrets(self._secrets, self._secret_name, upload)
        now = self.clock()
        self._credentials_state.put(
            CredentialsState(uploaded_at=now, fcm_expires_at=fcm_installation_expiry(upload, now))
        )
        self.tokens.invalidate()
        # New credentials deserve a try at once: no sign-in backoff, no stale incident.
        self.alerts.cleared_by_upload()
        restarted = self._expiry.restore(upload.username)
        logger.info("Google credentials uploaded", extra={"services_restarted": restarted})
        return restarted

    def replace_aas_token(self, aas_token: str) -> int:
        """Replace only the stored `aas_token`; returns how many paused sync jobs resumed."""
        try:
            current = self.credentials()
        except CredentialsMissing:
            raise Conflict(
                "no Google credentials stored to put the token in: upload the whole "
                "secrets.json with PUT /auth/secrets"
            ) from None
        updated = current.model_copy(update={"aas_token": aas_token})
        write_secrets(self._secrets, self._secret_name, updated)
        self.tokens.invalidate()
        self.alerts.cleared_by_upload()
        restarted = self._expiry.restore(current.username)
        logger.info("Google AAS token replaced", extra={"services_restarted": restarted})
        return restarted

    def store_owner_key(
        self, owner_key: str, version: int, *, renewed_from: GoogleSecrets
    ) -> GoogleSecrets | None:
        """Keep a renewed owner key (hex) and its version (`spot`): a new version of the
        credentials secret, so that every later run and every instance reads it. The upload
        time and the access token stay as they are.

        Written only if the stored credentials are still `renewed_from` (those the renewal
        started with); None, nothing written, when they changed meanwhile: a user's upload
        wins over a renewal made from the credentials it replaced. Secret Manager has no
        compare-and-set, so the latest version is read again just before the new one is added;
        that leaves a window of one call, not of the whole session."""
        current = self.credentials()
        if current.to_json() != renewed_from.to_json():
            logger.warning(
                "the Google credentials changed while the owner key was renewed; the renewed "
                "key is not stored over them"
            )
            return None
        updated = current.model_copy(update={"owner_key": owner_key, "owner_key_version": version})
        write_secrets(self._secrets, self._secret_name, updated)
        return updated

    def token_status(self) -> TokenStatus:
        """`POST /auth/token-status`: presence, age and expiry of the credentials, no value."""
        now = self.clock()
        auth = self._auth.get()
        try:
            credentials: GoogleSecrets | None = self.credentials()
        except CredentialsMissing:
            credentials = None
        state = self.credentials_state()
        cached = self.tokens.cached()
        access = AccessTokenView(cached=False)
        if cached is not None:
            access = AccessTokenView(
                cached=True,
                obtained_at=cached.obtained_at,
                expires_at=cached.expires_at,
                age_seconds=int((now - cached.obtained_at).total_seconds()),
                valid=cached.expires_at > now,
            )
        fcm = FcmInstallationView()
        expires_at = self.fcm_expiry(credentials) if credentials is not None else None
        if expires_at is not None:
            left = int((expires_at - now).total_seconds())
            fcm = FcmInstallationView(
                expires_at=expires_at,
                expires_in_seconds=left,
                expiring_soon=left <= FCM_EXPIRY_WARNING_SECONDS,
            )
        return TokenStatus(
            account=credentials.username if credentials is not None else None,
            credentials=CredentialsView(
                stored=credentials is not None,
                aas_token_present=credentials is not None and credentials.aas_token is not None,
                auth_status=auth.status,
                auth_reason=auth.reason or None,
                uploaded_at=state.uploaded_at,
            ),
            access_token=access,
            fcm_installation=fcm,
        )


class CredentialsUploaded(Model):
    """The answer of `PUT /auth/secrets` and `PUT /auth/aas-token`."""

    status: Literal["ok"] = "ok"
    services_restarted: int
    # The account (username) the credentials were filed under (ADR 0004).
    account: str | None = None


class CredentialsView(Model):
    stored: bool
    aas_token_present: bool
    auth_status: Literal["ok", "auth_required"]
    auth_reason: str | None = None
    uploaded_at: datetime | None = None


class AccessTokenView(Model):
    cached: bool
    obtained_at: datetime | None = None
    expires_at: datetime | None = None
    age_seconds: int | None = None
    valid: bool = False


class FcmInstallationView(Model):
    expires_at: datetime | None = None
    expires_in_seconds: int | None = None
    expiring_soon: bool = False


class TokenStatus(Model):
    """`POST /auth/token-status`: presence, age and expiry of the credentials, no value."""

    account: str | None = None  # the account's username, when credentials are stored
    credentials: CredentialsView
    access_token: AccessTokenView
    fcm_installation: FcmInstallationView
