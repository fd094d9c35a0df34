"""What a source of positions offers the pipeline."""

from __future__ import annotations

from typing import Protocol

from shared.models import Device, Location, Source


class LocationSource(Protocol):
    """A vendor whose devices the bridge can ask for their positions (pull)."""

    source: Source

    def fetch(self, device: Device) -> list[Location]:
        """The device's current positions; may be empty, never raises for "nothing new"."""
        ...
