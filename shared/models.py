"""Pydantic models of the data that crosses a boundary: Firestore documents and API bodies.

Firestore documents are stored as `model.model_dump(mode="python")`, so datetimes stay
Firestore timestamps (always timezone-aware UTC), and read back with `Model.model_validate`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(UTC)


class Source(StrEnum):
    GOOGLE = "google"
    TLINK = "tlink"
    SMARTCAR = "smartcar"


class Document(BaseModel):
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
    delta: int = Field(ge=0, le=3_600)
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
