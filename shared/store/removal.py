"""What the bridge stores about one device, found and deleted (`DELETE /devices/<id>`, issue 20).

    devices/<id>                 the device itself
    device_state/<id>            its delivery state (lease, fingerprints, last run)
    outbox/*                     its waiting positions (`device_id`)
    smart_tracking/<id>          Google smart tracking's saved timer
    smartcar_vehicles/<id>       a Smartcar vehicle's latest signals
    tlink_devices/<n>            a TLINK device's latest sensor values (`tlink-<n>`)
    tlink_readings/*             its readings (`device_id` == n)
    place_sightings/*            the named places a Google device was reported at (`device_id`:
                                 its own only; a place's mapping, `places/*`, is everyone's)

The push log is left to its TTL (`expire_at`): it is the record of what was sent, and a query
over it by device would need an index of its own. The exclusion list is left alone too: an
excluded Google device stays excluded, so the next refresh does not bring it back.

Queries read ids only (`select([])`) and deletes go in batches of `BATCH` (Firestore allows 500
writes per commit): a device with a long reading history is removed in a few round trips, and
a removal that dies halfway is finished by running it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.store.options import reads, writes
from shared.store.places import PLACE_SIGHTINGS
from shared.store.repository import document_id

if TYPE_CHECKING:
    from google.cloud import firestore

BATCH = 400


class DeviceRecords:
    """Deletes every document the bridge keeps about one device (see the module)."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def forget(self, device_id: str, *, tlink_device: int | None = None) -> dict[str, int]:
        """Delete the device's documents; returns how many of each kind existed (by name)."""
        from google.cloud.firestore import FieldFilter

        key = document_id(device_id)
        outbox = self._client.collection("outbox").where(filter=FieldFilter("device_id", "==", key))
        removed = {
            "outbox": self._delete_query(outbox),
            # `GET /places` names the devices seen at each place: a removed one no longer.
            "place_sightings": self._delete_query(
                self._client.collection(PLACE_SIGHTINGS).where(
                    filter=FieldFilter("device_id", "==", key)
                )
            ),
        }
        single = {
            "device_state": self._client.collection("device_state").document(key),
            "smart_tracking": self._client.collection("smart_tracking").document(key),
            "smartcar_vehicle": self._client.collection("smartcar_vehicles").document(key),
        }
        if tlink_device is not None:
            readings = self._client.collection("tlink_readings").where(
                filter=FieldFilter("device_id", "==", tlink_device)
            )
            removed["readings"] = self._delete_query(readings)
            single["tlink_device"] = self._client.collection("tlink_devices").document(
                str(tlink_device)
            )
        # The device last: while it exists, a removal that failed halfway can be run again.
        single["device"] = self._client.collection("devices").document(key)
        found = self._client.get_all(list(single.values()), **reads())
        existing = {snapshot.reference.path for snapshot in found if snapshot.exists}
        batch = self._client.batch()
        for name, ref in single.items():
            removed[name] = int(ref.path in existing)
            if ref.path in existing:
                batch.delete(ref)
        if existing:
            batch.commit(**writes())
        # Again once the state is gone: a webhook handed off to the device between the first
        # outbox query and the state's delete added entries (its write's condition on the
        # state held); after the delete, a hand-off's condition fails, so none comes later.
        removed["outbox"] += self._delete_query(outbox)
        return removed

    def _delete_query(self, query: firestore.Query) -> int:
        """Delete what `query` finds, `BATCH` at a time; returns how many."""
        deleted = 0
        while True:
            snapshots = list(query.select([]).limit(BATCH).stream(**reads()))
            if not snapshots:
                return deleted
            batch = self._client.batch()
            for snapshot in snapshots:
                batch.delete(snapshot.reference)
            batch.commit(**writes())
            deleted += len(snapshots)
