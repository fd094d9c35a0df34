"""Smartcar's webhook receiver: VERIFY, the signature, idempotency, storage, then the pipeline.

One delivery, in this order; nothing is written before step 6:

1. the body must be a UTF-8 JSON object (400), of a size a Firestore document can hold (413);
2. VERIFY (4.0 or legacy 2.0) is answered `{"challenge": hex HMAC-SHA256(token, challenge)}`;
3. any other delivery must carry `SC-Signature` = hex HMAC-SHA256 of the raw body keyed by the
   same management token (`check_signature`, constant-time; 401 otherwise);
4. it must parse as an `Event` (400);
5. one read (one round trip) fetches its claim in `webhook_events`, the vehicle, its device
   and, for a VEHICLE_STATE, the vehicle's delivery state: a claim found *done* means a
   repeat, answered 200 with nothing done; a claim found *pending* means a copy whose position
   is on its way: while that copy's lease runs, the repeat is handed off like any delivery to
   a busy vehicle (below); once the lease has ended, the copy's processing died (the instance
   was killed between steps 6 and 7) and this delivery takes the claim over: nothing is lost;
6. one commit writes the claim (a create, or over a dead processing's pending claim an update
   conditioned on its version: a concurrent copy that committed first fails it), the raw
   event, the vehicle (latest signals, last error) and the device, each on condition nobody
   wrote it since step 5, and, when there is a position to push, the vehicle's lease: the
   claim is then pending; without a position it is done at once. When another run holds the
   lease, the position goes to the vehicle's outbox in this commit instead, the claim done,
   and the answer is `queued` at once (issue 16: Smartcar drops a delivery after three
   retries): the lease holder delivers it before it lets go, or the sweep does (ADR 0002). A
   failed condition writes nothing: back to step 5 (a copy's claim is then found there);
7. the position goes through the pipeline (`Pipeline.run`, which took the lease in step 6):
   pushed, then recorded in the run's final commit, which marks the claim done. Traccar's
   calls end `WEBHOOK_PUSH_WITHIN` (12) seconds after the delivery arrived, so the answer goes
   within `WEBHOOK_ANSWER_WITHIN` (13 s; Smartcar counts an answer after 15 s as a failure and
   retries, PROTOCOLS.md §3; a hanging Traccar took 15 s and more): a position not pushed by
   then waits in the outbox, the claim done, and the sweep delivers it; one Traccar had not
   answered by then may have been stored, and goes again (at least once, `shared.pipeline`).

So a new VEHICLE_STATE costs three Firestore round trips (read, claim-and-lease commit, final
commit) around the push, a repeat one. When 6 or 7 fails (Firestore unavailable; anything
else) the delivery's own claim is deleted
before the error is answered, so Smartcar's retry is processed in full; steps 6 and 7 are
idempotent. A position that reached the pipeline is done, even when Traccar refused it: it
waits in the outbox. Only a processing that dies after its push and before step 7's commit
makes its position go out twice (at least once, as a sync run that dies there: ADR 0002).

The read, the repeat, the lost races, the wait for a busy vehicle and the release on failure
are the loop every receiver runs (`shared.receiver`); this module describes a delivery to it.

What a delivery may claim is bounded (issue 13), and what exceeds a bound is skipped and logged
while the rest is stored and answered 2xx (a refusal would only make Smartcar retry it): a
signal measured more than `MAX_FUTURE_SKEW` ahead of the clock (its position with it: stored, it
would be the vehicle's newest until that date); a new signal code of a vehicle holding
`SMARTCAR_MAX_SIGNALS_PER_VEHICLE` codes (known codes still update; the operator is notified
once per vehicle); a vehicle the bridge has not seen while `RECEIVER_MAX_DEVICES` are recorded
(its delivery is stored as an event, no vehicle, device or position is made of it).

The VERIFY answer is an HMAC under the very key that signs deliveries: answering any challenge
would let anyone obtain the signature of a forged body by sending it as a challenge. Every body
this receiver accepts is a JSON object, so holds "{"; a challenge holding "{" is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import BadRequest, ConfigError, PayloadTooLarge, Unauthorized
from shared.firestore_limits import escaped
from shared.models import Device, too_far_ahead, utc_now
from shared.pipeline import WEBHOOK_LEASE_DURATION, Pipeline, webhook_deadline
from shared.receiver import receive_claimed
from shared.secrets import CachedSecrets, SecretNotFound, missing
from shared.sources.smartcar import signals
from shared.sources.smartcar.payloads import (
    VEHICLE_ERROR,
    VEHICLE_STATE,
    Event,
    Signal,
    VehicleRef,
    parse_event,
    verify_challenge,
)
from shared.store import DeliveryRepository, document_id
from shared.store.smartcar import (
    CLAIM_PREFIX,
    DeliveryRead,
    SignalEntry,
    SmartcarStore,
    StoredEvent,
    VehicleRecord,
    WebhookClaim,
    vehicle_change,
    vehicle_device,
)
from shared.traccar import Deadline

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "SC-Signature"
# Smartcar sends at most 50 KB; the raw text is kept in one Firestore document (1 MiB at most).
MAX_EVENT_BYTES = 512 * 1024


@dataclass(frozen=True)
class Answer:
    """What Smartcar is answered (always 200: errors are raised)."""

    body: dict[str, Any]


def hmac_hex(token: str, message: bytes) -> str:
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_signature(raw: bytes, signature: str | None, token: str) -> None:
    """Raise `Unauthorized` unless `signature` is the hex HMAC-SHA256 of `raw` keyed by `token`."""
    if not signature or not signature.strip():
        raise Unauthorized(f"missing {SIGNATURE_HEADER} header")
    expected = hmac_hex(token, raw).encode("ascii")
    presented = signature.strip().lower().encode("utf-8", errors="replace")
    if not hmac.compare_digest(expected, presented):
        raise Unauthorized(f"wrong {SIGNATURE_HEADER}: not signed with the management token")


def challenge_answer(token: str, challenge: str) -> str:
    if "{" in challenge:
        raise BadRequest("VERIFY challenge: a challenge holding '{' is not answered")
    return hmac_hex(token, challenge.encode("utf-8"))


class SignatureCheck:
    """`SC-Signature` checked with the management token, read through the instance's secret
    cache (`CachedSecrets`), the shape every receiver's signature check has: called with the
    raw body and the header, it raises `Unauthorized` or returns.

    A delivery is verified with the cached token; when it does not match, the secret is read
    again (at most every `CachedSecrets.min_reread` seconds, so a flood of forged or unsigned
    requests cannot exhaust the secrets backend) and the check repeated, so a rotated token
    works from its first delivery. VERIFY (sent right after a token is set up) reads afresh
    within the same bound (`token(fresh=True)`).
    """

    def __init__(self, *, secrets: CachedSecrets, secret_name: str) -> None:
        self._secrets = secrets
        self.secret_name = secret_name

    def token(self, *, fresh: bool = False) -> str:
        max_age = self._secrets.min_reread if fresh else None
        try:
            token = self._secrets.read(self.secret_name, max_age=max_age).strip()
        except SecretNotFound as exc:
            raise ConfigError(missing("Smartcar management token", self.secret_name, exc)) from None
        if not token:
            raise ConfigError(
                f"the Smartcar management token in secret {self.secret_name} is empty"
            )
        return token

    def __call__(self, raw: bytes, header: str | None) -> None:
        """`check_signature` with the cached token, then once more with a re-read one."""
        try:
            check_signature(raw, header, self.token())
        except Unauthorized:
            if not header or self._secrets.reread(self.secret_name) is None:
                raise
            check_signature(raw, header, self.token())


def parse_body(raw: bytes) -> object:
    if len(raw) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(f"a Smartcar delivery is at most {MAX_EVENT_BYTES} bytes")
    if not raw.strip():
        raise BadRequest("empty body: expected a Smartcar delivery (JSON)")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("body: expected a JSON object")
    # JSON may spell a lone surrogate (`"\ud800"`), which no Firestore string holds, and a
    # field name Firestore reserves: made storable here, once, for every record (issue 12).
    return escaped(document)


class SmartcarWebhook:
    """The delivery receiver: `receive(raw, signature_header)`; see the module docstring."""

    def __init__(
        self,
        *,
        store: SmartcarStore,
        delivery: DeliveryRepository,
        pipeline: Callable[[], Pipeline],
        signature: SignatureCheck,
        event_retention: timedelta,
        max_future_skew: float,
        max_signals: int,
        max_vehicles: int,
        notify_signal_cap: Callable[[str, int], object],
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._delivery = delivery
        # A callable: the pipeline (and Traccar's client) is made when a delivery has a position.
        self._pipeline = pipeline
        self._signature = signature
        self._event_retention = event_retention
        self._limits = Limits(
            max_future_skew=max_future_skew, max_signals=max_signals, max_vehicles=max_vehicles
        )
        # (vehicle, cap): the operator's email, sent once per vehicle reaching the signal cap.
        self._notify_signal_cap = notify_signal_cap
        self._clock = clock
        self._sleep = sleep

    def receive(self, raw: bytes, signature_header: str | None) -> Answer:
        """Handle one delivery (see the module docstring); answers what Smartcar is sent back."""
        push_by = webhook_deadline()  # Smartcar's 15 s run from the delivery's arrival
        document = parse_body(raw)
        challenge = verify_challenge(document)
        if challenge is not None:
            return Answer(
                {"challenge": challenge_answer(self._signature.token(fresh=True), challenge)}
            )
        self._signature(raw, signature_header)
        event = parse_event(document)
        vehicle_id = event.vehicle_id
        document_id(event.eventId)
        if vehicle_id is not None:
            document_id(vehicle_id)
        elif event.eventType in (VEHICLE_STATE, VEHICLE_ERROR):
            raise BadRequest(f"vehicleId: a {event.eventType} delivery must name its vehicle")

        now = self._clock()
        expire_at = now + self._event_retention
        claim = WebhookClaim(
            id=CLAIM_PREFIX + event.eventId,
            owner=uuid.uuid4().hex,
            event_id=event.eventId,
            event_type=event.eventType,
            vehicle_id=vehicle_id,
            received_at=now,
            expire_at=expire_at,
        )
        stored = StoredEvent(
            id=event.eventId,
            event_type=event.eventType,
            vehicle_id=vehicle_id,
            user_id=event.user_id,
            delivery_id=event.meta.deliveryId,
            webhook_id=event.meta.webhookId,
            version=event.meta.version,
            received_at=now,
            expire_at=expire_at,
            body=raw.decode("utf-8"),
        )
        # Read with the rest only when the delivery may push: the lease is taken on that version.
        state_ref = (
            self._delivery.state_ref(vehicle_id)
            if vehicle_id is not None and event.eventType == VEHICLE_STATE
            else None
        )
        delivery = _Delivery(
            event=event,
            claim=claim,
            stored=stored,
            now=now,
            store=self._store,
            pipeline=self._pipeline,
            state_ref=state_ref,
            limits=self._limits,
            notify_signal_cap=self._notify_signal_cap,
            push_by=push_by,
        )
        return receive_claimed(delivery, sleep=self._sleep)


@dataclass(frozen=True)
class Limits:
    """What one delivery may claim (issue 13; `MAX_FUTURE_SKEW`, the two caps)."""

    max_future_skew: float
    max_signals: int
    max_vehicles: int


@dataclass(frozen=True)
class _Delivery:
    """A verified, parsed delivery, as the claim-and-retry loop (`shared.receiver`) runs it."""

    event: Event
    claim: WebhookClaim
    stored: StoredEvent
    now: datetime
    store: SmartcarStore
    pipeline: Callable[[], Pipeline]
    state_ref: Any
    limits: Limits
    notify_signal_cap: Callable[[str, int], object]
    push_by: Deadline  # when Traccar's calls must have ended (`webhook_deadline`)

    @property
    def name(self) -> str:
        return f"Smartcar delivery {self.event.eventId}"

    def read(self) -> DeliveryRead:
        return self.store.read(
            self.event.vehicle_id, claim_id=self.claim.id, state_ref=self.state_ref
        )

    def repeat(self, read: DeliveryRead) -> Answer | None:
        found = read.claim.value
        if found is not None and found.status == "done":
            return Answer({"status": "duplicate", "eventId": self.event.eventId})
        return None  # no claim, or a pending one: processed (taken over) unless its lease runs

    def worth_waiting(self, read: DeliveryRead) -> bool:
        # A copy of this delivery holds the lease (its claim pending): it usually ends at once.
        return read.claim.value is not None

    def release(self) -> None:
        self.store.release(self.claim)

    def process(self, read: DeliveryRead) -> Answer:
        """Steps 6 and 7 on what step 5 read; `StaleRead` when that changed meanwhile."""
        event = self.event
        if event.eventType == VEHICLE_STATE:
            return self._vehicle_state(read)
        if event.eventType == VEHICLE_ERROR:
            return self._vehicle_error(read)
        writes = self.store.writes(self.claim, self.stored, None, claim_read=read.claim)
        self.store.commit(writes, claim=self.claim)
        logger.info(
            "Smartcar delivery of a type the bridge does not use: stored only",
            extra={"event_id": event.eventId, "event_type": event.eventType},
        )
        return Answer({"status": "stored", "eventId": event.eventId})

    def _over_vehicle_cap(self, read: DeliveryRead) -> Answer | None:
        """For a vehicle the bridge has not seen while `RECEIVER_MAX_DEVICES` vehicles are
        recorded: the delivery stored as an event only (no vehicle, device or position), so a
        flood of invented vehicle ids cannot grow the collections or Traccar's device list.
        Concurrent first deliveries may each pass the count: the cap can be exceeded by them."""
        if read.vehicle.value is not None or read.device.value is not None:
            return None
        if self.store.count_vehicles() < self.limits.max_vehicles:
            return None
        skipped = [f"vehicle: {self.limits.max_vehicles} vehicles recorded (RECEIVER_MAX_DEVICES)"]
        stored = self.stored.model_copy(update={"skipped": skipped})
        self.store.commit(
            self.store.writes(self.claim, stored, None, claim_read=read.claim), claim=self.claim
        )
        logger.warning(
            "Smartcar delivery for a new vehicle past the cap: stored as an event only",
            extra={"event_id": self.event.eventId, "vehicle_id": self.event.vehicle_id,
                   "cap": self.limits.max_vehicles},
        )  # fmt: skip
        return Answer({"status": "stored", "eventId": self.event.eventId, "pushed": 0})

    def _vehicle_state(self, read: DeliveryRead) -> Answer:
        event, now, store, limits = self.event, self.now, self.store, self.limits
        capped = self._over_vehicle_cap(read)
        if capped is not None:
            return capped
        incoming, ahead = signals.split_ahead(
            event.data.signals, now=now, skew=limits.max_future_skew
        )
        known = read.vehicle.value.signals if read.vehicle.value is not None else {}
        incoming, refused = signals.split_over_cap(known, incoming, cap=limits.max_signals)
        reading = signals.read_signals(incoming)
        fallback_time = event.delivered_at() or int(now.timestamp())
        if too_far_ahead(fallback_time, now=now, skew=limits.max_future_skew):
            # deliveredAt ahead of the clock: the receipt time stands for it.
            ahead.append(f"meta.deliveredAt: {fallback_time - int(now.timestamp())} s ahead")
            fallback_time = int(now.timestamp())
        over_cap = [f"{code}: over {limits.max_signals} signals per vehicle" for code in refused]
        first_capped = bool(refused) and (
            read.vehicle.value is None or read.vehicle.value.signals_capped_at is None
        )

        def update(vehicle: VehicleRecord) -> VehicleRecord:
            merged = merge_signals(
                vehicle.signals,
                incoming,
                event_id=event.eventId,
                now=now,
                fallback_time=fallback_time,
            )
            changes: dict[str, Any] = {"signals": merged}
            if first_capped:
                changes["signals_capped_at"] = now
            return _described(vehicle, event, now).model_copy(update=changes)

        change = vehicle_change(read, new_device=_new_device(event, now), update=update, now=now)
        stored = self.stored.model_copy(update={"skipped": [*ahead, *over_cap, *reading.skipped]})
        device = change.device
        # Every signal dated ahead: nothing of this delivery is worth a position, not even at
        # the last known place (it would carry no reading, only the time of its receipt).
        last_known, last_located_at = (
            last_known_of(change.before) if incoming or not ahead else (None, None)
        )
        # One position per delivery, its own by the eventId (PROTOCOLS.md §3): the claim
        # already makes a redelivery a duplicate; the fingerprint must not make a parked car's
        # next delivery one.
        location = signals.to_location(
            device.id,
            reading,
            delivered_at=fallback_time,
            last_known=last_known,
            last_located_at=last_located_at,
            delivery=event.eventId,
        )
        if location is None:
            store.commit(
                store.writes(self.claim, stored, change, claim_read=read.claim), claim=self.claim
            )
            report = None
        else:
            # The claim (pending until the run's outcome is committed) and the records go in
            # the lease's commit: one round trip before the push.
            pending = self.claim.model_copy(update={"status": "pending"})
            report = self.pipeline().run(
                device,
                lambda: [location],
                force=True,
                read=read.state,
                along=store.writes(pending, stored, change, claim_read=read.claim),
                along_outcome=store.claim_done(pending),
                # Another run holds the lease: stored with the claim done, answered at once
                # (Smartcar drops a delivery after three retries; PROTOCOLS.md §3).
                hand_off=True,
                lease_for=WEBHOOK_LEASE_DURATION,  # a dead delivery's device soon swept
                # Smartcar wants a 2xx within 15 s (PROTOCOLS.md §3): Traccar's calls end
                # before; what is not pushed by then waits in the outbox for the sweep.
                push_by=self.push_by,
            )
        for skipped in reading.skipped:
            logger.info("Smartcar signal skipped: %s", skipped, extra={"event_id": event.eventId})
        for skipped in ahead:
            logger.warning(
                "Smartcar signal dated ahead of the clock skipped (MAX_FUTURE_SKEW): %s",
                skipped,
                extra={"event_id": event.eventId, "vehicle_id": device.id},
            )
        if refused:
            logger.warning(
                "Smartcar signal codes past the vehicle's cap skipped: %s",
                ", ".join(refused),
                extra={"event_id": event.eventId, "vehicle_id": device.id,
                       "cap": limits.max_signals},
            )  # fmt: skip
        if first_capped:
            # After the commit that remembered it: sent once per vehicle, never per delivery.
            label = f"{device.id} ({device.name})" if device.name else device.id
            self.notify_signal_cap(label, limits.max_signals)
        if report is None:
            logger.info(
                "Smartcar delivery without a position to push: stored only",
                extra={"event_id": event.eventId, "vehicle_id": device.id},
            )
            return Answer({"status": "stored", "eventId": event.eventId, "pushed": 0})
        return Answer(
            {
                "status": "queued" if report.handed_off else "processed",
                "eventId": event.eventId,
                "pushed": report.result.pushed,
                "queued": report.result.outbox,
            }
        )

    def _vehicle_error(self, read: DeliveryRead) -> Answer:
        event, now = self.event, self.now

        def update(vehicle: VehicleRecord) -> VehicleRecord:
            return _described(vehicle, event, now).model_copy(
                update={"last_error": event.data.errors, "last_error_at": now}
            )

        capped = self._over_vehicle_cap(read)
        if capped is not None:
            return capped
        change = vehicle_change(read, new_device=_new_device(event, now), update=update, now=now)
        writes = self.store.writes(self.claim, self.stored, change, claim_read=read.claim)
        self.store.commit(writes, claim=self.claim)
        logger.warning(
            "Smartcar reports a vehicle error",
            extra={
                "event_id": event.eventId,
                "vehicle_id": change.device.id,
                "errors": [_error_summary(error) for error in event.data.errors],
            },
        )
        return Answer({"status": "recorded", "eventId": event.eventId})


def _new_device(event: Event, now: datetime) -> Device:
    vehicle = event.data.vehicle or VehicleRef()
    return vehicle_device(event.vehicle_id or "", vehicle.make, vehicle.model, vehicle.year, now)


def _described(vehicle: VehicleRecord, event: Event, now: datetime) -> VehicleRecord:
    described = event.data.vehicle
    update: dict[str, Any] = {"last_event_id": event.eventId, "last_event_at": now}
    if event.user_id:
        update["user_id"] = event.user_id
    if described is not None:
        update |= {
            key: value
            for key, value in (
                ("make", described.make),
                ("model", described.model),
                ("year", described.year),
            )
            if value
        }
    return vehicle.model_copy(update=update)


def merge_signals(
    latest: dict[str, SignalEntry],
    incoming: list[Signal],
    *,
    event_id: str,
    now: datetime,
    fallback_time: int,
) -> dict[str, SignalEntry]:
    """The latest signal per code after a delivery. Deliveries may arrive out of order: a value
    replaces the stored one only if it was measured at the same time or later; a failure marks
    the entry (`error`) and keeps the last good body."""
    merged = dict(latest)
    for signal in incoming:
        measured = signal.measured_at() or fallback_time
        current = merged.get(signal.code)
        if signal.body is None:
            if current is None:
                current = SignalEntry(
                    code=signal.code, name=signal.name, group=signal.group, received_at=now
                )
            elif (current.error_at or current.measured_at or 0) > measured:
                continue
            merged[signal.code] = current.model_copy(
                update={"error": signal.failure(), "error_at": measured, "event_id": event_id}
            )
            continue
        if (
            current is not None
            and current.body is not None
            and (current.measured_at or 0) > measured
        ):
            continue
        keep_error = current is not None and (current.error_at or 0) > measured
        merged[signal.code] = SignalEntry(
            code=signal.code,
            name=signal.name,
            group=signal.group,
            body=signal.body,
            meta=signal.meta.model_dump(exclude_none=True),
            measured_at=measured,
            error=current.error if keep_error and current else None,
            error_at=current.error_at if keep_error and current else None,
            event_id=event_id,
            received_at=now,
        )
    return merged


def last_known_of(vehicle: VehicleRecord | None) -> tuple[tuple[float, float] | None, int | None]:
    """The vehicle's stored position, if it holds usable coordinates, and when it was measured
    (a delivery's location measured no later is not new)."""
    entry = vehicle.signals.get(signals.LOCATION) if vehicle else None
    if entry is None or entry.body is None:
        return None, None
    reading = signals.read_signals([Signal(code=signals.LOCATION, body=entry.body)])
    if not reading.located:
        return None, None
    return (reading.lat, reading.lon), entry.measured_at  # type: ignore[return-value]


def _error_summary(error: dict[str, Any]) -> str:
    parts = [str(error.get(key)) for key in ("type", "code", "state") if error.get(key)]
    return ":".join(parts) or json.dumps(error)[:200]
