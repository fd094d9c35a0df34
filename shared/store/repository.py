"""Typed Firestore repositories: pydantic models in, pydantic models out, keyed by `id`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from shared.errors import BadRequest, Conflict
from shared.firestore_limits import MAX_DOCUMENT_ID_BYTES, id_problem, queryable
from shared.models import AuthState, Device
from shared.store.options import reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from google.cloud import firestore

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


MAX_ID_BYTES = MAX_DOCUMENT_ID_BYTES  # what callers of the store check against

# A listing reads at most this many documents per request (issue 13: bounded reads); callers
# page on with the cursor. 500 by default keeps an existing script's first page whole.
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000


def document_id(value: str) -> str:
    """Check that `value` can be a Firestore document id, or raise `BadRequest`."""
    if id_problem(value) is not None:
        raise BadRequest(f"invalid id: {value!r}")
    return value


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A document as one read found it: its model (None: no such document) and its version.

    A later write conditioned on that version (`write_if_unchanged`) fails if anybody wrote the
    document in between: optimistic concurrency in one commit, without a transaction's
    BeginTransaction round trip.
    """

    value: M | None
    update_time: datetime | None = None

    @classmethod
    def of(cls, snapshot: firestore.DocumentSnapshot, model: type[M]) -> Versioned[M]:
        if not snapshot.exists:
            return cls(None)
        return cls(model.model_validate(snapshot.to_dict()), snapshot.update_time)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the cursor of the next (None: this is the last page)."""

    items: list[T]
    next_cursor: str | None


def by_document_id(
    query: firestore.Query | firestore.CollectionReference, *, limit: int, cursor: str | None
) -> tuple[list[firestore.DocumentSnapshot], str | None]:
    """A page of `query` in document-id order, after the document id `cursor`.

    Ordered by id, a cursor is just the last id seen: no read to resolve it, and a document
    added or deleted meanwhile shifts nothing. One more than `limit` is read to know whether
    a next page exists without a second query.
    """
    from google.cloud.firestore_v1.field_path import FieldPath

    query = query.order_by(FieldPath.document_id())
    if cursor is not None:
        query = query.start_after({FieldPath.document_id(): document_id(cursor)})
    snapshots = list(query.limit(limit + 1).stream(**reads()))
    page = snapshots[:limit]
    return page, page[-1].id if len(snapshots) > limit else None


def read_all(
    client: firestore.Client, refs: Sequence[firestore.DocumentReference]
) -> list[firestore.DocumentSnapshot]:
    """The snapshots of `refs`, in their order, read in one BatchGetDocuments round trip."""
    found = {
        snapshot.reference.path: snapshot for snapshot in client.get_all(list(refs), **reads())
    }
    return [found[ref.path] for ref in refs]


class Repository(Generic[M]):
    """One collection whose documents are `model` instances keyed by their `id` field."""

    def __init__(self, client: firestore.Client, collection: str, model: type[M]) -> None:
        self._client = client
        self._collection = client.collection(collection)
        self._model = model

    def _ref(self, item_id: str) -> firestore.DocumentReference:
        return self._collection.document(document_id(item_id))

    def get(self, item_id: str) -> M | None:
        snapshot = self._ref(item_id).get(**reads())
        return self._model.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def get_many(self, item_ids: Sequence[str]) -> dict[str, M]:
        """The documents of `item_ids` that exist, by id, in one batch read."""
        refs = [self._ref(item_id) for item_id in dict.fromkeys(item_ids)]
        snapshots = read_all(self._client, refs) if refs else []
        found = [self._model.model_validate(s.to_dict()) for s in snapshots if s.exists]
        return {item.id: item for item in found}  # type: ignore[attr-defined]

    def put(self, item: M) -> None:
        """Create or replace the document."""
        self._ref(item.id).set(item.model_dump(mode="python"), **writes())  # type: ignore[attr-defined]

    def create(self, item: M) -> None:
        """Create the document; `Conflict` if it exists already (atomic, no read first)."""
        from google.api_core.exceptions import AlreadyExists

        try:
            self._ref(item.id).create(item.model_dump(mode="python"), **writes())  # type: ignore[attr-defined]
        except AlreadyExists:
            raise Conflict(f"{item.id} exists already") from None  # type: ignore[attr-defined]

    def delete(self, item_id: str) -> bool:
        """Delete the document; False if there was none."""
        from google.api_core.exceptions import NotFound

        try:
            self._ref(item_id).delete(option=self._client.write_option(exists=True), **writes())
        except NotFound:
            return False
        return True

    def list(self) -> list[M]:
        """Every document, by id."""
        return [
            self._model.model_validate(snapshot.to_dict())
            for snapshot in self._collection.order_by("id").stream(**reads())
        ]

    def page(self, *, limit: int, cursor: str | None = None) -> Page[M]:
        """At most `limit` documents by id, after the id `cursor`."""
        snapshots, next_cursor = by_document_id(self._collection, limit=limit, cursor=cursor)
        items = [self._model.model_validate(snapshot.to_dict()) for snapshot in snapshots]
        return Page(items, next_cursor)

    def count(self) -> int:
        """Number of documents, counted by the server (one aggregation read)."""
        result = self._collection.count().get(**reads())
        return int(result[0][0].value)


class DeviceRepository(Repository[Device]):
    """The `devices` collection, with its one query beyond the id."""

    def __init__(self, client: firestore.Client) -> None:
        super().__init__(client, "devices", Device)

    def with_traccar_unique_id(self, unique_id: str, *, limit: int) -> list[Device]:
        """At most `limit` devices pushing to Traccar as `unique_id` (a Traccar command names
        a device so); the field's single-field index answers it."""
        from google.cloud.firestore import FieldFilter

        if not queryable(unique_id):
            return []  # Firestore refuses the filter; no uniqueId that long is indexed whole
        query = self._collection.where(filter=FieldFilter("traccar_unique_id", "==", unique_id))
        return [Device.model_validate(s.to_dict()) for s in query.limit(limit).stream(**reads())]

    def resolve(self, named: str) -> Device | None:
        """The device an API caller names `named` (issue 18): the one stored under `named`
        (one read: old ids, Google's and TLINK's), else the one pushing to Traccar as `named`
        (one query, on that miss only: Smartcar's `smartcar-<id>`, a uniqueId the user
        mapped), else None. Two devices sharing that uniqueId are a `Conflict` naming both,
        as a Traccar command naming it is (shared/commands.py)."""
        stored = self.get(named)
        if stored is not None:
            return stored
        matches = self.with_traccar_unique_id(named, limit=2)
        if len(matches) > 1:
            ids = " and ".join(device.id for device in matches)
            raise Conflict(
                f"devices {ids} both push to Traccar as {named}: name one by its vendor_id"
            )
        return matches[0] if matches else None

    def stored_id(self, named: str) -> str:
        """The id the device named `named` is stored under (`resolve`), else `named` itself, so
        the route answers as it would for it (a 404 naming what the caller gave)."""
        device = self.resolve(named)
        return device.id if device is not None else named

    def unique_ids(self, stored_ids: Sequence[str]) -> dict[str, str]:
        """The uniqueId Traccar shows for each of `stored_ids` (one batch read): what the API
        lists a device under. An id no device is stored under stays itself."""
        devices = self.get_many(stored_ids)
        return {
            stored_id: devices[stored_id].traccar_unique_id if stored_id in devices else stored_id
            for stored_id in stored_ids
        }


# `state/auth`'s field saying whether Traccar's REST API took the credentials
# (`shared.store.traccar`): `{"status": "unauthorized", "reason", "since"}`, absent when it did.
TRACCAR_API_FIELD = "traccar_api"


def traccar_api_status(data: dict[str, Any] | None) -> str:
    """`unauthorized` or `ok`, from `state/auth`'s data."""
    value = (data or {}).get(TRACCAR_API_FIELD)
    refused = isinstance(value, dict) and value.get("status") == "unauthorized"
    return "unauthorized" if refused else "ok"


@dataclass(frozen=True)
class HealthRecord:
    """What `/health` reads, from one document: the Google credentials' state and the number
    of sync services recorded next to it (None: not recorded since the document was written
    without it) as of `update_time` (None: no document)."""

    auth: AuthState
    services: int | None
    update_time: datetime | None
    # Google's open alerts (`shared.store.google.AlertsDocument`), name -> {reason, since, ...}.
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whether Traccar's REST API took the credentials (`shared.store.traccar`).
    traccar_api: str = "ok"
    # Further Google accounts (ADR 0004): key -> {status, reason, since, account, alerts}.
    google_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)


# `state/auth` also carries the number of sync services, so `/health` costs one document read
# (issue 13) rather than that read plus a count aggregation. Services records the count after
# each create or delete; a writer of the credentials' state that replaces the document drops
# it, and the next `/health` counts once and puts it back.
SERVICE_COUNT_FIELD = "services"
# `state/auth`'s map of the open operations alerts (`shared.store.alerts`), beside Google's.
OPERATIONS_ALERTS_FIELD = "alerts"
# `state/auth`'s map of the further Google accounts' states (`shared.store.google`, ADR 0004).
GOOGLE_ACCOUNTS_FIELD = "google_accounts"
AUTH_DOCUMENT = "auth"


class StateRepository:
    """Singleton documents of the `state` collection, each its own model."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._collection = client.collection("state")

    def get(self, name: str, model: type[M]) -> M | None:
        snapshot = self._collection.document(document_id(name)).get(**reads())
        return model.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def put(self, name: str, value: BaseModel) -> None:
        self._collection.document(document_id(name)).set(
            value.model_dump(mode="python"), **writes()
        )

    def auth(self) -> AuthState:
        """The Google credentials' state; `ok` until something says otherwise."""
        return self.get(AUTH_DOCUMENT, AuthState) or AuthState()

    def health(self) -> HealthRecord:
        """The credentials' state and the recorded number of services: one document read."""
        snapshot = self._collection.document(AUTH_DOCUMENT).get(**reads())
        if not snapshot.exists:
            return HealthRecord(AuthState(), None, None)
        data = snapshot.to_dict() or {}
        count = data.get(SERVICE_COUNT_FIELD)
        services = count if isinstance(count, int) and count >= 0 else None
        # Google's alerts and the operations alerts (`shared.store.alerts`): one read for both.
        alerts = {
            name: value
            for field_name in ("google_alerts", OPERATIONS_ALERTS_FIELD)
            if isinstance(found := data.get(field_name), dict)
            for name, value in found.items()
        }
        return HealthRecord(
            AuthState.model_validate(data),
            services,
            snapshot.update_time,
            alerts,
            traccar_api_status(data),
            {
                key: entry
                for key, entry in (data.get(GOOGLE_ACCOUNTS_FIELD) or {}).items()
                if isinstance(entry, dict)
            }
            if isinstance(data.get(GOOGLE_ACCOUNTS_FIELD), dict)
            else {},
        )

    def record_service_count(self, count: int) -> None:
        """Record the number of sync services (just counted after a change) in `state/auth`,
        leaving the credentials' state as it is."""
        from google.api_core.exceptions import AlreadyExists, NotFound

        ref = self._collection.document(AUTH_DOCUMENT)
        for _ in range(2):
            try:
                ref.update({SERVICE_COUNT_FIELD: count}, **writes())
                return
            except NotFound:
                pass
            # No document yet: a complete one, so that its readers find every field.
            data = {**AuthState().model_dump(mode="python"), SERVICE_COUNT_FIELD: count}
            try:
                ref.create(data, **writes())
                return
            except AlreadyExists:
                continue  # the expiry handling created it meanwhile: update that one

    def fill_service_count(self, count: int, *, read: HealthRecord) -> None:
        """Put back a count `/health` had to make, unless `state/auth` changed since `read`
        (a service change recorded a newer count, or the credentials' state changed)."""
        from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

        ref = self._collection.document(AUTH_DOCUMENT)
        try:
            if read.update_time is None:
                data = {**AuthState().model_dump(mode="python"), SERVICE_COUNT_FIELD: count}
                ref.create(data, **writes())
            else:
                option = self._client.write_option(last_update_time=read.update_time)
                ref.update({SERVICE_COUNT_FIELD: count}, option=option, **writes())
        except (AlreadyExists, FailedPrecondition, NotFound):
            pass  # somebody wrote it meanwhile; the next /health finds their version
