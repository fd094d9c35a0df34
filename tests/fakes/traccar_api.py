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
"""

from __future__ import annotations

import json
import threading
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


class FakeTraccarApi(FakeHttpServer):
    def __init__(self, token: str, *, devices: TraccarDevices | None = None, port: int = 0) -> None:
        super().__init__(port=port)
        self.token = token
        self.devices = devices if devices is not None else TraccarDevices()
        self._races: dict[str, str] = {}
        self._created: list[RegisteredDevice] = []
        self._api_lock = threading.Lock()

    @property
    def created(self) -> list[RegisteredDevice]:
        """The devices created through `POST /api/devices`, in order."""
        with self._api_lock:
            return list(self._created)

    def race_next_lookup(self, unique_id: str, name: str = "") -> None:
        with self._api_lock:
            self._races[unique_id] = name

    def handle(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        if not parts.path.startswith("/api/"):
            return HttpResponse(404)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return HttpResponse(401)
        if parts.path.rstrip("/") != "/api/devices":
            return HttpResponse(404)
        if request.method == "GET":
            return self._list(parse_qs(parts.query, keep_blank_values=True))
        if request.method == "POST":
            return self._create(request)
        return HttpResponse(405)

    def _list(self, query: dict[str, list[str]]) -> HttpResponse:
        unique_ids = query.get("uniqueId", [])
        ids = query.get("id", [])
        if unique_ids or ids:
            found = [device for device in map(self.devices.get, unique_ids) if device]
            found += [device for device in self.devices.all() if str(device.id) in ids]
        else:
            found = self.devices.all()
        body = _json([_traccar_device(device) for device in found])
        # After the answer was decided: "another instance" creates the device in the meantime.
        with self._api_lock:
            raced = [(uid, self._races.pop(uid)) for uid in unique_ids if uid in self._races]
        for unique_id, name in raced:
            self.devices.add(unique_id, name)
        return HttpResponse(200, body, JSON)

    def _create(self, request: HttpRequest) -> HttpResponse:
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
        return HttpResponse(200, _json(_traccar_device(device)), JSON)


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
