"""The two Traccar clients: positions go in through OsmAnd, devices are made through the REST API.

`OsmAndClient.push` sends one `Location` to Traccar's OsmAnd endpoint (port 5055 by default,
PROTOCOLS.md §1) as a form-encoded POST body, within Traccar's body limit (attributes that would
not fit are dropped, least useful first, and named in `PushResult.dropped`), and never raises for
a network or server failure: it answers a `PushResult` whose `outcome` tells the pipeline what to
do with the position:

    ACCEPTED        2xx: Traccar stored it (record the fingerprint)
    UNKNOWN_DEVICE  400 or 404: Traccar does not know the unique id (create the device, retry)
    RETRY_LATER     anything else: 5xx, other 4xx, 3xx, timeout, refused, closed without a
                    reply (Traccar's way of rejecting a value it cannot parse): keep it queued

`TraccarApi` speaks the REST API (web port, `/api`, a bearer token or a user's email and
password, PROTOCOLS.md §2) and raises:

    TraccarError                 the base; `status` is the HTTP status when there was one
    ├── TraccarAuthError         401/403: wrong, expired or revoked credentials, or a user
    │                            without the right
    ├── TraccarConnectionError   refused, timed out, closed: the server was not reached
    └── TraccarResponseError     any other non-2xx answer, or a body that is not what Traccar sends

Both take their `requests.Session` from the caller (one pooled session per instance) and put an
explicit timeout on every call. A caller with an answer to give in time (a webhook: Smartcar
wants a 2xx within 15 s, PROTOCOLS.md §3) passes a `Deadline`: each call then gets at most what
is left of it, connect and read together, a call with nothing left is not made, and a push
whose wait the deadline ended says so (`PushResult.cut`: Traccar may have stored it). Error
texts never contain the token and leave out the URL's query string (positions) and any
user:password in the base URL.
"""

from __future__ import annotations

import base64
import copy
import functools
import http.client
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus, urlsplit, urlunsplit

import requests
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from shared.models import AttributeValue, Location, Model

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
# Traccar's OsmAnd body limit (`HttpObjectAggregator`): 16 KiB before 6.14, 64 KiB since; above
# it Traccar answers 413 to every retry. The bridge does not know the server's version, so a
# push always fits the smaller one (PROTOCOLS.md §1).
OSMAND_BODY_LIMIT = 16 * 1024
FORM = "application/x-www-form-urlencoded"
# Traccar's own attribute keys (`Position.java`, PROTOCOLS.md §1): its UI, reports and handlers
# read them, so when a body must shrink they are the last attributes to go.
TRACCAR_ATTRIBUTE_KEYS = frozenset(
    {
        "batteryLevel",
        "battery",
        "power",
        "charge",
        "odometer",
        "distance",
        "totalDistance",
        "ignition",
        "motion",
        "alarm",
        "fuel",
        "fuelLevel",
        "lock",
        "door",
        "rssi",
        "sat",
        "hdop",
        "approximate",
        "status",
        "event",
    }
)
# How many dropped attribute names a log line or an error text lists.
DROPPED_NAMES_SHOWN = 10

# Keys Traccar's OsmAnd decoder reads as fields of the position (or, for `cell`/`wifi`, as network
# data) rather than as attributes. An attribute with one of these names would override or corrupt
# the real field, so it is sent as `attr_<key>` instead (see `_attribute_params`). `batteryLevel`
# is where `batt` lands: an attribute of that name would silently replace `Location.battery`.
# `notificationToken` is consumed by Traccar for push notifications and never stored.
OSMAND_RESERVED_KEYS = frozenset(
    {
        "id",
        "deviceid",
        "lat",
        "lon",
        "location",
        "timestamp",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "hdop",
        "batt",
        "charge",
        "driverUniqueId",
        "valid",
        "cell",
        "wifi",
        "notificationToken",
        "batteryLevel",
    }
)
# Traccar's own attribute keys that no source of the bridge has a reading for: Traccar's
# handlers read `status` as a device's protocol status word, `event` as its event code. A
# source's attribute of that name (a TLINK sensor somebody called "status") would be read as
# Traccar's, so it is renamed like a reserved key (PROTOCOLS.md §1: never `status` for
# something else).
FOREIGN_MEANING_KEYS = frozenset({"status", "event"})
RENAMED_ATTRIBUTE_PREFIX = "attr_"
# OsmAnd keys that are Traccar's own attributes and that no `Location` field sends: a source's
# attribute of that name is exactly what Traccar expects there (a vehicle's charging flag is
# Traccar's `charge`), so a value of the right type goes through under its own name. `valid`:
# a Smartcar delivery that brings no new location is still a position, marked not a fix.
PASS_THROUGH_KEYS: dict[str, type] = {"charge": bool, "valid": bool}
# Enough of an error body to say what went wrong; Traccar answers errors with a whole stack trace.
ERROR_BODY_LIMIT = 200


# A call is not started with less time than this left before its deadline: it would only fail.
MIN_CALL_SECONDS = 0.5


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock by which a chain of Traccar calls must have ended."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())


def _bounded(timeout: tuple[float, float], deadline: Deadline | None) -> Any:
    """`timeout` of one request, cut to what is left before `deadline`: connect and read
    together (urllib3's `total`; requests passes a urllib3 `Timeout` through as it is), so a
    server that accepts the connection and never answers costs at most what is left. A read
    timeout bounds each wait for data: a server dripping its answer a byte at a time could
    still outlast it (Traccar answers a push in one write)."""
    if deadline is None:
        return timeout
    # Imported here: urllib3 is loaded by requests already; only a bounded call needs this.
    from urllib3.util import Timeout

    left = deadline.remaining()
    return Timeout(connect=min(timeout[0], left), read=min(timeout[1], left), total=left)


def _no_time_left(target: str, deadline: Deadline | None) -> str | None:
    """Why a call is not made: `deadline` reached (less than `MIN_CALL_SECONDS` left)."""
    if deadline is None or deadline.remaining() >= MIN_CALL_SECONDS:
        return None
    return f"Traccar at {target}: not tried, no time left before the answer's deadline"


class PushOutcome(StrEnum):
    ACCEPTED = "accepted"
    UNKNOWN_DEVICE = "unknown_device"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True)
class PushResult:
    outcome: PushOutcome
    status: int | None  # the HTTP status, when Traccar (or something in front of it) answered
    error: str | None  # why it was not accepted; never holds a secret
    # Attributes left out so that the body fits Traccar's limit (names as they would have been
    # sent); the position itself always goes.
    dropped: tuple[str, ...] = ()
    # False: not sent at all, no time being left before the caller's deadline (or the deadline
    # came before the connection was made).
    tried: bool = True
    # True: sent, and the caller's deadline ran out before Traccar answered (it cut the wait
    # short of the client's own timeout): Traccar may be slow, not down, and may have stored it.
    cut: bool = False


class OsmAndClient:
    """Pushes positions to Traccar's OsmAnd endpoint; see the module docstring for outcomes."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._session = session
        self._url = base_url
        self._target = _safe_url(base_url)
        self._timeout = (connect_timeout, read_timeout)

    @property
    def longest_wait(self) -> float:
        """How long a push may wait for Traccar on its own timeouts (connect, then the answer):
        a deadline leaving at least this much never cuts it."""
        return self._timeout[0] + self._timeout[1]

    def push(
        self, location: Location, unique_id: str, *, deadline: Deadline | None = None
    ) -> PushResult:
        """Push `location` as `unique_id`; within what is left of `deadline` when one is given
        (none left: not tried, `RETRY_LATER` with status None)."""
        # A form-encoded POST body and no query string: Traccar keeps 4096 bytes of request line
        # and decodes a longer one as `/bad-request`, a 400 that reads like an unknown device (a
        # device with many long UTF-8 sensor names crossed it); it reads the body when the URI
        # has no query. POST also because a push is not idempotent: proxies may cache, prefetch
        # or replay a GET, and each replay would be one more stored position in Traccar.
        body, dropped = osmand_body(location, unique_id)
        if dropped:
            logger.warning(
                "attributes dropped to fit Traccar's body limit",
                extra={"unique_id": unique_id, "dropped": _names(dropped)},
            )
        late = _no_time_left(self._target, deadline)
        if late is not None:
            return PushResult(PushOutcome.RETRY_LATER, None, late, tried=False)
        try:
            response = self._session.post(
                self._url,
                data=body,
                headers={"Content-Type": FORM},
                timeout=_bounded(self._timeout, deadline),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            return _unanswered(self._target, _timeout_kind(exc), deadline)
        except requests.ConnectionError as exc:
            failure = _connection_failure(exc)
            if failure == READ_TIMEOUT:
                return _unanswered(self._target, failure, deadline)
            return _retry(None, f"Traccar at {self._target}: {failure}")
        except requests.RequestException as exc:
            failure = type(exc).__name__
            return _retry(None, f"Traccar at {self._target}: request failed ({failure})")
        status = response.status_code
        if 200 <= status < 300:
            return PushResult(PushOutcome.ACCEPTED, status, None, dropped)
        if status in (400, 404):
            return PushResult(
                PushOutcome.UNKNOWN_DEVICE,
                status,
                f"Traccar answered {status}: it does not know device {unique_id}",
            )
        if 300 <= status < 400:
            return _retry(
                status,
                f"Traccar at {self._target} answered a redirect ({status}); point "
                "TRACCAR_SERVER_URL at the OsmAnd endpoint itself",
            )
        # 5xx: Traccar (or its proxy) is in trouble. Any other 4xx (401/403 from a proxy, 413,
        # 429) is not about the position either: keep it and let the log show the status.
        return _retry(status, f"Traccar at {self._target} answered HTTP {status}")


def osmand_body(
    location: Location, unique_id: str, *, limit: int = OSMAND_BODY_LIMIT
) -> tuple[bytes, tuple[str, ...]]:
    """The form body of a push within `limit` bytes, and the attributes left out to fit.

    The least useful go first: a vendor's own keys before Traccar's (`TRACCAR_ATTRIBUTE_KEYS`),
    and among those the largest first, so that the fewest readings are lost. The position's own
    fields are never dropped: without attributes a body is a few hundred bytes at most, so the
    position always gets through rather than being refused (413) on every retry.
    """
    fields = _field_params(location, unique_id)
    params = fields + list(_attribute_params(location.attributes))
    pairs = [f"{quote_plus(key)}={quote_plus(value)}" for key, value in params]
    size = sum(map(len, pairs)) + len(pairs) - 1
    if size <= limit:
        return "&".join(pairs).encode("ascii"), ()
    candidates = sorted(
        range(len(fields), len(params)),
        key=lambda index: (params[index][0] in TRACCAR_ATTRIBUTE_KEYS, -len(pairs[index])),
    )
    left_out: set[int] = set()
    for index in candidates:
        if size <= limit:
            break
        left_out.add(index)
        size -= len(pairs[index]) + 1
    kept = [pair for index, pair in enumerate(pairs) if index not in left_out]
    dropped = tuple(params[index][0] for index in sorted(left_out))
    return "&".join(kept).encode("ascii"), dropped


def _names(dropped: tuple[str, ...]) -> str:
    shown = ", ".join(dropped[:DROPPED_NAMES_SHOWN])
    more = len(dropped) - DROPPED_NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def osmand_params(location: Location, unique_id: str) -> list[tuple[str, str]]:
    """The OsmAnd parameters of a location, in the order they are sent (nothing dropped)."""
    return _field_params(location, unique_id) + list(_attribute_params(location.attributes))


def _field_params(location: Location, unique_id: str) -> list[tuple[str, str]]:
    """The position's own OsmAnd fields: never dropped."""
    params = [
        ("id", unique_id),
        ("lat", _number(location.lat)),
        ("lon", _number(location.lon)),
        ("timestamp", str(location.timestamp)),
    ]
    optional = (
        ("altitude", location.altitude),
        ("accuracy", location.accuracy),
        ("speed", location.speed),
        ("bearing", location.bearing),
        ("batt", location.battery),
    )
    # A non-finite number would be spelled "nan"/"inf", which Traccar cannot parse: it would
    # close the connection on every retry and the position would never get through. A missing
    # value is what NaN means here, so it is left out.
    params.extend(
        (key, _number(value)) for key, value in optional if value is not None and _is_finite(value)
    )
    return params


def _attribute_params(attributes: dict[str, AttributeValue]) -> Iterator[tuple[str, str]]:
    for key, value in attributes.items():
        if not key:
            # Traccar's query decoder would take the value for the name of the parameter.
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        name = key
        if isinstance(value, PASS_THROUGH_KEYS.get(key, ())):
            yield name, _attribute_value(value)
            continue
        # Renamed rather than dropped: the value still reaches Traccar, under a name that cannot
        # clash with a real field (nor with another attribute).
        while (
            name in OSMAND_RESERVED_KEYS
            or name in FOREIGN_MEANING_KEYS
            or (name != key and name in attributes)
        ):
            name = RENAMED_ATTRIBUTE_PREFIX + name
        yield name, _attribute_value(value)


def _attribute_value(value: AttributeValue) -> str:
    # bool first: it is an int too. Traccar reads exactly "true"/"false" as booleans.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float) -> str:
    # repr is the shortest text that reads back as the same double, in a syntax Java's
    # Double.parseDouble accepts ("1e-05" included).
    return repr(float(value))


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _retry(status: int | None, error: str) -> PushResult:
    return PushResult(PushOutcome.RETRY_LATER, status, error)


def _unanswered(target: str, failure: str, deadline: Deadline | None) -> PushResult:
    """A push that timed out (`failure`): cut when `deadline` had run out by then (the total
    it bounded the call with, shorter than the client's own timeouts), else Traccar's failure.
    One clock read: no bookkeeping of which bound fired. A connection the deadline cut before
    it was made sent nothing: not tried (Traccar cannot have stored it), not cut."""
    if deadline is None or deadline.remaining() >= MIN_CALL_SECONDS:
        return _retry(None, f"Traccar at {target}: {failure}")
    if failure == CONNECT_TIMEOUT:
        return PushResult(
            PushOutcome.RETRY_LATER,
            None,
            f"Traccar at {target}: not sent, no connection before the answer's deadline",
            tried=False,
        )
    return PushResult(
        PushOutcome.RETRY_LATER,
        None,
        f"Traccar at {target}: no answer before the answer's deadline ({failure}); it may "
        "have stored the position, which is pushed again",
        cut=True,
    )


def _safe_url(url: str) -> str:
    """`url` without user:password, query and fragment: fit for an error text."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps: requests and urllib3 nest them in args, `reason`,
    `__cause__` and `__context__`."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        pending.extend(item for item in nested if isinstance(item, BaseException))


READ_TIMEOUT = "read timeout (no answer in time)"
CONNECT_TIMEOUT = "connect timeout"


def _timeout_kind(exc: requests.Timeout) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return CONNECT_TIMEOUT
    return READ_TIMEOUT


def _connection_failure(exc: requests.ConnectionError) -> str:
    causes = list(_causes(exc))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    if any(isinstance(cause, TimeoutError) for cause in causes):
        # A body that stops arriving surfaces as a ConnectionError around a read timeout.
        return READ_TIMEOUT
    closed = (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead)
    if any(isinstance(cause, closed) for cause in causes):
        return (
            "connection closed without a reply (Traccar does this when it cannot parse a "
            "value of the request)"
        )
    names = {type(cause).__name__ for cause in causes}
    if "NameResolutionError" in names or "gaierror" in names:
        return "host name does not resolve"
    return f"connection failed ({type(causes[-1]).__name__})"


class TraccarDevice(Model):
    """A Traccar device as the REST API answers it (vendor field names). The fields not named
    here are kept too: Traccar's `PUT /api/devices/{id}` stores the whole body it gets, so an
    update sends the device back as Traccar gave it, changed only where meant."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    uniqueId: str  # Traccar's field name, kept as the vendor spells it
    attributes: dict[str, Any] = Field(default_factory=dict)


@functools.cache
def _device_list() -> TypeAdapter[list[TraccarDevice]]:
    """The validator of `GET /api/devices`' answer, built when Traccar's API is first asked."""
    return TypeAdapter(list[TraccarDevice])


class TraccarError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TraccarAuthError(TraccarError):
    pass


class TraccarConnectionError(TraccarError):
    pass


class TraccarResponseError(TraccarError):
    pass


@dataclass(frozen=True)
class AttributesPass:
    """What `TraccarApi.ensure_attributes` did."""

    found: int  # devices of the bridge that Traccar lists to the credentials' user
    missing: int  # devices of the bridge it does not list (not created yet, or not visible)
    updated: tuple[str, ...]  # unique ids whose attributes were written
    failed: tuple[str, ...]  # unique ids Traccar refused to update (logged)


@dataclass(frozen=True)
class BasicLogin:
    """A Traccar user's email and password (HTTP Basic): unlike a token, it never expires."""

    email: str
    password: str = field(repr=False)


class TraccarApi:
    """Traccar's REST API at `base_url` (the web address, e.g. http://host:8082), as one user.

    `credentials` is a bearer token (a token from Traccar's settings, or the server's
    `web.serviceAccountToken`) or a `BasicLogin` (PROTOCOLS.md §2).
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        credentials: str | BasicLogin,
        *,
        timeout: float | tuple[float, float] = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
    ) -> None:
        self._session = session
        # rstrip: a configured URL may end with "/" or carry a proxy prefix ("/traccar/").
        self._api_url = base_url.rstrip("/") + "/api"
        self._target = _safe_url(base_url)
        self._credentials = credentials
        if isinstance(credentials, BasicLogin):
            pair = f"{credentials.email}:{credentials.password}".encode()
            self._authorization = "Basic " + base64.b64encode(pair).decode("ascii")
            self._who = f"user {credentials.email}"
            self._secrets = [credentials.password, self._authorization.split(" ", 1)[1]]
        else:
            self._authorization = f"Bearer {credentials}"
            self._who = "the token's user"
            self._secrets = [credentials]
        self._timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._deadline: Deadline | None = None

    def until(self, deadline: Deadline) -> TraccarApi:
        """This API (same session and credentials) with every call within `deadline`: a chain
        of calls (`ensure_device`: up to six) ends by then, a call with no time left raises
        `TraccarConnectionError` without being made."""
        bounded = copy.copy(self)
        bounded._deadline = deadline
        return bounded

    def find_device(self, unique_id: str) -> TraccarDevice | None:
        """The device with this unique id that the credentials' user can see, or None.

        Traccar's `uniqueId` filter only sees devices linked to the caller, administrator or
        not; a device linked to nobody (made with the service account, auto-registered) is
        found by an administrator's `all=true` listing, narrowed by `keyword` and filtered here.
        """
        found = self._devices({"uniqueId": unique_id}, unique_id)
        if found is None:
            found = self._devices({"all": "true", "keyword": unique_id}, unique_id)
        return found

    def _list_devices(self, params: dict[str, str]) -> list[TraccarDevice]:
        """`GET /api/devices` with `params`, checked to be a device list."""
        body = self._call("GET", "devices", params=params)
        try:
            return _device_list().validate_python(body)
        except ValidationError as exc:
            raise TraccarResponseError(
                f"Traccar API at {self._target} answered GET /api/devices with something other "
                "than a device list"
            ) from exc

    def _devices(self, params: dict[str, str], unique_id: str) -> TraccarDevice | None:
        devices = self._list_devices(params)
        # Filtered here too: a server that ignores the parameter answers every device. A
        # case-insensitive database collation (MySQL) matches "ABC" to "abc", so that counts.
        exact = [device for device in devices if device.uniqueId == unique_id]
        loose = [device for device in devices if device.uniqueId.casefold() == unique_id.casefold()]
        found = exact or loose
        return found[0] if found else None

    def create_device(
        self,
        unique_id: str,
        name: str,
        *,
        category: str | None = None,
        group_id: int | None = None,
        attributes: dict[str, str] | None = None,
    ) -> TraccarDevice:
        # Traccar stores whatever name it gets; an empty one shows as a blank line in its UI.
        entity: dict[str, Any] = {"name": name or unique_id, "uniqueId": unique_id}
        if category:
            entity["category"] = category
        if group_id is not None:
            entity["groupId"] = group_id
        if attributes:
            entity["attributes"] = attributes
        body = self._call("POST", "devices", json=entity)
        try:
            return TraccarDevice.model_validate(body)
        except ValidationError as exc:
            raise TraccarResponseError(
                f"Traccar API at {self._target} answered POST /api/devices with something other "
                "than a device"
            ) from exc

    def set_attributes(self, device: TraccarDevice, attributes: dict[str, str]) -> TraccarDevice:
        """`device` with `attributes` added to its own (`PUT /api/devices/{id}`); no call when
        it has them already."""
        if all(device.attributes.get(key) == value for key, value in attributes.items()):
            return device
        entity = device.model_dump()
        entity["attributes"] = {**device.attributes, **attributes}
        body = self._call("PUT", f"devices/{device.id}", json=entity)
        try:
            return TraccarDevice.model_validate(body)
        except ValidationError as exc:
            raise TraccarResponseError(
                f"Traccar API at {self._target} answered PUT /api/devices/{device.id} with "
                "something other than a device"
            ) from exc

    def ensure_attributes(
        self, unique_ids: Iterable[str], attributes: dict[str, str]
    ) -> AttributesPass:
        """Give each Traccar device of `unique_ids` the `attributes` it lacks or holds with
        another value (a rotated command key): one `GET /api/devices?all=true` (every device
        for an administrator, the linked ones for anyone else), then one PUT per device that
        differs, none for the others. A device Traccar refuses to update is named in
        `failed`, the others still go; refused credentials or an unreachable server raise."""
        wanted = set(unique_ids)
        listed = self._list_devices({"all": "true"})
        # Exact ids first; a case-insensitive database collation may have stored another case.
        folded = {unique_id.casefold(): unique_id for unique_id in wanted}
        found: dict[str, TraccarDevice] = {}
        for device in listed:
            ours = (
                device.uniqueId
                if device.uniqueId in wanted
                else folded.get(device.uniqueId.casefold())
            )
            if ours is not None and (ours not in found or device.uniqueId == ours):
                found[ours] = device
        updated: list[str] = []
        failed: list[str] = []
        for unique_id, device in sorted(found.items()):
            if all(device.attributes.get(key) == value for key, value in attributes.items()):
                continue
            try:
                self.set_attributes(device, attributes)
            except (TraccarAuthError, TraccarConnectionError):
                raise
            except TraccarError as exc:
                logger.warning(
                    "Traccar refused the command attributes of a device",
                    extra={"unique_id": unique_id, "reason": str(exc)},
                )
                failed.append(unique_id)
            else:
                updated.append(unique_id)
        return AttributesPass(
            found=len(found),
            missing=len(wanted) - len(found),
            updated=tuple(updated),
            failed=tuple(failed),
        )

    def link_device(self, device_id: int, *, user_id: int) -> None:
        """Link a device to a user (`POST /api/permissions`): it shows on that user's map."""
        self._call("POST", "permissions", json={"userId": user_id, "deviceId": device_id})

    def delete_device(self, unique_id: str) -> bool:
        """Delete the device with this unique id (`DELETE /api/devices/{id}`, its positions go
        with it in Traccar); False if the credentials' user sees no such device."""
        found = self.find_device(unique_id)
        if found is None:
            return False
        self._call("DELETE", f"devices/{found.id}")
        return True

    def ensure_device(
        self,
        unique_id: str,
        name: str,
        *,
        category: str | None = None,
        user_id: int | None = None,
        group_id: int | None = None,
        attributes: dict[str, str] | None = None,
    ) -> TraccarDevice:
        """The device with this unique id, created when it does not exist yet: in `group_id`,
        then linked to `user_id`, so that it appears on someone's map (a device made with the
        service account is linked to nobody otherwise). It carries `attributes` (the command
        sender's) either way: created with them, or given them when found without."""
        found = self.find_device(unique_id)
        if found is not None:
            return self.set_attributes(found, attributes) if attributes else found
        try:
            created = self.create_device(
                unique_id, name, category=category, group_id=group_id, attributes=attributes
            )
        except TraccarResponseError as exc:
            # Traccar answers a duplicate uniqueId with 400 and the database's error text, which
            # differs by database. Another instance may have created it since our lookup: look
            # again rather than parse the text; if it is still not there, the 400 was real.
            if exc.status != 400:
                raise
            found = self.find_device(unique_id)
            if found is None:
                raise TraccarResponseError(
                    f"Traccar API at {self._target} refused to create device {unique_id} ({exc}); "
                    f"if it exists already, {self._who} cannot see it: link the device to that "
                    "user in Traccar, or give the bridge an administrator's credentials",
                    status=exc.status,
                ) from exc
            return self.set_attributes(found, attributes) if attributes else found
        if user_id is not None:
            self.link_device(created.id, user_id=user_id)
        return created

    def _call(
        self,
        method: str,
        resource: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        what = f"{method} /api/{resource}"
        late = _no_time_left(self._target, self._deadline)
        if late is not None:
            raise TraccarConnectionError(f"{late} ({what})")
        try:
            response = self._session.request(
                method,
                f"{self._api_url}/{resource}",
                params=params,
                json=json,
                headers={"Authorization": self._authorization, "Accept": "application/json"},
                timeout=_bounded(self._timeout, self._deadline),
                allow_redirects=False,
            )
            response.raise_for_status()
        except requests.Timeout as exc:
            raise TraccarConnectionError(
                f"Traccar API at {self._target}, {what}: {_timeout_kind(exc)}"
            ) from exc
        except requests.ConnectionError as exc:
            raise TraccarConnectionError(
                f"Traccar API at {self._target}, {what}: {_connection_failure(exc)}"
            ) from exc
        except requests.HTTPError as exc:
            raise self._status_error(what, exc.response) from exc
        except requests.RequestException as exc:
            raise TraccarConnectionError(
                f"Traccar API at {self._target}, {what}: request failed ({type(exc).__name__})"
            ) from exc
        if not 200 <= response.status_code < 300:
            # A redirect, which raise_for_status lets through (there is no cause to chain).
            # Following it would re-send the credentials to wherever it points, or turn a POST
            # into a GET.
            raise TraccarResponseError(
                f"Traccar API at {self._target} answered {what} with a redirect "
                f"({response.status_code}); set TRACCAR_API_URL to the final address",
                status=response.status_code,
            )
        if response.status_code == 204:
            return None  # POST /api/permissions answers No Content
        try:
            return response.json()
        except requests.JSONDecodeError as exc:
            raise TraccarResponseError(
                f"Traccar API at {self._target} answered {what} with a body that is not JSON",
                status=response.status_code,
            ) from exc

    def _status_error(self, what: str, response: requests.Response | None) -> TraccarError:
        status = response.status_code if response is not None else None
        if status in (401, 403):
            if isinstance(self._credentials, BasicLogin):
                hint = "check the email and password stored for the Traccar API"
            else:
                hint = (
                    "a token from Traccar's settings expires (7 days unless made with a far "
                    "expiration): store a new one, or use TRACCAR_API_AUTH=basic"
                )
            return TraccarAuthError(
                f"Traccar API at {self._target} refused the credentials ({status} to {what}); "
                f"{hint}; the user must be allowed to manage devices",
                status=status,
            )
        detail = self._body_excerpt(response)
        return TraccarResponseError(
            f"Traccar API at {self._target} answered {status} to {what}"
            + (f": {detail}" if detail else ""),
            status=status,
        )

    def _body_excerpt(self, response: requests.Response | None) -> str:
        """The first line of an error body (Traccar sends a stack trace), short, secret-free."""
        if response is None:
            return ""
        lines = response.text.strip().splitlines()
        excerpt = lines[0][:ERROR_BODY_LIMIT] if lines else ""
        for secret in self._secrets:
            if secret:
                excerpt = excerpt.replace(secret, "[REDACTED]")
        return excerpt
