"""Pydantic models of the data that crosses a boundary: Firestore documents and API bodies.

Firestore documents are stored as `model.model_dump(mode="python")`, so datetimes stay
Firestore timestamps (always timezone-aware UTC), and read back with `Model.model_validate`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints


def utc_now() -> datetime:
    return datetime.now(UTC)


# Jitter is slept inside the scheduled run in the cloud (cron fires on the minute), so it is
# bounded well below sync_device's timeout; a sync timer is at least a minute anyway.
MAX_JITTER_SECONDS = 60


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
    first_seen: AwareDatetime = Field(default_factory=utc_now)
    last_seen: AwareDatetime = Field(default_factory=utc_now)


class SyncResult(Document):
    """What one sync run did, as `sync_device` answers it."""

    fetched: int = 0
    new: int = 0
    pushed: int = 0
    failed: int = 0
    outbox: int = 0


class Service(Document):
    """A sync service: the device is synced every `timer` ± `delta` seconds."""

    id: str = Field(min_length=1)
    name: str = ""
    timer: int = Field(ge=60, le=86_400)
    delta: int = Field(ge=0, le=MAX_JITTER_SECONDS)
    job_name: str | None = None
    paused: bool = False
    last_sync: AwareDatetime | None = None
    next_sync: AwareDatetime | None = None
    last_result: SyncResult | None = None


class ExcludedDevice(Document):
    """A device kept out of auto-registration."""

    id: str = Field(min_length=1)
    since: AwareDatetime = Field(default_factory=utc_now)


class AuthState(Document):
    """The Google credentials' state (`state/auth`): `auth_required` stops all syncs."""

    status: Literal["ok", "auth_required"] = "ok"
    since: AwareDatetime = Field(default_factory=utc_now)
    reason: str = ""


class LocalJob(Document):
    """A scheduler job of the local backend (`SCHEDULER_BACKEND=local`), run by the local loop."""

    id: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    timer: int = Field(ge=1)
    delta: int = Field(ge=0)
    paused: bool = False
    next_run: AwareDatetime = Field(default_factory=utc_now)


AttributeValue = str | int | float | bool
# An attribute's name is a Firestore field name inside the stored location: never empty, and
# short enough for Firestore's 1500-byte field paths (last_location.attributes.<name>).
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


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

    def fingerprint(self) -> str:
        """The seed-compatible deduplication key: md5 of id, lat, lon, timestamp as Python
        prints them, concatenated without separators (`locations.json` of seed 000)."""
        key = f"{self.id}{self.lat}{self.lon}{self.timestamp}"
        return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


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
    retry_at: AwareDatetime | None = None
    lease_owner: str | None = None
    lease_until: AwareDatetime | None = None
    last_sync: AwareDatetime | None = None
    last_result: SyncResult | None = None


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
