"""A local Traccar OsmAnd endpoint for tests: decodes requests as Traccar does and records them.

`OsmAndServer` listens on 127.0.0.1 (a free port), takes any method and any path, and decodes
like Traccar's `OsmAndProtocolDecoder` (PROTOCOLS.md §1): the JSON form when the Content-Type
starts with `application/json`; otherwise the query string, or the form body when the URI has
no query, parsed like Netty's `QueryStringDecoder` (`&` and `;` separate, `+` is a space).
Values are parsed like Java does (`Double.parseDouble`, `Long.parseLong`, `String.split`), so a
value Traccar cannot parse closes the connection without any response, as Traccar does.
Replies: 200 with a recorded `DecodedPosition`; 400 without an id or for an id that is not a
known device (JSON form: 404 for an unknown `device_id`; without one, Traccar's JSON reader
throws, so the connection is closed). Requests without coordinates (cell/wifi only) are
answered 200 and recorded with `latitude`/`longitude` None and `outdated` True: Traccar stores
them too, marked outdated, and fills the coordinates from the device's last position.

Traccar's limits, enforced as its Netty pipeline does (PROTOCOLS.md §1; `OsmAndProtocol.java`,
`BaseProtocol.MAX_HTTP_LENGTH`): an initial line (method, URI, version) longer than
`max_initial_line` (Netty's `HttpRequestDecoder` default, 4096 bytes) is decoded as a request for
`/bad-request`, which has no id: 400, as for an unknown device, and the connection is closed. A
body longer than `max_body` (`HttpObjectAggregator`: 16 KiB before Traccar 6.14, the default
here; 64 KiB since, `BODY_LIMIT_SINCE_6_14`) is answered 413 and the connection closed. The form
body is read (as US-ASCII, like `OsmAndProtocolDecoder`) only when the URI carries no query
parameters (`OsmAndProtocolDecoder.java`: `if (params.isEmpty())`).

Where Traccar keeps a primitive 0 for a field that was not sent (speed, course, altitude,
accuracy), a `DecodedPosition` holds None, so tests can tell "not sent" from 0. Times are UTC
(Traccar's `yyyy-MM-dd HH:mm:ss` form uses the server's zone: this server's zone is UTC) and
have Java's millisecond precision. `min_accuracy` is Traccar's `osmand.minAccuracy` (default 10).

Alarm events, as Traccar raises them for a position carrying `alarm` (traccar/traccar at
commit 9e5c458, 2026-08-21; paths under `src/main/java/org/traccar/`):
`handler/events/AlarmEventHandler.java` lines 41-57 raise one `alarm` event per value of the
comma-separated `alarm` attribute, minus (lines 44-52) the values the device's last position
carried when `event.ignoreDuplicateAlerts` is on, which is its default (`config/Keys.java`
lines 508-514, `EVENT_IGNORE_DUPLICATE_ALERTS`, default `true`; `setup/default.xml` set it true
from 2018, commit "Option to ignore duplicate alarms", until the default moved into the code in
2024). So a device that stays in alarm raises one event, when the alarm appears, and another
only after a position without it. `handler/events/BasePositionEventHandler.java` lines 30-35:
a position older (fix time) than the device's last one raises no event at all;
`handler/PostProcessHandler.java` lines 49-60: a position becomes the device's last only when
it is not older. `alarm_events` lists the events; `ignore_duplicate_alerts=False` is a server
configured otherwise. Traccar's other event handlers (motion, geofence...) are not imitated.

`TraccarDevices` is Traccar's device table: pass one instance to both this server and
`tests.fakes.traccar_api.FakeTraccarApi`, and a device created through the API becomes known
here, as in a real Traccar.

`FakeHttpServer`, the base of both fakes, gives the failure modes resilience tests need:
`respond_with(503, times=2)`, `close_without_reply()`, `stall(seconds)` (answer late), `reset()`,
and `stop()`/`start()`, which stop listening (connections are refused, open ones are cut) and
listen again on the same port.

    with OsmAndServer(known_ids={"abc123"}) as server:
        client = OsmAndClient(requests.Session(), server.url)
        ...
        assert server.positions[0].latitude == 48.8566
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import socketserver
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

HOST = "127.0.0.1"
# Traccar's `osmand.minAccuracy` default: a JSON accuracy below it is not stored.
DEFAULT_MIN_ACCURACY = 10.0
# UnitsConverter.knotsFromMps in Traccar.
KNOTS_PER_MPS = 1.94384
JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
JAVA_LONG_MIN, JAVA_LONG_MAX = -(2**63), 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Netty's `HttpRequestDecoder` default `maxInitialLineLength`; Traccar keeps it (PROTOCOLS.md §1).
MAX_INITIAL_LINE = 4096
# `HttpObjectAggregator`'s limit in Traccar's HTTP protocols: 16 KiB before 6.14, 64 KiB since
# ("Unify frame limits", `BaseProtocol.MAX_HTTP_LENGTH`; PROTOCOLS.md §1).
BODY_LIMIT_BEFORE_6_14 = 16 * 1024
BODY_LIMIT_SINCE_6_14 = 64 * 1024
# How often the serving thread checks for stop(): keeps stop() fast.
POLL_INTERVAL = 0.05

AttributeValue = bool | int | float | str


# --- A restartable HTTP server with failure modes -------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # the request target as sent: path and query string
    headers: dict[str, str]  # lower-cased names; the first value of a repeated header
    body: bytes
    # The initial line as received, without its CRLF (Netty limits its length).
    request_line: bytes = b""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str | None = None
    close: bool = False  # close the connection after the answer (Netty does after a bad frame)
    headers: tuple[tuple[str, str], ...] = ()  # any other header (Retry-After)


class CloseConnection(Exception):
    """Raised by a handler: close the connection without a reply (the message says why)."""


@dataclass
class _Fault:
    kind: Literal["status", "close", "stall"]
    remaining: int | None  # None: until reset()
    status: int = 0
    seconds: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FakeHttpServer, port: int) -> None:
        self.owner = owner
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) makes the late reply fail: expected, not news.
        self.owner._note_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the pooled sessions of the clients expect
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def __getattr__(self, name: str) -> Any:
        # Any method, like Traccar: BaseHTTPRequestHandler looks up do_<METHOD>.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        line = self.raw_requestline.rstrip(b"\r\n")
        request = HttpRequest(self.command, self.path, headers, body, line)
        response = self.server.owner._respond(request)
        if response is None:
            self.close_connection = True
            return
        self.send_response_only(response.status)
        self.send_header("Content-Length", str(len(response.body)))
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeHttpServer:
    """An HTTP server on 127.0.0.1 whose `handle` subclasses write; see the module docstring."""

    def __init__(self, *, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._fault: _Fault | None = None
        self._stopping = threading.Event()
        self._requests: list[HttpRequest] = []
        self._errors: list[str] = []

    # Life cycle

    def start(self) -> Self:
        """Listen (again): the first start picks a free port, later ones reuse it."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _Server(self, self._port)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name=f"{type(self).__name__}:{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: clients are refused until `start()`."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            connections = list(self._connections)
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # Failure modes

    def respond_with(self, status: int, *, times: int | None = None) -> None:
        """Answer `status` (empty body) to the next `times` requests, or until `reset()`."""
        self._set_fault(_Fault("status", times, status=status))

    def close_without_reply(self, *, times: int | None = None) -> None:
        """Read the next requests and close the connection without answering."""
        self._set_fault(_Fault("close", times))

    def stall(self, seconds: float, *, times: int | None = None) -> None:
        """Wait `seconds` before handling the next requests (normally, unless stopped)."""
        self._set_fault(_Fault("stall", times, seconds=seconds))

    def reset(self) -> None:
        self._set_fault(None)

    def _set_fault(self, fault: _Fault | None) -> None:
        if fault is not None and fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._fault = fault

    # What happened

    @property
    def requests(self) -> list[HttpRequest]:
        """Every request received, in order, failure modes included."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Why connections were closed without a reply, and any error of the server itself."""
        with self._lock:
            return list(self._errors)

    # For subclasses

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    # Internals, called by the handler threads

    def _respond(self, request: HttpRequest) -> HttpResponse | None:
        with self._lock:
            self._requests.append(request)
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._fault = None
        if fault is not None and fault.kind == "status":
            return HttpResponse(fault.status)
        if fault is not None and fault.kind == "close":
            self._note_error("close_without_reply mode")
            return None
        if fault is not None and fault.kind == "stall" and self._stopping.wait(fault.seconds):
            return None  # stopped while stalling: a dead server answers nothing
        try:
            return self.handle(request)
        except CloseConnection as exc:
            self._note_error(str(exc))
            return None

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)


# --- Traccar's device table -------------------------------------------------------------------


class DuplicateDevice(ValueError):
    pass


@dataclass(frozen=True)
class RegisteredDevice:
    id: int
    unique_id: str
    name: str


class TraccarDevices:
    """The devices a fake Traccar knows, shared by its OsmAnd endpoint and its REST API."""

    def __init__(self, unique_ids: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._devices: dict[str, RegisteredDevice] = {}
        self._last_id = 0
        for unique_id in unique_ids:
            self.add(unique_id)

    def add(self, unique_id: str, name: str = "") -> RegisteredDevice:
        with self._lock:
            if unique_id in self._devices:
                raise DuplicateDevice(unique_id)
            device = RegisteredDevice(self._next_id(), unique_id, name or unique_id)
            self._devices[unique_id] = device
            return device

    def get(self, unique_id: str) -> RegisteredDevice | None:
        with self._lock:
            return self._devices.get(unique_id)

    def _next_id(self) -> int:
        # Not the count: a removed device's id is not given again, as in Traccar's database.
        self._last_id = max([self._last_id, *(d.id for d in self._devices.values())]) + 1
        return self._last_id

    def remove(self, unique_id: str) -> None:
        with self._lock:
            self._devices.pop(unique_id, None)

    def __contains__(self, unique_id: object) -> bool:
        with self._lock:
            return unique_id in self._devices

    def all(self) -> list[RegisteredDevice]:
        with self._lock:
            return list(self._devices.values())


# --- The OsmAnd decoder -------------------------------------------------------------------------


@dataclass(frozen=True)
class CellTower:
    mcc: int
    mnc: int
    lac: int
    cid: int
    signal: int | None = None


@dataclass(frozen=True)
class WifiAccessPoint:
    mac: str
    signal: int


@dataclass(frozen=True)
class AlarmEvent:
    """An `alarm` event Traccar raised (`Event.TYPE_ALARM`, its `alarm` attribute one value)."""

    unique_id: str
    alarm: str
    fix_time: datetime


@dataclass(frozen=True)
class DecodedPosition:
    unique_id: str
    latitude: float | None  # None: no coordinates were sent (`outdated`)
    longitude: float | None
    fix_time: datetime  # UTC, millisecond precision
    speed_knots: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    valid: bool = True
    outdated: bool = False
    cell_towers: tuple[CellTower, ...] = ()
    wifi_access_points: tuple[WifiAccessPoint, ...] = ()


class OsmAndServer(FakeHttpServer):
    """Traccar's OsmAnd endpoint; see the module docstring."""

    def __init__(
        self,
        known_ids: Iterable[str] | TraccarDevices = (),
        *,
        port: int = 0,
        min_accuracy: float = DEFAULT_MIN_ACCURACY,
        max_initial_line: int = MAX_INITIAL_LINE,
        max_body: int = BODY_LIMIT_BEFORE_6_14,
        ignore_duplicate_alerts: bool = True,
    ) -> None:
        super().__init__(port=port)
        self.devices = (
            known_ids if isinstance(known_ids, TraccarDevices) else TraccarDevices(known_ids)
        )
        self.min_accuracy = min_accuracy
        self.max_initial_line = max_initial_line
        self.max_body = max_body
        # Traccar's `event.ignoreDuplicateAlerts` (default true, `Keys.java`).
        self.ignore_duplicate_alerts = ignore_duplicate_alerts
        self._positions: list[DecodedPosition] = []
        self._last_positions: dict[str, DecodedPosition] = {}  # Traccar's cached last position
        self._alarm_events: list[AlarmEvent] = []

    def add_known_id(self, unique_id: str) -> None:
        self.devices.add(unique_id)

    @property
    def positions(self) -> list[DecodedPosition]:
        """The decoded positions, in the order they were answered 200."""
        with self._lock:
            return list(self._positions)

    @property
    def alarm_events(self) -> list[AlarmEvent]:
        """The alarm events raised, in order (see the module docstring)."""
        with self._lock:
            return list(self._alarm_events)

    def clear_positions(self) -> None:
        with self._lock:
            self._positions.clear()

    def _raise_events(self, position: DecodedPosition) -> None:
        """`AlarmEventHandler` on `position`, then `PostProcessHandler`'s last-position update
        (called with the lock held)."""
        last = self._last_positions.get(position.unique_id)
        if last is not None and position.fix_time < last.fix_time:
            return  # BasePositionEventHandler: an older position raises no event, stays not last
        alarm = position.attributes.get("alarm")
        if alarm is not None:
            alarms = dict.fromkeys(java_split(_java_string(alarm), ","))  # a set, in order
            previous = None if last is None else last.attributes.get("alarm")
            if self.ignore_duplicate_alerts and previous is not None:
                for value in java_split(_java_string(previous), ","):
                    alarms.pop(value, None)
            self._alarm_events += [
                AlarmEvent(position.unique_id, value, position.fix_time) for value in alarms
            ]
        self._last_positions[position.unique_id] = position

    def handle(self, request: HttpRequest) -> HttpResponse:
        if len(request.request_line) > self.max_initial_line:
            # Netty's TooLongFrameException: the decoder hands on GET /bad-request (no query, no
            # body), Traccar finds no id in it and answers 400; the rest of the input is dropped.
            return HttpResponse(400, close=True)
        if len(request.body) > self.max_body:
            # HttpObjectAggregator.handleOversizedMessage: 413, then the connection is closed.
            return HttpResponse(413, close=True)
        now = _java_date(datetime.now(UTC))
        try:
            status, position = decode_osmand(
                request, self.devices, now=now, min_accuracy=self.min_accuracy
            )
        except (ValueError, KeyError, IndexError, TypeError, OverflowError) as exc:
            # Traccar's decoder throws, and its pipeline closes the connection.
            raise CloseConnection(f"unparsable request {request.target!r}: {exc!r}") from exc
        if position is not None:
            with self._lock:
                self._positions.append(position)
                self._raise_events(position)
        return HttpResponse(status)


class Unparsable(ValueError):
    """A value Java would fail to parse (NumberFormatException and the like)."""


def decode_osmand(
    request: HttpRequest,
    devices: TraccarDevices,
    *,
    now: datetime,
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
) -> tuple[int, DecodedPosition | None]:
    """Decode one request like Traccar: the status it answers and the position it stores.

    Raises (ValueError and kin) where Traccar's decoder throws: the caller closes the connection.
    """
    content_type = request.headers.get("content-type")
    # Traccar checks the prefix exactly as sent (case-sensitive).
    if content_type is not None and content_type.startswith("application/json"):
        return _decode_json(request.body, devices, now=now, min_accuracy=min_accuracy)
    return _decode_query(request, devices, now=now)


def _decode_query(
    request: HttpRequest, devices: TraccarDevices, *, now: datetime
) -> tuple[int, DecodedPosition | None]:
    params = netty_query_parameters(request.target, has_path=True)
    if not params:
        params = netty_query_parameters(
            request.body.decode("ascii", errors="replace"), has_path=False
        )

    unique_id: str | None = None
    valid = True
    fix_time: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    attributes: dict[str, AttributeValue] = {}
    cells: list[CellTower] = []
    wifis: list[WifiAccessPoint] = []

    # Traccar walks the parameters in order of first appearance, each with all its values, and
    # answers 400 the moment an id is unknown: values after it are not even parsed.
    for key, values in params.items():
        for value in values:
            match key:
                case "id" | "deviceid":
                    if value not in devices:
                        return 400, None
                    unique_id = value
                case "notificationToken":
                    pass  # Traccar keeps it on the device for push notifications
                case "valid":
                    valid = value.lower() == "true" or value == "1"
                case "timestamp":
                    fix_time = _query_time(value)
                case "lat":
                    latitude = java_double(value)
                case "lon":
                    longitude = java_double(value)
                case "location":
                    parts = java_split(value, ",")
                    latitude, longitude = java_double(parts[0]), java_double(parts[1])
                case "cell":
                    parts = java_split(value, ",")
                    numbers = [java_int(part) for part in parts[: 5 if len(parts) > 4 else 4]]
                    cells.append(CellTower(*numbers))
                case "wifi":
                    parts = java_split(value, ",")
                    wifis.append(WifiAccessPoint(parts[0].replace("-", ":"), java_int(parts[1])))
                case "speed":
                    speed = java_double(value)  # knots: Traccar's default `osmand.speed`
                case "bearing" | "heading":
                    course = java_double(value)
                case "altitude":
                    altitude = java_double(value)
                case "accuracy":
                    accuracy = java_double(value)
                case "hdop":
                    attributes["hdop"] = java_double(value)
                case "batt":
                    attributes["batteryLevel"] = java_double(value)
                case "driverUniqueId":
                    _set_string(attributes, "driverUniqueId", value)
                case "charge":
                    attributes["charge"] = value.lower() == "true"
                case _:
                    _set_typed(attributes, key, value)

    has_coordinates = latitude is not None and longitude is not None
    if has_coordinates:
        _check_coordinates(latitude, longitude)
    if unique_id is None:
        return 400, None
    return 200, DecodedPosition(
        unique_id=unique_id,
        latitude=latitude if has_coordinates else None,
        longitude=longitude if has_coordinates else None,
        fix_time=fix_time or now,
        speed_knots=speed,
        course=course,
        altitude=altitude,
        accuracy=accuracy,
        attributes=attributes,
        valid=valid,
        outdated=not has_coordinates,
        cell_towers=tuple(cells),
        wifi_access_points=tuple(wifis),
    )


def _decode_json(
    body: bytes, devices: TraccarDevices, *, now: datetime, min_accuracy: float
) -> tuple[int, DecodedPosition | None]:
    root = json.loads(
        body.decode("utf-8", errors="replace"),
        parse_float=Decimal,
        parse_constant=_reject_constant,  # NaN/Infinity are not JSON for Traccar's parser
    )
    if not isinstance(root, dict):
        raise Unparsable("the JSON body is not an object")
    unique_id = _json_string(root, "device_id")
    if unique_id not in devices:
        return 404, None
    location = _json_object(root, "location")
    fix_time = iso_zoned_time(_json_string(location, "timestamp"))

    attributes: dict[str, AttributeValue] = {}
    latitude = longitude = speed = course = altitude = accuracy = None
    valid = False
    if "coords" in location:
        coords = _json_object(location, "coords")
        # All six are read unconditionally: a missing one makes Traccar throw.
        latitude = _json_number(coords, "latitude")
        longitude = _json_number(coords, "longitude")
        _check_coordinates(latitude, longitude)
        valid = True
        mps = _json_number(coords, "speed")
        if mps >= 0:
            speed = mps * KNOTS_PER_MPS
        heading = _json_number(coords, "heading")
        if heading >= 0:
            course = heading
        reported_accuracy = _json_number(coords, "accuracy")
        if reported_accuracy >= min_accuracy:
            accuracy = reported_accuracy
        altitude = _json_number(coords, "altitude")

    if "event" in location:
        _set_string(attributes, "event", _json_string(location, "event"))
    if "is_moving" in location:
        attributes["motion"] = _json_bool(location, "is_moving")
    if "odometer" in location:
        attributes["odometer"] = int(_json_decimal(location, "odometer"))  # getInt truncates
    if "mock" in location:
        attributes["mock"] = _json_bool(location, "mock")
    if "activity" in location:
        _set_string(
            attributes, "activity", _json_string(_json_object(location, "activity"), "type")
        )
    if "battery" in location:
        battery = _json_object(location, "battery")
        level = _json_number(battery, "level")
        if level >= 0:
            attributes["batteryLevel"] = int(level * 100)
        if _json_bool(battery, "is_charging"):
            attributes["charge"] = True
    if "alarm" in location:
        _set_string(attributes, "alarm", _json_string(location, "alarm"))
    if "extras" in location:
        for key, value in _json_object(location, "extras").items():
            if key == "alarm" and "alarm" in location:
                continue
            if isinstance(value, bool | int):
                attributes[key] = value
            elif isinstance(value, Decimal):
                # Jakarta's isIntegral: scale 0 ("12", "12E0"), not "12.0" nor "1E2".
                exponent = value.as_tuple().exponent
                attributes[key] = int(value) if exponent == 0 else float(value)
            elif isinstance(value, str):
                _set_string(attributes, key, value)
            # null, objects and arrays are skipped, as Traccar does.

    has_coordinates = latitude is not None
    return 200, DecodedPosition(
        unique_id=unique_id,
        latitude=latitude,
        longitude=longitude,
        fix_time=fix_time,
        speed_knots=speed,
        course=course,
        altitude=altitude,
        accuracy=accuracy,
        attributes=attributes,
        valid=valid,
        outdated=not has_coordinates,
    )


# --- Java's parsing, faithfully enough ------------------------------------------------------------

_JAVA_DOUBLE = re.compile(
    r"[+-]?(?:NaN|Infinity"
    r"|(?P<decimal>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[fFdD]?"
    r"|(?P<hex>0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+)[fFdD]?)",
    re.ASCII,
)
_JAVA_INTEGER = re.compile(r"[+-]?[0-9]+")
_ISO_ZONED = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)"
    r"(?:\[[^\]]+\])?",
    re.ASCII,
)
_LOCAL_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})", re.ASCII)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})?:?(\d{2})?", re.ASCII)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def java_double(value: str) -> float:
    """`Double.parseDouble`: trims control characters and spaces; NaN, Infinity, hex, suffixes."""
    text = _java_trim(value)
    match = _JAVA_DOUBLE.fullmatch(text)
    if match is None:
        raise Unparsable(f"not a Java double: {value!r}")
    negative = text.startswith("-")
    if match["decimal"] is not None:
        return float(text.rstrip("fFdD"))
    if match["hex"] is not None:
        magnitude = float.fromhex(match["hex"])
        return -magnitude if negative else magnitude
    if text.endswith("NaN"):
        return float("nan")
    return float("-inf") if negative else float("inf")


def java_int(value: str) -> int:
    """`Integer.parseInt`: an optional sign and ASCII digits, in 32-bit range, nothing else."""
    if _JAVA_INTEGER.fullmatch(value) is None or not JAVA_INT_MIN <= int(value) <= JAVA_INT_MAX:
        raise Unparsable(f"not a Java int: {value!r}")
    return int(value)


def _java_string(value: AttributeValue) -> str:
    """An attribute as `Position.getString` gives it (`toString()`: Java's true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def java_split(value: str, separator: str) -> list[str]:
    """`String.split`: trailing empty strings are dropped, but no match gives `[value]`."""
    if separator not in value:
        return [value]
    parts = value.split(separator)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _java_trim(value: str) -> str:
    start, end = 0, len(value)
    while start < end and value[start] <= " ":
        start += 1
    while end > start and value[end - 1] <= " ":
        end -= 1
    return value[start:end]


def _java_date(moment: datetime) -> datetime:
    """A `java.util.Date`: millisecond precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _query_time(value: str) -> datetime:
    """The query form's `timestamp`: epoch seconds or ms, ISO with a zone, or local time (UTC)."""
    if _JAVA_INTEGER.fullmatch(value) and JAVA_LONG_MIN <= int(value) <= JAVA_LONG_MAX:
        number = int(value)
        millis = number * 1000 if number < JAVA_INT_MAX else number
        return EPOCH + timedelta(milliseconds=millis)
    if "T" in value:
        return iso_zoned_time(value)
    return _local_time(value)


def iso_zoned_time(value: str) -> datetime:
    """`DateTimeFormatter.ISO_ZONED_DATE_TIME` to a Date: the zone offset is required."""
    match = _ISO_ZONED.fullmatch(value)
    if match is None:
        raise Unparsable(f"not an ISO date-time with a zone: {value!r}")
    millis = int((match["fraction"] or "0").ljust(3, "0")[:3])
    offset = match["offset"]
    zone: timezone = UTC
    if offset not in ("Z", "z"):
        parts = _OFFSET.fullmatch(offset)
        if parts is None:
            raise Unparsable(f"bad zone offset: {offset!r}")
        sign = -1 if parts[1] == "-" else 1
        delta = timedelta(
            hours=int(parts[2]), minutes=int(parts[3] or 0), seconds=int(parts[4] or 0)
        )
        if delta > timedelta(hours=18):
            raise Unparsable(f"zone offset out of range: {offset!r}")
        zone = timezone(sign * delta)
    moment = datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        int(match["hour"]),
        int(match["minute"]),
        int(match["second"] or 0),
        millis * 1000,
        tzinfo=zone,
    )
    return moment.astimezone(UTC)


def _local_time(value: str) -> datetime:
    """`yyyy-MM-dd HH:mm:ss` with Java's SMART resolver, in the server's zone (UTC here)."""
    match = _LOCAL_TIME.fullmatch(value)
    if match is None:
        raise Unparsable(f"not a yyyy-MM-dd HH:mm:ss time: {value!r}")
    year, month, day, hour, minute, second = (int(group) for group in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and minute <= 59 and second <= 59):
        raise Unparsable(f"field out of range: {value!r}")
    # SMART clamps a day past the month's end (2014-02-30 → 02-28) ...
    is_leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    last_day = 28 if month == 2 and not is_leap else _DAYS_IN_MONTH[month - 1]
    day = min(day, last_day)
    # ... and reads 24:00:00 as the next day's midnight.
    extra_day = hour == 24 and minute == 0 and second == 0
    if hour > 23 and not extra_day:
        raise Unparsable(f"hour out of range: {value!r}")
    moment = datetime(year, month, day, 0 if extra_day else hour, minute, second, tzinfo=UTC)
    return moment + timedelta(days=1) if extra_day else moment


def _check_coordinates(latitude: float | None, longitude: float | None) -> None:
    # Position.setLatitude/setLongitude throw out of range (NaN passes, as in Java).
    if latitude is not None and (latitude < -90 or latitude > 90):
        raise Unparsable(f"latitude out of range: {latitude}")
    if longitude is not None and (longitude < -180 or longitude > 180):
        raise Unparsable(f"longitude out of range: {longitude}")


def _set_string(attributes: dict[str, AttributeValue], key: str, value: str) -> None:
    # Traccar's set(key, String) ignores an empty string.
    if value:
        attributes[key] = value


def _set_typed(attributes: dict[str, AttributeValue], key: str, value: str) -> None:
    """Any other key: a double if it parses as one, a boolean for exactly true/false, else text."""
    try:
        attributes[key] = java_double(value)
    except Unparsable:
        if value in ("true", "false"):
            attributes[key] = value == "true"
        else:
            _set_string(attributes, key, value)


def netty_query_parameters(text: str, *, has_path: bool) -> dict[str, list[str]]:
    """Netty's `QueryStringDecoder.parameters()`: names in order of first appearance."""
    start = len(text)
    if has_path:
        # The path ends at the first '?' or '#'; a '#' there means no parameters at all.
        for index, char in enumerate(text):
            if char in "?#":
                start = index
                break
    else:
        start = 0
    params: dict[str, list[str]] = {}
    if start >= len(text):
        return params
    if text[start] == "?":
        start += 1
    name_start, value_start = start, -1
    index = start
    while index < len(text):
        char = text[index]
        if char == "=":
            if name_start == index:
                name_start = index + 1  # a leading '=' is skipped
            elif value_start < name_start:
                value_start = index + 1
        elif char in "&;":
            _add_parameter(text, name_start, value_start, index, params)
            name_start = index + 1
        elif char == "#":
            break
        index += 1
    _add_parameter(text, name_start, value_start, index, params)
    return params


def _add_parameter(
    text: str, name_start: int, value_start: int, value_end: int, params: dict[str, list[str]]
) -> None:
    if name_start >= value_end:
        return
    if value_start <= name_start:
        value_start = value_end + 1
    name = _decode_component(text[name_start : value_start - 1])
    value = _decode_component(text[value_start:value_end])
    params.setdefault(name, []).append(value)


def _decode_component(text: str) -> str:
    """Netty's `decodeComponent` for a query: '+' is a space, %XX runs are UTF-8."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "%":
            out.append(" " if char == "+" else char)
            index += 1
            continue
        raw = bytearray()
        while index < len(text) and text[index] == "%":
            pair = text[index + 1 : index + 3]
            if len(pair) < 2 or any(digit not in "0123456789abcdefABCDEF" for digit in pair):
                raise Unparsable(f"bad escape sequence in {text!r}")
            raw.append(int(pair, 16))
            index += 3
        out.append(raw.decode("utf-8", errors="replace"))
    return "".join(out)


# Jakarta JSON getters: a missing key or a value of another type makes them throw.


def _reject_constant(name: str) -> Any:
    raise Unparsable(f"{name} is not JSON")


def _json_object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise Unparsable(f"{key!r} is not a JSON object")
    return value


def _json_string(container: dict[str, Any], key: str) -> str:
    value = container.get(key)
    if not isinstance(value, str):
        raise Unparsable(f"{key!r} is not a JSON string")
    return value


def _json_bool(container: dict[str, Any], key: str) -> bool:
    value = container.get(key)
    if not isinstance(value, bool):
        raise Unparsable(f"{key!r} is not a JSON boolean")
    return value


def _json_decimal(container: dict[str, Any], key: str) -> Decimal | int:
    value = container.get(key)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise Unparsable(f"{key!r} is not a JSON number")
    return value


def _json_number(container: dict[str, Any], key: str) -> float:
    return float(_json_decimal(container, key))
