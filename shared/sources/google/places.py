"""Named places (issue 17, point 2; PROTOCOLS.md §5, "Semantic reports").

Google often reports a tracker at home only by a place name ("Home", a Nest speaker's room),
without coordinates. `NamedPlaces` records every such report (the name, the device, the time),
lists the names seen (`GET /places`), and keeps the coordinates a user gives a name
(`PUT /places/<name>`, `DELETE /places/<name>`). From then on a semantic report of that name
becomes a `Location` at those coordinates, with the attribute `place` set to the name and the
mapping's accuracy (`DEFAULT_PLACE_ACCURACY` when the user gave none), marked `valid=false` (a
pin the user set, not a fix; PROTOCOLS.md §1): it then goes through the pipeline like every
other position, ordered by time and deduplicated by its fingerprint. A name without coordinates
never reaches Traccar; the API's fresh look shows it (`SemanticLocation`).

The mappings are read only when an update carries semantic reports: a locate without any costs
no Firestore read more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from shared.errors import BadRequest, NotFound
from shared.firestore_limits import valid_text
from shared.models import Location, Model, Source
from shared.store.places import PlaceMapping, PlaceSighting

if TYPE_CHECKING:
    from shared.sources.google.decode import SemanticReport
    from shared.store.places import PlacesDocuments

DEFAULT_PLACE_ACCURACY = 30.0  # metres: a room or a house, as Google's own semantic fixes
MAX_PLACE_NAME = 200  # characters; Google's names are short labels
SEMANTIC_STATUS = "SEMANTIC"


class PlaceSpec(Model):
    """`PUT /places/<name>`'s body."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy: float | None = Field(
        None, ge=0, le=100_000, description=f"metres (default {DEFAULT_PLACE_ACCURACY:g})"
    )


class PlaceDevice(Model):
    id: str
    last_seen: int = Field(description="epoch seconds of the newest report naming the place")


class PlaceView(Model):
    """A place: the coordinates a user gave it (absent: unmapped) and who was reported there."""

    name: str
    lat: float | None = None
    lon: float | None = None
    accuracy: float | None = None
    last_seen: int | None = Field(None, description="epoch seconds, the newest of the devices")
    devices: list[PlaceDevice] = Field(default_factory=list)


class PlaceDeleted(Model):
    status: str
    name: str


class SemanticLocation(Model):
    """A report naming a place nobody mapped: shown by the fresh look, never sent to Traccar."""

    id: str
    place: str
    timestamp: int
    loc_status: str = SEMANTIC_STATUS
    is_own_report: bool | None = None


def check_name(name: str) -> str:
    """A place name as the API takes it, or `BadRequest` naming the field."""
    if not name.strip():
        raise BadRequest("name: must not be empty")
    if len(name) > MAX_PLACE_NAME:
        raise BadRequest(f"name: at most {MAX_PLACE_NAME} characters")
    if not valid_text(name):
        raise BadRequest("name: not valid UTF-8")
    return name


class NamedPlaces:
    def __init__(self, *, documents: PlacesDocuments) -> None:
        self._documents = documents

    # --- the API ----------------------------------------------------------------------------

    def views(self) -> list[PlaceView]:
        """Every name seen or mapped, by name, each with its devices (newest first)."""
        views = {
            mapping.name: PlaceView(
                name=mapping.name, lat=mapping.lat, lon=mapping.lon, accuracy=mapping.accuracy
            )
            for mapping in self._documents.mappings()
        }
        for sighting in self._documents.sightings():
            view = views.setdefault(sighting.name, PlaceView(name=sighting.name))
            view.devices.append(PlaceDevice(id=sighting.device_id, last_seen=sighting.last_seen))
        for view in views.values():
            view.devices.sort(key=lambda device: (-device.last_seen, device.id))
            view.last_seen = view.devices[0].last_seen if view.devices else None
        return [views[name] for name in sorted(views)]

    def put(self, name: str, spec: PlaceSpec) -> tuple[PlaceView, bool]:
        """Give `name` coordinates; True when it had none before."""
        accuracy = DEFAULT_PLACE_ACCURACY if spec.accuracy is None else spec.accuracy
        mapping = PlaceMapping(name=check_name(name), lat=spec.lat, lon=spec.lon, accuracy=accuracy)
        created = self._documents.put(mapping)
        view = PlaceView(name=mapping.name, lat=mapping.lat, lon=mapping.lon, accuracy=accuracy)
        return view, created

    def delete(self, name: str) -> None:
        if not self._documents.delete(check_name(name)):
            raise NotFound(f"no place named {name!r} has coordinates")

    # --- the Google source ------------------------------------------------------------------

    def resolve(
        self, device_id: str, semantic: Sequence[SemanticReport]
    ) -> tuple[list[Location], list[SemanticLocation]]:
        """The device's semantic reports: recorded, then those of a mapped name as
        `Location`s, the others as `SemanticLocation`s."""
        named = [report for report in semantic if report.name]
        if not named:
            return [], []
        newest: dict[str, int] = {}
        for report in named:
            newest[report.name] = max(newest.get(report.name, 0), report.timestamp)
        self._documents.record(
            PlaceSighting(name=name, device_id=device_id, last_seen=seen)
            for name, seen in newest.items()
        )
        mappings = {mapping.name: mapping for mapping in self._documents.mappings()}
        placed: list[Location] = []
        unmapped: list[SemanticLocation] = []
        for report in named:
            mapping = mappings.get(report.name)
            if mapping is None:
                unmapped.append(
                    SemanticLocation(
                        id=device_id,
                        place=report.name,
                        timestamp=report.timestamp,
                        is_own_report=report.is_own_report,
                    )
                )
                continue
            placed.append(
                Location(
                    id=device_id,
                    lat=mapping.lat,
                    lon=mapping.lon,
                    timestamp=report.timestamp,
                    accuracy=mapping.accuracy,
                    loc_status=SEMANTIC_STATUS,
                    is_own_report=report.is_own_report,
                    source=Source.GOOGLE,
                    # The user's coordinates for a name, not a fix: OsmAnd's `valid=false`.
                    attributes={"place": report.name, "reportType": "semantic", "valid": False},
                )
            )
        return placed, unmapped


__all__ = [
    "DEFAULT_PLACE_ACCURACY",
    "NamedPlaces",
    "PlaceDeleted",
    "PlaceDevice",
    "PlaceSpec",
    "PlaceView",
    "SemanticLocation",
    "check_name",
]
