"""TLINK's push ("device data update notification") received: checked, stored once, pushed.

Order of work, so that a refused delivery costs nothing and a retried one changes nothing:

1. the path token (`TLINK_REQUIRE_PATH_TOKEN`): wrong or missing → 404, as if no such route;
2. the signature (`TLINK_REQUIRE_SIGNATURE`): `X-TLink-Signature: sha256=<hex>`, HMAC-SHA256
   of the raw body keyed by the shared secret, compared in constant time → 401;
3. the body parsed (`PushBody`) → 400 naming the field or sensor;
4. readings, device and the delivery's event (`webhook_events/tlink-<sha256 of body>`, created
   with a precondition) in one batch: a redelivery fails that batch and answers 200
   `duplicate` having done nothing;
5. the Location, when the position is known, through the pipeline (`push_locations`). If the
   device is busy (`RetryLater`, after a short wait) or anything fails on the way, the event is
   deleted again and the answer is 429/503 with Retry-After: TLINK's retry is processed.
   Readings already stored by the failed attempt are rewritten identically by the retry.

TLINK documents no signature of its own; both checks are the bridge's and are off by default.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from shared.errors import BadRequest, NotFound, RetryLater, Unauthorized
from shared.models import Device, Location, utc_now
from shared.pipeline import RunReport
from shared.runtime import Runtime
from shared.sources.tlink.ingest import report_from_push
from shared.sources.tlink.models import PushBody, TlinkEvent
from shared.sources.tlink.source import TlinkSource, tlink_source
from shared.sources.tlink.store import DuplicateDelivery
from shared.sync import push_locations
from shared.web import describe_validation_error

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-TLink-Signature"
SIGNATURE_PREFIX = "sha256="
EVENT_RETENTION = timedelta(days=7)  # far longer than any vendor retries a delivery
# A push arriving while another run of the device holds its lease (a concurrent push, usually
# a few hundred ms) waits this long in all before answering 429.
BUSY_WAIT_SECONDS = 1.0
BUSY_POLL_SECONDS = 0.1
UNAVAILABLE_RETRY_AFTER = 30


class Unavailable(RetryLater):
    """A transient failure (Firestore, the pipeline): 503 with Retry-After, nothing recorded."""

    status = 503


@dataclass(frozen=True)
class PushAnswer:
    status: str  # "ok" | "duplicate"
    device_id: int
    stored_readings: int = 0
    # "none" (position unknown), or what the pipeline did: "synced" | "queued" | "error", or
    # "delivered_before" (Traccar accepted this very position earlier)
    location: str = "none"

    def body(self) -> dict[str, object]:
        return {
            "status": self.status,
            "deviceId": self.device_id,
            "storedReadings": self.stored_readings,
            "location": self.location,
        }


def check_path_token(runtime: Runtime, source: TlinkSource, token: str | None) -> None:
    settings = runtime.settings
    if not settings.tlink_require_path_token:
        if token is not None:
            raise NotFound("no such route")
        return
    expected = source.required_secret(settings.tlink_path_token_secret, "TLINK_REQUIRE_PATH_TOKEN")
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise NotFound("no such route")


def signature(secret: str, raw: bytes) -> str:
    """The header value a sender puts on `raw`: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def check_signature(runtime: Runtime, source: TlinkSource, raw: bytes, header: str | None) -> None:
    settings = runtime.settings
    if not settings.tlink_require_signature:
        return
    secret = source.required_secret(settings.tlink_webhook_secret_name, "TLINK_REQUIRE_SIGNATURE")
    presented = (header or "").strip()
    scheme, _, digest = presented.partition("=")
    expected = signature(secret, raw)
    # Lower-cased so an upper-case hex digest still matches; compared in constant time.
    candidate = f"{scheme.lower()}={digest.lower()}".encode()
    if not header or not hmac.compare_digest(candidate, expected.encode()):
        raise Unauthorized(f"missing or wrong {SIGNATURE_HEADER}")


def parse_push(raw: bytes) -> PushBody:
    if not raw.strip():
        raise BadRequest("empty body: expected TLINK's push JSON")
    try:
        return PushBody.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise BadRequest("body is not valid JSON") from None
        raise BadRequest(describe_validation_error(exc)) from None


def receive(
    runtime: Runtime,
    raw: bytes,
    *,
    signature_header: str | None,
    path_token: str | None,
    sleep: Callable[[float], None] = time.sleep,
) -> PushAnswer:
    """Process one push; see the module docstring for the order and the answers."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError

    source = tlink_source(runtime)
    check_path_token(runtime, source, path_token)
    check_signature(runtime, source, raw, signature_header)
    body = parse_push(raw)
    report = report_from_push(body, source.zone)

    now = utc_now()
    event = TlinkEvent(
        id="tlink-" + hashlib.sha256(raw).hexdigest(),
        device_id=body.deviceId,
        received_at=now,
        expire_at=now + EVENT_RETENTION,
    )
    try:
        ingested = source.ingestion.apply(report, event=event)
    except DuplicateDelivery:
        logger.info("TLINK push delivered again; ignored", extra={"tlink_device_id": body.deviceId})
        return PushAnswer("duplicate", body.deviceId)
    except (GoogleAPICallError, RetryError) as exc:
        # Nothing was written (one batch): TLINK's retry starts afresh.
        logger.exception("TLINK push not stored", extra={"tlink_device_id": body.deviceId})
        raise Unavailable(
            "the push could not be stored; retry later", retry_after=UNAVAILABLE_RETRY_AFTER
        ) from exc
    if ingested.location is None:
        return PushAnswer("ok", body.deviceId, ingested.stored_readings)

    try:
        report_run = _push_when_free(runtime, ingested.device, ingested.location, sleep)
    except RetryLater:
        source.repository.forget_event(event.id)
        raise
    except Exception as exc:
        # Recorded as done, the delivery would never be retried: undo that first.
        source.repository.forget_event(event.id)
        logger.exception("TLINK push not delivered to the pipeline", extra={"event": event.id})
        raise Unavailable(
            "the position could not be queued; retry later", retry_after=UNAVAILABLE_RETRY_AFTER
        ) from exc
    return PushAnswer(
        "ok", body.deviceId, ingested.stored_readings, _outcome(report_run, ingested.location)
    )


def _outcome(report: RunReport, location: Location) -> str:
    """What the run did with the push's position; not in the run: Traccar had it already."""
    fingerprint = location.fingerprint()
    for item in report.locations:
        if item.location.fingerprint() == fingerprint:
            return item.status
    return "delivered_before"


def _push_when_free(
    runtime: Runtime, device: Device, location: Location, sleep: Callable[[float], None]
) -> RunReport:
    waited = 0.0
    while True:
        try:
            return push_locations(runtime, device, [location])
        except RetryLater:
            if waited >= BUSY_WAIT_SECONDS:
                raise
            sleep(BUSY_POLL_SECONDS)
            waited += BUSY_POLL_SECONDS
