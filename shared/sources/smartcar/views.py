"""The API's Smartcar views (seed 003): the vehicles, and one vehicle's latest signals."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime

from shared.errors import NotFound
from shared.models import Model
from shared.runtime import Runtime
from shared.sources.smartcar.records import SignalEntry, SmartcarStore


class VehicleView(Model):
    id: str
    make: str | None
    model: str | None
    year: int | None
    user_id: str | None
    traccar_unique_id: str | None
    connected_at: AwareDatetime | None
    last_event_at: AwareDatetime | None
    last_error: list[dict[str, Any]] | None
    last_error_at: AwareDatetime | None
    signals: list[str]


class LatestSignals(Model):
    vehicle_id: str
    signals: list[SignalEntry]


def list_vehicles(runtime: Runtime) -> list[VehicleView]:
    return [
        VehicleView(
            **vehicle.model_dump(exclude={"signals"}),
            signals=sorted(vehicle.signals),
        )
        for vehicle in SmartcarStore(runtime.firestore_client).vehicles()
    ]


def latest_signals(runtime: Runtime, vehicle_id: str) -> LatestSignals:
    vehicle = SmartcarStore(runtime.firestore_client).vehicle(vehicle_id)
    if vehicle is None:
        raise NotFound(f"unknown Smartcar vehicle: {vehicle_id}")
    ordered = [vehicle.signals[code] for code in sorted(vehicle.signals)]
    return LatestSignals(vehicle_id=vehicle.id, signals=ordered)
