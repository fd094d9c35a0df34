"""Typed Firestore repositories: pydantic models in, pydantic models out.

One `Store` per instance wraps the instance's Firestore client (see `shared.runtime`); each
collection of SPEC.md is a `Repository` of one model, keyed by the model's `id`.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from shared.errors import BadRequest, Conflict, RetryLater
from shared.models import (
    AuthState,
    Device,
    DeviceState,
    ExcludedDevice,
    LocalJob,
    OutboxEntry,
    PushLogEntry,
    Service,
)

if TYPE_CHECKING:
    from datetime import datetime

    from google.cloud import firestore

M = TypeVar("M", bound=BaseModel)
# Adds a caller's writes to a batch that another part commits (a webhook's records to the
# lease write of its pipeline run): one atomic commit, one round trip.
Writes = Callable[["firestore.WriteBatch"], None]
# A webhook delivery's claim: "pending" from the commit that takes the device's lease (before
# the push) until the run's final commit makes it "done". A pending claim outliving its lease
# is a processing that died: the vendor's retry takes it over (`write_if_unchanged`). Claims written
# before the status existed have none: done.
ClaimStatus = Literal["pending", "done"]

# Firestore refuses "/" in an id, "." and "..", and ids of the form __x__; 1500 bytes at most.
_RESERVED_ID = re.compile(r"^__.*__$")
MAX_ID_BYTES = 1500
# Beyond this many fingerprints changed in one run, the final write replaces the whole map
# rather than listing each change in its update mask.
MAX_FIELD_CHANGES = 500
# Seconds a Firestore call may take in all, transient failures (UNAVAILABLE, ...) retried
# inside it. The client's own defaults retry for 60 s (writes) to 300 s (reads, queries): a
# request would outlive its function (webhooks time out after 30 s) and end with no answer.
# A blip is still ridden out; an outage ends the request with a clear 503 (shared.web).
FIRESTORE_DEADLINE = 5.0
RETRY_INITIAL_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


@functools.cache
def _reads() -> dict[str, Any]:
    """`retry` and `timeout` of a read: what the client retries by default, bounded."""
    from google.api_core import exceptions, retry

    transient = retry.if_exception_type(
        exceptions.ServiceUnavailable,
        exceptions.ResourceExhausted,
        exceptions.InternalServerError,
        exceptions.DeadlineExceeded,
    )
    return _options(transient)


@functools.cache
def _writes() -> dict[str, Any]:
    """`retry` and `timeout` of a write: only failures where the write did not run or may be
    repeated safely, as the client's defaults (a lost reply is dealt with by the caller)."""
    from google.api_core import exceptions, retry

    return _options(
        retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.ResourceExhausted)
    )


def _options(predicate: Any) -> dict[str, Any]:
    from google.api_core import retry

    policy = retry.Retry(
        predicate=predicate,
        initial=RETRY_INITIAL_DELAY,
        maximum=RETRY_MAX_DELAY,
        timeout=FIRESTORE_DEADLINE,
    )
    return {"retry": policy, "timeout": FIRESTORE_DEADLINE}


def document_id(value: str) -> str:
    """Check that `value` can be a Firestore document id, or raise `BadRequest`."""
    if (
        not value
        or "/" in value
        or value in {".", ".."}
        or _RESERVED_ID.match(value)
        or len(value.encode()) > MAX_ID_BYTES
    ):
        raise BadRequest(f"invalid id: {value!r}")
    return value


class StaleRead(RetryLater):
    """A conditional commit found a document written since it was read: nothing was written;
    read again and retry (429 with a short Retry-After if it ever reaches a caller)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


@functools.cache
def _stale_errors() -> tuple[type[Exception], ...]:
    """What a commit whose precondition failed raises: a create found the document, an update
    found it changed (or gone)."""
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

    return AlreadyExists, FailedPrecondition, NotFound


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A document as one read found it: its model (None: no such document) and its version.

    A later write conditioned on that version (`write_if_unchanged`) fails if anybody wrote the
    document in between: optimistic concurrency in one commit, without a transaction's
    BeginTransaction round trip.
    """

    value: M | None
    update_time: datetime | None = None

    @classmethod
    def of(cls, snapshot: firestore.DocumentSnapshot, model: type[M]) -> Versioned[M]:
        if not snapshot.exists:
            return cls(None)
        return cls(model.model_validate(snapshot.to_dict()), snapshot.update_time)


def read_all(
    client: firestore.Client, refs: Sequence[firestore.DocumentReference]
) -> list[firestore.DocumentSnapshot]:
    """The snapshots of `refs`, in their order, read in one BatchGetDocuments round trip."""
    found = {snapshot.reference.path: snapshot for snapshot in client.get_all(refs, **_reads())}
    return [found[ref.path] for ref in refs]


def unchanged_since(update_time: datetime) -> Any:
    """The precondition "nobody wrote the document since `update_time`" (a `WriteOption`)."""
    from google.cloud.firestore_v1.base_client import BaseClient

    return BaseClient.write_option(last_update_time=update_time)


def write_if_unchanged(
    batch: firestore.WriteBatch,
    ref: firestore.DocumentReference,
    read: Versioned[Any],
    data: dict[str, Any],
) -> None:
    """Add to `batch` the write of `data` as the whole document, on condition that nobody wrote
    it since `read`: a create where `read` found none. Every field of a model is in `data`
    (None included), so the update replaces each one as a `set` would."""
    if read.update_time is None:
        batch.create(ref, data)
    else:
        batch.update(ref, data, option=unchanged_since(read.update_time))


def claim_done(ref: firestore.DocumentReference) -> Writes:
    """The write marking a delivery's claim done, for its run's final commit."""

    def add(batch: firestore.WriteBatch) -> None:
        batch.update(ref, {"status": "done"})

    return add


def commit_if_unchanged(
    client: firestore.Client,
    writes: Writes,
    *,
    claim: tuple[firestore.DocumentReference, str] | None = None,
) -> None:
    """Commit `writes` in one batch; `StaleRead` (nothing written) if a precondition failed.

    `claim`, a webhook delivery's claim document that `writes` create (or take over) and its
    owner, tells a conflict from a commit retried after its first attempt landed with the reply
    lost: the retry then finds the claim written by this very delivery, and the commit is done.
    """
    batch = client.batch()
    writes(batch)
    try:
        batch.commit(**_writes())
    except _stale_errors() as exc:
        if claim is not None and _owned(claim[0].get(**_reads()), claim[1]):
            return
        raise StaleRead(f"written meanwhile: {exc.message}") from None


def release_claim(ref: firestore.DocumentReference, owner: str) -> None:
    """Delete a webhook delivery's claim if it is `owner`'s, so the vendor's retry is processed.

    A claim of a concurrent copy of the delivery (another owner) stays: deleting it would let a
    third copy push the position again. Read first, then deleted on condition it did not change.
    """
    snapshot = ref.get(**_reads())
    if _owned(snapshot, owner):
        with contextlib.suppress(*_stale_errors()):
            ref.delete(option=unchanged_since(snapshot.update_time), **_writes())


def _owned(snapshot: firestore.DocumentSnapshot, owner: str) -> bool:
    return snapshot.exists and (snapshot.to_dict() or {}).get("owner") == owner


class Repository(Generic[M]):
    """One collection whose documents are `model` instances keyed by their `id` field."""

    def __init__(self, client: firestore.Client, collection: str, model: type[M]) -> None:
        self._client = client
        self._collection = client.collection(collection)
        self._model = model

    def _ref(self, item_id: str) -> firestore.DocumentReference:
        return self._collection.document(document_id(item_id))

    def get(self, item_id: str) -> M | None:
        snapshot = self._ref(item_id).get(**_reads())
        return self._model.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def put(self, item: M) -> None:
        """Create or replace the document."""
        self._ref(item.id).set(item.model_dump(mode="python"), **_writes())  # type: ignore[attr-defined]

    def create(self, item: M) -> None:
        """Create the document; `Conflict` if it exists already (atomic, no read first)."""
        from google.api_core.exceptions import AlreadyExists

        try:
            self._ref(item.id).create(item.model_dump(mode="python"), **_writes())  # type: ignore[attr-defined]
        except AlreadyExists:
            raise Conflict(f"{item.id} exists already") from None  # type: ignore[attr-defined]

    def delete(self, item_id: str) -> bool:
        """Delete the document; False if there was none."""
        from google.api_core.exceptions import NotFound

        try:
            self._ref(item_id).delete(option=self._client.write_option(exists=True), **_writes())
        except NotFound:
            return False
        return True

    def list(self) -> list[M]:
        """Every document, by id."""
        return [
            self._model.model_validate(snapshot.to_dict())
            for snapshot in self._collection.order_by("id").stream(**_reads())
        ]

    def count(self) -> int:
        """Number of documents, counted by the server (one aggregation read)."""
        result = self._collection.count().get(**_reads())
        return int(result[0][0].value)


class StateRepository:
    """Singleton documents of the `state` collection, each its own model."""

    def __init__(self, client: firestore.Client) -> None:
        self._collection = client.collection("state")

    def get(self, name: str, model: type[M]) -> M | None:
        snapshot = self._collection.document(document_id(name)).get(**_reads())
        return model.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def put(self, name: str, value: BaseModel) -> None:
        self._collection.document(document_id(name)).set(
            value.model_dump(mode="python"), **_writes()
        )

    def auth(self) -> AuthState:
        """The Google credentials' state; `ok` until something says otherwise."""
        return self.get("auth", AuthState) or AuthState()


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
        snapshot = self.state_ref(device_id).get(**_reads())
        if not snapshot.exists:
            return DeviceState(id=device_id)
        return DeviceState.model_validate(snapshot.to_dict())

    def states(self) -> list[DeviceState]:
        return [DeviceState.model_validate(s.to_dict()) for s in self._states.stream(**_reads())]

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
            read = Versioned.of(ref.get(**_reads()), DeviceState)
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
            update_time = batch.commit(**_writes())[0].update_time  # the lease's, added first
        except _stale_errors():
            # Another run took the lease first, a write of `along` found its document changed,
            # or this commit was retried after its first attempt landed and the reply was lost:
            # then the lease (and all that came with it) is this run's already.
            taken = ref.get(**_reads())
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
        # FailedPrecondition: the lease had expired and another run took it; nothing to undo.
        with contextlib.suppress(FailedPrecondition):
            ref.update(data.model_dump(mode="python"), option=option, **_writes())

    def outbox(self, device_id: str) -> list[OutboxEntry]:
        """The device's waiting positions, oldest position first."""
        from google.cloud.firestore import FieldFilter

        query = self._outbox.where(filter=FieldFilter("device_id", "==", device_id)).order_by(
            "location.timestamp"
        )
        return [
            OutboxEntry.model_validate(snapshot.to_dict()) for snapshot in query.stream(**_reads())
        ]

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
        for entry in outbox_put:
            batch.set(self._outbox.document(document_id(entry.id)), entry.model_dump(mode="python"))
        for entry_id in outbox_delete:
            batch.delete(self._outbox.document(document_id(entry_id)))
        for log in push_log:
            batch.set(self._push_log.document(), log.model_dump(mode="python"))
        if along is not None:
            along(batch)
        try:
            batch.commit(**_writes())
        except (FailedPrecondition, NotFound):
            stored = ref.get(**_reads())
            if not stored.exists:
                raise Conflict(
                    f"the sync state of {lease.device_id} vanished during the run (was the "
                    "database reset?); what was pushed is pushed again by the next run"
                ) from None
            # A retried commit whose first attempt landed (the reply was lost) finds the state
            # changed by itself: the run is done. Anything else means the lease was lost.
            if not _written(stored, released):
                raise Conflict(
                    f"the sync lease of {lease.device_id} expired before the run ended"
                ) from None

    def push_log(
        self, *, device_id: str | None, limit: int, start_after: str | None = None
    ) -> tuple[list[PushLogEntry], str | None]:
        """Newest attempts first; returns the page and the cursor of the next one (or None)."""
        from google.cloud import firestore

        query = self._push_log
        if device_id is not None:
            # A filter value longer than Firestore indexes (1500 bytes) is refused by the
            # server (a 500 here); any device id is a document id, so it is checked as one.
            query = query.where(
                filter=firestore.FieldFilter("device_id", "==", document_id(device_id))
            )
        query = query.order_by("attempted_at", direction=firestore.Query.DESCENDING)
        if start_after is not None:
            cursor = self._push_log.document(document_id(start_after)).get(**_reads())
            if not cursor.exists:
                raise BadRequest(f"unknown cursor: {start_after!r}")
            query = query.start_after(cursor)
        snapshots = list(query.limit(limit + 1).stream(**_reads()))
        page = snapshots[:limit]
        next_cursor = page[-1].id if len(snapshots) > limit else None
        return [PushLogEntry.model_validate(s.to_dict()) for s in page], next_cursor


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


class Store:
    """The collections of SPEC.md that exist so far, over one Firestore client."""

    def __init__(self, client: firestore.Client) -> None:
        self.client = client
        self.devices = Repository(client, "devices", Device)
        self.services = Repository(client, "services", Service)
        self.excluded_devices = Repository(client, "excluded_devices", ExcludedDevice)
        self.local_jobs = Repository(client, "local_jobs", LocalJob)
        self.state = StateRepository(client)
        self.delivery = DeliveryRepository(client)
