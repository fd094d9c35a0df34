"""Smartcar's API v3 over the instance's HTTP session, and the v2 SDK where it still fits.

API v3 (PROTOCOLS.md §3): one application token (`client_credentials`, one hour) and the header
`sc-user-id` scope every request to a user; `SmartcarApi` speaks it: the token
(`application_token`), the user's connections (`connections`) and a vehicle's signals
(`signals`, paged). It takes its session, base URL, token URL, credentials and timeouts like
pytraccar's client. The official SDK (smartcar 6.19.1) does not speak v3's authentication:
its `Vehicle.get_signals` sends a v2 user token without `sc-user-id`, and it has no
`client_credentials` grant; so v3 goes through `requests` directly, with a timeout of our own
(the SDK's is a fixed 310 s, with no pooled session).

`SmartcarClient` keeps the SDK for what still fits: the Connect URL (unchanged in v3), and, for
vehicles connected before the upgrade whose user id the bridge does not know yet, the v2 token
refresh and the v2 batch read (`snapshot`), until that user id is known.

The client takes what it uses like pytraccar's: the application's credentials (client id and
secret, redirect URI, mode, scopes) and a clock; it reads no environment, settings or store.

The SDK (PyPI `smartcar`) reads its origins from `SMARTCAR_API_ORIGIN`, `SMARTCAR_AUTH_ORIGIN`
(the token URL itself) and `SMARTCAR_CONNECT_ORIGIN` once, when it is first imported, into the
module `smartcar.config`, and looks those attributes up again on every call. The bridge's
configuration may come from a `.env` file the SDK never sees, so they are set once, before the
instance's first Smartcar call (`configure_sdk`, from `tokens.ClientFactory`); no call rewrites
them.

What the SDK does not let a caller choose: each request goes through `requests.request` with a
fixed 310-second timeout and no pooled session. The function's own timeout bounds a hung call;
the vehicle's sync lease (10 minutes) then expires and the next run starts afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from pydantic import AwareDatetime

from shared.errors import ConfigError
from shared.logs import register_secret
from shared.models import Model, utc_now
from shared.sources.smartcar.errors import (
    SmartcarAuthError,
    SmartcarConnectionError,
    SmartcarError,
    SmartcarRateLimited,
    SmartcarResponseError,
)

if TYPE_CHECKING:
    import smartcar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Smartcar's documented lifetimes: access tokens 2 hours (`expires_in` says so too), refresh
# tokens 60 days from their issue.
REFRESH_TOKEN_LIFETIME = timedelta(days=60)
VEHICLES_PAGE_SIZE = 50
DEFAULT_RETRY_AFTER = 60  # seconds, when Smartcar's rate limit answer names none
BATCH_PATHS = ("/location", "/odometer", "/battery")
# API v3: a signals page as large as Smartcar allows, so one pull is one call (the call budget).
SIGNALS_PAGE_SIZE = 100
CONNECTIONS_PAGE_SIZE = 100
# The query names of a page (number, size): the signals' as the bridge has sent them since the
# v3 upgrade (PROTOCOLS.md §3, list-signals.md); `GET /connections`' are JSON:API's, with its
# user filter (https://smartcar.com/docs/api-reference/list-connections.md: `getConnections`
# takes the parameters `FilterUserId`, `PageNumber`, `PageSize`; Smartcar's v3 specs spell
# those `filter[userId]`, `page[number]`, `page[size]`: the management API's `GET /subscriptions`,
# https://smartcar.com/docs/api-reference/list-subscriptions.md). The answer is filtered again
# here (`connections`), so a filter Smartcar ignored lists no other user's vehicle.
SIGNALS_PAGING = ("page", "pageSize")
CONNECTIONS_PAGING = ("page[number]", "page[size]")
CONNECTIONS_USER_FILTER = "filter[userId]"
MAX_PAGES = 20  # a bound on a misbehaving `next` link
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
USER_HEADER = "sc-user-id"
# Answers that mean "these credentials are no good" rather than "try again".
_AUTH_TYPES = frozenset({"AUTHENTICATION", "invalid_grant", "invalid_client", "access_denied"})


class TokenSet(Model):
    """A Smartcar user's tokens (kept in the secrets adapter only, never logged)."""

    access_token: str
    refresh_token: str
    expires_at: AwareDatetime
    refresh_expires_at: AwareDatetime


@dataclass(frozen=True)
class VehicleAttributes:
    id: str
    make: str | None
    model: str | None
    year: int | None


@dataclass(frozen=True)
class VehicleSnapshot:
    """What one batch read found; a part the vehicle or its permissions refuse is None."""

    latitude: float | None
    longitude: float | None
    measured_at: int | None  # epoch seconds: Smartcar's `sc-data-age` of the location
    odometer_km: float | None
    battery_percent: float | None
    range_km: float | None


def translate(exc: Exception, what: str) -> SmartcarError | SmartcarRateLimited:
    """A `SmartcarException` as the bridge's error; `what` says which call failed."""
    status = getattr(exc, "status_code", None)
    kind = getattr(exc, "type", None)
    code = getattr(exc, "code", None)
    detail = ":".join(str(part) for part in (kind, code) if part) or str(exc) or "error"
    if status is None and kind in (None, "SDK_ERROR"):
        # The SDK wraps whatever went wrong in its own exception: the cause tells a network
        # failure from an answer it could not read.
        cause = exc.__cause__
        if isinstance(cause, requests.RequestException):
            return SmartcarConnectionError(
                f"{what}: Smartcar was not reached ({type(cause).__name__})"
            )
        failure = type(cause).__name__ if cause else "no detail"
        return SmartcarResponseError(f"{what}: Smartcar's answer was not understood ({failure})")
    if status == 429:
        retry_after = getattr(exc, "retry_after", None)
        text = str(retry_after or "")
        seconds = int(text) if text.isdigit() else DEFAULT_RETRY_AFTER
        return SmartcarRateLimited(f"{what}: Smartcar's rate limit ({detail})", retry_after=seconds)
    if isinstance(status, int) and status >= 500:
        return SmartcarConnectionError(f"{what}: Smartcar answered {status} ({detail})")
    if status == 401 or kind in _AUTH_TYPES:
        return SmartcarAuthError(f"{what}: Smartcar refused the credentials ({detail})")
    return SmartcarResponseError(f"{what}: Smartcar answered {status} ({detail})")


def is_permission_error(exc: Exception) -> bool:
    """A vehicle that lacks the permission or capability for a read: skip, do not fail."""
    kind = getattr(exc, "type", None)
    return kind in {"PERMISSION", "COMPATIBILITY"} or getattr(exc, "status_code", None) in (
        403,
        501,
    )


@dataclass(frozen=True)
class SdkOrigins:
    """Where the SDK sends its requests: the API, the token URL itself, and Connect."""

    api: str
    auth: str
    connect: str


def configure_sdk(origins: SdkOrigins) -> None:
    """Point the SDK at Smartcar (or a test's server): its module-level origins, set once per
    instance, before its first call (`tokens.ClientFactory`)."""
    import smartcar

    smartcar.config.API_ORIGIN = origins.api.rstrip("/")
    smartcar.config.AUTH_ORIGIN = origins.auth
    smartcar.config.CONNECT_ORIGIN = origins.connect.rstrip("/")


class SmartcarClient:
    """The Smartcar calls the bridge makes; see the module docstring."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str | None,
        mode: str,
        scopes: list[str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not client_id:
            raise ConfigError("SMARTCAR_CLIENT_ID is not set")
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        self._mode = mode
        self._scopes = scopes
        self._clock = clock

    # The SDK

    def _sdk(self) -> Any:
        import smartcar

        return smartcar

    def _auth_client(self, sdk: Any) -> smartcar.AuthClient:
        if self._redirect_uri is None:
            raise ConfigError("SMARTCAR_REDIRECT_URI is not set: Smartcar Connect needs it")
        return sdk.AuthClient(
            client_id=self._client_id,
            client_secret=self._client_secret,
            redirect_uri=self._redirect_uri,
            mode=self._mode,
        )

    def _call(self, what: str, call: Callable[[Any], T]) -> T:
        sdk = self._sdk()
        try:
            return call(sdk)
        except sdk.SmartcarException as exc:
            raise translate(exc, what) from exc

    # Connect

    def authorize_url(self, state: str) -> str:
        """Smartcar Connect's URL for the configured scopes, carrying `state`."""
        sdk = self._sdk()
        return self._auth_client(sdk).get_auth_url(scope=self._scopes, options={"state": state})

    def exchange_code(self, code: str) -> TokenSet:
        access = self._call(
            "exchange the Connect code", lambda sdk: self._auth_client(sdk).exchange_code(code)
        )
        return self._token_set(access)

    def refresh(self, refresh_token: str) -> TokenSet:
        access = self._call(
            "refresh the tokens",
            lambda sdk: self._auth_client(sdk).exchange_refresh_token(refresh_token),
        )
        return self._token_set(access)

    def _token_set(self, access: Any) -> TokenSet:
        if not access.access_token or not access.refresh_token or not access.expires_in:
            raise SmartcarResponseError("Smartcar's token answer lacks a token or expires_in")
        register_secret(access.access_token)
        register_secret(access.refresh_token)
        now = self._clock()
        return TokenSet(
            access_token=access.access_token,
            refresh_token=access.refresh_token,
            expires_at=now + timedelta(seconds=int(access.expires_in)),
            refresh_expires_at=now + REFRESH_TOKEN_LIFETIME,
        )

    # API

    def user_id(self, access_token: str) -> str:
        """The user a v2 access token belongs to (v2 `GET /user`): the same id v3's
        `sc-user-id` takes (Smartcar's migration guide backfills v2 connections' user ids for
        it; tests/fakes/smartcar.py's docstring cites the pages). A pull moving a vehicle to v3
        asks it when its tokens are filed under no usable user id (`SmartcarSource`)."""
        user = self._call("read the user", lambda sdk: sdk.get_user(access_token))
        return str(user.id)

    def vehicle_ids(self, access_token: str) -> list[str]:
        """Every vehicle the tokens give access to, page after page."""
        found: list[str] = []
        while True:
            paging = {"limit": VEHICLES_PAGE_SIZE, "offset": len(found)}

            def list_page(sdk: Any, paging: dict[str, int] = paging) -> Any:
                return sdk.get_vehicles(access_token, paging)

            page = self._call("list the vehicles", list_page)
            found += [str(vehicle_id) for vehicle_id in page.vehicles]
            if not page.vehicles or len(found) >= page.paging.count:
                return found

    def attributes(self, vehicle_id: str, access_token: str) -> VehicleAttributes:
        """Make, model and year; all None when the vehicle does not tell them."""
        try:
            found = self._call(
                f"read vehicle {vehicle_id}",
                lambda sdk: sdk.Vehicle(vehicle_id, access_token).attributes(),
            )
        except SmartcarResponseError:
            return VehicleAttributes(vehicle_id, None, None, None)
        year = int(found.year) if str(found.year or "").isdigit() else None
        return VehicleAttributes(vehicle_id, found.make or None, found.model or None, year)

    def snapshot(self, vehicle_id: str, access_token: str) -> VehicleSnapshot:
        """Location, odometer (km) and battery in one batch request (metric units)."""
        # Imported here: the webhook payload models load only where a vehicle is read.
        from shared.sources.smartcar.payloads import epoch_seconds

        batch = self._call(
            f"read vehicle {vehicle_id}",
            lambda sdk: sdk.Vehicle(vehicle_id, access_token, {"unit_system": "metric"}).batch(
                list(BATCH_PATHS)
            ),
        )
        location = self._part(batch, "location", vehicle_id)
        odometer = self._part(batch, "odometer", vehicle_id)
        battery = self._part(batch, "battery", vehicle_id)
        meta = getattr(location, "meta", None)
        measured_at = epoch_seconds(getattr(meta, "data_age", None)) or epoch_seconds(
            getattr(meta, "fetched_at", None)
        )
        percent = getattr(battery, "percent_remaining", None)
        return VehicleSnapshot(
            latitude=getattr(location, "latitude", None),
            longitude=getattr(location, "longitude", None),
            measured_at=measured_at,
            odometer_km=getattr(odometer, "distance", None),
            # Smartcar's v2 battery answer is a fraction (0..1).
            battery_percent=percent * 100 if isinstance(percent, int | float) else None,
            range_km=getattr(battery, "range", None),
        )

    def _part(self, batch: Any, name: str, vehicle_id: str) -> Any:
        """One part of a batch answer, or None when the vehicle lacks the permission for it."""
        import smartcar

        reader = getattr(batch, name, None)
        if reader is None:
            return None
        try:
            return reader()
        except smartcar.SmartcarException as exc:
            if is_permission_error(exc):
                logger.info(
                    "Smartcar %s not readable for this vehicle: %s",
                    name,
                    getattr(exc, "type", None) or exc,
                    extra={"vehicle_id": vehicle_id},
                )
                return None
            raise translate(exc, f"read the {name} of vehicle {vehicle_id}") from exc


@dataclass(frozen=True)
class AppToken:
    """The v3 application token and when it ends (never logged: `register_secret`)."""

    value: str
    expires_at: datetime


@dataclass(frozen=True)
class SignalsRead:
    """A vehicle's signals as v3 answered them, and what it says of the vehicle."""

    signals: list[dict[str, Any]]  # each in the webhook's shape: code, name, group, body, ...
    make: str | None
    model: str | None
    year: int | None


def _http_error(answer: requests.Response, what: str) -> SmartcarError | SmartcarRateLimited:
    """A v3 answer other than 2xx as the bridge's error."""
    try:
        body = answer.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    kind = body.get("type") or body.get("error")
    detail = ":".join(str(part) for part in (kind, body.get("code")) if part) or "error"
    status = answer.status_code
    if status == 429:
        text = answer.headers.get("Retry-After", "")
        seconds = int(text) if text.isdigit() else DEFAULT_RETRY_AFTER
        return SmartcarRateLimited(f"{what}: Smartcar's rate limit ({detail})", retry_after=seconds)
    if status >= 500:
        return SmartcarConnectionError(f"{what}: Smartcar answered {status} ({detail})")
    if status == 401 or kind in _AUTH_TYPES:
        return SmartcarAuthError(f"{what}: Smartcar refused the credentials ({detail})")
    return SmartcarResponseError(f"{what}: Smartcar answered {status} ({detail})")


class SmartcarApi:
    """Smartcar's API v3 (see the module docstring); reads no environment, settings or store."""

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        timeout: tuple[float, float] = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not client_id:
            raise ConfigError("SMARTCAR_CLIENT_ID is not set")
        self._session = session
        self._base = base_url.rstrip("/")
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._clock = clock

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> Any:
        try:
            answer = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise SmartcarConnectionError(
                f"{what}: Smartcar was not reached ({type(exc).__name__})"
            ) from exc
        if not answer.ok:
            raise _http_error(answer, what)
        try:
            return answer.json()
        except ValueError as exc:
            raise SmartcarResponseError(f"{what}: Smartcar's answer is not JSON") from exc

    def application_token(self) -> AppToken:
        """A new application token (`client_credentials`; the caller keeps it for its hour)."""
        found = self._send(
            "get the application token",
            "POST",
            self._token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        token = found.get("access_token") if isinstance(found, dict) else None
        lifetime = found.get("expires_in") if isinstance(found, dict) else None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise SmartcarResponseError("Smartcar's token answer lacks access_token or expires_in")
        register_secret(token)
        return AppToken(token, self._clock() + timedelta(seconds=float(lifetime)))

    def _get(self, what: str, path: str, token: str, user_id: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", USER_HEADER: user_id}
        found = self._send(what, "GET", self._base + path, headers=headers, params=params)
        if not isinstance(found, dict):
            raise SmartcarResponseError(f"{what}: Smartcar's answer is not an object")
        return found

    def _pages(self, what: str, path: str, token: str, user_id: str, size: int,
               paging: tuple[str, str], filters: dict[str, str] | None = None,
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
        """Every item of a paged answer, and its first page (for `included`); `paging` names
        the page's number and size in the query."""
        items: list[dict[str, Any]] = []
        first: dict[str, Any] = {}
        number_name, size_name = paging
        for page in range(1, MAX_PAGES + 1):
            query = {**(filters or {}), number_name: page, size_name: size}
            found = self._get(what, path, token, user_id, **query)
            first = first or found
            data = found.get("data")
            if not isinstance(data, list):
                raise SmartcarResponseError(f"{what}: Smartcar's answer has no data list")
            items += [item for item in data if isinstance(item, dict)]
            total = (found.get("meta") or {}).get("totalCount")
            more = isinstance(total, int) and len(items) < total
            if not data or not (more or (found.get("links") or {}).get("next")):
                break
        return items, first

    def connections(self, user_id: str, token: str) -> list[VehicleAttributes]:
        """The vehicles `user_id` connected (`GET /connections`), with make, model and year."""
        items, _ = self._pages(
            "list the connections", "/connections", token, user_id, CONNECTIONS_PAGE_SIZE,
            CONNECTIONS_PAGING, {CONNECTIONS_USER_FILTER: user_id},
        )  # fmt: skip
        found: dict[str, VehicleAttributes] = {}
        for item in items:
            relations = item.get("relationships") or {}
            vehicle_id = ((relations.get("vehicle") or {}).get("data") or {}).get("id")
            owner = ((relations.get("user") or {}).get("data") or {}).get("id")
            if not isinstance(vehicle_id, str) or (owner is not None and owner != user_id):
                continue
            described = (item.get("attributes") or {}).get("vehicle") or {}
            year = described.get("year")
            found[vehicle_id] = VehicleAttributes(
                vehicle_id,
                described.get("make") or None,
                described.get("model") or None,
                year if isinstance(year, int) else None,
            )
        return list(found.values())

    def signals(self, vehicle_id: str, user_id: str, token: str) -> SignalsRead:
        """The vehicle's latest signals (`GET /vehicles/{id}/signals`), in the shape webhook
        deliveries carry them (`code`, `name`, `group`, `body`, `status`, `meta`), so both paths
        read them with the same code (`signals.read_signals`)."""
        items, first = self._pages(
            f"read vehicle {vehicle_id}", f"/vehicles/{vehicle_id}/signals", token, user_id,
            SIGNALS_PAGE_SIZE, SIGNALS_PAGING,
        )  # fmt: skip
        found = []
        for item in items:
            attributes = item.get("attributes") or {}
            code = attributes.get("code")
            if not isinstance(code, str) or not code:
                continue
            status = attributes.get("status") or {}
            body = attributes.get("body")
            ok = status.get("value", "SUCCESS") == "SUCCESS" and isinstance(body, dict)
            found.append(
                {"code": code, "name": attributes.get("name"), "group": attributes.get("group"),
                 "body": body if ok else None, "status": status or None,
                 "meta": item.get("meta") or {}}
            )  # fmt: skip
        described = ((first.get("included") or {}).get("vehicle") or {}).get("attributes") or {}
        year = described.get("year")
        return SignalsRead(
            found,
            described.get("make") or None,
            described.get("model") or None,
            year if isinstance(year, int) else None,
        )
