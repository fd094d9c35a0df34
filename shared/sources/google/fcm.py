"""One FCM (MCS) session that sends locate requests and collects their answers.

Google answers a locate action with an FCM push: a Web-Push ("aesgcm") encrypted data message
whose `com.google.android.apps.adm.FCM_PAYLOAD` holds a base64 `DeviceUpdate`. The
`firebase-messaging` library (pinned) does the MCS part: the TLS connection, the login with the
stored GCM `android_id`/`security_token`, heartbeats, the decryption with
`fcm_credentials.keys`, and an acknowledgement per push.

A session (`run_session`):

0. checks in (`checkin`, the GCM check-in with the stored ids, `shared.sources.google.checkin`):
   every working client does it before each MCS login (PROTOCOLS.md §5);
1. logs in, and waits until MCS accepted the login: a push for a locate sent before that could
   be missed (PROTOCOLS.md §5);
2. sends every locate request (`send`, a blocking call, runs in worker threads, up to
   `concurrency` at once: many at once risk Nova's 429);
3. keeps the first `DeviceUpdate` whose `fcm_metadata.request_uuid` matches each request, and
   ends as soon as every request is answered or failed, or when `timeout` seconds have passed
   since the start (the unanswered ones are simply missing from the result).

Only check-in-free use of the library: the session never calls `checkin_or_register`, which
re-registers (new android_id and keys) when a check-in fails; new keys would not match the
AAS token's android_id and Google's OAuth would refuse it.

The MCS endpoint is configurable (`GOOGLE_MCS_HOST`/`GOOGLE_MCS_PORT`) through the library's
one connection seam, `_open_connection`, overridden by `_BridgeFcmClient`; TLS verification is
the library's own (system CAs; a test fake's CA comes in through `SSL_CERT_FILE`).

One MCS session per android_id at a time: a second login displaces the first. Callers hold the
FCM lease (`shared.sources.google.lease`) around a session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BridgeError
from shared.sources.google.errors import (
    AuthExpired,
    CredentialsMissing,
    FcmError,
    McsLoginFailed,
)

logger = logging.getLogger(__name__)

FCM_PAYLOAD_KEY = "com.google.android.apps.adm.FCM_PAYLOAD"
LOGIN_POLL_INTERVAL = 0.05  # seconds between two looks at the login state
STOP_TIMEOUT = 5.0  # seconds to let the library close its connection
# Locate requests in flight to Nova at once (GOOGLE_LOCATE_CONCURRENCY's default).
DEFAULT_CONCURRENT_SENDS = 2


@dataclass(frozen=True)
class McsEndpoint:
    host: str
    port: int


@dataclass
class SessionResult:
    """The raw `DeviceUpdate` of each answered request, and why the others failed to send."""

    answers: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, BridgeError] = field(default_factory=dict)


def device_update_bytes(message: dict[str, Any]) -> bytes | None:
    """The serialized DeviceUpdate of a decrypted push, or None if it carries none."""
    data = message.get("data")
    payload = data.get(FCM_PAYLOAD_KEY) if isinstance(data, dict) else None
    if not isinstance(payload, str) or not payload:
        return None
    try:
        # Google may leave the padding out.
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        logger.warning("an FCM push carries a payload that is not base64; ignored")
        return None


def request_uuid_of(update: bytes) -> str | None:
    # Cold start: protobuf loads with the first answer, not with this module.
    from google.protobuf.message import DecodeError

    from shared.sources.google.proto import device_update_pb2

    try:
        return device_update_pb2.DeviceUpdate.FromString(update).fcm_metadata.request_uuid
    except DecodeError:
        logger.warning("an FCM push carries a payload that is not a DeviceUpdate; ignored")
        return None


def _client_class() -> type:
    # Cold start: firebase-messaging (and its crypto stack) loads with the first session.
    from firebase_messaging import FcmPushClient

    class _BridgeFcmClient(FcmPushClient):
        """The library's client, connecting to a configurable MCS endpoint."""

        def __init__(self, *args: Any, endpoint: McsEndpoint, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._endpoint = endpoint

        # The library's seam is a staticmethod; the endpoint is this client's, so an instance
        # method overrides it (called as `self._open_connection(...)`, same arguments), which
        # mypy has no way to accept.
        async def _open_connection(  # type: ignore[override]
            self, host: str, port: int, ssl_context: ssl.SSLContext
        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(
                host=self._endpoint.host,
                port=self._endpoint.port,
                ssl=ssl_context,
                server_hostname=self._endpoint.host,
            )

    return _BridgeFcmClient


class _Collector:
    """The push callback: keeps the first answer of each pending request."""

    def __init__(self, pending: Sequence[str]) -> None:
        self.pending = set(pending)
        self.result = SessionResult()
        self.done = asyncio.Event()

    def on_push(self, message: dict[str, Any], persistent_id: str, _context: object) -> None:
        update = device_update_bytes(message)
        if update is None:
            logger.info("an FCM push without a Find My Device payload; ignored")
            return
        request_uuid = request_uuid_of(update)
        if request_uuid not in self.pending or request_uuid in self.result.answers:
            logger.info("an FCM push for another request; ignored")
            return
        self.result.answers[request_uuid] = update
        self._check()

    def fail(self, request_uuid: str, error: BridgeError) -> None:
        self.result.failures[request_uuid] = error
        self._check()

    def _check(self) -> None:
        if self.pending <= self.result.answers.keys() | self.result.failures.keys():
            self.done.set()


async def _wait_for_login(client: Any, deadline: float, endpoint: McsEndpoint) -> None:
    while not client.is_started():
        listener = client.tasks[0] if client.tasks else None
        if listener is not None and listener.done():
            raise McsLoginFailed(
                f"could not log in to FCM at {endpoint.host}:{endpoint.port}: the connection "
                "failed or was refused (outbound TCP 5228 must be open; the stored GCM "
                "credentials may be stale)"
            )
        if time.monotonic() >= deadline:
            raise McsLoginFailed(
                f"FCM at {endpoint.host}:{endpoint.port} did not confirm the login in time (the "
                "stored GCM android_id/security_token may be stale)"
            )
        await asyncio.sleep(LOGIN_POLL_INTERVAL)


async def _send_all(
    requests: Sequence[str],
    send: Callable[[str], None],
    collector: _Collector,
    deadline: float,
    concurrency: int,
) -> None:
    """Send the locate requests side by side, `concurrency` at a time: one after another, each
    waiting for Nova's answer, the last tracker's answer would come (N - 1) Nova round trips
    later; all at once, an account with many trackers gets Nova's 429 (PROTOCOLS.md §5)."""
    slots = asyncio.Semaphore(concurrency)

    async def send_one(request_uuid: str) -> None:
        async with slots:
            if time.monotonic() >= deadline:
                # Nova was slow (retrying): what is left could not be answered in time anyway.
                collector.fail(request_uuid, FcmError("the locate request was not sent in time"))
                return
            try:
                await asyncio.to_thread(send, request_uuid)
            except (AuthExpired, CredentialsMissing):
                raise  # the credentials are gone: no locate can succeed
            except BridgeError as exc:
                collector.fail(request_uuid, exc)

    outcomes = await asyncio.gather(*map(send_one, requests), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _session(
    credentials: dict[str, Any],
    endpoint: McsEndpoint,
    requests: Sequence[str],
    send: Callable[[str], None],
    timeout: float,
    checkin: Callable[[], None],
    concurrency: int,
) -> SessionResult:
    from firebase_messaging import FcmPushClientConfig, FcmRegisterConfig

    deadline = time.monotonic() + timeout
    # Before each login, never after it: a login without a check-in is refused (PROTOCOLS.md §5).
    await asyncio.to_thread(checkin)
    collector = _Collector(requests)
    config = credentials.get("config") or {}
    # Only `chrome_version` is read by a session (the login's id); the rest is registration's.
    register_config = FcmRegisterConfig(
        project_id=str(config.get("project_id", "")),
        app_id=str(credentials["gcm"].get("app_id", "")),
        api_key="",
        messaging_sender_id="",
    )
    client = _client_class()(
        collector.on_push,
        register_config,
        credentials,
        endpoint=endpoint,
        # One connection attempt without waiting: a failed session is retried by the scheduler.
        config=FcmPushClientConfig(connection_retry_count=1, start_seconds_before_retry_connect=0),
    )
    await client.start()
    try:
        await _wait_for_login(client, deadline, endpoint)
        logger.info("logged in to FCM; sending %d locate request(s)", len(requests))
        await _send_all(requests, send, collector, deadline, concurrency)
        remaining = deadline - time.monotonic()
        if remaining > 0 and not collector.done.is_set():
            listener = client.tasks[0]
            waiter = asyncio.ensure_future(collector.done.wait())
            await asyncio.wait({waiter, listener}, timeout=remaining, return_when="FIRST_COMPLETED")
            waiter.cancel()
    finally:
        await client.stop()
        if client.tasks:
            await asyncio.wait(client.tasks, timeout=STOP_TIMEOUT)
    return collector.result


def run_session(
    credentials: dict[str, Any],
    endpoint: McsEndpoint,
    requests: Sequence[str],
    send: Callable[[str], None],
    *,
    timeout: float,
    checkin: Callable[[], None],
    concurrency: int = DEFAULT_CONCURRENT_SENDS,
) -> SessionResult:
    """Check in, log in, `send(request_uuid)` each request, collect the answers (see the module
    doc)."""
    return asyncio.run(
        _session(credentials, endpoint, requests, send, timeout, checkin, concurrency)
    )
