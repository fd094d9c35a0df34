"""Stored data carries a schema version; a newer bridge migrates older data on first use.

`state/schema` holds `version` (the last step applied) and, while a migration runs, its
lease (`lease_owner`, `lease_until`). `Migrations.ensure_current()` reads it once per instance
(the runtime caches the outcome; `/health` never calls it, so its one read stays one):

- up to date: nothing more;
- behind: take the lease (a write conditioned on the version read: of two instances one
  wins), run each missing step, record each step's number as it ends (conditioned on the
  lease still being ours), release the lease;
- another instance holds a live lease: wait for it (bounded), then `RetryLater` (a 503 with
  Retry-After: the caller's retry finds the data migrated);
- a crash mid-way leaves the version at the last step that ended and a lease that expires:
  the next instance resumes there. Each step is idempotent, so the step the crash interrupted
  is simply run again.

A change a model can read with defaults (a new field, an optional one) gets no step: the
models ignore unknown fields and default missing ones (`shared.models.Document`). A step is
for what defaults cannot express. No database at all (a fresh deployment) runs the steps on
nothing and records the current version.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import RetryLater
from shared.store.options import reads, writes
from shared.store.sealed import SEALED_FIELD

if TYPE_CHECKING:
    from google.cloud import firestore

logger = logging.getLogger(__name__)

SCHEMA_DOCUMENT = "schema"  # in `state`
# Long enough for every step on a large deployment (a few queries and small batches), short
# enough that a crashed migration holds the others back only briefly.
LEASE_SECONDS = 120
WAIT_SECONDS = 20.0  # how long an instance waits for another's migration before a 503
POLL_SECONDS = 0.5
RETRY_AFTER = 5  # seconds; most migrations end well within it
MIGRATING = "a data migration is running; try again shortly"


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    run: Callable[[firestore.Client], None]


def _scrub_unsealed_tokens(client: firestore.Client) -> None:
    """0d16ee4 cached the Google and TLINK access tokens in plain text in `state/`; every
    function (the public webhooks one too) could read them. Today's code seals them and reads
    a plain one as absent, but would leave it readable until its next write: delete it."""
    for name in ("google_token", "tlink_token"):
        ref = client.collection("state").document(name)
        snapshot = ref.get(**reads())
        if snapshot.exists and SEALED_FIELD not in (snapshot.to_dict() or {}):
            # Conditioned on the version read: a sealed token written meanwhile is kept.
            option = client.write_option(last_update_time=snapshot.update_time)
            try:
                ref.delete(option=option, **writes())
            except _stale_errors():
                pass


# The registry: append only, numbers strictly increasing. A step must be idempotent.
STEPS: tuple[Step, ...] = (Step(1, "scrub unsealed vendor tokens", _scrub_unsealed_tokens),)
CURRENT_VERSION = STEPS[-1].version


def _stale_errors() -> tuple[type[Exception], ...]:
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

    return (AlreadyExists, FailedPrecondition, NotFound)


class Migrations:
    """Brings the database to `CURRENT_VERSION` (see the module docstring)."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        steps: tuple[Step, ...] = STEPS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wait_seconds: float = WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._ref = client.collection("state").document(SCHEMA_DOCUMENT)
        self._steps = steps
        self._clock = clock
        self._wait = wait_seconds
        self._sleep = sleep

    @property
    def current(self) -> int:
        return self._steps[-1].version if self._steps else 0

    def version(self) -> int:
        snapshot = self._ref.get(**reads())
        return int((snapshot.to_dict() or {}).get("version", 0)) if snapshot.exists else 0

    def ensure_current(self) -> int:
        """Migrate if needed; the version the database is at afterwards."""
        deadline = time.monotonic() + self._wait
        while True:
            snapshot = self._ref.get(**reads())
            data = (snapshot.to_dict() or {}) if snapshot.exists else {}
            version = int(data.get("version", 0))
            if version >= self.current:
                if version > self.current:
                    # A rollback to an older bridge: it reads newer data with its defaults.
                    logger.warning("stored schema %d is newer than this code's %d", version,
                                   self.current)  # fmt: skip
                return version
            until = data.get("lease_until")
            if until is not None and until > self._clock() and data.get("lease_owner"):
                if time.monotonic() >= deadline:
                    raise RetryLater(MIGRATING, retry_after=RETRY_AFTER)
                self._sleep(POLL_SECONDS)
                continue
            owner = uuid.uuid4().hex
            taken = self._take(snapshot, version, owner)
            if taken is None:
                continue  # another instance took it between our read and our write
            return self._run(version, owner, taken)

    def _take(
        self, snapshot: firestore.DocumentSnapshot, version: int, owner: str
    ) -> Any:  # the write's update time (a protobuf Timestamp), or None
        lease = {
            "version": version,
            "lease_owner": owner,
            "lease_until": self._clock() + timedelta(seconds=LEASE_SECONDS),
        }
        try:
            if snapshot.exists:
                option = self._client.write_option(last_update_time=snapshot.update_time)
                result = self._ref.update(lease, option=option, **writes())
            else:
                result = self._ref.create(lease, **writes())
        except _stale_errors():
            return None
        return result.update_time

    def _run(self, version: int, owner: str, update_time: Any) -> int:
        for step in self._steps:
            if step.version <= version:
                continue
            logger.info("migrating stored data to schema %d: %s", step.version, step.name)
            step.run(self._client)
            option = self._client.write_option(last_update_time=update_time)
            changes: dict[str, object] = {"version": step.version}
            if step is self._steps[-1]:
                changes.update(lease_owner=None, lease_until=None)
            try:
                update_time = self._ref.update(changes, option=option, **writes()).update_time
            except _stale_errors():
                # Our lease ran out and somebody else took over: they finish the job.
                raise RetryLater(MIGRATING, retry_after=RETRY_AFTER) from None
            version = step.version
        return version
