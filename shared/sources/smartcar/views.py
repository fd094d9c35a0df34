"""The API's Smartcar views (seed 003): the vehicles, and one vehicle's latest signals."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime

from shared.errors import NotFound
from shared.models import Model
from shared.store.smartcar import SignalEntry, SmartcarStore


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


class SmartcarViews:
    def __init__(self, *, store: SmartcarStore) -> None:
        self._store = store

    def vehicles(self) -> list[VehicleView]:
        return [
            VehicleView(
                **vehicle.model_dump(exclude={"signals"}),
                signals=sorted(vehicle.signals),
            )
            for vehicle in self._store.vehicles()
        ]

    def latest_signals(self, vehicle_id: str) -> LatestSignals:
        vehicle = self._store.vehicle(vehicle_id)
        if vehicle is None:
            raise NotFound(f"unknown Smartcar vehicle: {vehicle_id}")
        ordered = [vehicle.signals[code] for code in sorted(vehicle.signals)]
        return LatestSignals(vehicle_id=vehicle.id, signals=ordered)
