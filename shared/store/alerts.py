"""The operations alerts (issue 20), kept in `state/auth` beside Google's so `/health` still
reads one document:

    alerts.<name>            an open incident {reason, since} (`AlertsDocument`, Google's mechanism)
    alert_watch.<name>       when a condition began that is not an incident yet (Traccar refusing
                             for less than ALERT_TRACCAR_DOWN_MINUTES)
    webhooks_seen.<vendor>   when that vendor's last webhook arrived (written at most every
                             `SEEN_EVERY` per instance)

Every field is written by its own path: the credentials' state, the services' count and
Google's alerts beside them stay as they are. An alert opens and ends by a conditional write
(the document unchanged since it was read): of instances racing, one opens it and one ends it,
and only that one mails.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.models import AuthState
from shared.store.claims import stale_errors, unchanged_since
from shared.store.google import AlertsDocument, GoogleAlert
from shared.store.options import reads, writes
from shared.store.repository import AUTH_DOCUMENT, OPERATIONS_ALERTS_FIELD

if TYPE_CHECKING:
    from google.cloud import firestore

WATCH_FIELD = "alert_watch"
WEBHOOKS_SEEN_FIELD = "webhooks_seen"
# Conditional attempts to end an alert while other fields of `state/auth` are being written;
# past them the alert stays open and the next evaluation (hourly) ends it.
RESOLVE_ATTEMPTS = 5


@dataclass(frozen=True)
class OperationsState:
    """What one read of `state/auth` says about the operations alerts."""

    alerts: dict[str, GoogleAlert] = field(default_factory=dict)
    watch: dict[str, datetime] = field(default_factory=dict)
    webhooks_seen: dict[str, datetime] = field(default_factory=dict)


def _alerts(data: dict[str, Any]) -> dict[str, GoogleAlert]:
    raw = data.get(OPERATIONS_ALERTS_FIELD)
    if not isinstance(raw, dict):
        return {}
    return {name: GoogleAlert.model_validate(value) for name, value in raw.items()}


def _times(value: Any) -> dict[str, datetime]:
    if not isinstance(value, dict):
        return {}
    return {key: when for key, when in value.items() if isinstance(when, datetime)}


class OperationsDocument:
    """`state/auth`'s operations fields."""

    def __init__(self, client: firestore.Client) -> None:
        self._ref = client.collection("state").document(AUTH_DOCUMENT)
        self.alerts = AlertsDocument(client, field=OPERATIONS_ALERTS_FIELD)

    def read(self) -> OperationsState:
        snapshot = self._ref.get(
            [OPERATIONS_ALERTS_FIELD, WATCH_FIELD, WEBHOOKS_SEEN_FIELD], **reads()
        )
        data = (snapshot.to_dict() if snapshot.exists else None) or {}
        return OperationsState(
            _alerts(data), _times(data.get(WATCH_FIELD)), _times(data.get(WEBHOOKS_SEEN_FIELD))
        )

    def resolve(self, name: str) -> GoogleAlert | None:
        """End the open alert `name`. The alert, to the one caller whose write removed it (that
        caller mails its end); None to every other: none was open, or an instance racing here
        ended it first. The removal is written on condition that nobody wrote the document
        since it was read (as `AlertsDocument.open`), so two instances that both saw the
        incident open cannot both end it."""
        from google.cloud.firestore import DELETE_FIELD

        for _ in range(RESOLVE_ATTEMPTS):
            snapshot = self._ref.get([OPERATIONS_ALERTS_FIELD], **reads())
            data = (snapshot.to_dict() if snapshot.exists else None) or {}
            alert = _alerts(data).get(name)
            if alert is None:
                return None
            try:
                self._ref.update(
                    {_path(OPERATIONS_ALERTS_FIELD, name): DELETE_FIELD},
                    option=unchanged_since(snapshot.update_time),
                    **writes(),
                )
            except stale_errors():
                continue  # written meanwhile (ended, or another field): look again
            return alert
        return None

    def set_watch(self, name: str, since: datetime) -> None:
        self._update({_path(WATCH_FIELD, name): since})

    def clear_watch(self, name: str) -> None:
        from google.cloud.firestore import DELETE_FIELD

        self._update({_path(WATCH_FIELD, name): DELETE_FIELD}, create=False)

    def webhook_seen(self, vendor: str, at: datetime) -> None:
        self._update({_path(WEBHOOKS_SEEN_FIELD, vendor): at})

    def _update(self, data: dict[str, Any], *, create: bool = True) -> None:
        from google.api_core.exceptions import AlreadyExists, NotFound

        for _ in range(2):
            try:
                self._ref.update(data, **writes())
                return
            except NotFound:
                if not create:
                    return  # no document: nothing to clear
            # A complete document, so that its other readers find every field; the field
            # paths are written by the update that follows (created meanwhile: that one).
            with contextlib.suppress(AlreadyExists):
                self._ref.create(AuthState().model_dump(mode="python"), **writes())


def _path(field_name: str, key: str) -> str:
    from google.cloud.firestore_v1.field_path import FieldPath

    return FieldPath(field_name, key).to_api_repr()


__all__ = ["OperationsDocument", "OperationsState"]
