"""The pipeline every source feeds: deduplicate, push to Traccar in order, keep what failed.

One run of a device:

1. takes the device's lease (two overlapping runs never push the same position twice);
2. drops what Traccar already accepted (fingerprints of the last `DEDUP_WINDOW`);
3. merges what the outbox holds with what is new and pushes it oldest first;
4. stops at the first position Traccar does not accept: that one and every later one wait in
   the outbox (so positions always arrive in timestamp order), and the device backs off; a
   position refused `PARK_AFTER_ATTEMPTS` times while Traccar takes the next one is parked;
5. records a fingerprint only once Traccar accepted the push, and one push-log document per
   attempt, all in one batch with the new state, releasing the lease;
6. if that batch fails for good, records what Traccar accepted with a smaller write, or keeps
   it in the instance for the device's next run: never a locked device, never a position
   pushed twice (issue 12, `Pipeline._salvage`).

A webhook's run finding the lease held hands its positions off to the outbox instead, and the
lease holder delivers them before it lets go (`Pipeline.run(hand_off=True)`, ADR 0002).

An unknown device (Traccar answers 400) is created through Traccar's REST API when one is
configured, then pushed again; without it the position waits and the log says why.

A webhook's run has an answer to give in time (Smartcar: a 2xx within 15 s, else retries,
PROTOCOLS.md §3): its Traccar calls end `WEBHOOK_PUSH_WITHIN` seconds after the delivery
arrived (`webhook_deadline()`, taken when the receiver starts; `Pipeline.run(push_by=)`,
`shared.traccar.Deadline`). What that leaves unpushed waits in the outbox, due at once, and the
sweep delivers it. A push Traccar had not answered when the deadline came (`PushResult.cut`)
may have been stored: it waits `CUT_RETRY_AFTER`, the device's later positions queued behind
it (`OutboxEntry.cut_until`: no run pushes meanwhile, not even a webhook's, forced), and then
only a run whose deadline leaves the client's whole wait pushes it again (the sweep's, a
scheduled or manual sync; a webhook's queues behind it): that push is never cut, so the
position is stored twice at most, by the cut push if Traccar stored it late and by this one.
It is not counted as Traccar failing (no backoff, no attempt towards parking, nothing told to
the `traccar_down` watch): the deadline ended the wait, not Traccar; a Traccar that hangs fails
the sweep's own push (15 s) later on, and that one counts. Sweep runs have a deadline too
(`shared.sync`): their function's end less the final commit's reserve.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.errors import Conflict, RetryLater
from shared.firestore_limits import text
from shared.models import (
    Device,
    DeviceState,
    Location,
    OutboxEntry,
    PushLogEntry,
    Source,
    SyncResult,
    skipped_of,
    utc_now,
    writes_of,
)
from shared.store import (
    DeliveryRepository,
    Lease,
    StaleRead,
    StateChanged,
    Versioned,
    Writes,
)
from shared.traccar import (
    MIN_CALL_SECONDS,
    Deadline,
    OsmAndClient,
    PushOutcome,
    PushResult,
    TraccarApi,
    TraccarAuthError,
    TraccarError,
)

logger = logging.getLogger(__name__)

DEDUP_WINDOW = timedelta(days=7)
# ~50 bytes a fingerprint: the state document stays far below Firestore's 1 MiB.
DELIVERED_CAP = 5_000
# How long a run holds its device, longer than the function it runs in may live, so a live run
# never loses its lease; a dead run's lease is what a delivery handed off behind it waits for
# (then the sweep, every minute, delivers it: issue 16 wants at most 5 minutes):
# - a Google run (sync_device, 180 s; a manual sync in api, 180 s; an FCM wait inside): 10 min;
LEASE_DURATION = timedelta(minutes=10)
# - any other source's sync (a TLINK or Smartcar pull: a few HTTP calls; sync_device's 180 s);
PULL_LEASE_DURATION = timedelta(seconds=200)
# - a webhook delivery's run (the webhooks function's timeout is 30 s).
WEBHOOK_LEASE_DURATION = timedelta(seconds=60)
# When a webhook delivery's answer is due, seconds after it arrived: Smartcar counts an answer
# after 15 s as a failure and retries (PROTOCOLS.md §3; the retry is absorbed by the eventId
# claim, answered duplicate or queued): 2 s are left for the network and Cloud Run's front end.
WEBHOOK_ANSWER_WITHIN = 13.0
# When its Traccar calls (pushes and REST calls together) must have ended: the answer's time
# less the final commit's round trip (tens of ms; a retried write a few hundred).
WEBHOOK_PUSH_WITHIN = WEBHOOK_ANSWER_WITHIN - 1.0
# How long a push the deadline cut (Traccar may have stored it) waits before it is pushed again:
# a webhook run arriving meanwhile would push it again under the same slow Traccar, cut again
# and maybe stored again (one copy per webhook); waiting blocks the device's later positions
# behind it (queued, not lost) until the sweep (every minute) pushes it once.
CUT_RETRY_AFTER = timedelta(seconds=60)
# What waits behind a push the deadline cut, in a run whose deadline could cut it again.
CUT_WAITS = (
    "behind a push Traccar may have stored: pushed again by a run that can wait for Traccar's "
    "answer (the sweep)"
)
# What a position not pushed for want of time says in the outbox until it is tried.
OUT_OF_TIME = "not pushed: the webhook's answer could not wait longer; the sweep delivers it"


def webhook_deadline() -> Deadline:
    """The Traccar deadline of a webhook delivery arriving now (`WEBHOOK_PUSH_WITHIN`): taken
    when its receiver starts, so the reads and the claim's commit before the push count too."""
    return Deadline.after(WEBHOOK_PUSH_WITHIN)


def lease_duration(source: Source) -> timedelta:
    """How long a sync run of a `source` device holds its lease (see above)."""
    return LEASE_DURATION if source is Source.GOOGLE else PULL_LEASE_DURATION


BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
# After this many refusals of the oldest waiting position (about 4 h of backoff), the next
# one is tried too: if Traccar takes it, the old one is the problem (a value Traccar cannot
# parse) and is parked, kept in the outbox but out of the way, until a manual sync retries it.
PARK_AFTER_ATTEMPTS = 10
# The icon a device created in Traccar gets (Traccar's device categories): Google's trackers
# and phones go with people, Smartcar's are cars, TLINK's are sensors of any kind.
TRACCAR_CATEGORIES = {Source.GOOGLE: "person", Source.SMARTCAR: "car", Source.TLINK: "default"}
# How much of a failure's message a run's result and push log keep.
MAX_REASON_CHARS = 300
# Times a run's final commit may find deliveries handed off under its lease and deliver them
# before it gives up (each lost commit means a delivery was stored; a flood outlasting this
# leaves the rest to the sweep once the lease has ended).
MAX_HANDOFF_ROUNDS = 20
# What a handed-off position's outbox entry says until it is tried (ADR 0002).
HANDED_OFF = "handed off: another run held the device's lease"
# The fields a run computes; the rest of a state changed under its lease (a hand-off's outbox
# count, a recorded error) is taken as stored when it delivers what was handed off.
RUN_FIELDS = ("delivered", "floor", "last_location", "parked_count", "failures", "retry_at",
              "last_sync", "last_result")  # fmt: skip


class OsmAndStatus(Protocol):
    """Where each OsmAnd push's outcome goes (`shared.traccar_status.OsmAndWatch`): Traccar
    refusing or unreachable for long is alerted once (issue 20)."""

    def failing(self, reason: str) -> None: ...

    def working(self) -> None: ...

    def settle(self) -> None: ...


class TraccarApiStatus(Protocol):
    """Where a REST call's outcome goes (`shared.traccar_status`): a refusal is said once."""

    def unauthorized(self, reason: str) -> None: ...

    def working(self) -> None: ...


@dataclass(frozen=True)
class LocationReport:
    """What became of one location in a run (the API's per-location answer)."""

    location: Location
    status: str  # "synced" | "error" | "queued" (behind an earlier failure or backing off)
    message: str | None = None


@dataclass
class RunReport:
    result: SyncResult
    locations: list[LocationReport] = field(default_factory=list)
    # The device's lease was held: the positions were stored in its outbox for the lease
    # holder (or the sweep) to deliver (`Pipeline.run(hand_off=True)`).
    handed_off: bool = False


def backoff(failures: int) -> timedelta:
    """1, 2, 4 ... minutes after consecutive failures, at most an hour."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, failures - 1))


def horizon_of(now: datetime) -> int:
    """The start of the dedup window: the highest the floor may ever be (issue 13)."""
    return int((now - DEDUP_WINDOW).timestamp())


def prune_delivered(delivered: dict[str, int], floor: int, now: datetime) -> tuple[dict, int]:
    """Keep the fingerprints of the window (at most `DELIVERED_CAP`, newest first).

    `floor` rises to the newest timestamp pruned, but never above the window's start: a
    position at or below it may have been delivered already and is treated as such. Were the
    floor allowed into the window, one position dated in the future (a forged date, a clock
    gone wrong: a flood dated 2037 did it) would raise it past every genuine position to come,
    and all of them would be dropped as "delivered". Fingerprints dated after `now` are the
    first to go at the cap, so such a flood cannot push genuine ones out either.
    """
    horizon = horizon_of(now)
    current = int(now.timestamp())
    ordered = sorted(
        delivered.items(), key=lambda item: (item[1] <= current, item[1]), reverse=True
    )
    kept = [(fp, ts) for fp, ts in ordered if ts >= horizon][:DELIVERED_CAP]
    kept_ids = {fp for fp, _ in kept}
    pruned = [ts for fp, ts in ordered if fp not in kept_ids]
    if pruned:
        floor = max(floor, max(pruned))
    return dict(kept), min(floor, horizon)


def is_delivered(state: DeviceState, location: Location, *, now: datetime) -> bool:
    """Whether Traccar accepted `location` already. A floor stored above the window's start
    (before the floor was bounded) is read as that start, so it heals without a migration."""
    floor = min(state.floor, horizon_of(now))
    return location.fingerprint() in state.delivered or location.timestamp <= floor


def newest_of(newest: Location | None, location: Location, now: datetime) -> Location:
    """The device's newest delivered position once `location` is delivered too. A newest dated
    after `now` (recorded before dates were checked at the edge) gives way: it would otherwise
    stay "the newest" until that date, hiding every genuine position from the views."""
    if newest is None or location.timestamp >= newest.timestamp:
        return location
    return location if newest.timestamp > now.timestamp() else newest


def joined(*parts: Writes | None) -> Writes | None:
    """The writes of `parts` (those given) as one, for one commit."""
    given = [part for part in parts if part is not None]
    if len(given) <= 1:
        return given[0] if given else None

    def add(batch: Any) -> None:
        for part in given:
            part(batch)

    return add


def maps_url(location: Location) -> str:
    return f"https://maps.google.com/?q={location.lat},{location.lon}"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Pipeline:
    def __init__(
        self,
        *,
        delivery: DeliveryRepository,
        osmand: OsmAndClient,
        traccar_api: Callable[[], TraccarApi | None],
        retention: timedelta,
        clock: Callable[[], datetime] = utc_now,
        device_user_id: int | None = None,
        device_group_id: int | None = None,
        command_attributes: Callable[[], dict[str, str] | None] = lambda: None,
        api_status: TraccarApiStatus | None = None,
        osmand_status: OsmAndStatus | None = None,
    ) -> None:
        self._delivery = delivery
        self._osmand_status = osmand_status
        self._osmand = osmand
        self._traccar_api = traccar_api
        # Traccar's Find Hub sender attributes for the devices created or found (None: not
        # this function's to write, or not configured); read when a device is provisioned.
        self._command_attributes = command_attributes
        # Told of every REST call's outcome: a refused credential is reported once.
        self._api_status = api_status
        self._retention = retention
        self._clock = clock
        # Who sees the devices created in Traccar (TRACCAR_DEVICE_USER_ID / _GROUP_ID).
        self._device_user_id = device_user_id
        self._device_group_id = device_group_id
        # Fingerprints Traccar accepted whose recording failed (issue 12), by device: a run
        # of this instance counts them as delivered and records them with its own commit.
        self._unrecorded: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def run(
        self,
        device: Device,
        fetch: Callable[[], Iterable[Location]],
        *,
        force: bool = False,
        read: Versioned[DeviceState] | None = None,
        along: Writes | None = None,
        along_outcome: Writes | None = None,
        hand_off: bool = False,
        lease_for: timedelta | None = None,
        push_by: Deadline | None = None,
    ) -> RunReport:
        """Fetch, deduplicate and push `device`'s positions. `force` ignores the backoff.

        A webhook hands in the device's state as it read it with its own documents (`read`,
        sparing the run its own read) and its records (`along`), written in the lease's commit:
        its claim is taken with the lease, before any push, in one round trip. Their
        preconditions failing raises `StaleRead` before anything was pushed or written.
        `along_outcome` joins the run's final commit (the webhook's claim marked done), as do
        the writes the fetch's answer carries (`Fetched.writes`: a source's records of what it
        fetched, landing with the delivery's outcome, never before its push).

        `hand_off` (a webhook, with `read`): when another run holds the lease, the positions go
        to the outbox in one commit with `along` and `along_outcome`, instead of `RetryLater`;
        the holder delivers them before it lets go (`_take_over`), else the sweep does.
        `lease_for`: how long the run holds the device (default: `lease_duration` of its source).
        `push_by` (a webhook's `webhook_deadline()`, a sweep's function end less its commit
        reserve): Traccar's calls end by then; what is left waits in the outbox for the sweep
        (module docstring).
        """
        deadline = push_by
        now = self._clock()
        held_for = lease_for if lease_for is not None else lease_duration(device.source)
        try:
            state, lease = self._delivery.acquire(
                device.id,
                uuid.uuid4().hex,
                now=now,
                until=now + held_for,
                read=read,
                along=along,
            )
        except StaleRead:
            raise
        except RetryLater:
            if not hand_off or read is None or read.value is None:
                raise
            return self._hand_off(device, fetch(), read, now, along, along_outcome)
        try:
            found = fetch()
            fetched = list(found)
            outcome = joined(along_outcome, writes_of(found))
            # Parked positions are only worth a read when a manual sync retries them.
            wanted = state.outbox_count or (force and state.parked_count)
            outbox = self._delivery.outbox(device.id) if wanted else []
        except BaseException:
            self._delivery.release(lease, state)
            raise
        run = _Run(self, device, state, now, unrecorded=self._unrecorded_of(device.id))
        run.deadline = deadline
        run.lease_ends = now + held_for
        run.skipped_reports = skipped_of(found, device.id)
        if wanted:
            run.parked_unseen = 0  # the outbox was read whole: parked entries are in it
        report = run.deliver(fetched, outbox, force=force)
        rounds = 0
        while True:
            try:
                self._delivery.commit(
                    lease,
                    run.final_state(report.result),
                    outbox_put=run.outbox_put,
                    outbox_delete=run.outbox_delete,
                    push_log=run.push_log,
                    along=outcome,
                )
            except StateChanged as changed:
                rounds += 1
                if rounds <= MAX_HANDOFF_ROUNDS:
                    run = self._take_over(run, report, lease, changed, force=force)
                    continue
                self._remember(device.id, run.accepted)
                raise
            except Conflict:
                # The lease ran out and a successor holds it: this instance at least remembers
                # what it pushed, so its own next run of the device does not push it again.
                self._remember(device.id, run.accepted)
                raise
            except Exception as exc:  # any permanent failure: salvaged and reported, not hidden
                self._salvage(run, report, lease, exc, outcome)
            else:
                self._forget(device.id, run.unrecorded)
            if self._osmand_status is not None:
                self._osmand_status.settle()  # the device is let go: Firestore may wait now
            return report

    def _hand_off(
        self,
        device: Device,
        fetched: Iterable[Location],
        read: Versioned[DeviceState],
        now: datetime,
        along: Writes | None,
        along_outcome: Writes | None,
    ) -> RunReport:
        """The device is busy: store its new positions in the outbox, with the caller's writes
        (the claim done: the delivery is stored durably and answered at once)."""
        state = read.value
        assert state is not None
        skipped = skipped_of(fetched, device.id)
        source_writes = writes_of(fetched)
        fetched = list(fetched)
        unrecorded = self._unrecorded_of(device.id)
        entries: dict[str, OutboxEntry] = {}
        for location in sorted(fetched, key=lambda loc: loc.timestamp):
            fingerprint = location.fingerprint()
            if fingerprint in unrecorded or is_delivered(state, location, now=now):
                continue
            entries[fingerprint] = OutboxEntry(
                id=f"{device.id}_{fingerprint}",
                device_id=device.id,
                fingerprint=fingerprint,
                location=location,
                last_error=HANDED_OFF,
                next_attempt=now,
                created_at=now,
            )

        def writes(batch: Any) -> None:
            for add in (along, along_outcome, source_writes):
                if add is not None:
                    add(batch)

        self._delivery.hand_off(read, list(entries.values()), now=now, along=writes)
        logger.info(
            "device busy: delivery handed off to its outbox",
            extra={"device_id": device.id, "queued": len(entries)},
        )
        result = SyncResult(
            fetched=len(fetched),
            new=len(entries),
            outbox=state.outbox_count + len(entries),
            skipped=skipped,
        )
        queued = [LocationReport(e.location, "queued", HANDED_OFF) for e in entries.values()]
        return RunReport(result, queued, handed_off=True)

    def _take_over(
        self, run: _Run, report: RunReport, lease: Lease, changed: StateChanged, *, force: bool
    ) -> _Run:
        """Deliveries were handed off under `run`'s lease: deliver them, oldest first, after
        what `run` did, as one more round of the same run (its outcome and this round's go in
        one final commit, on the version of the state the hand-offs left). `report` grows."""
        device = run.device
        lease.update_time = changed.update_time
        done = run.final_state(report.result)
        state = changed.state.model_copy(update={key: getattr(done, key) for key in RUN_FIELDS})
        outbox = {entry.id: entry for entry in self._delivery.outbox(device.id)}
        for entry_id in run.outbox_delete:
            outbox.pop(entry_id, None)
        outbox.update({entry.id: entry for entry in run.outbox_put})
        waiting = sorted(outbox.values(), key=lambda entry: entry.location.timestamp)
        more = _Run(self, device, state, run.now, unrecorded=run.unrecorded)
        more.deadline = run.deadline
        more.lease_ends = run.lease_ends
        more.parked_unseen = 0  # the outbox was read whole
        # A refusal in this run set the backoff: the handed-off positions wait behind it.
        extra = more.deliver([], waiting, force=force and not run.failed)
        put = {entry.id: entry for entry in run.outbox_put}
        put.update({entry.id: entry for entry in more.outbox_put})
        deleted = [*run.outbox_delete, *more.outbox_delete]
        more.outbox_delete = list(dict.fromkeys(deleted))
        more.outbox_put = [entry for key, entry in put.items() if key not in more.outbox_delete]
        more.push_log = [*run.push_log, *more.push_log]
        more.accepted = {**run.accepted, **more.accepted}
        report.result.pushed += extra.result.pushed
        report.result.failed += extra.result.failed
        report.result.outbox = extra.result.outbox
        report.locations += extra.locations
        logger.info(
            "deliveries handed off under the lease delivered before releasing it",
            extra={"device_id": device.id, "pushed": extra.result.pushed},
        )
        return more

    def _salvage(
        self,
        run: _Run,
        report: RunReport,
        lease: Lease,
        exc: Exception,
        along_outcome: Writes | None,
    ) -> None:
        """After a final commit that failed for good (a document Firestore refuses, an outage
        that outlasted the retries), release the lease at once and record what Traccar
        accepted with a smaller write: a device must neither stay locked for the lease's ten
        minutes nor have its positions pushed again by every later run (issue 12).

        First the run's bookkeeping without the device's newest position (the part holding a
        source's data), with the outbox changes, the push log, the caller's outcome and the
        source's records of what it fetched; then the bookkeeping alone (a source whose records
        are lost so fetches the same readings again, and their position is found delivered).
        If both fail, the instance keeps the fingerprints for its next run of the device. Each
        case is said in the run's result and the log."""
        device_id = run.device.id
        reason = _describe(exc)
        logger.error(
            "the run's final commit failed after its push: recording it by a smaller write",
            exc_info=exc,
            extra={"device_id": device_id, "pushed": report.result.pushed},
        )
        attempts: list[tuple[str, dict[str, Any]]] = [
            (
                "; what Traccar accepted was recorded by a smaller write",
                {
                    "outbox_put": run.outbox_put,
                    "outbox_delete": run.outbox_delete,
                    "push_log": [_noted(entry, reason) for entry in run.push_log],
                    "along": along_outcome,
                },
            ),
            (
                "; what Traccar accepted was recorded by a smaller write, without the push "
                f"log and {len(run.outbox_put)} outbox change(s)",
                {},
            ),
        ]
        for index, (outcome, extra) in enumerate(attempts):
            report.result.error = text(f"final commit failed ({reason}){outcome}")
            state = run.final_state(report.result)
            if not extra:  # the outbox is read again next time: what it still holds is seen
                count = max(state.outbox_count, run.state.outbox_count)
                # What the outbox still holds is due, so the sweep runs the device again.
                retry_at = state.retry_at or (run.now if count else None)
                state = state.model_copy(update={"outbox_count": count, "retry_at": retry_at})
            try:
                self._delivery.record(lease, state, **extra)
            except Conflict:
                self._remember(device_id, run.accepted)
                raise
            except Exception as again:
                logger.error(
                    "the smaller write failed too",
                    exc_info=again,
                    extra={"device_id": device_id, "attempt": index + 1},
                )
                reason = _describe(again)
                continue
            self._forget(device_id, run.unrecorded)
            return
        self._remember(device_id, run.accepted)
        report.result.error = text(
            f"final commit failed and nothing could be recorded ({reason}): this instance "
            f"keeps the {len(run.accepted)} position(s) Traccar accepted as delivered and "
            "records them with the device's next run; the lease ends at "
            f"{iso(run.lease_ends)}"
        )

    def _unrecorded_of(self, device_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._unrecorded.get(device_id, {}))

    def _remember(self, device_id: str, accepted: dict[str, int]) -> None:
        if accepted:
            with self._lock:
                self._unrecorded.setdefault(device_id, {}).update(accepted)

    def _forget(self, device_id: str, recorded: dict[str, int]) -> None:
        if not recorded:
            return
        with self._lock:
            kept = self._unrecorded.get(device_id, {})
            for fingerprint in recorded:
                kept.pop(fingerprint, None)
            if not kept:
                self._unrecorded.pop(device_id, None)

    def mark_delivered(self, location: Location) -> str:
        """Record `location` as delivered without pushing it (seed's `POST /locations`)."""
        now = self._clock()
        state, lease = self._delivery.acquire(
            location.id, uuid.uuid4().hex, now=now, until=now + LEASE_DURATION
        )
        delivered, floor = prune_delivered(
            {**state.delivered, location.fingerprint(): location.timestamp}, state.floor, now
        )
        newest = newest_of(state.last_location, location, now)
        updated = state.model_copy(
            update={"delivered": delivered, "floor": floor, "last_location": newest}
        )
        try:
            self._delivery.commit(lease, updated, outbox_put=[], outbox_delete=[], push_log=[])
        except Conflict:
            raise
        except Exception:
            # Never leave the device locked for the lease's ten minutes (issue 12): give the
            # lease back as it was, then report the failure.
            with contextlib.suppress(Exception):
                self._delivery.record(lease, state)
            raise
        return location.fingerprint()

    @property
    def longest_push_wait(self) -> float:
        """How long one push may wait for Traccar on the client's own timeouts."""
        return self._osmand.longest_wait

    def push(
        self, device: Device, location: Location, *, deadline: Deadline | None = None
    ) -> list[PushResult]:
        """Push one location; on "unknown device", create it in Traccar and push again; every
        call within `deadline` when one is given."""
        unique_id = device.traccar_unique_id
        attempts = [self._told(self._osmand.push(location, unique_id, deadline=deadline))]
        if attempts[-1].outcome is not PushOutcome.UNKNOWN_DEVICE:
            return attempts
        api = self._traccar_api()
        if api is not None and deadline is not None:
            api = api.until(deadline)
        if api is None:
            message = (
                f"Traccar does not know device {device.traccar_unique_id}; create it in "
                "Traccar or set TRACCAR_API_URL so the bridge creates it"
            )
            logger.warning(message, extra={"device_id": device.id})
            attempts[-1] = PushResult(PushOutcome.UNKNOWN_DEVICE, attempts[-1].status, message)
            return attempts
        try:
            created = api.ensure_device(
                device.traccar_unique_id,
                device.name or device.id,
                category=TRACCAR_CATEGORIES.get(device.source),
                user_id=self._device_user_id,
                group_id=self._device_group_id,
                attributes=self._command_attributes(),
            )
        except TraccarError as exc:
            message = f"could not create device {device.traccar_unique_id} in Traccar: {exc}"
            if self._api_status is not None and isinstance(exc, TraccarAuthError):
                self._api_status.unauthorized(str(exc))  # once per incident, not per push
            logger.warning(message, extra={"device_id": device.id})
            attempts[-1] = PushResult(PushOutcome.UNKNOWN_DEVICE, attempts[-1].status, message)
            return attempts
        if self._api_status is not None:
            self._api_status.working()
        logger.info(
            "device created in Traccar",
            extra={"device_id": device.id, "traccar_id": created.id},
        )
        attempts.append(self._told(self._osmand.push(location, unique_id, deadline=deadline)))
        return attempts

    def _told(self, result: PushResult) -> PushResult:
        """`result`, after telling the OsmAnd watch: "retry later" is Traccar refusing or out
        of reach; any other answer (unknown device included) is Traccar taking requests. A push
        not tried (its deadline reached) says nothing of Traccar, nor does one the deadline cut
        (the caller stopped waiting: Traccar may only be slow; module docstring)."""
        if self._osmand_status is not None and result.tried and not result.cut:
            if result.outcome is PushOutcome.RETRY_LATER:
                self._osmand_status.failing(result.error or f"HTTP {result.status}")
            else:
                self._osmand_status.working()
        return result

    def log_entry(
        self,
        device: Device,
        location: Location,
        attempt: PushResult,
        now: datetime,
        *,
        skipped_reports: int = 0,
    ) -> PushLogEntry:
        return PushLogEntry(
            id=location.id,
            lat=location.lat,
            lon=location.lon,
            timestamp=location.timestamp,
            loc_status=location.loc_status,
            name=device.name,
            date=iso(datetime.fromtimestamp(location.timestamp, now.tzinfo)),
            maps_url=maps_url(location),
            traccar_status=attempt.status,
            synced_at=iso(now),
            source=location.source or device.source,
            error=attempt.error,
            outcome=attempt.outcome.value,
            device_id=device.id,
            attempted_at=now,
            expire_at=now + self._retention,
            dropped_attributes=list(attempt.dropped),
            skipped_reports=skipped_reports,
        )


def _describe(exc: BaseException) -> str:
    """A short, storable account of a failure."""
    return text(f"{type(exc).__name__}: {exc}")[:MAX_REASON_CHARS]


def _noted(entry: PushLogEntry, reason: str) -> PushLogEntry:
    """`entry` saying its run's final commit failed; its strings made storable."""
    note = f"final commit failed ({reason}), recorded by a smaller write"
    error = f"{entry.error}; {note}" if entry.error else note
    return entry.model_copy(
        update={
            "error": text(error),
            "name": text(entry.name),
            "loc_status": None if entry.loc_status is None else text(entry.loc_status),
        }
    )


class _Run:
    """The working state of one run: what was pushed, what waits, what to log."""

    def __init__(
        self,
        pipeline: Pipeline,
        device: Device,
        state: DeviceState,
        now: datetime,
        *,
        unrecorded: dict[str, int] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.device = device
        self.state = state
        self.now = now
        self.lease_ends = now + lease_duration(device.source)  # the run's own, once taken
        # Accepted by Traccar in an earlier run of this instance whose recording failed:
        # delivered, and recorded by this run's commit.
        self.unrecorded = unrecorded or {}
        self.delivered = {**state.delivered, **self.unrecorded}
        self.accepted: dict[str, int] = {}  # what Traccar accepted in this run
        self.newest = state.last_location
        self.outbox_put: list[OutboxEntry] = []
        self.outbox_delete: list[str] = []
        self.push_log: list[PushLogEntry] = []
        self.failed = False
        self.cut = False  # a push the deadline cut: Traccar may have stored it (`deliver`)
        self.waiting = 0
        self.parked = 0
        self.parked_unseen = state.parked_count  # parked entries not loaded by this run
        self.skipped_reports = 0  # reports the fetch skipped (`SyncResult.skipped`)
        # When Traccar's calls must have ended (a webhook's answer budget; None: no bound).
        self.deadline: Deadline | None = None

    def deliver(
        self, fetched: list[Location], outbox: list[OutboxEntry], *, force: bool
    ) -> RunReport:
        waiting: dict[str, OutboxEntry] = {}
        for waited in outbox:
            if waited.fingerprint in self.delivered:
                # Accepted by a run whose outbox changes were not recorded (its final commit
                # failed, issue 12): delivered already, never pushed twice.
                self.outbox_delete.append(waited.id)
            elif waited.parked and not force:
                self.parked += 1  # stays as it is
            else:
                waiting[waited.fingerprint] = waited
        new: dict[str, Location] = {}
        for location in fetched:
            fingerprint = location.fingerprint()
            if (
                fingerprint in waiting
                or fingerprint in new
                or fingerprint in self.unrecorded
                or is_delivered(self.state, location, now=self.now)
            ):
                continue
            new[fingerprint] = location
        # Oldest first; at equal times, what waited in the outbox goes before what is new.
        queue: list[tuple[int, int, str, Location, OutboxEntry | None]] = [
            (entry.location.timestamp, 0, fp, entry.location, entry)
            for fp, entry in waiting.items()
        ] + [(location.timestamp, 1, fp, location, None) for fp, location in new.items()]
        queue.sort(key=lambda item: (item[0], item[1]))

        retry_at = self.state.retry_at
        blocked_by: str | None = None
        cut_until = max(
            (e.cut_until for e in waiting.values() if e.cut_until and e.cut_until > self.now),
            default=None,
        )
        if cut_until is not None:
            # Even when forced (a webhook's run): pushed again now, under the same slow
            # Traccar, it could be cut and stored once more with each delivery.
            blocked_by = f"behind a push Traccar may have stored; next attempt at {iso(cut_until)}"
        elif outbox and not force and retry_at is not None and retry_at > self.now:
            # Refused earlier (a backoff), or a push the deadline cut waits (CUT_RETRY_AFTER).
            blocked_by = f"waiting for an earlier push to be retried at {iso(retry_at)}"
        report = RunReport(
            SyncResult(fetched=len(fetched), new=len(new), skipped=self.skipped_reports)
        )
        suspect: tuple[str, Location, OutboxEntry | None, str] | None = None
        for index, (_, _, fingerprint, location, entry) in enumerate(queue):
            if blocked_by is None and self.out_of_time():
                blocked_by = OUT_OF_TIME
            cut_before = entry is not None and entry.cut_until is not None
            if blocked_by is None and cut_before and not self.can_wait_fully():
                blocked_by = CUT_WAITS  # pushed again now, it could be cut (stored) again
            if blocked_by is not None:
                self._wait(fingerprint, location, entry, blocked_by, attempted=False)
                report.locations.append(LocationReport(location, "queued", blocked_by))
                continue
            attempts = self.pipeline.push(self.device, location, deadline=self.deadline)
            if not attempts[-1].tried:  # no time left (after a creation), or no connection
                blocked_by = OUT_OF_TIME
                self.push_log += [
                    self.pipeline.log_entry(self.device, location, a, self.now) for a in attempts
                    if a.tried
                ]  # fmt: skip
                self._wait(fingerprint, location, entry, blocked_by, attempted=False)
                report.locations.append(LocationReport(location, "queued", blocked_by))
                continue
            # The fetch's skipped reports go on the entries of the positions it brought.
            skipped = self.skipped_reports if entry is None else 0
            self.push_log += [
                self.pipeline.log_entry(self.device, location, a, self.now, skipped_reports=skipped)
                for a in attempts
            ]
            final = attempts[-1]
            if final.cut:
                # Sent, unanswered when the deadline came: not Traccar's refusal (no backoff,
                # no attempt towards parking); it waits CUT_RETRY_AFTER, then the sweep pushes
                # it again (stored twice at most: module docstring).
                self.cut = True
                if suspect is not None:
                    self._wait(*suspect, attempted=True)
                    suspect = None
                blocked_by = OUT_OF_TIME
                error = final.error or OUT_OF_TIME
                self._wait(fingerprint, location, entry, error, attempted=True, cut=True)
                report.locations.append(LocationReport(location, "queued", error))
                continue
            if final.outcome is PushOutcome.ACCEPTED:
                if suspect is not None:
                    self._park(*suspect)
                    suspect = None
                self._accepted(fingerprint, location, entry)
                report.result.pushed += 1
                report.locations.append(LocationReport(location, "synced"))
                continue
            report.result.failed += 1
            error = final.error or final.outcome.value
            report.locations.append(LocationReport(location, "error", error))
            worn_out = entry is not None and entry.attempts + 1 >= PARK_AFTER_ATTEMPTS
            if suspect is None and worn_out and index + 1 < len(queue):
                suspect = (fingerprint, location, entry, error)
                continue  # try the next one before blaming this one
            self.failed = True
            blocked_by = error
            if suspect is not None:  # the next one failed too: Traccar is down, not the data
                self._wait(*suspect, attempted=True)
                suspect = None
            self._wait(fingerprint, location, entry, error, attempted=True)
        report.result.outbox = self.waiting + self.parked + self.parked_unseen
        return report

    def _park(
        self, fingerprint: str, location: Location, entry: OutboxEntry | None, error: str
    ) -> None:
        assert entry is not None  # only what waited in the outbox is parked (`worn_out`)
        logger.error(
            "Traccar keeps refusing a position while accepting later ones: parked",
            extra={"device_id": self.device.id, "timestamp": location.timestamp, "error": error},
        )
        self.parked += 1
        self.outbox_put.append(
            entry.model_copy(
                update={"attempts": entry.attempts + 1, "last_error": error, "parked": True}
            )
        )

    def _accepted(self, fingerprint: str, location: Location, entry: OutboxEntry | None) -> None:
        self.delivered[fingerprint] = location.timestamp
        self.accepted[fingerprint] = location.timestamp
        if entry is not None:
            self.outbox_delete.append(entry.id)
        self.newest = newest_of(self.newest, location, self.now)

    def _wait(
        self,
        fingerprint: str,
        location: Location,
        entry: OutboxEntry | None,
        error: str,
        *,
        attempted: bool,
        cut: bool = False,
    ) -> None:
        """`location` waits in the outbox; `attempted`: it was pushed in this run, an attempt
        towards `PARK_AFTER_ATTEMPTS` unless the deadline `cut` its push (then it holds the
        device's later positions back until `CUT_RETRY_AFTER` has passed)."""
        self.waiting += 1
        if entry is not None and not attempted and entry.last_error == error:
            return  # unchanged: no write
        base = entry or OutboxEntry(
            id=f"{self.device.id}_{fingerprint}",
            device_id=self.device.id,
            fingerprint=fingerprint,
            location=location,
            created_at=self.now,
        )
        self.outbox_put.append(
            base.model_copy(
                update={
                    "attempts": base.attempts + (1 if attempted and not cut else 0),
                    # Kept until a push not cut ends it (`deliver`).
                    "cut_until": (
                        self.now + CUT_RETRY_AFTER
                        if cut
                        else (None if attempted else base.cut_until)
                    ),
                    "last_error": error,
                    "next_attempt": self.next_attempt(),
                    "parked": False,
                }
            )
        )

    def can_wait_fully(self) -> bool:
        """Whether a push now could not be cut: no deadline, or one leaving the client's whole
        wait (`OsmAndClient.longest_wait`)."""
        return self.deadline is None or (
            self.deadline.remaining() >= self.pipeline.longest_push_wait
        )

    def out_of_time(self) -> bool:
        """Whether the run's deadline leaves no time for one more push."""
        return self.deadline is not None and self.deadline.remaining() < MIN_CALL_SECONDS

    def retry_at(self) -> datetime | None:
        """When the device's waiting positions are tried next: after a refusal in this run,
        the backoff; after a push the deadline cut, `CUT_RETRY_AFTER`; otherwise what an
        earlier run set."""
        if self.failed:
            return self.now + backoff(self.state.failures + 1)
        if self.cut:
            return self.now + CUT_RETRY_AFTER
        return self.state.retry_at

    def next_attempt(self) -> datetime:
        return self.retry_at() or self.now

    def final_state(self, result: SyncResult) -> DeviceState:
        delivered, floor = prune_delivered(self.delivered, self.state.floor, self.now)
        if self.failed:
            failures, retry_at = self.state.failures + 1, self.retry_at()
        elif self.waiting:
            # Left waiting without a refusal (behind a backoff, a cut push, out of time): due
            # once the backoff or the cut push's wait ends, else at once; the sweep looks for
            # `retry_at`.
            failures, retry_at = self.state.failures, self.retry_at() or self.now
        else:
            failures, retry_at = 0, None
        return self.state.model_copy(
            update={
                "delivered": delivered,
                "floor": floor,
                "last_location": self.newest,
                "outbox_count": self.waiting,
                "parked_count": self.parked + self.parked_unseen,
                "failures": failures,
                "retry_at": retry_at,
                "last_sync": self.now,
                "last_result": result,
                # Kept while positions wait, so the sweep retries them once the backoff ends.
                "handoff_since": self.state.handoff_since if self.waiting else None,
            }
        )
