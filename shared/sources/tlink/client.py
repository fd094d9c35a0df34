"""TLINK's REST API: an OAuth password-grant token, kept fresh, and `getDeviceSensorDatas`.

Token (PROTOCOLS.md §4): `POST <base>/oauth/token?grant_type=password&username=..&password=..`
with `Authorization: Basic base64(clientId:clientSecret)` answers `access_token`, `expires_in`
and `refresh_token`. API calls carry `Authorization: Bearer <token>` and `tlinkAppId: <clientId>`.

Where the token lives (docs/tlink.md): the access token and its expiry in Firestore
`state/tlink_token`, sealed under the state key (`shared.store.sealed`: the webhooks function may
read Firestore, not the key), so every instance reuses it until it expires instead of asking for
one per cold start; a token that does not open is fetched anew. The refresh token lives only
in the memory of the instance that got it. The token is renewed `TOKEN_MARGIN` before it
expires, and at once when TLINK answers `invalid_token` (revoked, or replaced by another
instance's refresh): first with the refresh token, and when TLINK refuses that (or the instance
has none) with the password grant. Every token is
registered with `shared.logs.register_secret`, so no log line shows it; error texts never hold
a URL (the password grant's URL carries the password).

    TlinkError                 502, the base
    ├── TlinkAuthError         503, credentials missing or refused: fix the secret
    ├── TlinkConnectionError   503, TLINK not reached (refused, timed out, cut)
    └── TlinkResponseError     502, an answer that is not a success (HTTP status or `flag`)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ValidationError

from shared.errors import BridgeError
from shared.logs import register_secret
from shared.models import utc_now
from shared.sources.tlink.models import (
    ApiDevice,
    CachedToken,
    Credentials,
    SensorDataPage,
    TokenAnswer,
)

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 20.0
PAGE_SIZE = 100  # TLINK's maximum
MAX_PAGES = 1_000  # 100 000 devices: a `pages` beyond it is a broken answer, not an account
TOKEN_MARGIN = timedelta(minutes=5)
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path
SENSOR_DATA_PATH = "/api/device/getDeviceSensorDatas"
# TLINK's own Python sample for this endpoint calls it with GET and a JSON body
# (`requests.get(url, headers=headers, json=data)`, PROTOCOLS.md §4), as seed 002 did.
SENSOR_DATA_METHOD = "GET"
SUCCESS_FLAG = "00"


class TlinkError(BridgeError):
    status = 502


class TlinkAuthError(TlinkError):
    status = 503


class TlinkConnectionError(TlinkError):
    status = 503


class TlinkResponseError(TlinkError):
    status = 502


class _GrantRefused(TlinkAuthError):
    """TLINK refused a grant (bad credentials, unknown or expired refresh token)."""


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_invalid_token(response: requests.Response) -> bool:
    body = _json(response)
    said = isinstance(body, dict) and body.get("error") == "invalid_token"
    return response.status_code == 401 or said


class TokenCache(Protocol):
    """Where the access token is shared between instances (`shared.store.tlink.TokenDocument`);
    the client reads and writes nothing else."""

    def get(self) -> CachedToken | None: ...

    def put(self, token: CachedToken) -> None: ...


class TlinkClient:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        credentials: Callable[[], Credentials],
        token_cache: TokenCache,
        clock: Callable[[], datetime] = utc_now,
        timeout: tuple[float, float] = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._host = urlsplit(self._base).netloc.rpartition("@")[2]
        self._load_credentials = credentials
        self._loaded: Credentials | None = None
        self._token_cache = token_cache
        self._clock = clock
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: CachedToken | None = None
        self._refresh_token: str | None = None
        self._rejected: str | None = None

    def _credentials(self) -> Credentials:
        # Kept until TLINK refuses them: then the secret is read again (it may have been fixed).
        if self._loaded is None:
            self._loaded = self._load_credentials()
        return self._loaded

    # --- API ---------------------------------------------------------------------------------

    def device_sensor_datas(
        self, user_id: str, *, device_id: int | None = None
    ) -> Iterator[ApiDevice]:
        """The user's devices (or the one `device_id`) with their sensors, every page."""
        page = 1
        while True:
            body: dict[str, object] = {
                "userId": int(user_id) if user_id.isdigit() else user_id,
                "currPage": page,
                "pageSize": PAGE_SIZE,
            }
            if device_id is not None:
                body["deviceId"] = device_id
            answer = self._parse(self._call(SENSOR_DATA_PATH, body), SensorDataPage)
            if answer.flag != SUCCESS_FLAG:
                raise TlinkResponseError(
                    f"TLINK {SENSOR_DATA_PATH} failed: flag {answer.flag}: {answer.msg or ''}"
                )
            yield from answer.dataList
            if page >= answer.pages or not answer.dataList:
                return
            page += 1
            if page > MAX_PAGES:
                raise TlinkResponseError(f"TLINK {SENSOR_DATA_PATH} claims over {MAX_PAGES} pages")

    def _call(self, path: str, body: dict[str, object]) -> Any:
        for attempt in (1, 2):
            token = self.access_token()
            headers = {
                "Authorization": f"Bearer {token}",
                "tlinkAppId": self._credentials().clientId,
            }
            response = self._send(SENSOR_DATA_METHOD, path, json=body, headers=headers)
            if _is_invalid_token(response):
                logger.info("TLINK refused its access token; renewing it", extra={"path": path})
                self._reject(token)
                if attempt == 1:
                    continue
                raise TlinkAuthError("TLINK refused a freshly issued access token")
            if response.status_code != 200:
                raise TlinkResponseError(f"TLINK {path} answered HTTP {response.status_code}")
            return _json(response)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- Token -------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A token valid for at least `TOKEN_MARGIN`: this instance's, the shared one, or new."""
        with self._lock:
            now = self._clock()
            if self._token is None or not self._fresh(self._token, now):
                self._token = self._shared_token(now) or self._obtain(now)
            return self._token.access_token

    def _fresh(self, token: CachedToken, now: datetime) -> bool:
        return token.expires_at - TOKEN_MARGIN > now and token.access_token != self._rejected

    def _shared_token(self, now: datetime) -> CachedToken | None:
        cached = self._token_cache.get()
        if cached is None:
            return None
        register_secret(cached.access_token)
        return cached if self._fresh(cached, now) else None

    def _reject(self, token: str) -> None:
        with self._lock:
            self._rejected = token
            self._token = None

    def _obtain(self, now: datetime) -> CachedToken:
        if self._refresh_token is not None:
            try:
                return self._grant(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh_token}, now
                )
            except _GrantRefused:
                logger.info("TLINK refused the refresh token; using the password grant")
                self._refresh_token = None
        credentials = self._credentials()
        try:
            return self._grant(
                {
                    "grant_type": "password",
                    "username": credentials.username,
                    "password": credentials.password,
                },
                now,
            )
        except _GrantRefused:
            self._loaded = None
            raise

    def _grant(self, params: dict[str, str], now: datetime) -> CachedToken:
        credentials = self._credentials()
        grant = params["grant_type"]
        response = self._send(
            "POST", TOKEN_PATH, params=params, auth=(credentials.clientId, credentials.clientSecret)
        )
        if response.status_code in (400, 401):
            body = _json(response)
            error = body.get("error") if isinstance(body, dict) else None
            raise _GrantRefused(
                f"TLINK refused the {grant} grant (HTTP {response.status_code}"
                + (f", {error}" if isinstance(error, str) else "")
                + "): check the credentials secret"
            )
        if response.status_code != 200:
            raise TlinkResponseError(f"TLINK {TOKEN_PATH} answered HTTP {response.status_code}")
        answer = self._parse(_json(response), TokenAnswer)
        register_secret(answer.access_token)
        if answer.refresh_token:
            register_secret(answer.refresh_token)
            self._refresh_token = answer.refresh_token
        token = CachedToken(
            access_token=answer.access_token,
            expires_at=now + timedelta(seconds=answer.expires_in),
            obtained_at=now,
            grant=grant,
        )
        self._token_cache.put(token)
        logger.info("TLINK access token obtained", extra={"grant": grant})
        return token

    # --- Transport ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, self._base + path, timeout=self._timeout, **kwargs)
        except requests.Timeout:
            raise TlinkConnectionError(f"TLINK at {self._host}: no answer in time") from None
        except requests.RequestException:
            # The exception's text holds the URL, and the token grant's URL the password.
            raise TlinkConnectionError(f"TLINK at {self._host} could not be reached") from None

    @staticmethod
    def _parse(data: Any, model: type[M]) -> M:
        if data is None:
            raise TlinkResponseError(f"TLINK answered no JSON where a {model.__name__} was due")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fields = sorted({".".join(map(str, error["loc"])) for error in exc.errors()})
            raise TlinkResponseError(
                f"TLINK answered an unexpected {model.__name__} (fields: {', '.join(fields)})"
            ) from None
