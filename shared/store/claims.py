"""Conditional commits and the webhook claim protocol (docs/decisions/0002-delivery-state.md).

A webhook delivery is claimed in the commit that takes its device's lease and marked done by
the run's final commit; a pending claim outliving its lease is a processing that died, and the
vendor's retry takes it over.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import RetryLater
from shared.store import options

if TYPE_CHECKING:
    from datetime import datetime

    from google.cloud import firestore

    from shared.store.repository import Versioned

# Adds a caller's writes to a batch that another part commits (a webhook's records to the
# lease write of its pipeline run): one atomic commit, one round trip.
Writes = Callable[["firestore.WriteBatch"], None]
# A webhook delivery's claim: "pending" from the commit that takes the device's lease (before
# the push) until the run's final commit makes it "done". A pending claim outliving its lease
# is a processing that died: the vendor's retry takes it over (`write_if_unchanged`). Claims written
# before the status existed have none: done.
ClaimStatus = Literal["pending", "done"]


class StaleRead(RetryLater):
    """A conditional commit found a document written since it was read: nothing was written;
    read again and retry (429 with a short Retry-After if it ever reaches a caller)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


@functools.cache
def stale_errors() -> tuple[type[Exception], ...]:
    """What a commit whose precondition failed raises: a create found the document, an update
    found it changed (or gone)."""
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

    return AlreadyExists, FailedPrecondition, NotFound


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
        batch.commit(**options.writes())
    except stale_errors() as exc:
        if claim is not None and _owned(claim[0].get(**options.reads()), claim[1]):
            return
        raise StaleRead(f"written meanwhile: {getattr(exc, 'message', exc)}") from None


def release_claim(ref: firestore.DocumentReference, owner: str) -> None:
    """Delete a webhook delivery's claim if it is `owner`'s, so the vendor's retry is processed.

    A claim of a concurrent copy of the delivery (another owner) stays: deleting it would let a
    third copy push the position again. Read first, then deleted on condition it did not change.
    """
    snapshot = ref.get(**options.reads())
    if _owned(snapshot, owner):
        with contextlib.suppress(*stale_errors()):
            ref.delete(option=unchanged_since(snapshot.update_time), **options.writes())


def _owned(snapshot: firestore.DocumentSnapshot, owner: str) -> bool:
    return snapshot.exists and (snapshot.to_dict() or {}).get("owner") == owner
