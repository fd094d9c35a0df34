"""A device's delivery state: its lease, delivered fingerprints, outbox and push log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import BadRequest, Conflict, RetryLater
from shared.models import DeviceState, Location, OutboxEntry, PushLogEntry
from shared.store.claims import StaleRead, Writes, stale_errors, unchanged_since
from shared.store.options import reads, writes
from shared.store.repository import Page, Versioned, by_document_id, document_id, read_all

if TYPE_CHECKING:
    from google.cloud import firestore

logger = logging.getLogger(__name__)

# Beyond this many fingerprints changed in one run, the final write replaces the whole map
# rather than listing each change in its update mask.
MAX_FIELD_CHANGES = 500


class Lease:
    """A run's hold on a device's state: the version of the document it wrote when taking it,
    and the fingerprints that version held (the final write sends only what changed)."""

    def __init__(
        self,
        device_id: str,
        owner: str,
        update_time: datetime,
        delivered: dict[str, int] | None = None,
    ) -> None:
        self.device_id = device_id
        self.owner = owner
        self.update_time = update_time
        self.delivered = delivered or {}


class StateChanged(Conflict):
    """A run's final commit found the device's state written meanwhile while its lease is still
    the run's: deliveries were handed off to the outbox (`hand_off`). The run reads the outbox,
    delivers them and commits again on `update_time`, the version it now builds on."""

    def __init__(self, message: str, *, state: DeviceState, update_time: datetime) -> None:
        super().__init__(message)
        self.state = state
        self.update_time = update_time


class DeliveryRepository:
    """Where a sync run keeps its bookkeeping: `device_state`, `outbox` and `push_log`.

    A run costs, whatever the history: one read of the state (taking the lease), one query of
    the outbox only when the state says it holds something, one write for the lease and one
    batch (the new state and one push-log document per attempt) at the end. A webhook's run
    reads the state with the webhook's own documents and writes the lease with its records
    (`acquire`'s `read` and `along`): the webhook and its run share one read and one commit.
    """

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._states = client.collection("device_state")
        self._outbox = client.collection("outbox")
        self._push_log = client.collection("push_log")

    def state_ref(self, device_id: str) -> firestore.DocumentReference:
        """The device's state document, for a caller that reads it with its own documents."""
        return self._states.document(document_id(device_id))

    def state(self, device_id: str) -> DeviceState:
        snapshot = self.state_ref(device_id).get(**reads())
        if not snapshot.exists:
            return DeviceState(id=device_id)
        return DeviceState.model_validate(snapshot.to_dict())

    def states_of(self, device_ids: list[str]) -> dict[str, DeviceState]:
        """The states of `device_ids` that exist, in one batch read (a page of devices)."""
        refs = [self.state_ref(device_id) for device_id in device_ids]
        snapshots = read_all(self._client, refs) if refs else []
        found = [DeviceState.model_validate(s.to_dict()) for s in snapshots if s.exists]
        return {state.id: state for state in found}

    def record_error(self, device_id: str, message: str, *, at: datetime) -> None:
        """Note a failed run's error on the device's state: a merge of two fields, so neither
        a held lease nor the run's bookkeeping is touched. Best effort: the caller is raising
        the error itself already, which must not be replaced by this write's."""
        from google.api_core.exceptions import GoogleAPIError

        try:
            self.state_ref(device_id).set(
                {"id": device_id, "last_error": message, "last_error_at": at},
                merge=True,
                **writes(),
            )
        except GoogleAPIError as exc:
            logger.warning(
                "could not record a run's error", extra={"device_id": device_id, "error": str(exc)}
            )

    def states(self) -> list[DeviceState]:
        return [DeviceState.model_validate(s.to_dict()) for s in self._states.stream(**reads())]

    def latest_locations(self, *, limit: int, cursor: str | None = None) -> Page[Location]:
        """The newest delivered position of at most `limit` devices, by device id, after the
        device id `cursor`. A device without one is skipped, so a page may hold fewer."""
        # Only the field shown: a state document also holds up to DELIVERED_CAP fingerprints.
        query = self._states.select(["last_location"])
        snapshots, next_cursor = by_document_id(query, limit=limit, cursor=cursor)
        found = [(s.to_dict() or {}).get("last_location") for s in snapshots]
        return Page([Location.model_validate(data) for data in found if data], next_cursor)

    def acquire(
        self,
        device_id: str,
        owner: str,
        *,
        now: datetime,
        until: datetime,
        read: Versioned[DeviceState] | None = None,
        along: Writes | None = None,
    ) -> tuple[DeviceState, Lease]:
        """Take the device's lease, or `RetryLater` while another run holds it.

        Optimistic: read the state, then write it back on condition that nobody wrote it in
        between (`last_update_time`, or `create` for a first run). Two runs racing for a
        free lease: exactly one write succeeds.

        `read` is the state as the caller read it (with its own documents, in one round trip);
        `along` adds the caller's writes to the lease's commit, all applied or none. Their
        preconditions failing is `StaleRead`: the caller reads again and retries.
        """
        ref = self.state_ref(device_id)
        if read is None:
            read = Versioned.of(ref.get(**reads()), DeviceState)
        # A competing run may write between this read and our conditional write below.
        state = read.value or DeviceState(id=device_id)  # pragma: SYNCPOINT lease
        if state.lease_owner and state.lease_until and state.lease_until > now:
            raise _busy(device_id, state.lease_until, now)
        state = state.model_copy(update={"lease_owner": owner, "lease_until": until})
        batch = self._client.batch()
        if read.update_time is not None:
            # The lease fields only: re-sending the whole state (up to DELIVERED_CAP
            # fingerprints) cost more than the rest of the run.
            lease = {"lease_owner": owner, "lease_until": until}
            batch.update(ref, lease, option=unchanged_since(read.update_time))
        else:
            batch.create(ref, state.model_dump(mode="python"))
        if along is not None:
            along(batch)
        try:
            update_time = batch.commit(**writes())[0].update_time  # the lease's, added first
        except stale_errors():
            # Another run took the lease first, a write of `along` found its document changed,
            # or this commit was retried after its first attempt landed and the reply was lost:
            # then the lease (and all that came with it) is this run's already.
            taken = ref.get(**reads())
            if taken.exists and (taken.to_dict() or {}).get("lease_owner") == owner:
                update_time = taken.update_time
            elif along is not None:
                raise StaleRead(
                    f"the sync state of {device_id} or a document written with its "
                    "lease changed since it was read"
                ) from None
            else:
                raise _busy(device_id, until, now) from None
        return state, Lease(device_id, owner, update_time, state.delivered)

    def release(self, lease: Lease, state: DeviceState) -> None:
        """Give the lease back without other changes (a run that failed before pushing)."""
        from google.api_core.exceptions import FailedPrecondition

        ref = self.state_ref(lease.device_id)
        data = state.model_copy(update={"lease_owner": None, "lease_until": None})
        option = unchanged_since(lease.update_time)
        try:
            ref.update(data.model_dump(mode="python"), option=option, **writes())
        except FailedPrecondition:
            # The lease expired and another run took it (nothing to undo), or a delivery was
            # handed off under it: then the lease fields alone are given back, so the handed-off
            # delivery is not held up for the lease's ten minutes (the sweep delivers it).
            stored = ref.get(**reads())
            if stored.exists and (stored.to_dict() or {}).get("lease_owner") == lease.owner:
                free = {"lease_owner": None, "lease_until": None}
                with contextlib.suppress(FailedPrecondition):
                    ref.update(free, option=unchanged_since(stored.update_time), **writes())

    def hand_off(
        self,
        read: Versioned[DeviceState],
        entries: Sequence[OutboxEntry],
        *,
        now: datetime,
        along: Writes,
    ) -> None:
        """Store a delivery that found the device's lease held (ADR 0002): its positions in the
        outbox, the state's outbox count, `handoff_since` and `retry_at` (now, unless a backoff
        or an earlier hand-off set it: what the sweep looks for), and the caller's writes
        (claim, records), in one commit, on condition that the state did not change since `read`.

        Writing the state is what makes the lease holder's final commit fail and drain the
        outbox before it lets go (`StateChanged`); had the holder committed first, this commit
        fails instead (`StaleRead`, nothing written) and the delivery reads again, finding the
        lease free. Either way no delivery is left behind by a live holder."""
        assert read.value is not None and read.update_time is not None  # a lease was read
        batch = self._client.batch()
        if entries:
            since = read.value.handoff_since or now
            count = read.value.outbox_count + len(entries)
            retry_at = read.value.retry_at or now
            changes = {"outbox_count": count, "handoff_since": since, "retry_at": retry_at}
            batch.update(
                self.state_ref(read.value.id), changes, option=unchanged_since(read.update_time)
            )
        self._add_outcome(batch, entries, (), (), along)
        try:
            batch.commit(**writes())
        except stale_errors():
            raise StaleRead(
                f"the sync state of {read.value.id} or a document written with its hand-off "
                "changed since it was read"
            ) from None

    def due(self, *, now: datetime, limit: int) -> list[DeviceState]:
        """At most `limit` states whose outbox is due (`retry_at` passed: a backoff ended, a
        delivery was handed off), the longest due first, without their fingerprints (the
        sweep runs each device's pipeline, which reads its state). A range and an order on
        `retry_at` alone: Firestore's automatic single-field index serves it, and a state
        with nothing waiting (the field null or missing) is not in it, so an idle sweep costs
        one query answering nothing."""
        from google.cloud.firestore import FieldFilter

        query = (
            self._states.where(filter=FieldFilter("retry_at", "<=", now))
            .order_by("retry_at")
            .select([f for f in DeviceState.model_fields if f != "delivered"])
            .limit(limit)
        )
        return [_due_state(s) for s in query.stream(**reads())]

    def postpone(
        self,
        device_id: str,
        *,
        seen: datetime | None,
        retry_at: datetime,
        failures: int,
        error: str,
        at: datetime,
    ) -> None:
        """Move a due outbox's `retry_at` on (a sweep's run of it failed), count the failure
        and note its error, on condition that its `retry_at` is still `seen` and nobody wrote
        the state in between: a run that did decided already. Raw fields: an unreadable state
        is postponed too. Best effort, as `record_error`: the sweep goes on either way."""
        from google.api_core.exceptions import GoogleAPIError

        ref = self.state_ref(device_id)
        try:
            stored = ref.get(**reads())
            if not stored.exists or (stored.to_dict() or {}).get("retry_at") != seen:
                return
            changes = {"retry_at": retry_at, "failures": failures, "last_error": error,
                       "last_error_at": at}  # fmt: skip
            ref.update(changes, option=unchanged_since(stored.update_time), **writes())
        except GoogleAPIError as exc:  # FailedPrecondition included: written meanwhile
            logger.warning("could not postpone a due outbox", extra={
                "device_id": device_id, "error": str(exc)})  # fmt: skip

    def with_parked(self, *, limit: int) -> list[DeviceState]:
        """At most `limit` states of devices with parked positions (refused by Traccar again
        and again while later ones went through), without their fingerprints."""
        from google.cloud.firestore import FieldFilter

        query = (
            self._states.where(filter=FieldFilter("parked_count", ">", 0))
            .select([f for f in DeviceState.model_fields if f != "delivered"])
            .limit(limit)
        )
        return [DeviceState.model_validate(s.to_dict() or {}) for s in query.stream(**reads())]

    def outbox(self, device_id: str) -> list[OutboxEntry]:
        """The device's waiting positions, oldest position first."""
        from google.cloud.firestore import FieldFilter

        query = self._outbox.where(filter=FieldFilter("device_id", "==", device_id)).order_by(
            "location.timestamp"
        )
        return [
            OutboxEntry.model_validate(snapshot.to_dict()) for snapshot in query.stream(**reads())
        ]

    def oldest_waiting(self, device_id: str) -> OutboxEntry | None:
        """The device's oldest waiting position (one read; the `outbox` query's index)."""
        from google.cloud.firestore import FieldFilter

        query = (
            self._outbox.where(filter=FieldFilter("device_id", "==", device_id))
            .order_by("location.timestamp")
            .limit(1)
        )
        found = list(query.stream(**reads()))
        return OutboxEntry.model_validate(found[0].to_dict()) if found else None

    def summaries(self, *, limit: int) -> Page[DeviceState]:
        """At most `limit` states by device id, without their fingerprints (up to
        DELIVERED_CAP each: the status page shows counts and times, not them)."""
        query = self._states.select([f for f in DeviceState.model_fields if f != "delivered"])
        snapshots, next_cursor = by_document_id(query, limit=limit, cursor=None)
        return Page([DeviceState.model_validate(s.to_dict() or {}) for s in snapshots], next_cursor)

    def commit(
        self,
        lease: Lease,
        state: DeviceState,
        *,
        outbox_put: list[OutboxEntry],
        outbox_delete: list[str],
        push_log: list[PushLogEntry],
        along: Writes | None = None,
    ) -> None:
        """Write a run's outcome at once; fails (`Conflict`) if the lease was lost meanwhile.

        `along` adds the caller's writes (a webhook marking its claim done), applied with the
        outcome or not at all."""
        from google.api_core.exceptions import FailedPrecondition, NotFound

        batch = self._client.batch()
        released = state.model_copy(update={"lease_owner": None, "lease_until": None})
        ref = self.state_ref(lease.device_id)
        batch.update(
            ref,
            _state_changes(released, lease.delivered),
            option=unchanged_since(lease.update_time),
        )
        self._add_outcome(batch, outbox_put, outbox_delete, push_log, along)
        try:
            batch.commit(**writes())
        except (FailedPrecondition, NotFound):
            stored = ref.get(**reads())
            if not stored.exists:
                raise Conflict(
                    f"the sync state of {lease.device_id} vanished during the run (was the "
                    "database reset?); what was pushed is pushed again by the next run"
                ) from None
            # A retried commit whose first attempt landed (the reply was lost) finds the state
            # changed by itself: the run is done. A state changed under a lease still held is a
            # delivery handed off meanwhile. Anything else means the lease was lost.
            if _written(stored, released):
                return
            current = DeviceState.model_validate(stored.to_dict())
            if current.lease_owner == lease.owner:
                raise StateChanged(
                    f"the sync state of {lease.device_id} changed under the run's lease",
                    state=current,
                    update_time=stored.update_time,
                ) from None
            raise Conflict(
                f"the sync lease of {lease.device_id} expired before the run ended"
            ) from None

    def _add_outcome(
        self,
        batch: firestore.WriteBatch,
        outbox_put: Sequence[OutboxEntry],
        outbox_delete: Sequence[str],
        push_log: Sequence[PushLogEntry],
        along: Writes | None,
    ) -> None:
        """A run's outcome besides its state: outbox changes, push log, a webhook's writes."""
        for entry in outbox_put:
            batch.set(self._outbox.document(document_id(entry.id)), entry.model_dump(mode="python"))
        for entry_id in outbox_delete:
            batch.delete(self._outbox.document(document_id(entry_id)))
        for log in push_log:
            batch.set(self._push_log.document(), log.model_dump(mode="python"))
        if along is not None:
            along(batch)

    def record(
        self,
        lease: Lease,
        state: DeviceState,
        *,
        outbox_put: Sequence[OutboxEntry] = (),
        outbox_delete: Sequence[str] = (),
        push_log: Sequence[PushLogEntry] = (),
        along: Writes | None = None,
    ) -> None:
        """The smaller write of a run whose final commit failed for good (issue 12): `state`'s
        bookkeeping fields only (never `last_location`, which holds a source's attributes and
        may be what Firestore refused), the lease released, and what else the caller still
        hopes to keep. Fails (`Conflict`) if the lease was lost meanwhile, as `commit` does."""
        from google.api_core.exceptions import FailedPrecondition, NotFound

        released = state.model_copy(update={"lease_owner": None, "lease_until": None})
        data = _state_changes(released, lease.delivered)
        data.pop("last_location", None)  # the stored one stays
        batch = self._client.batch()
        ref = self.state_ref(lease.device_id)
        batch.update(ref, data, option=unchanged_since(lease.update_time))
        self._add_outcome(batch, outbox_put, outbox_delete, push_log, along)
        try:
            batch.commit(**writes())
        except (FailedPrecondition, NotFound):
            stored = ref.get(**reads())
            if not stored.exists or not _written(stored, released):
                raise Conflict(
                    f"the sync lease of {lease.device_id} was lost before its outcome was recorded"
                ) from None

    def push_log(
        self, *, device_id: str | None, limit: int, start_after: str | None = None
    ) -> tuple[list[PushLogEntry], str | None]:
        """Newest attempts first; returns the page and the cursor of the next one (or None)."""
        from google.cloud import firestore

        query: firestore.Query | firestore.CollectionReference = self._push_log
        if device_id is not None:
            # A filter value longer than Firestore indexes (1500 bytes) is refused by the
            # server (a 500 here); any device id is a document id, so it is checked as one.
            query = query.where(
                filter=firestore.FieldFilter("device_id", "==", document_id(device_id))
            )
        query = query.order_by("attempted_at", direction=firestore.Query.DESCENDING)
        if start_after is not None:
            cursor = self._push_log.document(document_id(start_after)).get(**reads())
            if not cursor.exists:
                raise BadRequest(f"unknown cursor: {start_after!r}")
            query = query.start_after(cursor)
        snapshots = list(query.limit(limit + 1).stream(**reads()))
        page = snapshots[:limit]
        next_cursor = page[-1].id if len(snapshots) > limit else None
        return [PushLogEntry.model_validate(s.to_dict()) for s in page], next_cursor


def _due_state(snapshot: firestore.DocumentSnapshot) -> DeviceState:
    """A due state as the sweep lists it; one the model refuses (written by hand, or by a
    version that stored it otherwise) is listed by its id and due time alone, so the sweep
    tries its run, which fails alone and is put back (`postpone`): one bad document must not
    fail every sweep's query."""
    from pydantic import ValidationError

    data = snapshot.to_dict() or {}
    try:
        return DeviceState.model_validate(data)
    except ValidationError:
        logger.warning("a due device state is unreadable", extra={"device_id": snapshot.id})
        retry_at = data.get("retry_at")
        return DeviceState(
            id=snapshot.id, retry_at=retry_at if isinstance(retry_at, datetime) else None
        )


def _state_changes(state: DeviceState, stored: dict[str, int]) -> dict[str, object]:
    """The update turning a state document that holds `stored` fingerprints into `state`.

    Every field but `delivered` is sent whole; of `delivered`, only the fingerprints added or
    pruned, as field paths (a run changes a handful of the up to `DELIVERED_CAP`): encoding
    and indexing the whole map on every run made a run's time grow with the history. A large
    change (a window pruned at once) replaces the map, keeping the update mask small.
    """
    from google.cloud.firestore import DELETE_FIELD
    from google.cloud.firestore_v1.field_path import FieldPath

    data: dict[str, object] = state.model_dump(mode="python", exclude={"delivered"})
    added = {fp: ts for fp, ts in state.delivered.items() if stored.get(fp) != ts}
    pruned = stored.keys() - state.delivered.keys()
    if len(added) + len(pruned) > MAX_FIELD_CHANGES:
        data["delivered"] = state.delivered
        return data
    for fingerprint, timestamp in added.items():
        data[FieldPath("delivered", fingerprint).to_api_repr()] = timestamp
    for fingerprint in pruned:
        data[FieldPath("delivered", fingerprint).to_api_repr()] = DELETE_FIELD
    return data


def _written(snapshot: firestore.DocumentSnapshot, state: DeviceState) -> bool:
    """Whether the stored state is `state` as a run's final write left it."""
    stored = DeviceState.model_validate(snapshot.to_dict())
    return (
        stored.lease_owner is None
        and stored.last_sync == state.last_sync
        and stored.delivered == state.delivered
    )


def _busy(device_id: str, until: datetime, now: datetime) -> RetryLater:
    seconds = max(1, int((until - now).total_seconds()))
    return RetryLater(f"a sync of {device_id} is running", retry_after=seconds)
