"""Pydantic models of the data that crosses a boundary: Firestore documents and API bodies.

Firestore documents are stored as `model.model_dump(mode="python")`, so datetimes stay
Firestore timestamps (always timezone-aware UTC), and read back with `Model.model_validate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.firestore_limits import MAX_ATTRIBUTE_NAME_BYTES, name_problem, valid_text


def utc_now() -> datetime:
    return datetime.now(UTC)


# Jitter is slept inside the scheduled run in the cloud (cron fires on the minute), so it is
# bounded well below sync_device's timeout; a sync timer is at least a minute anyway.
MAX_JITTER_SECONDS = 60

# How long each function may live: its `timeout_seconds` in infra/terraform/functions.tf (tests/
# infra checks they agree), counted from its request's arrival. A run's lease outlives the
# function it runs in (shared/pipeline.py); a sweep starts no run its function would kill
# between a push and its commit (shared/sync.py).
API_LIFETIME = timedelta(seconds=180)
SYNC_DEVICE_LIFETIME = timedelta(seconds=180)
REFRESH_DEVICES_LIFETIME = timedelta(seconds=300)
WEBHOOKS_LIFETIME = timedelta(seconds=30)


class Source(StrEnum):
    GOOGLE = "google"
    TLINK = "tlink"
    SMARTCAR = "smartcar"


class Model(BaseModel):
    """Base of the bridge's models: each builds its validator when first used, not at import.

    By default pydantic builds a model's validator and serializer as its class is defined;
    deferred, a cold function instance pays only for the models its first request touches
    (SPEC.md: cold start), and a model no request of the instance uses costs nothing.
    """

    model_config = ConfigDict(defer_build=True)


class Document(Model):
    """Base of the Firestore documents: unknown fields (from newer versions) are ignored."""

    model_config = ConfigDict(extra="ignore")


class Device(Document):
    """A source device: a Google tracker, a TLINK device or a Smartcar vehicle."""

    id: str = Field(min_length=1)
    source: Source
    name: str = ""
    traccar_unique_id: str = Field(min_length=1)
    model: str | None = None
    # Google's devices: "tracker" or "phone" (an Android phone of the account)
    kind: str | None = None
    # Google's devices: the account (username) that lists it; None for a device stored before
    # there were several accounts, which belongs to the first account (ADR 0004).
    account: str | None = None
    first_seen: AwareDatetime = Field(default_factory=utc_now)
    last_seen: AwareDatetime = Field(default_factory=utc_now)


class SyncResult(Document):
    """What one sync run did, as `sync_device` answers it."""

    fetched: int = 0
    new: int = 0
    pushed: int = 0
    failed: int = 0
    outbox: int = 0
    # Reports the source found and could not use (one that fails to decrypt or validate, a
    # network location without its time): one bad report costs that report only, and is
    # counted here rather than lost silently (issue 14, point 5).
    skipped: int = 0
    # Set when the run's final commit failed after its push (issue 12): what became of the
    # bookkeeping (recorded by a smaller write, or kept by the instance for its next run).
    error: str | None = None


class Service(Document):
    """A sync service: the device is synced every `timer` ± `delta` seconds."""

    id: str = Field(min_length=1)
    name: str = ""
    timer: int = Field(ge=60, le=86_400)
    delta: int = Field(ge=0, le=MAX_JITTER_SECONDS)
    job_name: str | None = None
    paused: bool = False
    # Paused by the user (`POST /devices/<id>/services/pause`), apart from the pause expired
    # Google credentials cause: new credentials resume only what they paused (issue 19).
    paused_by_user: bool = False
    # Hours without a new position before the silence alert (issue 20): None, the default.
    silent_hours: int | None = Field(None, ge=0, le=8_760)
    last_sync: AwareDatetime | None = None
    # Read from documents written before; the expected next run is `expected_next_sync`.
    next_sync: AwareDatetime | None = None
    last_result: SyncResult | None = None

    def expected_next_sync(self, last_sync: datetime | None) -> datetime | None:
        """When the device's job should run next: its last run + `timer` (the jitter of at most
        `delta` aside); None while paused or before a first run."""
        if self.paused:
            return None
        if self.next_sync is not None:
            return self.next_sync
        return last_sync + timedelta(seconds=self.timer) if last_sync else None


class ExcludedDevice(Document):
    """A device kept out of auto-registration."""

    id: str = Field(min_length=1)
    since: AwareDatetime = Field(default_factory=utc_now)


class AuthState(Document):
    """The Google credentials' state (`state/auth`): `auth_required` stops all syncs."""

    status: Literal["ok", "auth_required"] = "ok"
    since: AwareDatetime = Field(default_factory=utc_now)
    reason: str = ""
    # The Google account (username) the state is about, when known (ADR 0004).
    account: str | None = None


class LocalJob(Document):
    """A scheduler job of the local backend (`SCHEDULER_BACKEND=local`), run by the local loop."""

    id: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    timer: int = Field(ge=1)
    delta: int = Field(ge=0)
    paused: bool = False
    next_run: AwareDatetime = Field(default_factory=utc_now)
    # A "locate now" one-shot job (`LocalJobs.run_once`): its run says so, and deletes it.
    once: bool = False


def _storable_name(name: str) -> str:
    """An attribute's name is a Firestore field name inside the stored location and outbox
    entry: one Firestore refuses failed the run's final commit after the push (issue 12)."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


AttributeValue = str | int | float | bool
# Never empty, and short enough for Firestore's 1500-byte field paths
# (last_location.attributes.<name>); vendors rename theirs with firestore_limits.field_name.
AttributeName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_NAME_BYTES),
    AfterValidator(_storable_name),
]


def too_far_ahead(timestamp: float, *, now: datetime, skew: float) -> bool:
    """Whether epoch seconds `timestamp` lie more than `skew` seconds after `now`: a clock
    gone wrong or a forged date, refused at the edge (`MAX_FUTURE_SKEW`) so that it can never
    become the newest position of a device and hide the genuine ones after it."""
    return timestamp > now.timestamp() + skew


class Location(Model):
    """A normalised position from any source, as it goes to Traccar.

    `speed` is in knots and `bearing` in degrees, as OsmAnd expects; sources convert.
    `attributes` reach Traccar as extra OsmAnd parameters (position attributes).
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=1_500)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    timestamp: int = Field(ge=0, lt=2_147_483_647, description="epoch seconds")
    altitude: float | None = None
    accuracy: float | None = Field(None, ge=0)
    speed: float | None = Field(None, ge=0, description="knots")
    bearing: float | None = Field(None, ge=0, le=360)
    battery: float | None = Field(None, ge=0, le=100)
    loc_status: str | None = None
    is_own_report: bool | None = None
    source: Source | None = None
    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict)
    # A vendor's delivery id when each delivery is a position of its own (Smartcar's eventId):
    # a parked car repeats its place and time, and each delivery's readings must still reach
    # Traccar (issue 16). Part of the fingerprint, never sent to Traccar.
    delivery: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _valid_utf8(self) -> Location:
        """Firestore stores strings as UTF-8 only: a lone surrogate (JSON allows one as an
        escape) failed the commit after the push (issue 12)."""
        texts: dict[str, object] = {
            "id": self.id,
            "loc_status": self.loc_status,
            "delivery": self.delivery,
        }
        texts.update({f"attributes.{k}": v for k, v in self.attributes.items()})
        for name, value in texts.items():
            if isinstance(value, str) and not valid_text(value):
                raise ValueError(f"{name}: not valid UTF-8 (a lone surrogate)")
        return self

    def fingerprint(self) -> str:
        """The seed-compatible deduplication key: md5 of id, lat, lon, timestamp as Python
        prints them, concatenated without separators (`locations.json` of seed 000); a
        position with a `delivery` id appends it, so it is its delivery's own."""
        key = f"{self.id}{self.lat}{self.lon}{self.timestamp}"
        if self.delivery is not None:
            key += f"#{self.delivery}"
        return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


class Fetched(list[Location]):
    """What a source's fetch found: the positions (a list, as before), and how many reports
    it skipped for each device (by device id), so that the run counts them in its result
    and its push log (issue 14, point 5). A plain list is a fetch that skipped nothing.

    `writes` are the source's own records of what it fetched (a Smartcar pull's readings in
    the vehicle's record), a `shared.store.Writes` (typed loosely here: models sit below the
    store): the run adds them to its final commit, so they land with the delivery's outcome
    or not at all. Written before the push, a process dying in between would leave records
    saying the readings were had while their position was never sent."""

    def __init__(
        self,
        locations: Iterable[Location] = (),
        *,
        skipped: Mapping[str, int] | None = None,
        writes: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(locations)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.writes = writes


def skipped_of(found: Iterable[Location], device_id: str) -> int:
    """The reports `found` (a fetch's answer) skipped for `device_id`."""
    return found.skipped.get(device_id, 0) if isinstance(found, Fetched) else 0


def writes_of(found: Iterable[Location]) -> Callable[[Any], None] | None:
    """The writes `found` (a fetch's answer) has its run's final commit make."""
    return found.writes if isinstance(found, Fetched) else None


class OutboxEntry(Document):
    """A position Traccar has not accepted yet; retried, oldest first, until it is."""

    id: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    fingerprint: str
    location: Location
    attempts: int = 0
    last_error: str = ""
    next_attempt: AwareDatetime = Field(default_factory=utc_now)
    created_at: AwareDatetime = Field(default_factory=utc_now)
    parked: bool = False  # refused again and again while later positions went through
    # Its push was cut by a deadline (Traccar may have stored it late): no run, forced or not,
    # pushes the device's positions before this; the sweep then pushes it once more
    # (shared/pipeline.py, `CUT_RETRY_AFTER`).
    cut_until: AwareDatetime | None = None


class DeviceState(Document):
    """Delivery bookkeeping of one device (`device_state/<id>`), read once per run.

    `delivered` maps the fingerprints of the positions Traccar accepted in the last
    `DEDUP_WINDOW` to their timestamps: one document instead of one per fingerprint keeps a
    run's reads constant, however long the history. Positions older than `floor` count as
    delivered (they fell out of the window). The lease keeps two runs of a device apart.
    """

    id: str = Field(min_length=1)
    delivered: dict[str, int] = Field(default_factory=dict)
    floor: int = 0
    last_location: Location | None = None
    outbox_count: int = 0
    parked_count: int = 0
    failures: int = 0
    # When the positions waiting in the outbox are tried next: the backoff's end after Traccar
    # refused, or the time a delivery was handed off; None while none waits (parked ones wait
    # for a manual sync). The sweep runs each device whose time has come, oldest first.
    retry_at: AwareDatetime | None = None
    lease_owner: str | None = None
    lease_until: AwareDatetime | None = None
    last_sync: AwareDatetime | None = None
    last_result: SyncResult | None = None
    # The last failed run's error (the source's: vendor down, secret missing) and its time,
    # kept after later successes: `last_result` alone looked clean (issue 18).
    last_error: str | None = None
    last_error_at: AwareDatetime | None = None
    # Set when a webhook delivery arrived while a run held the lease and was handed off to the
    # outbox (ADR 0002); cleared once the outbox is empty. A hand-off also sets `retry_at`
    # (if unset), which the sweep looks for.
    handoff_since: AwareDatetime | None = None


class PushLogEntry(Document):
    """One push attempt, with the fields of the seed's `locations.log` line (dates ISO UTC)."""

    id: str
    lat: float
    lon: float
    timestamp: int
    loc_status: str | None = None
    name: str = ""
    date: str
    maps_url: str
    traccar_status: int | None = None
    synced_at: str
    source: Source | None = None
    error: str | None = None
    outcome: str
    device_id: str
    attempted_at: AwareDatetime
    expire_at: AwareDatetime
    # Attributes left out so that the position fit Traccar's body limit (PROTOCOLS.md §1).
    dropped_attributes: list[str] = Field(default_factory=list)
    # Reports of the same fetch the source skipped (`SyncResult.skipped`), on the entries of
    # the positions that fetch brought.
    skipped_reports: int = 0
