"""A local Smartcar for tests: Connect, the token endpoint and the vehicle API, over a real socket.

One `SmartcarServer` plays Smartcar's three origins: point `SMARTCAR_CONNECT_ORIGIN` and
`SMARTCAR_API_ORIGIN` at `.url`, and `SMARTCAR_AUTH_ORIGIN` at `.token_url`. It speaks the
wire protocol the official SDK speaks (PROTOCOLS.md §3, Smartcar's API reference):

- `GET /oauth/authorize?response_type=code&client_id&redirect_uri&scope&state&mode` is the
  user's consent: 302 to `redirect_uri?code=..&state=..`, or `?error=access_denied&..` after
  `deny_next_consent()`. A client id or redirect URI other than the registered ones is a 400.
- `POST /oauth/token` (form, HTTP Basic client credentials): `authorization_code` (single-use
  code, same redirect URI) and `refresh_token` grants answer `access_token`, `token_type`,
  `expires_in` (7200), `refresh_token`. A refresh rotates the pair: the old refresh token and
  access token stop working, as they do at Smartcar. Errors: 401 `invalid_client`, 400
  `invalid_grant`.
- `GET /v2.0/user`, `GET /v2.0/vehicles?limit&offset` (paged, `paging.count` is the total),
  `GET /v2.0/vehicles/<id>/` (attributes), `POST /v2.0/vehicles/<id>/batch` with per-path
  answers (`/location`, `/odometer`, `/battery`) whose headers carry `sc-data-age`. A bearer
  token that is unknown, revoked or rotated away is a 401 `AUTHENTICATION`; a read the vehicle
  lacks the permission for is a 403 `PERMISSION` (in a batch, for that path only).
- `DELETE /v2.0/management/connections/?vehicle_id=<id>` (HTTP Basic `default:<management
  token>`, the management API; the Python SDK's `smartcar.delete_connections`, smartcar 6.x
  `smartcar/smartcar.py`) disconnects the vehicle from the application and answers
  `{"connections": [{"vehicleId", "userId", "connectedAt"}]}`, empty when it was not connected;
  a wrong management token is a 401. Pass `management_token` to serve it (404 otherwise).
  `disconnected` lists the vehicles disconnected so far.
- API v3 (PROTOCOLS.md §3; checked against https://smartcar.com/docs/api-reference/vehicles-api-intro
  (base `https://vehicle.api.smartcar.com/v3`), https://smartcar.com/docs/api-reference/list-signals.md
  (OpenAPI `getVehicleSignals`: header `sc-user-id` required, `page`/`pageSize`),
  https://smartcar.com/docs/api-reference/get-signal, https://smartcar.com/docs/api-reference/list-connections.md
  (OpenAPI `getConnections`: parameters `FilterUserId`, `FilterVehicleId`, `FilterVehicleMode`,
  `PageNumber`, `PageSize`; no `sc-user-id` among them),
  https://smartcar.com/docs/api-reference/list-subscriptions.md (Smartcar's management.yml
  v3 spelling of those kinds: `filter[userId]`, `filter[vehicleId]`, `filter[vehicle.mode]`,
  `page[number]`, `page[size]`), https://smartcar.com/docs/api-reference/get-connection
  (`GET /connections/{connectionId}`, not served: the bridge does not call it),
  `connect/handle-the-response`, blog https://smartcar.com/de/blog/introducing-smartcar-api-v3,
  2026-04-22):
  - Connect's consent redirects with `user_id` (and `state`), no code: `handle-the-response`
    ("Smartcar will redirect the user back ... along with a `user_id`").
  - `POST /oauth2/token` (`iam_token_url`), form `grant_type=client_credentials`, `client_id`,
    `client_secret`: one application token, `expires_in` 3600, no refresh token (the blog: "one
    application-level access token, valid for an hour"). Wrong credentials: 401
    `invalid_client`. `expire_app_tokens()` ends those issued so far.
  - Under `vehicle_api_url` (`/v3`), with `Authorization: Bearer <application token>`:
    `GET /v3/connections?filter[userId]&page[number]&page[size]` (a page of 10 by default),
    the application's connections (its user's, and `other_connections`), narrowed to one user
    by `filter[userId]`. The stored `list-connections.md` names that parameter only by its
    reference `FilterUserId`; `filter[userId]` is how Smartcar's v3 management spec spells
    the same filter on `GET /subscriptions`, and how third-party v3 clients found with the
    search tool (string `vehicle.api.smartcar.com/v3/connections`) call it, with
    `page[number]`/`page[size]`. Any other parameter (`userId`, `page`, `pageSize`) is
    ignored. `honour_user_filter = False` plays a Smartcar that ignores the filter: the bridge
    keeps only the connections whose `relationships.user` is its user. `sc-user-id` is
    accepted and not required. The answer: `{"data": [{"id", "type": "connection",
    "attributes": {"permissions", "vehicle": {make, model, year}}, "relationships":
    {"vehicle": {"data": {"id"}}, "user": {"data": {"id"}}}}], "meta": {"page", "pageSize",
    "totalCount"}}`. With the header
    `sc-user-id` (required; 400 without it): `GET /v3/vehicles/<id>/signals?page&pageSize`
    (`{"data": [{"id", "type": "signal", "attributes": {"code", "name", "group", "status":
    {"value"}, "body"}, "meta": {"retrievedAt", "oemUpdatedAt"}}], "meta": {"page", "pageSize",
    "totalCount"}, "links": {"next"}, "included": {"vehicle": {"attributes": {make, model,
    year}}}}`, times in epoch seconds as the examples show), `GET /v3/vehicles/<id>/signals/<code>`
    (`{"data": <one signal>}`). A signal the vehicle lacks the permission for has no body and
    `status {"value": "ERROR", "error": {"type": "PERMISSION"}}`. A user token (v2) is a 401 here.
    Each signal's `oemUpdatedAt` is the vehicle's `data_age`, or its own time in
    `signal_ages` (a parked car: the location keeps its time while the state of charge moves
    on, PROTOCOLS.md §3); `retrievedAt` is the time of the call, as Smartcar's examples show
    it one second after `oemUpdatedAt` and a pull always retrieves anew.
- One user id across v2 and v3: `GET /v2.0/user` answers `{"id"}` for the user a v2 access
  token belongs to, and that id is what v3's `sc-user-id` takes, so the fake's v3 signals
  accept `user.id` whether it came from Connect's redirect, a webhook or `GET /v2.0/user`.
  Sources: https://smartcar.com/docs/api-reference/user (v2 `GET /user`: "id ... A user ID
  (UUID v4)", "the static unique identifier" of the user); the official SDK reads it with
  `smartcar.get_user(access_token)` (smartcar 6.19.1 `smartcar/smartcar.py`: `GET
  /v{API_VERSION}/user`, "Retrieve the userId associated with the access_token"; older
  releases `get_user_id`, github smartcar/python-sdk); the v2 management API lists each
  connection's `userId` with its `vehicleId` (api-reference/management/get-vehicle-connections);
  Smartcar's v2-to-v3 migration guide
  (https://smartcar.com/docs/getting-started/how-to/m2m/migration-guide.md) has an integration
  "Backfill existing connections": retrieve the user IDs of connections made with per-vehicle
  (v2) tokens, then "Switch to application tokens ... + `sc-user-id` header"; Connect's
  `user_id` is "A Smartcar-generated UUID that identifies this user ... use it as the
  sc-user-id header" (connect/handle-the-response), and the M2M FAQ
  (getting-started/how-to/m2m/faq) names Connect and webhooks' `user.id` as where it comes
  from. No page says in one sentence "the v2 `GET /user` id is the `sc-user-id`": it follows
  from the migration guide's backfill of v2 connections' user ids for `sc-user-id` and from
  both being the user's one Smartcar UUID; the bridge falls back to v2 when v3 refuses it.
  What Smartcar answers to an `sc-user-id` that is not the vehicle's user is not documented;
  the fake answers the v3 signals 404 `RESOURCE_NOT_FOUND`, the answer it gives any vehicle it
  does not serve for that user.
- `revoke_access_tokens()`, `revoke_refresh_tokens()` end what was issued so far;
  `rate_limit(retry_after)` makes the next API call a 429 `RATE_LIMIT` with `Retry-After`.

Every request is recorded (`requests`), so tests can count token grants and API calls.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit

HOST = "127.0.0.1"
ACCESS_LIFETIME = 7200
APP_TOKEN_LIFETIME = 3600
POLL_INTERVAL = 0.05  # how often the serving thread checks for shutdown: keeps it fast
# `GET /v3/connections`' page number and size (JSON:API names; see the module docstring).
CONNECTIONS_PAGING = ("page[number]", "page[size]")
ALL_PERMISSIONS = frozenset(
    {"read_vehicle_info", "read_location", "read_odometer", "read_battery", "read_charge"}
)
_BATCH_PERMISSIONS = {
    "/location": "read_location",
    "/odometer": "read_odometer",
    "/battery": "read_battery",
}


@dataclass
class FakeVehicle:
    id: str
    make: str = "TESLA"
    model: str = "Model 3"
    year: int = 2020
    latitude: float = 37.4292
    longitude: float = -122.1381
    odometer_km: float = 10254.3
    battery_fraction: float = 0.78
    range_km: float = 402.5
    data_age: str = "2024-11-18T14:32:08.000Z"
    permissions: frozenset[str] = ALL_PERMISSIONS
    # Signal code → its own oemUpdatedAt (ISO 8601), when not `data_age` (v3 only).
    signal_ages: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeUser:
    id: str
    vehicles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    form: dict[str, str]
    body: bytes


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class SmartcarServer:
    """See the module docstring."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        management_token: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.management_token = management_token
        self.disconnected: list[str] = []
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.vehicles: dict[str, FakeVehicle] = {}
        self.user = FakeUser(id="e0514ef4-5226-4d6f-9a6f-3c2b1a0f9e8d")
        # The application's connections of other users (user id, vehicle): `GET /v3/connections`
        # lists them too unless `filter[userId]` names another user.
        self.other_connections: list[tuple[str, FakeVehicle]] = []
        # False: a Smartcar that ignores `filter[userId]` (the bridge filters the answer too).
        self.honour_user_filter = True
        self._lock = threading.Lock()
        self._codes: dict[str, str] = {}  # code -> redirect URI
        self._access: dict[str, str] = {}  # live access token -> user id
        self._refresh: dict[str, str] = {}  # live refresh token -> user id
        self._app_tokens: set[str] = set()  # live v3 application tokens
        self._deny_next = False
        self._rate_limited: int | None = None
        self._requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Life cycle

    def __enter__(self) -> Self:
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    @property
    def iam_token_url(self) -> str:
        """The v3 application token endpoint (`https://iam.smartcar.com/oauth2/token`)."""
        return self.url + "/oauth2/token"

    @property
    def vehicle_api_url(self) -> str:
        """The v3 vehicle API base (`https://vehicle.api.smartcar.com/v3`)."""
        return self.url + "/v3"

    # Test controls

    def add_vehicle(self, vehicle: FakeVehicle) -> FakeVehicle:
        with self._lock:
            self.vehicles[vehicle.id] = vehicle
            self.user.vehicles.append(vehicle.id)
        return vehicle

    def deny_next_consent(self) -> None:
        with self._lock:
            self._deny_next = True

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far stops working (refresh tokens still do)."""
        with self._lock:
            self._access.clear()

    def expire_app_tokens(self) -> None:
        """Every v3 application token issued so far stops working (its hour is over)."""
        with self._lock:
            self._app_tokens.clear()

    def issue_legacy_tokens(self) -> dict[str, Any]:
        """A v2 token pair for the user, as a Connect before the v3 upgrade left it."""
        with self._lock:
            return self._issue(self.user.id)

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token stops working: the user must go through Connect again."""
        with self._lock:
            self._refresh.clear()

    def rate_limit(self, retry_after: int) -> None:
        with self._lock:
            self._rate_limited = retry_after

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def grants(self) -> list[str]:
        """The `grant_type` of every token request (v2 and v3), in order."""
        paths = ("/oauth/token", "/oauth2/token")
        return [r.form.get("grant_type", "") for r in self.requests if r.path in paths]

    def v3_calls(self, vehicle_id: str | None = None) -> list[Request]:
        """The v3 vehicle API calls made (of one vehicle's paths, when given)."""
        prefix = "/v3/vehicles/" + vehicle_id if vehicle_id else "/v3/"
        return [r for r in self.requests if r.path.startswith(prefix)]

    # Protocol

    def answer(self, request: Request) -> _Answer:
        with self._lock:
            self._requests.append(request)
            if request.path == "/oauth/authorize" and request.method == "GET":
                return self._authorize(request)
            if request.path == "/oauth/token" and request.method == "POST":
                return self._token(request)
            if request.path == "/oauth2/token" and request.method == "POST":
                return self._app_token(request)
            if request.path.startswith("/v3/"):
                return self._v3(request)
            if request.path.rstrip("/") == "/v2.0/management/connections":
                return self._connections(request)
            if request.path.startswith("/v2.0/"):
                return self._api(request)
            return _Answer(404, {"error": "not_found", "error_description": "no such route"})

    def _authorize(self, request: Request) -> _Answer:
        query = request.query
        if query.get("client_id") != self.client_id:
            return _Answer(400, {"error": "invalid_client", "error_description": "client_id"})
        if query.get("redirect_uri") != self.redirect_uri:
            return _Answer(400, {"error": "invalid_request", "error_description": "redirect"})
        if query.get("response_type") != "code":
            return _Answer(400, {"error": "unsupported_response_type"})
        if self._deny_next:
            self._deny_next = False
            result = {"error": "access_denied", "error_description": "User denied access"}
        else:
            # v3: the redirect names the user; requests are then scoped with `sc-user-id`.
            result = {"user_id": self.user.id}
        if "state" in query:
            result["state"] = query["state"]
        return _Answer(302, headers={"Location": f"{self.redirect_uri}?{urlencode(result)}"})

    def _token(self, request: Request) -> _Answer:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _Answer(401, {"error": "invalid_client", "error_description": "bad client"})
        form = request.form
        grant = form.get("grant_type")
        if grant == "authorization_code":
            redirect = self._codes.pop(form.get("code", ""), None)
            if redirect is None or form.get("redirect_uri") != redirect:
                return _Answer(400, {"error": "invalid_grant", "error_description": "bad code"})
            return _Answer(200, self._issue(self.user.id))
        if grant == "refresh_token":
            user_id = self._refresh.pop(form.get("refresh_token", ""), None)
            if user_id is None:
                return _Answer(
                    400, {"error": "invalid_grant", "error_description": "bad refresh token"}
                )
            # Rotation: the pair the old refresh token belonged to is gone.
            self._access = {token: user for token, user in self._access.items() if user != user_id}
            return _Answer(200, self._issue(user_id))
        return _Answer(400, {"error": "unsupported_grant_type"})

    def _issue(self, user_id: str) -> dict[str, Any]:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self._access[access] = user_id
        self._refresh[refresh] = user_id
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_LIFETIME,
            "refresh_token": refresh,
        }

    def _connections(self, request: Request) -> _Answer:
        if self.management_token is None or request.method != "DELETE":
            return _Answer(404, {"error": "not_found", "error_description": "no such route"})
        expected = base64.b64encode(f"default:{self.management_token}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _Answer(401, _error(401, "AUTHENTICATION", None, "invalid management token"))
        vehicle_id = request.query.get("vehicle_id", "")
        if vehicle_id not in self.user.vehicles:
            return _Answer(200, {"connections": []})
        self.user.vehicles.remove(vehicle_id)
        self.disconnected.append(vehicle_id)
        connection = {"vehicleId": vehicle_id, "userId": self.user.id, "connectedAt": None}
        return _Answer(200, {"connections": [connection]})

    def _app_token(self, request: Request) -> _Answer:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return _Answer(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id, self.client_secret):  # fmt: skip
            return _Answer(401, {"error": "invalid_client", "error_description": "bad client"})
        token = secrets.token_hex(16)
        self._app_tokens.add(token)
        return _Answer(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": APP_TOKEN_LIFETIME}
        )

    def _v3(self, request: Request) -> _Answer:
        if self._rate_limited is not None:
            retry_after, self._rate_limited = self._rate_limited, None
            return _Answer(
                429,
                _error(429, "RATE_LIMIT", "VEHICLE", "too many requests"),
                {"Retry-After": str(retry_after)},
            )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._app_tokens:
            return _Answer(401, _error(401, "AUTHENTICATION", None, "invalid access token"))
        parts = [part for part in request.path.split("/")[2:] if part]  # after "/v3"
        if parts == ["connections"] and request.method == "GET":
            return self._v3_connections(request)
        page = int(request.query.get("page", "1"))
        size = int(request.query.get("pageSize", "10"))
        user_id = request.headers.get("sc-user-id")
        if not user_id:
            return _Answer(400, _error(400, "VALIDATION", None, "sc-user-id header required"))
        if len(parts) >= 3 and parts[0] == "vehicles" and parts[2] == "signals":
            vehicle = self.vehicles.get(parts[1])
            if vehicle is None or vehicle.id not in self.user.vehicles or user_id != self.user.id:
                return _Answer(404, _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such vehicle"))
            found = _signals(vehicle)
            if len(parts) == 3:
                answer = _paged(found, page, size)
                described = {"make": vehicle.make, "model": vehicle.model, "year": vehicle.year}
                answer.body["included"] = {"vehicle": {"attributes": described}}
                return answer
            [one] = [s for s in found if s["attributes"]["code"] == parts[3]] or [None]
            if one is None or len(parts) > 4:
                return _Answer(404, _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such signal"))
            return _Answer(200, {"data": one})
        return _Answer(404, _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such path"))

    def _v3_connections(self, request: Request) -> _Answer:
        """`GET /v3/connections`: the application's connections, JSON:API filter and paging."""
        number = int(request.query.get(CONNECTIONS_PAGING[0], "1"))
        size = int(request.query.get(CONNECTIONS_PAGING[1], "10"))
        items = [_connection(self.vehicles[v], self.user.id) for v in self.user.vehicles]
        items += [_connection(vehicle, user) for user, vehicle in self.other_connections]
        wanted = request.query.get("filter[userId]")
        if wanted is not None and self.honour_user_filter:
            items = [
                item for item in items if item["relationships"]["user"]["data"]["id"] == wanted
            ]
        return _paged(items, number, size, CONNECTIONS_PAGING)

    def _api(self, request: Request) -> _Answer:
        if self._rate_limited is not None:
            retry_after, self._rate_limited = self._rate_limited, None
            return _Answer(
                429,
                _error(429, "RATE_LIMIT", "VEHICLE", "too many requests"),
                {"Retry-After": str(retry_after)},
            )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self._access.get(token) != self.user.id:
            return _Answer(401, _error(401, "AUTHENTICATION", None, "invalid access token"))
        parts = request.path.split("/")[2:]  # after "/v2.0"
        if parts == ["user"]:
            return _Answer(200, {"id": self.user.id})
        if parts == ["vehicles"]:
            limit = int(request.query.get("limit", "10"))
            offset = int(request.query.get("offset", "0"))
            page = self.user.vehicles[offset : offset + limit]
            return _Answer(
                200,
                {"vehicles": page, "paging": {"count": len(self.user.vehicles), "offset": offset}},
            )
        if len(parts) >= 2 and parts[0] == "vehicles":
            vehicle = self.vehicles.get(parts[1])
            if vehicle is None or vehicle.id not in self.user.vehicles:
                return _Answer(404, _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such vehicle"))
            rest = [part for part in parts[2:] if part]
            if not rest and request.method == "GET":
                return self._attributes(vehicle)
            if rest == ["batch"] and request.method == "POST":
                return self._batch(vehicle, json.loads(request.body or b"{}"))
        return _Answer(404, _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such path"))

    def _attributes(self, vehicle: FakeVehicle) -> _Answer:
        if "read_vehicle_info" not in vehicle.permissions:
            return _Answer(403, _error(403, "PERMISSION", None, "read_vehicle_info missing"))
        body = {
            "id": vehicle.id,
            "make": vehicle.make,
            "model": vehicle.model,
            "year": vehicle.year,
        }
        return _Answer(200, body)

    def _batch(self, vehicle: FakeVehicle, body: dict[str, Any]) -> _Answer:
        answers = []
        for item in body.get("requests", []):
            path = item.get("path")
            permission = _BATCH_PERMISSIONS.get(path)
            if permission is None:
                answers.append(
                    {"path": path, "code": 404, "headers": {},
                     "body": _error(404, "RESOURCE_NOT_FOUND", "PATH", "no such path")}
                )  # fmt: skip
            elif permission not in vehicle.permissions:
                answers.append(
                    {"path": path, "code": 403, "headers": {},
                     "body": _error(403, "PERMISSION", None, f"{permission} missing")}
                )  # fmt: skip
            else:
                answers.append(
                    {"path": path, "code": 200,
                     "headers": {"sc-data-age": vehicle.data_age, "sc-unit-system": "metric"},
                     "body": _reading(vehicle, path)}
                )  # fmt: skip
        return _Answer(200, {"responses": answers})


def _paged(
    items: list[dict[str, Any]],
    page: int,
    size: int,
    paging: tuple[str, str] = ("page", "pageSize"),
) -> _Answer:
    chunk = items[(page - 1) * size : page * size]
    more = page * size < len(items)
    number_name, size_name = paging
    return _Answer(
        200,
        {"data": chunk, "meta": {"page": page, "pageSize": size, "totalCount": len(items)},
         "links": {"next": f"?{number_name}={page + 1}&{size_name}={size}" if more else None}},
    )  # fmt: skip


def _connection(vehicle: FakeVehicle, user_id: str) -> dict[str, Any]:
    return {
        "id": f"conn-{vehicle.id}",
        "type": "connection",
        "attributes": {
            "permissions": sorted(vehicle.permissions),
            "vehicle": {"make": vehicle.make, "model": vehicle.model, "year": vehicle.year}
            if "read_vehicle_info" in vehicle.permissions else {},
        },
        "relationships": {
            "vehicle": {"data": {"id": vehicle.id, "type": "vehicle"}},
            "user": {"data": {"id": user_id, "type": "user"}},
        },
    }  # fmt: skip


_V3_SIGNALS = (
    ("location-preciselocation", "PreciseLocation", "Location", "read_location"),
    ("odometer-traveleddistance", "TraveledDistance", "Odometer", "read_odometer"),
    ("tractionbattery-stateofcharge", "StateOfCharge", "TractionBattery", "read_battery"),
    ("tractionbattery-range", "Range", "TractionBattery", "read_battery"),
)


def _epoch(moment: str) -> int:
    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp())


def _signals(vehicle: FakeVehicle) -> list[dict[str, Any]]:
    retrieved = int(time.time())
    bodies = {
        "location-preciselocation": {"latitude": vehicle.latitude,
                                     "longitude": vehicle.longitude},
        "odometer-traveleddistance": {"unit": "kilometers", "value": vehicle.odometer_km},
        "tractionbattery-stateofcharge": {"unit": "percent",
                                          "value": round(vehicle.battery_fraction * 100, 6)},
        "tractionbattery-range": {"unit": "kilometers", "value": vehicle.range_km},
    }  # fmt: skip
    found = []
    for code, name, group, permission in _V3_SIGNALS:
        attributes: dict[str, Any] = {"code": code, "name": name, "group": group}
        if permission in vehicle.permissions:
            attributes |= {"status": {"value": "SUCCESS"}, "body": bodies[code]}
        else:
            attributes["status"] = {"value": "ERROR",
                                    "error": {"type": "PERMISSION", "code": None}}  # fmt: skip
        measured = _epoch(vehicle.signal_ages.get(code, vehicle.data_age))
        found.append(
            {"id": code, "type": "signal", "attributes": attributes,
             "meta": {"retrievedAt": max(retrieved, measured + 1), "oemUpdatedAt": measured}}
        )  # fmt: skip
    return found


def _reading(vehicle: FakeVehicle, path: str) -> dict[str, Any]:
    if path == "/location":
        return {"latitude": vehicle.latitude, "longitude": vehicle.longitude}
    if path == "/odometer":
        return {"distance": vehicle.odometer_km}
    return {"percentRemaining": vehicle.battery_fraction, "range": vehicle.range_km}


def _error(status: int, kind: str, code: str | None, description: str) -> dict[str, Any]:
    return {
        "type": kind,
        "code": code,
        "description": description,
        "docURL": "https://smartcar.com/docs/errors",
        "statusCode": status,
        "resolution": {"type": None},
        "requestId": secrets.token_hex(8),
    }


def _handler_for(owner: SmartcarServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            form = {}
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            answer = owner.answer(Request(self.command, split.path, query, headers, form, body))
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            if answer.body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
