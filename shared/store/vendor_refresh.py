"""`state/<vendor>_refresh` (TLINK, Smartcar): when the vendor's previous hourly refresh listed
its devices.

The refresh mails about each device first seen after that moment (`shared.device_refresh`);
none is stored before the very first refresh, which mails nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import AwareDatetime

from shared.models import Document
from shared.store.options import reads, writes

if TYPE_CHECKING:
    from google.cloud import firestore


class VendorRefreshState(Document):
    listed_at: AwareDatetime | None = None


class VendorRefreshDocument:
    """`state/<vendor>_refresh`."""

    def __init__(self, client: firestore.Client, *, vendor: str) -> None:
        self._ref = client.collection("state").document(f"{vendor}_refresh")

    def get(self) -> VendorRefreshState:
        snapshot = self._ref.get(**reads())
        data = snapshot.to_dict() if snapshot.exists else None
        return VendorRefreshState.model_validate(data or {})

    def put_listed_at(self, listed_at: datetime) -> None:
        self._ref.set({"listed_at": listed_at}, **writes())


__all__ = ["VendorRefreshDocument", "VendorRefreshState"]
