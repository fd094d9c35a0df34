"""The FCM lease (`state/fcm_lease`): never two MCS sessions of the account at once.

A second MCS login with the same android_id displaces the first, so two overlapping locate runs
would lose each other's answers. A run takes the lease before logging in and gives it back
after; a run that finds it held gets `RetryLater` (429 with Retry-After: Cloud Scheduler tries
again). The lease expires by itself (`until`) should a run die holding it.

The same document remembers when each device was last located (`located`): a run that a batch
located moments ago skips its own locate (`recently_located`), and the batch chooses the
devices due soon from it.

It also remembers the trackers that gave no answer (`silent`, issue 14 point 7): each silent
session costs a whole FCM wait, so such a tracker is not located again before
`SILENT_BACKOFF_BASE`, then twice that, and so on up to `silent_backoff_max`
(`GOOGLE_SILENT_BACKOFF_MAX`), until it answers; its own runs meanwhile skip the locate as if
a batch had located it, and no batch takes it along.

Taking it is optimistic, as the pipeline's device lease: read, then write on condition that
nobody wrote in between (`last_update_time`, or `create` for the very first run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.errors import RetryLater
from shared.store.google import FcmLease, SilentTracker

if TYPE_CHECKING:
    from shared.store.google import LeaseDocument

logger = logging.getLogger(__name__)

# Entries older than this are dropped: no timer is longer than a day.
LOCATED_MEMORY = timedelta(days=2)
SILENT_BACKOFF_BASE = timedelta(minutes=10)
DEFAULT_SILENT_BACKOFF_MAX = timedelta(hours=6)


def silent_backoff(misses: int, maximum: timedelta) -> timedelta:
    return min(maximum, SILENT_BACKOFF_BASE * 2 ** max(0, misses - 1))


@dataclass(frozen=True)
class LeaseHold:
    owner: str
    lease: FcmLease
    update_time: datetime


class FcmLeases:
    def __init__(
        self, *, document: LeaseDocument, silent_backoff_max: timedelta = DEFAULT_SILENT_BACKOFF_MAX
    ) -> None:
        self._document = document
        self._silent_backoff_max = silent_backoff_max

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
        """Take the lease, or None when `skip_device` was located within `skip_within` or is
        a silent tracker whose backoff runs.

        `RetryLater` while another run holds it.
        """
        read = self._document.read()
        lease = read.value or FcmLease()
        if skip_device is not None:
            located = lease.located.get(skip_device)
            if located is not None and now - located < skip_within:
                return None
            if lease.backing_off(skip_device, now):
                return None
        if lease.held(now):
            raise _busy(lease.until, now)  # type: ignore[arg-type]
        taken = lease.model_copy(update={"owner": owner, "until": until})
        update_time = self._document.write_if_unchanged(taken, read.update_time)
        if update_time is None:
            raise _busy(until, now)
        return LeaseHold(owner, taken, update_time)

    def release(
        self,
        hold: LeaseHold,
        *,
        now: datetime,
        located: dict[str, datetime] | None = None,
        silent: Iterable[str] = (),
    ) -> None:
        """Give the lease back, remembering which devices were located (and when), and which
        gave no answer (their backoff moves on; one that answered leaves the list)."""
        merged = {
            device: moment
            for device, moment in {**hold.lease.located, **(located or {})}.items()
            if now - moment < LOCATED_MEMORY
        }
        still_silent = {
            device: state
            for device, state in hold.lease.silent.items()
            if device not in (located or {}) and now - state.until < LOCATED_MEMORY
        }
        for device in silent:
            previous = still_silent.get(device)
            misses = previous.misses + 1 if previous is not None else 1
            still_silent[device] = SilentTracker(
                misses=misses, until=now + silent_backoff(misses, self._silent_backoff_max)
            )
        released = FcmLease(owner=None, until=None, located=merged, silent=still_silent)
        if self._document.write_if_unchanged(released, hold.update_time) is None:
            # It expired and another run took it meanwhile: its record wins.
            logger.warning("the FCM lease expired before the session ended")


def _busy(until: datetime, now: datetime) -> RetryLater:
    seconds = max(1, int((until - now).total_seconds()))
    return RetryLater("another Google locate (FCM session) is running", retry_after=seconds)
