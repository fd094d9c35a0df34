"""`state` documents only the holders of the state key can read: the cached vendor access tokens.

Firestore's IAM is per database, not per collection: every function that reads any document
(the public `webhooks` one included) could read `state/google_token` and `state/tlink_token`.
Their content is therefore sealed with AES-256-GCM under a key kept in Secret Manager
(`STATE_KEY_SECRET`), which only the functions that use the tokens may read (infra/terraform
iam.tf). The document holds one field, `sealed`: `v1.` then base64url of a random 96-bit nonce,
the ciphertext and the 128-bit tag; the document's path is the associated data, so a sealed
value copied into another document does not open there.

A value that does not open (the key was rotated, the document was altered, it predates sealing)
is absent: the caller fetches a new token, whose write replaces it. A missing key is not
absence: it propagates (`ConfigError` naming the secret).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from shared.store.options import reads, writes
from shared.store.repository import document_id

if TYPE_CHECKING:
    from google.cloud import firestore

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

SEALED_FIELD = "sealed"
FORMAT = "v1."  # a later algorithm or key layout gets its own prefix
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's native 96-bit nonce: random per write (NIST SP 800-38D, 8.2.2)
TAG_BYTES = 16


class Sealer:
    """AES-GCM sealing under the key `key()` returns (read on each call: the key's own cache
    decides how fast a rotation is seen)."""

    def __init__(self, *, key: Callable[[], bytes]) -> None:
        self._key = key

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        # Imported here: only the instances that cache a vendor token load the cipher.
        from Crypto.Cipher import AES

        nonce = os.urandom(NONCE_BYTES)
        cipher = AES.new(self._key(), AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(purpose.encode())
        ciphertext, tag = cipher.encrypt_and_digest(plaintext)
        return FORMAT + base64.urlsafe_b64encode(nonce + ciphertext + tag).decode("ascii")

    def open(self, sealed: str, *, purpose: str) -> bytes | None:
        """The plaintext, or None when `sealed` was not sealed for `purpose` under this key."""
        from Crypto.Cipher import AES

        if not sealed.startswith(FORMAT):
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed[len(FORMAT) :].encode("ascii"))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            return None
        nonce, body, tag = raw[:NONCE_BYTES], raw[NONCE_BYTES:-TAG_BYTES], raw[-TAG_BYTES:]
        cipher = AES.new(self._key(), AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
        cipher.update(purpose.encode())
        try:
            return cipher.decrypt_and_verify(body, tag)
        except ValueError:  # pycryptodome's "MAC check failed": wrong key, or altered
            return None


class SealedState:
    """Documents of the `state` collection holding one sealed pydantic model each."""

    def __init__(self, client: firestore.Client, *, sealer: Sealer) -> None:
        self._collection = client.collection("state")
        self._sealer = sealer

    def get(self, name: str, model: type[M]) -> M | None:
        ref = self._collection.document(document_id(name))
        snapshot = ref.get(**reads())
        if not snapshot.exists:
            return None
        sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD)
        plaintext = self._sealer.open(sealed, purpose=ref.path) if isinstance(sealed, str) else None
        if plaintext is None:
            # Never the value itself: what matters is that a new token will be fetched.
            logger.warning("state/%s does not open with the state key; treated as absent", name)
            return None
        try:
            return model.model_validate_json(plaintext)
        except ValidationError:
            logger.warning("state/%s holds no %s; treated as absent", name, model.__name__)
            return None

    def put(self, name: str, value: BaseModel) -> None:
        ref = self._collection.document(document_id(name))
        sealed = self._sealer.seal(value.model_dump_json().encode(), purpose=ref.path)
        ref.set({SEALED_FIELD: sealed}, **writes())

    def delete(self, name: str) -> None:
        self._collection.document(document_id(name)).delete(**writes())
