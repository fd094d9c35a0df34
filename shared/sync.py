"""Running the pipeline for a device: what `sync_device`, the API and a webhook call.

`Sync.sync_device` asks the device's source for its positions and runs each device's pipeline
with what came back. A source returns positions only; when one locate brought other devices'
positions along (one Google FCM session answers for every due tracker), their pipelines are
run here, each under its own lease, after the device's own. When the device's own locate
failed but brought others' positions along, the source raises `FetchFailed` carrying them: they
are delivered all the same, and the device's own error is raised after. A source never pushes,
schedules or pauses anything.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from shared.errors import BadRequest, BridgeError, Conflict, NotFound, RetryLater
from shared.models import (
    SYNC_DEVICE_LIFETIME,
    Device,
    DeviceState,
    Fetched,
    Location,
    Source,
    too_far_ahead,
    utc_now,
    writes_of,
)

if TYPE_CHECKING:
    from shared.pipeline import Pipeline, RunReport
    from shared.store import DeliveryRepository, DeviceRepository, Page

logger = logging.getLogger(__name__)

# Devices whose due outboxes one sweep delivers at most (each is one pipeline run).
SWEEP_LIMIT = 50
# A sweep starts no device's run with less than this left before its function's deadline: the
# run's reads, its pushes (each may wait up to 20 s for Traccar) and its final commit must end
# before the function is killed, else a position Traccar took goes unrecorded (pushed again).
SWEEP_MARGIN = timedelta(seconds=30)
# A sweep run's pushes end this long before its function's deadline (`Pipeline.run(push_by=)`):
# time for the run's final commit (a round trip; retried writes a few seconds), so a run with a
# backlog against a slow Traccar is not killed between its pushes and the commit recording them
# (those would be pushed again). A push this cuts waits like a webhook's (shared/pipeline.py).
# A run's first push has SWEEP_MARGIN less this (25 s) ahead, more than the client's own
# timeouts (5 s + 15 s): it is never cut, so it may push again a position a deadline cut.
SWEEP_COMMIT_RESERVE = timedelta(seconds=5)
# A sweep run's lease lasts this much beyond its function's deadline (a lease outlives the
# function its run lives in: shared/pipeline.py), for instances' clocks that differ a little.
SWEEP_LEASE_SLACK = timedelta(seconds=10)
# A sweep starts no further device's run once this long has passed since it began: in the
# hourly refresh, the alerts and command provisioning come after it.
SWEEP_BUDGET = timedelta(seconds=120)
# The sweep after a scheduled run: the every-minute sweep job does the rest; the scheduled
# run's answer is not held up for long.
AFTER_RUN_SWEEP_BUDGET = timedelta(seconds=20)


class FetchFailed(BridgeError):
    """A fetch that failed for its own device yet brought other devices' positions along.

    `error` is the device's own failure; `brought_along` holds the positions the same locate
    found for other devices (`Location.id` names each one's device). `Sync` delivers them
    through each device's own run, then raises `error`. Anyone else reads it as `error`: the
    same message and status, and `error` is its cause.
    """

    def __init__(self, error: BridgeError, *, brought_along: list[Location]) -> None:
        super().__init__(error.message)
        self.status = error.status
        self.error = error
        self.brought_along = brought_along


class LocationSource(Protocol):
    """A vendor whose devices the bridge can ask for their positions (pull)."""

    source: Source

    def fetch(self, device: Device) -> list[Location]:
        """The device's current positions, oldest first or in any order; may be empty, never
        raises for "nothing new". It may hold other devices' positions too (`Location.id`
        names each one's device): a locate that answered for several at once. A failure is a
        `BridgeError`; one whose locate still answered for other devices is a `FetchFailed`
        carrying their positions."""
        ...


@runtime_checkable
class ManualFetch(Protocol):
    """A source whose scheduled fetch paces itself (Google backs silent trackers off): a sync
    a user asked for (the API, Traccar's command) fetches without that pacing."""

    def fetch_manual(self, device: Device) -> list[Location]: ...


class MovementTracker(Protocol):
    """Told of every locate before any of its positions is delivered (smart tracking)."""

    def observe(self, device_id: str, located: list[Location]) -> None: ...


class Sync:
    """Each device's pipeline, fed by its source, a webhook or the API."""

    def __init__(
        self,
        *,
        devices: DeviceRepository,
        delivery: DeliveryRepository,
        pipeline: Callable[[], Pipeline],
        sources: Mapping[Source, LocationSource],
        trackers: Mapping[Source, MovementTracker],
        max_future_skew: float,
        delete_once: Callable[[str], object] | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._devices = devices
        # Deletes a device's "locate now" one-shot job (`JobScheduler.delete_once`); None: no
        # scheduler wired (a test's Sync), nothing to delete.
        self._delete_once = delete_once
        self._delivery = delivery
        # A callable: the pipeline's module (and Traccar's client) loads when a run starts,
        # so a cold instance answering "unknown device" never imports it.
        self._pipeline = pipeline
        self._sources = sources
        self._trackers = trackers
        self._max_future_skew = max_future_skew
        self._clock = clock
        self._sleep = sleep

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline()

    def device_or_404(self, device_id: str) -> Device:
        device = self._devices.get(device_id)
        if device is None:
            raise NotFound(f"unknown device: {device_id}")
        return device

    def sync_device(self, device_id: str, *, force: bool = False) -> RunReport:
        """Fetch the device's positions from its source and push what is new.

        The outbox is drained even when the source cannot fetch the device (none for its
        vendor, the vendor down, no credentials): what waits for Traccar never depends on the
        vendor. The vendor's error is raised after the drain, so the caller still sees the run
        failed.
        """
        device = self.device_or_404(device_id)
        source = self._sources.get(device.source)
        if source is None:
            logger.warning(
                "no source can fetch this device; draining its outbox only",
                extra={"device_id": device.id, "source": device.source.value},
            )
            return self.pipeline.run(device, list, force=force)
        failures: list[BridgeError] = []
        others: dict[str, list[Location]] = {}
        skipped: dict[str, int] = {}  # reports the source skipped, by device

        def fetch() -> list[Location]:
            try:
                if force and isinstance(source, ManualFetch):
                    found = source.fetch_manual(device)
                else:
                    found = source.fetch(device)
            except FetchFailed as exc:
                # The device's own locate failed; the others it answered for are still due.
                failures.append(exc.error)
                found = exc.brought_along
            except BridgeError as exc:
                failures.append(exc)
                return []
            if isinstance(found, Fetched):
                skipped.update(found.skipped)
            own = self._split(device, found, others)
            # Before any delivery: a tracker compares with the newest position delivered.
            tracker = self._trackers.get(device.source)
            if tracker is not None:
                # A device whose locate failed was not located: nothing to tell of it.
                located_own = [(device.id, own)] if own or not failures else []
                for located_id, located in (*located_own, *others.items()):
                    tracker.observe(located_id, located)
            # The source's records of what it fetched go with the run's final commit.
            return Fetched(own, skipped=skipped, writes=writes_of(found))

        report = self.pipeline.run(device, fetch, force=force)
        for other_id, locations in others.items():
            self._deliver_other(other_id, Fetched(locations, skipped=skipped))
        if failures:
            error = failures[0]
            # Shown by GET /services and GET /devices: a failing pull is not only in the log.
            self._delivery.record_error(device.id, error.message, at=self._clock())
            logger.warning(
                "the source failed; the outbox was drained anyway",
                extra={"device_id": device.id, "error": error.message,
                       "pushed": report.result.pushed, "brought_along": sorted(others)},
            )  # fmt: skip
            if report.result.pushed or report.result.failed:
                # The caller (an explicit retry of a webhook-only device) learns what the
                # drain did too, not only that the pull failed.
                error.message = (
                    f"{error.message}; the outbox was retried all the same: "
                    f"{report.result.pushed} position(s) delivered, "
                    f"{report.result.outbox} still waiting"
                )
            raise error
        return report

    @staticmethod
    def _split(
        device: Device, found: list[Location], others: dict[str, list[Location]]
    ) -> list[Location]:
        """The device's own positions; the others' go into `others`, by device id."""
        own = []
        for location in found:
            if location.id == device.id:
                own.append(location)
            else:
                others.setdefault(location.id, []).append(location)
        return own

    def _deliver_other(self, device_id: str, locations: list[Location]) -> None:
        """A device located with another: its positions through its own pipeline run; one that
        is busy is skipped (its next locate brings them again)."""
        other = self._devices.get(device_id)
        if other is None:
            logger.warning("positions of an unknown device dropped", extra={"device_id": device_id})
            return
        try:
            report = self.pipeline.run(other, lambda: locations)
        except (RetryLater, Conflict) as exc:
            logger.warning(
                "a device located in the same session is busy; its positions come next time",
                extra={"device_id": device_id, "reason": exc.message},
            )
            return
        logger.info(
            "delivered positions of a device located in the same session",
            extra={"device_id": device_id, **report.result.model_dump()},
        )

    def scheduled_sync(
        self,
        device_id: str,
        *,
        jitter_seconds: int,
        once: bool = False,
        sleep: Callable[[float], None] | None = None,
    ) -> RunReport:
        """A scheduler job's run: cron fires on the minute, so the jitter is applied here
        (`sleep`, the instance's own by default: a benchmark records it instead).

        `once`: the run of a "locate now" one-shot job (`JobScheduler.run_once`), deleted after
        the run, so a run told to retry keeps it: a 429 (another run holds the device's lease),
        a 5xx or an unexpected failure, which Cloud Scheduler retries (`JOB_RETRY_COUNT`) if
        its retry settings apply to a forced run (RunJob's reference does not say), and which
        would otherwise drop the locate. Once those retries are spent, the job's yearly
        schedule or the next "locate now" (which remakes the job) runs it again; either run
        deletes it. A run done, or refused for good (another 4xx: an unknown device), deletes
        it. A delete that fails (a deployment whose Terraform lacks cloudscheduler.jobs.delete)
        is logged and changes nothing of the run's answer (`_forget_once`)."""
        # The sync_device function's request began about now (its jitter is slept here).
        deadline = self._clock() + SYNC_DEVICE_LIFETIME
        if jitter_seconds:
            (sleep or self._sleep)(random.uniform(0, jitter_seconds))  # noqa: S311 - spreading load
        try:
            report = self.sync_device(device_id)
        except BridgeError as exc:
            if once and exc.status < 500 and not isinstance(exc, RetryLater):
                self._forget_once(device_id)
            raise
        if once:
            self._forget_once(device_id)
        # Not after a failed run: Firestore down would make the sweep wait its timeouts too.
        self._sweep_quietly(deadline)
        return report

    def _forget_once(self, device_id: str) -> None:
        """Delete the device's one-shot job; a failure only logged (the run's outcome stands;
        the job's yearly schedule runs it once more, and that run tries again)."""
        if self._delete_once is None:
            return
        try:
            self._delete_once(device_id)
        except Exception as exc:
            logger.warning(
                'the "locate now" one-shot job was not deleted (%s): sync_device\'s service '
                "account needs cloudscheduler.jobs.delete; apply infra/terraform",
                exc,
                extra={"device_id": device_id},
            )

    def _sweep_quietly(self, deadline: datetime) -> None:
        """The sweep after a scheduled run: its failure must not turn the device's run into
        one (the next scheduled run or the every-minute sweep job sweeps again)."""
        try:
            self.sweep_due_outboxes(deadline=deadline, budget=AFTER_RUN_SWEEP_BUDGET)
        except Exception:
            logger.exception("the sweep of due outboxes failed")

    def sweep_due_outboxes(
        self,
        *,
        deadline: datetime,
        limit: int = SWEEP_LIMIT,
        budget: timedelta = SWEEP_BUDGET,
    ) -> list[str]:
        """Deliver every outbox whose time has come (the state's `retry_at` passed) that no
        run of its device delivered: a Traccar refusal's backoff ended (a webhook-only TLINK
        device or Smartcar vehicle has no run of its own to retry it: a parked car's last
        position waited for its next webhook), or a webhook handed a delivery off to a busy
        device and no lease holder delivered it (its run died, or the delivery came just as it
        let go; ADR 0002). Each device's pipeline runs with nothing fetched (the outbox only,
        oldest position first, paced by its backoff), the longest due first, at most `limit`
        devices. One query answering nothing when nothing is due. Returns the devices run.

        `deadline` is when the caller's function is killed (its request's start plus its
        lifetime, `shared.models`): no run starts with less than `SWEEP_MARGIN` left, none once
        `budget` has passed since the sweep began (the first excepted), each run's pushes end
        `SWEEP_COMMIT_RESERVE` before `deadline` (its commit must land before the function is
        killed), and each run holds its device's lease until after `deadline`, so a live run
        never loses it.

        A device whose lease a run holds is skipped: that run delivers its outbox, or the next
        sweep does. A device whose run fails is logged and passed over, whatever the error (an
        unreadable document, Firestore refusing): the devices behind it are swept all the same,
        and its `retry_at` moves on by its backoff, so it does not stay first in every sweep."""
        started = self._clock()
        ran: list[str] = []
        for index, state in enumerate(self._delivery.due(now=started, limit=limit)):
            now = self._clock()
            if deadline - now < SWEEP_MARGIN or (index and now - started >= budget):
                logger.info("sweep: out of time; the next sweep goes on", extra={
                    "device_id": state.id, "ran": len(ran)})  # fmt: skip
                break
            device = self._devices.get(state.id)
            if device is None:
                logger.warning("due outbox of an unknown device", extra={
                    "device_id": state.id})  # fmt: skip
                continue
            # Cold start: Traccar's client loads with the first run (the pipeline's module), never
            # for a sync_device answering "unknown device" (tests/integration/test_cold_start.py).
            from shared.traccar import Deadline

            left = (deadline - now - SWEEP_COMMIT_RESERVE).total_seconds()
            try:
                report = self.pipeline.run(
                    device,
                    list,
                    lease_for=deadline - now + SWEEP_LEASE_SLACK,
                    push_by=Deadline.after(left),
                )
            except (RetryLater, Conflict) as exc:
                # Busy, or another run took the device over: that run delivers the outbox,
                # else the next sweep does.
                logger.warning("sweep: a device's outbox waits", extra={
                    "device_id": device.id, "reason": exc.message})  # fmt: skip
                continue
            except Exception as exc:
                # Anything else would fail the same way each minute: logged (the error is ours,
                # no secret in it), put behind the other due devices, and the sweep goes on.
                logger.exception("sweep: a device's run failed; its outbox waits", extra={
                    "device_id": device.id})  # fmt: skip
                self._put_back(state, exc, now=now)
                continue
            logger.info("sweep: a device's outbox retried", extra={
                "device_id": device.id, **report.result.model_dump()})  # fmt: skip
            ran.append(device.id)
        return ran

    def _put_back(self, state: DeviceState, error: Exception, *, now: datetime) -> None:
        """A device whose sweep run failed: its `retry_at` moves by the backoff of one more
        failure (1, 2, 4 ... minutes, at most an hour), and the error is noted on its state."""
        # The pipeline's module is loaded already: the failed run came from it.
        from shared.pipeline import MAX_REASON_CHARS, backoff

        failures = state.failures + 1
        message = f"the sweep's run failed: {type(error).__name__}: {error}"
        self._delivery.postpone(
            state.id,
            seen=state.retry_at,
            retry_at=now + backoff(failures),
            failures=failures,
            error=message[:MAX_REASON_CHARS],
            at=now,
        )

    def push_locations(self, device: Device, locations: list[Location]) -> RunReport:
        """Push given positions (the API's `?single`) through the same pipeline as a run."""
        return self.pipeline.run(device, lambda: locations, force=True)

    def push_single(self, device_id: str, location: Location) -> RunReport:
        """Push one given position now (`PUT /traccar/devices/<id>/locations?single`).

        Only for a device the bridge knows: one it has never seen is a 404 naming it. Pushing
        it anyway made up a "google" device with a push log of its own, while
        `GET /devices/<id>/locations` stayed 404 (issue 18).
        """
        if location.id != device_id:
            raise BadRequest(f"id: the location's id {location.id!r} is not {device_id!r}")
        self.check_not_ahead(location)
        return self.push_locations(self.device_or_404(device_id), [location])

    def latest_locations(self, *, limit: int, cursor: str | None = None) -> Page[Location]:
        """The newest delivered position of each device, a page at a time (by device id)."""
        return self._delivery.latest_locations(limit=limit, cursor=cursor)

    def newest_delivered(self, device_id: str) -> Location | None:
        return self._delivery.state(device_id).last_location

    def undelivered(self, locations: list[Location]) -> list[Location]:
        """The given positions Traccar has not accepted yet (the seed's `?filter=`), as given.

        A position may name its device as Traccar does (issue 18): it is checked against the
        device's record as the bridge stores it."""
        # Cold start: the pipeline's module (and Traccar's client) loads with the first run.
        from shared.pipeline import is_delivered

        stored_ids = {named: self._devices.stored_id(named) for named in {x.id for x in locations}}
        states = {named: self._delivery.state(stored) for named, stored in stored_ids.items()}
        now = self._clock()
        return [
            location
            for location in locations
            if not is_delivered(
                states[location.id],
                location.model_copy(update={"id": stored_ids[location.id]}),
                now=now,
            )
        ]

    def mark_delivered(self, location: Location) -> str:
        """Record a position given through the API as delivered (`POST /locations`); it may
        name its device as Traccar does (issue 18)."""
        self.check_not_ahead(location)
        stored_id = self._devices.stored_id(location.id)
        return self.pipeline.mark_delivered(location.model_copy(update={"id": stored_id}))

    def check_not_ahead(self, location: Location) -> None:
        """`BadRequest` for a position dated more than `MAX_FUTURE_SKEW` after the clock: once
        recorded it would be the device's newest and stand above every genuine one (issue 13),
        so the API refuses it rather than storing it."""
        now = self._clock()
        if too_far_ahead(location.timestamp, now=now, skew=self._max_future_skew):
            ahead = location.timestamp - int(now.timestamp())
            raise BadRequest(
                f"timestamp: {location.timestamp} is {ahead} s ahead of the clock; at most "
                f"{self._max_future_skew:g} s is accepted (MAX_FUTURE_SKEW)"
            )


__all__ = ["FetchFailed", "LocationSource", "MovementTracker", "Sync"]
