"""Named places (issue 17, point 2): the names Google's semantic reports carried, and the
coordinates a user gave some of them.

- `places/<key>`: a `PlaceMapping`, a name the user placed (`PUT /places/<name>`);
- `place_sightings/<key>`: a `PlaceSighting`, the last time a device was reported at a name.

A place name is free text ("Home", a speaker's room: any character, any length Google sends),
so documents are keyed by a digest of it (`place_key`), never by the name: no name can be an
id Firestore refuses. Both collections stay small (a household's rooms times its trackers), and
every listing reads at most `MAX_PLACES` documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import Field

from shared.models import Document
from shared.store.options import reads, writes

if TYPE_CHECKING:
    from google.cloud import firestore

PLACES = "places"
PLACE_SIGHTINGS = "place_sightings"
# Far beyond a household's places; a bound on what one listing or one locate may read.
MAX_PLACES = 1000


class PlaceMapping(Document):
    """Where a named place is: its semantic reports reach Traccar at these coordinates."""

    name: str = Field(min_length=1)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy: float = Field(ge=0, description="metres")


class PlaceSighting(Document):
    """A device reported at a named place; `last_seen` is the newest report's time."""

    name: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    last_seen: int = Field(ge=0, description="epoch seconds")


def place_key(*parts: str) -> str:
    """A document id for a name (and a device): a digest, valid whatever the name holds."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class PlacesDocuments:
    """The two collections over the instance's client."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._places = client.collection(PLACES)
        self._sightings = client.collection(PLACE_SIGHTINGS)

    def mappings(self) -> list[PlaceMapping]:
        snapshots = self._places.limit(MAX_PLACES).stream(**reads())
        return [PlaceMapping.model_validate(s.to_dict()) for s in snapshots]

    def put(self, mapping: PlaceMapping) -> bool:
        """Create or replace the mapping of `mapping.name`; True when it is new."""
        ref = self._places.document(place_key(mapping.name))
        existed = ref.get(**reads()).exists
        ref.set(mapping.model_dump(mode="python"), **writes())
        return not existed

    def delete(self, name: str) -> bool:
        """Remove the mapping of `name`; False when there was none."""
        from google.api_core.exceptions import NotFound

        ref = self._places.document(place_key(name))
        try:
            ref.delete(option=self._client.write_option(exists=True), **writes())
        except NotFound:
            return False
        return True

    def sightings(self) -> list[PlaceSighting]:
        snapshots = self._sightings.limit(MAX_PLACES).stream(**reads())
        return [PlaceSighting.model_validate(s.to_dict()) for s in snapshots]

    def record(self, sightings: Iterable[PlaceSighting]) -> None:
        """Record each sighting, in one commit. A report older than the one recorded may
        overwrite it (Google sends a device's reports newest last, so this is rare and
        corrected by the next locate): not worth a read per sighting."""
        batch = self._client.batch()
        written = False
        for sighting in sightings:
            ref = self._sightings.document(place_key(sighting.name, sighting.device_id))
            batch.set(ref, sighting.model_dump(mode="python"))
            written = True
        if written:
            batch.commit(**writes())


__all__ = [
    "MAX_PLACES",
    "PLACES",
    "PLACE_SIGHTINGS",
    "PlaceMapping",
    "PlaceSighting",
    "PlacesDocuments",
    "place_key",
]
