"""Typed Firestore repositories: pydantic models in, pydantic models out, keyed by `id`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from shared.errors import BadRequest, Conflict
from shared.models import AuthState
from shared.store.options import reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from google.cloud import firestore

M = TypeVar("M", bound=BaseModel)

# Firestore refuses "/" in an id, "." and "..", and ids of the form __x__; 1500 bytes at most.
_RESERVED_ID = re.compile(r"^__.*__$")
MAX_ID_BYTES = 1500


def document_id(value: str) -> str:
    """Check that `value` can be a Firestore document id, or raise `BadRequest`."""
    if (
        not value
        or "/" in value
        or value in {".", ".."}
        or _RESERVED_ID.match(value)
        or len(value.encode()) > MAX_ID_BYTES
    ):
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

    def count(self) -> int:
        """Number of documents, counted by the server (one aggregation read)."""
        result = self._collection.count().get(**reads())
        return int(result[0][0].value)


class StateRepository:
    """Singleton documents of the `state` collection, each its own model."""

    def __init__(self, client: firestore.Client) -> None:
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
        return self.get("auth", AuthState) or AuthState()
