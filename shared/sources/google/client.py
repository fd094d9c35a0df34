"""The Nova API client: the account's device list and the locate action (PROTOCOLS.md §5).

`POST <GOOGLE_NOVA_URL>/<scope>` with a serialized protobuf body and Google's headers. 429 and
5xx answers and connection failures are retried with exponential backoff (google-api-core's
`Retry`, whose predicate picks the transient failures); 401 raises `NovaUnauthorized` so the
caller can get a fresh token and try once more; any other refusal raises `NovaError` at once.

A 429 naming a `Retry-After` (seconds) is honoured (issue 14, point 7): the request waits that
long before the backoff's own retry; one asking to wait longer than `RETRY_DEADLINE` is not
waited for in this run (`NovaThrottled`, a 503 with the wait in its message).

The client takes its HTTP session and base URL as arguments; tests pass a local fake server's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import requests
from google.api_core.exceptions import RetryError
from google.api_core.retry import Retry, if_exception_type

from shared.firestore_limits import id_problem
from shared.models import Model
from shared.sources.google.errors import NovaError

if TYPE_CHECKING:
    from shared.sources.google.proto import device_update_pb2, nova_pb2

logger = logging.getLogger(__name__)

DEFAULT_NOVA_TIMEOUT = 15.0  # seconds for one Nova request
RETRY_INITIAL = 1.0  # seconds before the first retry
RETRY_MAXIMUM = 16.0  # seconds between two retries at most
RETRY_MULTIPLIER = 2.0
# Seconds of retrying before giving up: a locate must leave time for its FCM answer.
RETRY_DEADLINE = 20.0
USER_AGENT = "fmd/20006320; gzip"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
LIST_DEVICES = "nbe_list_devices"
EXECUTE_ACTION = "nbe_execute_action"


class NovaUnavailable(NovaError):
    """A transient failure: 429, 5xx or no connection. Retried, then raised as is."""

    status = 503


class NovaThrottled(NovaError):
    """Nova's 429 asked to wait longer than this run may: retried by a later run."""

    status = 503

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NovaUnauthorized(NovaError):
    """401: the access token is no longer accepted."""


class GoogleDevice(Model):
    """A tracker or an Android phone of the account, as the device list names it."""

    id: str  # the canonic id
    name: str
    kind: Literal["tracker", "phone"] = "tracker"
    model: str | None = None


def canonic_id_of(metadata: device_update_pb2.DeviceMetadata) -> str | None:
    """The device's canonic id, read where its identifier type keeps it (PROTOCOLS.md §5):
    phones (IDENTIFIER_ANDROID) under `phoneInformation`, trackers in `canonicIds`. A reader
    of `canonicIds` alone would silently drop every phone."""
    identifiers = metadata.identifiers
    phone_ids = identifiers.phone_information.canonic_ids.canonic_id
    ids = phone_ids if phone_ids else identifiers.canonic_ids.canonic_id
    return ids[0].id if ids and ids[0].id else None


def is_phone(metadata: device_update_pb2.DeviceMetadata) -> bool:
    from shared.sources.google.proto import device_update_pb2 as pb  # cold start: as below

    identifiers = metadata.identifiers
    return identifiers.type == pb.IDENTIFIER_ANDROID or bool(
        identifiers.phone_information.canonic_ids.canonic_id
    )


def parse_device_list(answer: bytes) -> list[GoogleDevice]:
    """The devices of a `nbe_list_devices` answer; entries without a canonic id are skipped."""
    from google.protobuf.message import DecodeError  # cold start: as in `list_devices`

    from shared.sources.google.proto import nova_pb2

    try:
        listed = nova_pb2.DevicesList.FromString(answer)
    except DecodeError as exc:
        raise NovaError(f"the device list is not a DevicesList protobuf: {exc}") from None
    devices = []
    for metadata in listed.device_metadata:
        canonic_id = canonic_id_of(metadata)
        if canonic_id is None:
            logger.warning("a listed device has no canonic id; skipped")
            continue
        problem = id_problem(canonic_id)
        if problem is not None:
            # It names the device's documents and keys `state/fcm_lease.located`: one Firestore
            # refuses would fail every commit of the run it is in (issue 12).
            logger.warning("a listed device's canonic id is %s; skipped", problem)
            continue
        registration = metadata.information.registration
        devices.append(
            GoogleDevice(
                id=canonic_id,
                name=metadata.user_defined_name,
                kind="phone" if is_phone(metadata) else "tracker",
                model=registration.model or None,
            )
        )
    return devices


def default_retry() -> Retry:
    return Retry(
        predicate=if_exception_type(NovaUnavailable),
        initial=RETRY_INITIAL,
        maximum=RETRY_MAXIMUM,
        multiplier=RETRY_MULTIPLIER,
        timeout=RETRY_DEADLINE,
    )


class NovaClient:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        retry: Retry | None = None,
        timeout: float = DEFAULT_NOVA_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._retry = retry or default_retry()
        self._timeout = timeout
        self._sleep = sleep

    def list_devices(self, token: str) -> list[GoogleDevice]:
        """The account's trackers and Android phones (`parse_device_list`)."""
        # Cold start: protobuf and our messages load with the first Nova call, not with the
        # stack (a credential route or a sync without credentials never needs them).
        from shared.sources.google.proto import device_update_pb2, nova_pb2

        request = nova_pb2.DevicesListRequest()
        request.payload.type = device_update_pb2.SPOT_DEVICE
        request.payload.id = str(uuid.uuid4())
        return parse_device_list(self._post(token, LIST_DEVICES, request.SerializeToString()))

    def locate(
        self, token: str, canonic_id: str, *, request_uuid: str, fcm_token: str, now: datetime
    ) -> None:
        """Ask Google to locate the tracker; the answer comes as an FCM push to `fcm_token`."""
        # Cold start: as in `list_devices`.
        from shared.sources.google.proto import device_update_pb2, nova_pb2

        request = nova_pb2.ExecuteActionRequest()
        request.scope.type = device_update_pb2.SPOT_DEVICE
        request.scope.device.canonic_id.id = canonic_id
        locate = request.action.locate_tracker
        locate.contributor_type = nova_pb2.FMDN_ALL_LOCATIONS
        locate.last_high_traffic_enabling_time.seconds = int(now.timestamp())
        _fill_metadata(request, request_uuid=request_uuid, fcm_token=fcm_token)
        self._post(token, EXECUTE_ACTION, request.SerializeToString())

    def sound(
        self,
        token: str,
        canonic_id: str,
        *,
        start: bool,
        request_uuid: str,
        fcm_token: str,
        component: int = 0,
    ) -> None:
        """Start (or stop) the tracker's sound: the locate's request with the action's
        `startSound` (31) or `stopSound` (32) set instead (PROTOCOLS.md §5, "Ringing a
        tracker"). Returns when Nova took it; a refusal raises `NovaError`."""
        # Cold start: as in `list_devices`.
        from shared.sources.google.proto import device_update_pb2, nova_pb2

        request = nova_pb2.ExecuteActionRequest()
        request.scope.type = device_update_pb2.SPOT_DEVICE
        request.scope.device.canonic_id.id = canonic_id
        action = request.action.start_sound if start else request.action.stop_sound
        # Set even when the component is 0 (unspecified): the field's presence is the action.
        action.SetInParent()
        action.component = component  # type: ignore[assignment]  # an enum number
        _fill_metadata(request, request_uuid=request_uuid, fcm_token=fcm_token)
        self._post(token, EXECUTE_ACTION, request.SerializeToString())

    def _post(self, token: str, scope: str, body: bytes) -> bytes:
        try:
            return self._retry(self._post_once)(token, scope, body)
        except RetryError as exc:
            # The deadline passed while retrying: report the last failure itself.
            cause = exc.cause
            if isinstance(cause, NovaError):
                raise cause from None
            raise NovaUnavailable(f"Nova {scope}: {exc.message}") from None

    def _post_once(self, token: str, scope: str, body: bytes) -> bytes:
        try:
            response = self._session.post(
                f"{self._base_url}/{scope}",
                data=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": CONTENT_TYPE,
                    "User-Agent": USER_AGENT,
                },
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise NovaUnavailable(f"Nova {scope}: cannot reach Google: {exc}") from None
        status = response.status_code
        if status == 200:
            return response.content
        if status == 401:
            raise NovaUnauthorized(f"Nova {scope}: the access token was refused (401)")
        if status == 429:
            retry_after = _seconds(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > RETRY_DEADLINE:
                raise NovaThrottled(
                    f"Nova {scope}: Google asks to wait {retry_after} s (429)",
                    retry_after=retry_after,
                )
            if retry_after:
                logger.info("Nova answered 429; waiting %s s as asked", retry_after)
                self._sleep(retry_after)
        if status == 429 or status >= 500:
            logger.info("Nova answered %s; retrying", status, extra={"scope": scope})
            raise NovaUnavailable(f"Nova {scope}: Google answered {status}")
        raise NovaError(f"Nova {scope}: Google refused the request ({status})")


def _fill_metadata(
    request: nova_pb2.ExecuteActionRequest, *, request_uuid: str, fcm_token: str
) -> None:
    """An action's request metadata: a fresh `requestUuid` and the FCM registration token
    (any push about the action goes there)."""
    from shared.sources.google.proto import device_update_pb2

    metadata = request.request_metadata
    metadata.type = device_update_pb2.SPOT_DEVICE
    metadata.request_uuid = request_uuid
    metadata.fmd_client_uuid = str(uuid.uuid4())
    metadata.fcm_registration.token = fcm_token
    metadata.unknown_flag = True


def _seconds(retry_after: str | None) -> int | None:
    """A Retry-After in seconds; None when absent or an HTTP date (the backoff decides then)."""
    if retry_after is None or not retry_after.strip().isdigit():
        return None
    return int(retry_after.strip())
