"""Access tokens for the Nova API: `gpsoauth.perform_oauth` with the stored AAS token, cached.

Google's answer carries `Auth`, a bearer token living about an hour. It is cached in this
instance's memory and in Firestore (`state/google_token`), and reused by every instance until
`REFRESH_MARGIN` before it expires.

Why Firestore and not the secrets adapter for a bearer credential: a new token comes every
hour, and Secret Manager bills every version that is not destroyed (the adapter can only
disable them), so hourly versions would pile up to hundreds of billed versions a month. The
cached token is short-lived and scoped to Find My Device; it is sealed (AES-GCM,
`shared.store.sealed`) under a key only the functions that use it may read, because every
function (the public webhooks one too) may read Firestore; the token is registered with the
log redaction whenever it is read or made, and no route returns it. The long-lived credential it is
minted from (the AAS token) stays in the secrets adapter. The cache entry remembers a digest of
the credentials it was made with, so new credentials never reuse an old token.

gpsoauth posts to its module constant `AUTH_URL` with no timeout and accepts neither as an
argument. `_oauth_call` sets both for the duration of the call, under a lock, and restores
them: the URL from `GOOGLE_AUTH_URL` (tests point it at a local fake), the timeout through a
subclass of gpsoauth's own TLS adapter (whose cipher tweaks Google requires).

Google's answers without `Auth` (PROTOCOLS.md §5, OAuth; issue 14, point 6):

- `BadAuthentication` is the revoked token, but Google also gives it now and then to a good
  one: only when a second, fresh request gets it too is `TokenRejected` raised (the caller runs
  the expiry handling: pause, drop the token, one email);
- `NeedsBrowser` (the user must sign in in a browser; retrying does not clear it) raises
  `BrowserSignIn`: the caller alerts and backs off, the AAS token stays;
- anything else (a 5xx page, another error, no connection, TLS) raises `AuthFailed`: that run's
  failure, retried later. No `KeyError` escapes.

`TokenGate` (the sign-in backoff) is asked before Google is, and told when a token came.

The Spot API's token (`spot_token`, owner key renewal) is asked the same way and gets the same
handling of Google's refusals; it is kept in this instance's memory only, until
`REFRESH_MARGIN` before it expires. A renewal is rare (an end-to-end-encryption reset, then at
most one attempt per owner key version every `spot.RENEWAL_RETRY` while it fails): what a
Firestore copy would save (one OAuth call on a cold instance) is not worth a sealed write and a
read on each renewal, while memory keeps a warm instance retrying a failed Spot call from asking
Google for a token each run.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import requests

from shared.logs import register_secret
from shared.models import utc_now
from shared.sources.google.credentials import GoogleSecrets, require_aas_token
from shared.sources.google.errors import AuthFailed
from shared.store.google import CachedToken

if TYPE_CHECKING:
    from collections.abc import Mapping

    import gpsoauth
    from requests import PreparedRequest, Response

    from shared.store.google import TokenCache

logger = logging.getLogger(__name__)

OAUTH_SERVICE = "oauth2:https://www.googleapis.com/auth/android_device_manager"
OAUTH_APP = "com.google.android.apps.adm"
OAUTH_CLIENT_SIG = "38918a453d07199354f8b19af05ec6562ced5788"
# The Spot API's token (PROTOCOLS.md §5, "Spot token"): same call, same signature and android_id.
SPOT_SERVICE = "oauth2:https://www.googleapis.com/auth/spot"
SPOT_APP = "com.google.android.gms"
DEFAULT_AUTH_TIMEOUT = 30.0  # seconds for the OAuth exchange
DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)  # when the answer says nothing about it
REFRESH_MARGIN = timedelta(minutes=5)
# The AAS token is dead: a human must make a new one (SPEC.md, "Google credentials expiring").
BAD_AUTHENTICATION = "BadAuthentication"
NEEDS_BROWSER = "NeedsBrowser"

_gpsoauth_lock = threading.Lock()


class TokenRejected(Exception):
    """Google refused the AAS token itself (`error` is Google's word for it)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"Google refused the AAS token: {error}")
        self.error = error


class BrowserSignIn(Exception):
    """Google answered `NeedsBrowser`: a human must sign in to the account in a browser."""


class TokenGate(Protocol):
    def before_token_request(self) -> None:
        """Raise to keep Google from being asked (a backoff runs)."""

    def token_obtained(self) -> None:
        """Google gave a token."""


def credentials_digest(credentials: GoogleSecrets) -> str:
    """Identifies the credentials a token was made with, without revealing them."""
    material = "\n".join(
        (credentials.username, credentials.aas_token or "", credentials.android_id)
    )
    return hashlib.sha256(material.encode()).hexdigest()


@functools.cache
def _timed_adapter() -> type[gpsoauth.AuthHTTPAdapter]:
    # Cold start: gpsoauth (and its crypto stack) loads only when a token must be made.
    import gpsoauth

    class TimedAuthHTTPAdapter(gpsoauth.AuthHTTPAdapter):
        """gpsoauth's TLS adapter with a default timeout (gpsoauth passes none)."""

        def send(
            self,
            request: PreparedRequest,
            stream: bool = False,
            timeout: float | tuple[float, float] | tuple[float, None] | None = None,
            verify: bool | str = True,
            cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
            proxies: Mapping[str, str] | None = None,
        ) -> Response:
            return super().send(
                request,
                stream=stream,
                timeout=DEFAULT_AUTH_TIMEOUT if timeout is None else timeout,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )

    return TimedAuthHTTPAdapter


def _use_adapter(adapter: type[gpsoauth.AuthHTTPAdapter]) -> None:
    """Make gpsoauth build `adapter` for its requests: it looks its adapter class up by name in
    its module on every call, and takes none as an argument."""
    import gpsoauth  # cold start: as in `_timed_adapter`

    # Rebinding a class defined in another module is a monkeypatch mypy rejects as such
    # ("Cannot assign to a type"); the name is gpsoauth's only seam for its adapter.
    gpsoauth.AuthHTTPAdapter = adapter  # type: ignore[misc]


def _oauth_call(
    url: str,
    username: str,
    aas_token: str,
    android_id: str,
    *,
    service: str = OAUTH_SERVICE,
    app: str = OAUTH_APP,
) -> dict[str, str]:
    import gpsoauth  # cold start: as in `_timed_adapter`

    with _gpsoauth_lock:
        saved_url, saved_adapter = gpsoauth.AUTH_URL, gpsoauth.AuthHTTPAdapter
        gpsoauth.AUTH_URL = url
        _use_adapter(_timed_adapter())
        try:
            return gpsoauth.perform_oauth(
                username,
                aas_token,
                android_id,
                service=service,
                app=app,
                client_sig=OAUTH_CLIENT_SIG,
            )
        finally:
            gpsoauth.AUTH_URL = saved_url
            _use_adapter(saved_adapter)


def _expiry(answer: dict[str, str], now: datetime) -> datetime:
    """When the token expires, from `Expiry` (epoch seconds) or `ExpiresInDurationSec`."""
    try:
        expiry = datetime.fromtimestamp(int(answer["Expiry"]), now.tzinfo)
        if now < expiry <= now + timedelta(days=1):
            return expiry
    except (KeyError, ValueError, OverflowError, OSError):
        pass
    try:
        return now + timedelta(seconds=int(answer["ExpiresInDurationSec"]))
    except (KeyError, ValueError):
        return now + DEFAULT_TOKEN_LIFETIME


class TokenProvider:
    """Access tokens from `auth_url`, cached in memory and in `state/google_token`."""

    def __init__(
        self,
        *,
        cache: TokenCache,
        auth_url: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._cache = cache
        self._auth_url = auth_url
        self._clock = clock
        self._memory: CachedToken | None = None
        self._spot: CachedToken | None = None  # memory only: see the module docstring
        self._lock = threading.Lock()

    def _usable(self, cached: CachedToken | None, digest: str) -> bool:
        return (
            cached is not None
            and cached.credentials_digest == digest
            and cached.expires_at - REFRESH_MARGIN > self._clock()
        )

    def token(self, credentials: GoogleSecrets, *, gate: TokenGate | None = None) -> str:
        """A valid access token: from memory, from Firestore, or a new one from Google (after
        `gate` allowed it)."""
        digest = credentials_digest(credentials)
        with self._lock:
            if self._usable(self._memory, digest):
                return self._memory.token  # type: ignore[union-attr]
            stored = self._cache.get()
            if not self._usable(stored, digest):
                if gate is not None:
                    gate.before_token_request()
                stored = self._fetch(credentials, digest)
                self._cache.put(stored)
                if gate is not None:
                    gate.token_obtained()
            register_secret(stored.token)  # type: ignore[union-attr]
            self._memory = stored
            return stored.token  # type: ignore[union-attr]

    def invalidate(self) -> None:
        """Forget the token (Nova refused it, or the credentials changed)."""
        with self._lock:
            self._memory = None
            self._spot = None
            self._cache.delete()

    def forget_spot_token(self) -> None:
        """Forget the Spot API's token (the Spot API refused it)."""
        with self._lock:
            self._spot = None

    def cached(self) -> CachedToken | None:
        """The cached token's record (for the token status route; never shown as such)."""
        return self._cache.get()

    def _fetch(
        self,
        credentials: GoogleSecrets,
        digest: str,
        *,
        service: str = OAUTH_SERVICE,
        app: str = OAUTH_APP,
    ) -> CachedToken:
        aas_token = require_aas_token(credentials)
        now = self._clock()
        answer = self._ask(credentials, aas_token, service=service, app=app)
        if answer.get("Error") == BAD_AUTHENTICATION and not answer.get("Auth"):
            # Google says this now and then to a good token: only a second, fresh request
            # saying it too means the token is dead (issue 14, point 6).
            logger.warning("Google answered BadAuthentication; asking once more")
            answer = self._ask(credentials, aas_token, service=service, app=app)
        token = answer.get("Auth")
        if token:
            register_secret(token)
            logger.info("new Google access token", extra={"scope": service})
            return CachedToken(
                token=token,
                obtained_at=now,
                expires_at=_expiry(answer, now),
                credentials_digest=digest,
            )
        error = answer.get("Error", "")
        if error == BAD_AUTHENTICATION:
            raise TokenRejected(error)
        if error == NEEDS_BROWSER:
            raise BrowserSignIn(error)
        raise AuthFailed(
            f"Google's OAuth endpoint answered without a token (Error={error or 'none'})"
        )

    def spot_token(self, credentials: GoogleSecrets, *, gate: TokenGate | None = None) -> str:
        """A token for the Spot API (owner key renewal, `spot`): from this instance's memory
        (module docstring), or a new one from Google after `gate` allowed it. Google's refusals
        raise as for `token`: `TokenRejected` (twice `BadAuthentication`), `BrowserSignIn`
        (`NeedsBrowser`), `AuthFailed` (anything else)."""
        digest = credentials_digest(credentials)
        with self._lock:
            if not self._usable(self._spot, digest):
                if gate is not None:
                    gate.before_token_request()
                self._spot = self._fetch(credentials, digest, service=SPOT_SERVICE, app=SPOT_APP)
                if gate is not None:
                    gate.token_obtained()
            register_secret(self._spot.token)  # type: ignore[union-attr]
            return self._spot.token  # type: ignore[union-attr]

    def _ask(
        self, credentials: GoogleSecrets, aas_token: str, *, service: str, app: str
    ) -> dict[str, str]:
        try:
            return _oauth_call(
                self._auth_url,
                credentials.username,
                aas_token,
                credentials.android_id,
                service=service,
                app=app,
            )
        except requests.RequestException as exc:
            # TLS errors are RequestExceptions too: that run's failure, never an expiry.
            raise AuthFailed(f"cannot reach Google's OAuth endpoint: {exc}") from None
