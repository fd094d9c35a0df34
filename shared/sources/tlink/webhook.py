"""TLINK's push ("device data update notification") received: checked, stored once, pushed.

Order of work, so that a refused delivery costs nothing and a retried one changes nothing:

0. a protection must be configured: with neither the path token nor the signature on, every
   push is refused with a 503 naming what to set, unless `TLINK_ALLOW_UNAUTHENTICATED` says
   unauthenticated pushes are wanted (a closed network, a test). Anyone who knows the URL
   could otherwise put positions into Traccar (issue 13);
1. the path token (`TLINK_REQUIRE_PATH_TOKEN`): wrong or missing → 404, as if no such route;
2. the signature (`TLINK_REQUIRE_SIGNATURE`): `X-TLink-Signature: sha256=<hex>`, HMAC-SHA256
   of the raw body keyed by the shared secret, compared in constant time → 401;
3. the body parsed (`PushBody`) → 400 naming the field (a location of unknown encoding loses
   that position only: `skipped` in the answer);
4. one read (one round trip): the delivery's event (`webhook_events/tlink-<sha256 of body>`),
   the device's TLINK document and `devices` entry, its delivery state. An event found *done*
   is a redelivery: 200 `duplicate`, nothing done. An event found *pending* is a copy whose
   position is on its way: while that copy's lease runs, this one is handed off like any push
   to a busy device (below); once the lease has ended, the copy's processing died (the
   instance was killed before its run's final commit) and this push takes the event over, so
   nothing is lost;
5. one commit: readings, device and the event (created, or over a dead processing's pending
   event updated, with a precondition: a concurrent copy that committed first fails it, and
   this one reads again, finding its event) and, when the position is known, the device's
   lease (the event is then pending): the pipeline (`Pipeline.run`) pushes the Location and
   records it in its final commit, which marks the event done. If another run holds the
   device's lease, the position goes to its outbox in this commit instead, the event done, and
   the answer (`location: queued`) is immediate: the lease holder delivers it before it lets
   go, or the sweep does (issue 16, ADR 0002). If anything
   fails after the commit, the push's own event is deleted again and the answer is 503 with
   Retry-After: TLINK's retry is processed; readings stored by the failed attempt are
   rewritten identically by the retry.

A located push thus costs three Firestore round trips (read, commit with the lease, the run's
final commit) around the push to Traccar; a redelivery one. Only a processing that dies after
its push and before the final commit makes its position go out twice (at least once, as a sync
run dying there: ADR 0002).

The read, the repeat, the lost races, the wait for a busy device and the release on failure
are the loop every receiver runs (`shared.receiver`); this module describes a push to it.

TLINK documents no signature of its own; both checks are the bridge's. A refused push (0, 1,
2) stores nothing; the first one ever refused is mailed to the owner once (`RefusedPushes`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import GoogleAPICallError, RetryError
from pydantic import ValidationError

from shared.errors import BadRequest, NotFound, Unauthorized, Unavailable
from shared.models import Location, utc_now
from shared.pipeline import WEBHOOK_LEASE_DURATION, Pipeline, RunReport, webhook_deadline
from shared.receiver import UNAVAILABLE_RETRY_AFTER, receive_claimed
from shared.secrets import DEFAULT_ROTATION_GRACE
from shared.sources.tlink.ingest import DeviceReport, bridge_id, report_from_push
from shared.sources.tlink.models import PushBody, TlinkEvent
from shared.sources.tlink.source import TlinkSource
from shared.store import DeliveryRepository
from shared.store.tlink import Loaded, TlinkRepository
from shared.traccar import Deadline
from shared.web import describe_validation_error, matches_rotated

if TYPE_CHECKING:
    from shared.notify import Notifier

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-TLink-Signature"
SIGNATURE_PREFIX = "sha256="
EVENT_RETENTION = timedelta(days=7)  # far longer than any vendor retries a delivery
# An unprotected receiver stays refused until someone configures it: TLINK may retry hourly.
UNPROTECTED_RETRY_AFTER = 3600


@dataclass(frozen=True)
class PushAnswer:
    # "ok" | "duplicate" | "skipped" (a new device past RECEIVER_MAX_DEVICES: nothing stored)
    status: str
    device_id: int
    stored_readings: int = 0
    # "none" (position unknown), or what the pipeline did: "synced" | "queued" | "error", or
    # "delivered_before" (Traccar accepted this very position earlier)
    location: str = "none"
    # What of the push was not taken (a location of an unknown encoding), said to the sender.
    skipped: tuple[str, ...] = ()

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "status": self.status,
            "deviceId": self.device_id,
            "storedReadings": self.stored_readings,
            "location": self.location,
        }
        if self.skipped:
            body["skipped"] = list(self.skipped)
        return body


class SecretCheck:
    """A check of pushes against a secret that rotates: its newest version, or the one before
    during `grace` after a rotation. `setting` is the switch that requires it (named by the
    503 when no version is stored)."""

    setting: str

    def __init__(
        self,
        *,
        source: TlinkSource,
        required: bool,
        secret_name: str,
        grace: timedelta = DEFAULT_ROTATION_GRACE,
    ) -> None:
        self._source = source
        self.required = required
        self.secret_name = secret_name
        self._grace = grace

    def accepted_secrets(self, *, fresh: bool) -> list[str]:
        """The secret's accepted values, never empty: none stored is a 503."""
        return self._source.accepted_secrets(
            self.secret_name, self.setting, grace=self._grace, fresh=fresh
        )


class PathTokenCheck(SecretCheck):
    """`TLINK_REQUIRE_PATH_TOKEN`: the push URL's last segment must be the secret's value."""

    setting = "TLINK_REQUIRE_PATH_TOKEN"

    def __call__(self, token: str | None) -> None:
        if not self.required:
            if token is not None:
                raise NotFound("no such route")
            return

        def accepted(fresh: bool) -> list[str]:
            return self.accepted_secrets(fresh=fresh)

        if not matches_rotated((token or "").encode(), accepted):
            raise NotFound("no such route")


def signature(secret: str, raw: bytes) -> str:
    """The header value a sender puts on `raw`: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


class SignatureCheck(SecretCheck):
    """`TLINK_REQUIRE_SIGNATURE`: `X-TLink-Signature` must be the body's HMAC under the secret."""

    setting = "TLINK_REQUIRE_SIGNATURE"

    def __call__(self, raw: bytes, header: str | None) -> None:
        if not self.required:
            return
        presented = (header or "").strip()
        scheme, _, digest = presented.partition("=")
        # Lower-cased so an upper-case hex digest still matches; compared in constant time.
        candidate = f"{scheme.lower()}={digest.lower()}".encode()

        def accepted(fresh: bool) -> list[str]:  # the body's signature under each secret
            return [signature(secret, raw) for secret in self.accepted_secrets(fresh=fresh)]

        # No header: the candidate is "=", which no signature matches (after the secrets were
        # read, so a missing secret is still the 503 that names it).
        if not matches_rotated(candidate, accepted):
            raise Unauthorized(f"missing or wrong {SIGNATURE_HEADER}")


class RefusedPushes:
    """Tells the owner of the first refused push, once: a forged push, or a TLINK console still
    posting to a URL without the token after an upgrade, would otherwise go unnoticed.

    Once per deployment: `state/tlink_refused_push` is created atomically by the first refusal
    (delete it to be told again); each instance asks Firestore once, so a flood of refused
    pushes costs no more than one write per instance. Recording never changes the answer."""

    def __init__(
        self,
        *,
        repository: TlinkRepository,
        notifier: Callable[[], Notifier],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        # A callable: the notifier's module loads when a refusal is first mailed.
        self._notifier = notifier
        self._clock = clock
        self._asked = False
        self._lock = threading.Lock()

    def __call__(self, reason: str) -> None:
        logger.warning("TLINK push refused: %s", reason)
        with self._lock:
            if self._asked:
                return
            self._asked = True
        try:
            first = self._repository.record_refused_push(reason, self._clock())
        except (GoogleAPICallError, RetryError):
            logger.warning(
                "TLINK refused push not recorded; the next one tries again", exc_info=True
            )
            with self._lock:
                self._asked = False
            return
        if first:
            self._notifier().tlink_push_refused(reason)


def parse_push(raw: bytes) -> PushBody:
    if not raw.strip():
        raise BadRequest("empty body: expected TLINK's push JSON")
    try:
        return PushBody.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise BadRequest("body is not valid JSON") from None
        raise BadRequest(describe_validation_error(exc)) from None


class TlinkWebhook:
    """The push receiver: `receive(raw, signature_header=, path_token=)`."""

    def __init__(
        self,
        *,
        source: TlinkSource,
        delivery: DeliveryRepository,
        pipeline: Callable[[], Pipeline],
        path_token: PathTokenCheck,
        signature: SignatureCheck,
        allow_unauthenticated: bool,
        refused: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source = source
        self._delivery = delivery
        # A callable: the pipeline (and Traccar's client) is made when a push has a position.
        self._pipeline = pipeline
        self._check_path_token = path_token
        self._check_signature = signature
        self._allow_unauthenticated = allow_unauthenticated
        self._refused = refused
        self._sleep = sleep

    @property
    def protected(self) -> bool:
        """Whether a push must prove itself (path token or signature)."""
        return self._check_path_token.required or self._check_signature.required

    def _unprotected(self) -> str:
        return (
            "the TLINK receiver has no protection configured and refuses pushes: set "
            f"TLINK_REQUIRE_PATH_TOKEN=true with the token in secret "
            f"{self._check_path_token.secret_name} (push URL <webhooks>/tlink/<token>), or "
            f"TLINK_REQUIRE_SIGNATURE=true with the key in secret "
            f"{self._check_signature.secret_name}; or TLINK_ALLOW_UNAUTHENTICATED=true to "
            "accept unauthenticated pushes on purpose (docs/tlink.md)"
        )

    def receive(
        self,
        raw: bytes,
        *,
        signature_header: str | None,
        path_token: str | None,
        sleep: Callable[[float], None] | None = None,
    ) -> PushAnswer:
        """Process one push; see the module docstring for the order and the answers."""
        push_by = webhook_deadline()  # the answer's time runs from the push's arrival
        if not self.protected and not self._allow_unauthenticated:
            message = self._unprotected()
            self._refused(message)
            raise Unavailable(message, retry_after=UNPROTECTED_RETRY_AFTER)
        try:
            self._check_path_token(path_token)
            self._check_signature(raw, signature_header)
        except (NotFound, Unauthorized) as exc:
            what = "path token" if isinstance(exc, NotFound) else "signature"
            self._refused(f"missing or wrong {what} ({exc.status})")
            raise
        body = parse_push(raw)
        report = report_from_push(body, self._source.zone)

        now = utc_now()
        event = TlinkEvent(
            id="tlink-" + hashlib.sha256(raw).hexdigest(),
            owner=uuid.uuid4().hex,
            device_id=body.deviceId,
            received_at=now,
            expire_at=now + EVENT_RETENTION,
            skipped=list(report.skipped),
        )
        push = _Push(
            report=report,
            event=event,
            source=self._source,
            state_ref=self._delivery.state_ref(bridge_id(report.device_id)),
            pipeline=self._pipeline,
            push_by=push_by,
        )
        return receive_claimed(push, sleep=sleep or self._sleep)


@dataclass(frozen=True)
class _Push:
    """A checked, parsed push, as the claim-and-retry loop (`shared.receiver`) runs it: steps 4
    and 5 of the module docstring."""

    report: DeviceReport
    event: TlinkEvent
    source: TlinkSource
    state_ref: Any
    pipeline: Callable[[], Pipeline]
    push_by: Deadline  # when Traccar's calls must have ended (`webhook_deadline`)

    @property
    def name(self) -> str:
        return f"TLINK push of device {self.report.device_id}"

    def read(self) -> Loaded:
        try:
            return self.source.repository.load(
                self.report.device_id,
                bridge_id(self.report.device_id),
                event_id=self.event.id,
                state_ref=self.state_ref,
            )
        except (GoogleAPICallError, RetryError) as exc:
            logger.exception(
                "TLINK push not stored", extra={"tlink_device_id": self.report.device_id}
            )
            raise Unavailable(
                "the push could not be stored; retry later", retry_after=UNAVAILABLE_RETRY_AFTER
            ) from exc

    def repeat(self, read: Loaded) -> PushAnswer | None:
        found = read.event.value
        if found is not None and found.status == "done":
            return PushAnswer("duplicate", self.report.device_id)
        return None

    def worth_waiting(self, read: Loaded) -> bool:
        # Another run holds the device's lease: a concurrent push, usually a few hundred ms.
        return True

    def release(self) -> None:
        # Recorded as done, the delivery would never be retried: undo that.
        self.source.repository.release_event(self.event)

    def process(self, read: Loaded) -> PushAnswer:
        report, event, repository = self.report, self.event, self.source.repository
        ingestion = self.source.ingestion
        prepared = ingestion.prepare(report, read, event=event)
        if prepared.skipped_device:
            # Not stored, no event either: a redelivery is weighed again (room may have come).
            return PushAnswer("skipped", report.device_id)
        ingested = prepared.ingested
        location = ingested.location
        if location is None:
            repository.commit(prepared.writes, event=event)
            ingestion.committed(prepared)
            return PushAnswer(
                "ok", report.device_id, ingested.stored_readings, skipped=report.skipped
            )
        # The event and the readings go in the lease's commit: one round trip before the push.
        run = self.pipeline().run(
            ingested.device,
            lambda: [location],
            force=True,
            read=read.state,
            along=prepared.writes,
            along_outcome=repository.event_done(event),
            hand_off=True,  # a busy device: stored in its outbox, answered at once
            lease_for=WEBHOOK_LEASE_DURATION,  # a dead delivery's device soon swept
            # Answered in time whatever Traccar does: what is not pushed by then waits.
            push_by=self.push_by,
        )
        ingestion.committed(prepared)
        return PushAnswer(
            "ok",
            report.device_id,
            ingested.stored_readings,
            _outcome(run, location),
            skipped=report.skipped,
        )


def _outcome(report: RunReport, location: Location) -> str:
    """What the run did with the push's position; not in the run: Traccar had it already."""
    fingerprint = location.fingerprint()
    for item in report.locations:
        if item.location.fingerprint() == fingerprint:
            return item.status
    return "delivered_before"
