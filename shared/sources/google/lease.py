"""The FCM lease (`state/fcm_lease`): never two MCS sessions of the account at once.

A second MCS login with the same android_id displaces the first, so two overlapping locate runs
would lose each other's answers. A run takes the lease before logging in and gives it back
after; a run that finds it held gets `RetryLater` (429 with Retry-After: Cloud Scheduler tries
again). The lease expires by itself (`until`) should a run die holding it.

The same document remembers when each device was last located (`located`): a run that a batch
located moments ago skips its own locate (`recently_located`), and the batch chooses the
devices due soon from it.

Taking it is optimistic, as the pipeline's device lease: read, then write on condition that
nobody wrote in between (`last_update_time`, or `create` for the very first run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.errors import RetryLater
from shared.store.google import FcmLease

if TYPE_CHECKING:
    from shared.store.google import LeaseDocument

logger = logging.getLogger(__name__)

# Entries older than this are dropped: no timer is longer than a day.
LOCATED_MEMORY = timedelta(days=2)


@dataclass(frozen=True)
class LeaseHold:
    owner: str
    lease: FcmLease
    update_time: datetime


class FcmLeases:
    def __init__(self, *, document: LeaseDocument) -> None:
        self._document = document

    def read(self) -> FcmLease:
        return self._document.read().value or FcmLease()

    def acquire(
        self,
        owner: str,
        *,
        now: datetime,
        until: datetime,
        skip_device: str | None = None,
        skip_within: timedelta = timedelta(0),
    ) -> LeaseHold | None:
        """Take the lease, or None when `skip_device` was located within `skip_within`.

        `RetryLater` while another run holds it.
        """
        read = self._document.read()
        lease = read.value or FcmLease()
        if skip_device is not None:
            located = lease.located.get(skip_device)
            if located is not None and now - located < skip_within:
                return None
        if lease.held(now):
            raise _busy(lease.until, now)  # type: ignore[arg-type]
        taken = lease.model_copy(update={"owner": owner, "until": until})
        update_time = self._document.write_if_unchanged(taken, read.update_time)
        if update_time is None:
            raise _busy(until, now)
        return LeaseHold(owner, taken, update_time)

    def release(
        self, hold: LeaseHold, *, now: datetime, located: dict[str, datetime] | None = None
    ) -> None:
        """Give the lease back, remembering which devices were located (and when)."""
        merged = {
            device: moment
            for device, moment in {**hold.lease.located, **(located or {})}.items()
            if now - moment < LOCATED_MEMORY
        }
        released = FcmLease(owner=None, until=None, located=merged)
        if self._document.write_if_unchanged(released, hold.update_time) is None:
            # It expired and another run took it meanwhile: its record wins.
            logger.warning("the FCM lease expired before the session ended")


def _busy(until: datetime, now: datetime) -> RetryLater:
    seconds = max(1, int((until - now).total_seconds()))
    return RetryLater("another Google locate (FCM session) is running", retry_after=seconds)
