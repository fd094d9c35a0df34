"""A local fake of Traccar's REST API (devices only) for tests, over a real socket.

It answers like Traccar (PROTOCOLS.md §2): every `/api/...` call needs `Authorization: Bearer
<token>` (401 otherwise); `GET /api/devices` lists the devices, filtered by any `uniqueId` and
`id` parameters; `POST /api/devices` (JSON, 415 otherwise) creates one and answers it with its
`id`, and a duplicate or missing `uniqueId` gets 400 with a stack-trace-like text, as Traccar's
error handler sends. Unknown paths are 404, other methods on `/api/devices` 405.

Pass the OsmAnd server's `devices` to share Traccar's device table, so that a device created
here is known to the OsmAnd endpoint at once:

    with OsmAndServer() as osmand, FakeTraccarApi("token", devices=osmand.devices) as api:
        TraccarApi(session, api.url, "token").ensure_device("abc", "Keys")
        assert "abc" in osmand.devices

`race_next_lookup(unique_id)` reproduces two instances provisioning one device at once: the
next lookup of that id finds nothing, and the device is created by "someone else" right after.
The base class (`tests.fakes.osmand.FakeHttpServer`) brings the failure modes and stop/start.

Users and what they see, as a deployed Traccar has them:

- Credentials (PROTOCOLS.md §2): `Authorization: Bearer <token>` or `Basic base64(email:password)`.
  The constructor's `token` belongs to an administrator (user 1, `ADMIN_EMAIL`/`ADMIN_PASSWORD`);
  `add_user` makes others. Tokens expire (`TokenManager.DEFAULT_EXPIRATION_DAYS`, 7 days):
  `expire_token(token)` makes one answer 401 from then on, as a week-old token does; Basic
  logins never expire. `service_account_token` is `web.serviceAccountToken`: an administrator
  that is no user (`ServiceAccountUser.java`).
- Visibility (PROTOCOLS.md §2; `DeviceResource.java`): `GET /api/devices?uniqueId=X` (or `id=`)
  answers only devices linked to the caller, administrator or not, whatever `all` says. Without
  them, `all=true` lists every device for an administrator (linked ones for anyone else) and
  `keyword` keeps those whose name or unique id contains it (case-insensitive). A device created
  through the API is linked to its creator, except by the service account, which links nobody
  (PROTOCOLS.md §2); a device added straight to `devices` (auto-registration, the web UI of
  another user) is linked to nobody until `link`.
- `POST /api/devices` keeps `category`, `groupId` and `attributes`; `PUT /api/devices/{id}`
  replaces a visible device's fields, `DELETE /api/devices/{id}` removes it (204);
  `POST /api/permissions` with `{"userId"|"groupId", "deviceId"}` links (204; administrators
  only here, `PermissionsResource.java`). A user linked to a group sees its devices
  (`link_user_to_group`). `record(unique_id)` shows what Traccar stores for a device.
  Traccar's `PUT` takes the whole device and stores what it gets (`BaseObjectResource.update`):
  attributes left out of the body are gone, so a client adding attributes must send the ones
  already there.
- "Send command" through the Find Hub sender (PROTOCOLS.md §2b, `FindHubCommandSender.java`,
  Traccar 6.8+): `send_command(unique_id, command, frequency=...)` does what Traccar does when a
  user presses the button on a device whose stored attributes say `command.sender=findHub`: an
  empty-bodied `POST <command.findHub.url>/devices/<uniqueId>/<command>` with
  `Authorization: Bearer <command.findHub.key>` and `Accept: application/json`, waiting
  `COMMAND_READ_TIMEOUT` (5 s, `client.readTimeout`) for the answer; `position-periodic` carries
  `?interval=<frequency>` since 6.9 and nothing in 6.8.x (`traccar_version=(6, 8)`). Any non-2xx
  answer, or none in time, is a failure shown to the user (`CommandFailed` here). A device
  without those attributes cannot take the command (Traccar offers no Find Hub sender for it).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.osmand import (
    DuplicateDevice,
    FakeHttpServer,
    HttpRequest,
    HttpResponse,
    RegisteredDevice,
    TraccarDevices,
)

JSON = "application/json"
ADMIN_ID = 1
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-0123"
# `ServiceAccountUser.ID`: the id Traccar gives `web.serviceAccountToken`'s requests.
SERVICE_ACCOUNT_ID = 9_000_000_000_000_000
# How long Traccar's HTTP client waits for a command's answer (PROTOCOLS.md §2b).
COMMAND_READ_TIMEOUT = 5.0
FIND_HUB_COMMANDS = ("position-single", "position-periodic", "position-stop")


class CommandFailed(Exception):
    """Traccar would report the command as failed to its user: `status` is the bridge's
    answer (None: no answer in time, or no connection)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SentCommand:
    """What the bridge answered to one command."""

    status: int
    body: bytes
    url: str


@dataclass
class FakeUser:
    id: int
    email: str
    password: str
    administrator: bool
    groups: set[int] = field(default_factory=set)


class FakeTraccarApi(FakeHttpServer):
    def __init__(
        self,
        token: str,
        *,
        devices: TraccarDevices | None = None,
        port: int = 0,
        service_account_token: str | None = None,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.devices = devices if devices is not None else TraccarDevices()
        self.service_account_token = service_account_token
        self._races: dict[str, tuple[str, int]] = {}
        self._created: list[RegisteredDevice] = []
        self._api_lock = threading.Lock()
        self._users: dict[int, FakeUser] = {
            ADMIN_ID: FakeUser(ADMIN_ID, ADMIN_EMAIL, ADMIN_PASSWORD, administrator=True)
        }
        self._tokens: dict[str, int] = {token: ADMIN_ID}
        self._expired: set[str] = set()
        self._user_links: set[tuple[int, int]] = set()  # (user id, device id)
        self._group_links: set[tuple[int, int]] = set()  # (group id, device id)
        self._fields: dict[int, dict[str, Any]] = {}  # device id → category, groupId, attributes

    @property
    def created(self) -> list[RegisteredDevice]:
        """The devices created through `POST /api/devices`, in order."""
        with self._api_lock:
            return list(self._created)

    def race_next_lookup(self, unique_id: str, name: str = "", *, lookups: int = 1) -> None:
        """After the `lookups`-th lookup naming `unique_id` (by `uniqueId` or `keyword`) has
        been answered, "another instance" with the same credentials creates it (linked to the
        same user, as `POST /api/devices` links its caller)."""
        with self._api_lock:
            self._races[unique_id] = (name, lookups)

    # Users, tokens, links

    def add_user(
        self, email: str, password: str, *, administrator: bool = False, token: str | None = None
    ) -> int:
        with self._api_lock:
            user_id = max(self._users) + 1
            self._users[user_id] = FakeUser(user_id, email, password, administrator)
            if token is not None:
                self._tokens[token] = user_id
            return user_id

    def expire_token(self, token: str) -> None:
        """From now on `token` answers 401, as one past its expiry does (PROTOCOLS.md §2)."""
        with self._api_lock:
            self._expired.add(token)

    def link(
        self, unique_id: str, *, user_id: int | None = None, group_id: int | None = None
    ) -> None:
        device = self.devices.get(unique_id)
        assert device is not None, unique_id
        with self._api_lock:
            if user_id is not None:
                self._user_links.add((user_id, device.id))
            if group_id is not None:
                self._group_links.add((group_id, device.id))

    def link_user_to_group(self, user_id: int, group_id: int) -> None:
        with self._api_lock:
            self._users[user_id].groups.add(group_id)

    def linked_users(self, unique_id: str) -> set[int]:
        device = self.devices.get(unique_id)
        with self._api_lock:
            return {user for user, linked in self._user_links if device and linked == device.id}

    def record(self, unique_id: str) -> dict[str, Any]:
        """The device as Traccar stores it (`category`, `groupId`, `attributes` included)."""
        device = self.devices.get(unique_id)
        assert device is not None, unique_id
        return self._serialise(device)

    # Traccar's "Send command" (PROTOCOLS.md §2b)

    def send_command(
        self,
        unique_id: str,
        command: str,
        *,
        frequency: int | None = None,
        traccar_version: tuple[int, int] = (6, 9),
        timeout: float = COMMAND_READ_TIMEOUT,
    ) -> SentCommand:
        """Send `command` to the device as Traccar's Find Hub sender does; `CommandFailed`
        for what Traccar shows its user as a failure."""
        assert command in FIND_HUB_COMMANDS, command
        attributes = self.record(unique_id)["attributes"]
        if attributes.get("command.sender") != "findHub":
            raise CommandFailed(f"device {unique_id} has no Find Hub command sender")
        base = str(attributes.get("command.findHub.url", "")).rstrip("/")
        key = str(attributes.get("command.findHub.key", ""))
        url = f"{base}/devices/{unique_id}/{command}"
        if command == "position-periodic" and frequency is not None and traccar_version >= (6, 9):
            url += f"?interval={frequency}"
        request = urllib.request.Request(  # noqa: S310 - a test's own local URL
            url,
            data=b"",
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return SentCommand(response.status, response.read(), url)
        except urllib.error.HTTPError as exc:
            raise CommandFailed(f"{url} answered {exc.code}", status=exc.code) from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise CommandFailed(f"{url}: no answer ({exc})") from exc

    # Requests

    def handle(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        if not parts.path.startswith("/api/"):
            return HttpResponse(404)
        caller = self._caller(request.headers.get("authorization", ""))
        if caller is None:
            return HttpResponse(401)
        path = parts.path.rstrip("/")
        if path == "/api/permissions" and request.method == "POST":
            return self._permit(caller, request)
        if path.startswith("/api/devices/") and request.method == "PUT":
            return self._update(caller, path.removeprefix("/api/devices/"), request)
        if path.startswith("/api/devices/") and request.method == "DELETE":
            return self._delete(caller, path.removeprefix("/api/devices/"))
        if path != "/api/devices":
            return HttpResponse(404)
        if request.method == "GET":
            return self._list(caller, parse_qs(parts.query, keep_blank_values=True))
        if request.method == "POST":
            return self._create(caller, request)
        return HttpResponse(405)

    def _caller(self, authorization: str) -> FakeUser | None:
        scheme, _, value = authorization.partition(" ")
        with self._api_lock:
            if scheme == "Bearer":
                if value and value == self.service_account_token:
                    return FakeUser(SERVICE_ACCOUNT_ID, "", "", administrator=True)
                if value in self._expired:
                    return None
                user_id = self._tokens.get(value)
                return self._users.get(user_id) if user_id is not None else None
            if scheme == "Basic":
                try:
                    email, _, password = base64.b64decode(value).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                for user in self._users.values():
                    if (user.email, user.password) == (email, password):
                        return user
        return None

    def _visible(self, caller: FakeUser, device: RegisteredDevice) -> bool:
        with self._api_lock:
            group = self._fields.get(device.id, {}).get("groupId") or 0
            return (caller.id, device.id) in self._user_links or (
                group in caller.groups
                or any((g, device.id) in self._group_links for g in caller.groups)
            )

    def _list(self, caller: FakeUser, query: dict[str, list[str]]) -> HttpResponse:
        unique_ids = query.get("uniqueId", [])
        ids = query.get("id", [])
        if unique_ids or ids:
            found = [device for device in map(self.devices.get, unique_ids) if device]
            found += [device for device in self.devices.all() if str(device.id) in ids]
            found = [device for device in found if self._visible(caller, device)]
        else:
            every = query.get("all", ["false"])[0].lower() == "true" and caller.administrator
            found = [d for d in self.devices.all() if every or self._visible(caller, d)]
            keyword = query.get("keyword", [""])[0].casefold()
            if keyword:
                found = [
                    d
                    for d in found
                    if keyword in d.name.casefold() or keyword in d.unique_id.casefold()
                ]
        body = _json([self._serialise(device) for device in found])
        # After the answer was decided: "another instance" creates the device in the meantime.
        raced = []
        with self._api_lock:
            for named in {*unique_ids, *query.get("keyword", [])} & set(self._races):
                name, lookups = self._races[named]
                if lookups > 1:
                    self._races[named] = (name, lookups - 1)
                else:
                    raced.append((named, self._races.pop(named)[0]))
        for unique_id, name in raced:
            device = self.devices.add(unique_id, name)
            with self._api_lock:
                self._user_links.add((caller.id, device.id))
        return HttpResponse(200, body, JSON)

    def _create(self, caller: FakeUser, request: HttpRequest) -> HttpResponse:
        if not request.headers.get("content-type", "").startswith(JSON):
            return HttpResponse(415)
        try:
            entity = json.loads(request.body)
        except ValueError as exc:
            return _error(f"com.fasterxml.jackson.core.JsonParseException: {exc}")
        unique_id = entity.get("uniqueId") if isinstance(entity, dict) else None
        name = entity.get("name") if isinstance(entity, dict) else None
        if not isinstance(unique_id, str) or not isinstance(name, str):
            return _error(
                'org.traccar.storage.StorageException: NULL not allowed for column "UNIQUEID"'
            )
        try:
            device = self.devices.add(unique_id, name)
        except DuplicateDevice:
            return _error(
                "org.traccar.storage.StorageException: Unique index or primary key violation: "
                f'"PUBLIC.IDX_DEVICES_UNIQUEID ON PUBLIC.TC_DEVICES(UNIQUEID) VALUES ( '
                f"/* 1 */ '{unique_id}' )\""
            )
        with self._api_lock:
            self._created.append(device)
            self._fields[device.id] = _stored_fields(entity)
            if caller.id != SERVICE_ACCOUNT_ID:
                self._user_links.add((caller.id, device.id))
        return HttpResponse(200, _json(self._serialise(device)), JSON)

    def _update(self, caller: FakeUser, device_id: str, request: HttpRequest) -> HttpResponse:
        device = next((d for d in self.devices.all() if str(d.id) == device_id), None)
        if device is None or not (caller.administrator or self._visible(caller, device)):
            return _error("java.lang.SecurityException: Device access denied")
        try:
            entity = json.loads(request.body)
        except ValueError as exc:
            return _error(f"com.fasterxml.jackson.core.JsonParseException: {exc}")
        if not isinstance(entity, dict) or entity.get("uniqueId") != device.unique_id:
            return _error("java.lang.IllegalArgumentException: uniqueId cannot change here")
        with self._api_lock:
            self._fields[device.id] = _stored_fields(entity)
        return HttpResponse(200, _json(self._serialise(device)), JSON)

    def _delete(self, caller: FakeUser, device_id: str) -> HttpResponse:
        """`DELETE /api/devices/{id}`: 204, as Traccar's `BaseObjectResource.remove` answers."""
        device = next((d for d in self.devices.all() if str(d.id) == device_id), None)
        if device is None or not (caller.administrator or self._visible(caller, device)):
            return _error("java.lang.SecurityException: Device access denied")
        self.devices.remove(device.unique_id)
        return HttpResponse(204)

    def _permit(self, caller: FakeUser, request: HttpRequest) -> HttpResponse:
        try:
            entity = json.loads(request.body)
        except ValueError as exc:
            return _error(f"com.fasterxml.jackson.core.JsonParseException: {exc}")
        if not caller.administrator:
            return _error("java.lang.SecurityException: Manager access required")
        device_id = entity.get("deviceId") if isinstance(entity, dict) else None
        if not any(d.id == device_id for d in self.devices.all()):
            return _error("java.lang.IllegalArgumentException: unknown device")
        with self._api_lock:
            if isinstance(entity.get("userId"), int):
                self._user_links.add((entity["userId"], device_id))
            elif isinstance(entity.get("groupId"), int):
                self._group_links.add((entity["groupId"], device_id))
            else:
                return _error("java.lang.IllegalArgumentException: no owner in permission")
        return HttpResponse(204)

    def _serialise(self, device: RegisteredDevice) -> dict[str, Any]:
        with self._api_lock:
            stored = dict(self._fields.get(device.id, {}))
        return {**_traccar_device(device), **stored}


def _stored_fields(entity: dict[str, Any]) -> dict[str, Any]:
    attributes = entity.get("attributes")
    return {
        "category": entity.get("category"),
        "groupId": entity.get("groupId") or 0,
        "attributes": dict(attributes) if isinstance(attributes, dict) else {},
    }


def _traccar_device(device: RegisteredDevice) -> dict[str, Any]:
    """A device as Traccar serialises it (more fields than the client reads)."""
    return {
        "id": device.id,
        "attributes": {},
        "groupId": 0,
        "calendarId": 0,
        "name": device.name,
        "uniqueId": device.unique_id,
        "status": "offline",
        "lastUpdate": None,
        "positionId": 0,
        "phone": None,
        "model": None,
        "contact": None,
        "category": None,
        "disabled": False,
        "expirationTime": None,
    }


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _error(first_line: str) -> HttpResponse:
    # Traccar's ResourceErrorHandler answers 400 with the exception's whole stack trace.
    frame = "\tat org.traccar.storage.DatabaseStorage.addObject(DatabaseStorage.java:92)"
    trace = f"{first_line}\n{frame}\n"
    return HttpResponse(400, trace.encode(), "text/plain")
