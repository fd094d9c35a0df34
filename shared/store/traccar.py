"""Whether Traccar's REST API took the bridge's credentials, kept in `state/auth`.

One field, `traccar_api` (`{"status": "unauthorized", "reason", "since"}`, absent or `ok` when
it works), beside Google's credentials' state and the services' count: `/health` still reads
one document. Written by field path with a precondition on the document's last update, so that
of runs meeting the same refusal exactly one learns it changed the state (and notifies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.models import AuthState, utc_now
from shared.store.claims import stale_errors, unchanged_since
from shared.store.options import reads, writes
from shared.store.repository import TRACCAR_API_FIELD, traccar_api_status

if TYPE_CHECKING:
    from google.cloud import firestore

AUTH_DOCUMENT = "auth"


class TraccarApiMark:
    """`state/auth`'s `traccar_api` field."""

    def __init__(self, client: firestore.Client) -> None:
        self._ref = client.collection("state").document(AUTH_DOCUMENT)

    def status(self) -> str:
        snapshot = self._ref.get(**reads())
        return traccar_api_status(snapshot.to_dict() if snapshot.exists else None)

    def mark(self, status: str, reason: str = "") -> bool:
        """Set the status; True only for the call that changed it."""
        snapshot = self._ref.get(**reads())
        if traccar_api_status(snapshot.to_dict() if snapshot.exists else None) == status:
            return False
        value = {"status": status, "reason": reason, "since": utc_now()}
        try:
            if snapshot.exists:
                self._ref.update(
                    {TRACCAR_API_FIELD: value},
                    option=unchanged_since(snapshot.update_time),
                    **writes(),
                )
            else:
                # A complete document, so that its other readers find every field.
                data = {**AuthState().model_dump(mode="python"), TRACCAR_API_FIELD: value}
                self._ref.create(data, **writes())
        except stale_errors():
            return False  # another run changed it meanwhile: that run reports it
        return True
