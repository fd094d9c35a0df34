"""Smartcar's webhook deliveries as pydantic models: vendor field names kept, extra ignored.

Smartcar has shipped several envelope versions (PROTOCOLS.md §3). The models accept all of them:
the current 4.0 shape (`data.triggers`, `meta.deliveredAt`), the older 3.0 shape (`triggers` at
the top level, `meta.retrievedAt`), signal bodies with `value` or `percentage`, and times as
epoch milliseconds, epoch seconds or ISO-8601 strings (Smartcar's own examples use all three).
VERIFY is recognised in its 4.0 form (`eventType: VERIFY`, `data.challenge`) and its legacy 2.0
form (`eventName: verify`, `payload.challenge`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import BadRequest
from shared.web import describe_validation_error

VERIFY = "VERIFY"
VEHICLE_STATE = "VEHICLE_STATE"
VEHICLE_ERROR = "VEHICLE_ERROR"

# Below this an epoch number is in seconds, above it in milliseconds (10^11 s is year 5138).
_MILLISECONDS_FROM = 100_000_000_000


class Vendor(BaseModel):
    """Base of Smartcar's shapes: unknown fields (newer versions) are ignored."""

    model_config = ConfigDict(extra="ignore")


Moment = int | float | str


def epoch_seconds(moment: Moment | None) -> int | None:
    """A Smartcar time (epoch ms, epoch s or ISO-8601) in whole epoch seconds; None if unusable."""
    if moment is None or isinstance(moment, bool):
        return None
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return None
        # Smartcar's times are UTC: one without a zone is read as UTC, never as local time.
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
    if moment < 0 or not math.isfinite(moment):
        return None
    return int(moment // 1000) if moment >= _MILLISECONDS_FROM else int(moment)


class SignalMeta(Vendor):
    oemUpdatedAt: Moment | None = None
    fetchedAt: Moment | None = None
    retrievedAt: Moment | None = None


class SignalError(Vendor):
    type: str | None = None
    code: str | None = None


class SignalStatus(Vendor):
    value: str | None = None
    error: SignalError | None = None


class Signal(Vendor):
    """One signal; a failed one has no `body` but a `status.error`."""

    code: str = Field(min_length=1, max_length=200)
    name: str | None = None
    group: str | None = None
    body: dict[str, Any] | None = None
    status: SignalStatus | None = None
    meta: SignalMeta = Field(default_factory=SignalMeta)

    def measured_at(self) -> int | None:
        """When the vehicle measured it (epoch seconds): the OEM's time, else when fetched."""
        for moment in (self.meta.oemUpdatedAt, self.meta.fetchedAt, self.meta.retrievedAt):
            seconds = epoch_seconds(moment)
            if seconds is not None:
                return seconds
        return None

    def failure(self) -> str:
        """What went wrong with a signal without body, for logs and the latest-signals view."""
        error = self.status.error if self.status else None
        if error is None:
            return "no body"
        return ":".join(part for part in (error.type, error.code) if part) or "error"


class UserRef(Vendor):
    id: str | None = None


class VehicleRef(Vendor):
    id: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None


class EventData(Vendor):
    user: UserRef | None = None
    vehicle: VehicleRef | None = None
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)  # VEHICLE_ERROR


class DeliveryMeta(Vendor):
    version: str | None = None
    deliveryId: str | None = None
    deliveredAt: Moment | None = None
    retrievedAt: Moment | None = None
    webhookId: str | None = None
    webhookName: str | None = None
    signalCount: int | None = None
    mode: str | None = None


class Event(Vendor):
    """A signed delivery: VEHICLE_STATE, VEHICLE_ERROR, or a type this bridge does not know."""

    eventId: str = Field(min_length=1, max_length=500)
    eventType: str = Field(min_length=1, max_length=100)
    vehicleId: str | None = None
    data: EventData = Field(default_factory=EventData)
    triggers: list[dict[str, Any]] = Field(default_factory=list)  # 3.0 shape: top level
    meta: DeliveryMeta = Field(default_factory=DeliveryMeta)

    @property
    def vehicle_id(self) -> str | None:
        return self.vehicleId or (self.data.vehicle.id if self.data.vehicle else None)

    @property
    def user_id(self) -> str | None:
        return self.data.user.id if self.data.user else None

    def delivered_at(self) -> int | None:
        """When Smartcar sent (4.0) or retrieved (3.0) the data, in epoch seconds."""
        return epoch_seconds(self.meta.deliveredAt) or epoch_seconds(self.meta.retrievedAt)


class _Challenge(Vendor):
    challenge: str = Field(min_length=1, max_length=10_000)


class _VerifyV4(Vendor):
    data: _Challenge


class _VerifyV2(Vendor):
    payload: _Challenge


def verify_challenge(document: object) -> str | None:
    """The challenge when `document` is a VERIFY delivery (4.0 or 2.0), else None."""
    if not isinstance(document, dict):
        return None
    try:
        if document.get("eventType") == VERIFY:
            return _VerifyV4.model_validate(document).data.challenge
        if document.get("eventName") == "verify":
            return _VerifyV2.model_validate(document).payload.challenge
    except ValidationError as exc:
        raise BadRequest(f"VERIFY delivery: {describe_validation_error(exc)}") from None
    return None


def parse_event(document: object) -> Event:
    """A signed delivery as an `Event`, or `BadRequest` naming what is wrong."""
    if not isinstance(document, dict):
        raise BadRequest("body: expected a JSON object")
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None
