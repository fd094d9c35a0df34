"""A local fake of TLINK's REST API (OAuth token and device data) for tests, over a real socket.

It answers as TLINK's Spring OAuth2 server and API do (PROTOCOLS.md §4):

- `POST /oauth/token?grant_type=password&username=..&password=..` with `Authorization: Basic
  base64(clientId:clientSecret)` → `{"access_token", "token_type": "bearer", "refresh_token",
  "expires_in", "scope"}`; a wrong client is a 401 `{"error": "unauthorized"}`, a wrong user or
  password a 400 `{"error": "invalid_grant"}`. `grant_type=refresh_token&refresh_token=..`
  issues a new access token (the refresh token is reused, as Spring does by default); an
  unknown or revoked refresh token is a 400 `invalid_grant`. Parameters may come in the query
  string or a form body.
- `GET /api/device/getDeviceSensorDatas` with a JSON body (`{"userId","currPage","pageSize",
  "deviceId"?}`), the method TLINK's own Python sample for this endpoint uses
  (`requests.get(url, headers=headers, json=data)`, PROTOCOLS.md §4); any other method is a
  405, so a client calling it with POST fails here as it may at TLINK. It needs
  `Authorization: Bearer <live token>` (else 401 `{"error": "invalid_token"}`) and
  `tlinkAppId: <clientId>` (else `flag` "01"); `pageSize` above 100 is `flag` "01". It answers
  `{"flag": "00", "msg", "dataList": [...], "currPage", "pageSize", "pages", "rowCount"}` from
  the devices given to `add_device(user_id, device)` (TLINK's shape: `id`, `deviceName`, `lat`,
  `lng` (the pin set in TLINK's console, not a fix), `isLine`, `sensorsList`; in a sensor, the
  alarm flag is `isAlarms`, a switch's state `switcher`, and a location sensor (`sensorTypeId`
  3) carries its fix in its own `lat`/`lng`: TLINK's sample, PROTOCOLS.md §4).

Test controls: `expire_access_tokens()` (every issued access token becomes invalid, as at
expiry or when another client refreshed), `revoke_refresh_tokens()`, `refuse_every_token()`,
`grants` (the grant types asked for, in order), `api_calls` (the JSON bodies of the data
calls), plus the failure modes of `tests.fakes.osmand.FakeHttpServer`.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.osmand import FakeHttpServer, HttpRequest, HttpResponse

JSON = "application/json;charset=UTF-8"
MAX_PAGE_SIZE = 100


def _answer(status: int, body: object) -> HttpResponse:
    return HttpResponse(status, json.dumps(body, ensure_ascii=False).encode(), JSON)


class FakeTlink(FakeHttpServer):
    def __init__(
        self,
        *,
        client_id: str = "tlink-client-7f3a",
        client_secret: str = "tlink-client-secret-91be",  # noqa: S107 - a test value
        username: str = "bridge@example.com",
        password: str = "tlink-password-55d0",  # noqa: S107 - a test value
        expires_in: int = 3600,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.expires_in = expires_in
        self._state_lock = threading.Lock()
        self._access_tokens: set[str] = set()
        self._refresh_tokens: set[str] = set()
        self._devices: dict[str, list[dict[str, Any]]] = {}
        self._grants: list[str] = []
        self._api_calls: list[dict[str, Any]] = []
        self._refuse_all = False

    # --- Test controls -----------------------------------------------------------------------

    def credentials(self, **extra: object) -> dict[str, object]:
        """The `tlink-credentials` secret's JSON for this server."""
        return {
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "username": self.username,
            "password": self.password,
            **extra,
        }

    def add_device(self, user_id: str, device: dict[str, Any]) -> None:
        with self._state_lock:
            self._devices.setdefault(str(user_id), []).append(device)

    def set_devices(self, user_id: str, devices: list[dict[str, Any]]) -> None:
        with self._state_lock:
            self._devices[str(user_id)] = list(devices)

    def expire_access_tokens(self) -> None:
        with self._state_lock:
            self._access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        with self._state_lock:
            self._refresh_tokens.clear()

    def refuse_every_token(self) -> None:
        """From now on, every API call is refused with `invalid_token` (a broken account)."""
        with self._state_lock:
            self._refuse_all = True

    @property
    def grants(self) -> list[str]:
        with self._state_lock:
            return list(self._grants)

    @property
    def api_calls(self) -> list[dict[str, Any]]:
        with self._state_lock:
            return list(self._api_calls)

    # --- Protocol ----------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.target).path
        if path == "/oauth/token":
            if request.method != "POST":
                return _answer(405, {"error": "method_not_allowed"})
            return self._token(request)
        if path == "/api/device/getDeviceSensorDatas":
            if request.method != "GET":  # TLINK's sample: GET with a JSON body
                return _answer(405, {"error": "method_not_allowed"})
            return self._sensor_datas(request)
        return _answer(404, {"error": "Not Found", "path": path})

    def _client_ok(self, request: HttpRequest) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    def _token(self, request: HttpRequest) -> HttpResponse:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(request.target).query).items()}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update({k: v[-1] for k, v in parse_qs(request.body.decode()).items()})
        if not self._client_ok(request):
            return _answer(401, {"error": "unauthorized", "error_description": "Bad credentials"})
        grant = params.get("grant_type")
        with self._state_lock:
            self._grants.append(str(grant))
            if grant == "password":
                if (params.get("username"), params.get("password")) != (
                    self.username,
                    self.password,
                ):
                    return _answer(
                        400, {"error": "invalid_grant", "error_description": "Bad credentials"}
                    )
                refresh = secrets.token_hex(16)
                self._refresh_tokens.add(refresh)
            elif grant == "refresh_token":
                refresh = params.get("refresh_token", "")
                if refresh not in self._refresh_tokens:
                    return _answer(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": f"Invalid refresh token: {refresh}",
                        },
                    )
            else:
                return _answer(
                    400,
                    {"error": "unsupported_grant_type", "error_description": f"{grant}"},
                )
            access = secrets.token_hex(16)
            self._access_tokens.add(access)
        return _answer(
            200,
            {
                "access_token": access,
                "token_type": "bearer",
                "refresh_token": refresh,
                "expires_in": self.expires_in,
                "scope": "read write",
            },
        )

    def _sensor_datas(self, request: HttpRequest) -> HttpResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._state_lock:
            live = (
                scheme.lower() == "bearer" and token in self._access_tokens and not self._refuse_all
            )
        if not live:
            return _answer(
                401,
                {"error": "invalid_token", "error_description": f"Invalid access token: {token}"},
            )
        if request.headers.get("tlinkappid") != self.client_id:
            return _answer(200, {"flag": "01", "msg": "tlinkAppId is missing or wrong"})
        try:
            body = json.loads(request.body)
            user_id = str(body["userId"])
            page = int(body.get("currPage", 1))
            size = int(body.get("pageSize", 10))
        except (ValueError, KeyError, TypeError):
            return _answer(200, {"flag": "01", "msg": "bad request body"})
        if not 1 <= size <= MAX_PAGE_SIZE or page < 1:
            return _answer(200, {"flag": "01", "msg": "pageSize must be 1..100"})
        with self._state_lock:
            self._api_calls.append(body)
            devices = list(self._devices.get(user_id, []))
        if body.get("deviceId") is not None:
            devices = [d for d in devices if str(d["id"]) == str(body["deviceId"])]
        pages = math.ceil(len(devices) / size)
        return _answer(
            200,
            {
                "flag": "00",
                "msg": "success",
                "dataList": devices[(page - 1) * size : page * size],
                "currPage": page,
                "pageSize": size,
                "pages": pages,
                "rowCount": len(devices),
            },
        )
