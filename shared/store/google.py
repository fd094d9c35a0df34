"""Google's own documents: the auth mark, the access-token cache, the FCM lease, the credentials'
state, the refresh's memory and smart tracking (SPEC.md, "Firestore").

Each is a small repository over the instance's client; every call passes the bounded options of
`shared.store.options`. The rules (who may take the lease, when a token is usable, when smart
tracking ends) are the Google source's (`shared.sources.google`); here is only how each
document is read and written, conditional writes included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore
from pydantic import AwareDatetime, Field

from shared.models import AuthState, Document
from shared.store.claims import stale_errors, unchanged_since
from shared.store.options import reads, writes
from shared.store.repository import Repository, Versioned
from shared.store.sealed import SealedState, Sealer

AUTH_STATE = "auth"
TOKEN_STATE = "google_token"  # noqa: S105 - a document name
LEASE_DOCUMENT = "fcm_lease"
CREDENTIALS_STATE = "google_credentials"
REFRESH_STATE = "google_refresh"
SMART_TRACKING = "smart_tracking"


# --- the documents ------------------------------------------------------------------------------


class CachedToken(Document):
    """`state/google_token`: the current access token and what it was made from."""

    token: str
    obtained_at: AwareDatetime
    expires_at: AwareDatetime
    credentials_digest: str


class FcmLease(Document):
    """`state/fcm_lease`: who holds the FCM session, until when, and who was located when."""

    owner: str | None = None
    until: AwareDatetime | None = None
    located: dict[str, AwareDatetime] = Field(default_factory=dict)

    def held(self, now: datetime) -> bool:
        return bool(self.owner and self.until and self.until > now)


class CredentialsState(Document):
    """`state/google_credentials`: when the credentials were uploaded, FCM expiry, its notice."""

    uploaded_at: AwareDatetime | None = None
    fcm_expires_at: AwareDatetime | None = None
    # The expiry an "expiring soon" email was sent for: one email per installation token.
    fcm_expiry_notified_for: AwareDatetime | None = None


class RefreshState(Document):
    """`state/google_refresh`: whether the first refresh (no new-device emails) happened."""

    first_run_done: bool = False


class SmartTrackingState(Document):
    """`smart_tracking/<device id>`: the end time and the timer the job had before."""

    id: str = Field(min_length=1)
    until: AwareDatetime
    since: AwareDatetime
    original_timer: int
    original_delta: int


# --- the repositories ---------------------------------------------------------------------------


class AuthMark:
    """`state/auth`, as the expiry handling writes it."""

    def __init__(self, client: firestore.Client) -> None:
        self._ref = client.collection("state").document(AUTH_STATE)

    def get(self) -> AuthState:
        """The Google credentials' state; `ok` until something says otherwise."""
        snapshot = self._ref.get(**reads())
        return AuthState.model_validate(snapshot.to_dict()) if snapshot.exists else AuthState()

    def mark_required(self, reason: str) -> bool:
        """Turn `state/auth` into `auth_required`; True only for the run that changed it.

        Optimistic, like the leases: read, then write on condition that nobody wrote in between
        (`last_update_time`, or `create` when there is no document yet). Of runs racing here,
        exactly one write succeeds; the others learn it at once (no transaction backoff).
        """
        snapshot = self._ref.get(**reads())
        if snapshot.exists and snapshot.get("status") == "auth_required":
            return False
        data = AuthState(status="auth_required", reason=reason).model_dump(mode="python")
        try:
            if snapshot.exists:
                self._ref.update(data, option=unchanged_since(snapshot.update_time), **writes())
            else:
                self._ref.create(data, **writes())
        except stale_errors():
            return False
        return True

    def mark_ok(self, reason: str) -> None:
        # Merged: the document also holds the service count `/health` reads (one read).
        data = AuthState(status="ok", reason=reason).model_dump(mode="python")
        self._ref.set(data, merge=True, **writes())


class TokenCache:
    """`state/google_token`: the access token every instance reuses, sealed (`sealed`): the
    webhooks function reads Firestore too, but not the key."""

    def __init__(self, client: firestore.Client, *, sealer: Sealer) -> None:
        self._state = SealedState(client, sealer=sealer)

    def get(self) -> CachedToken | None:
        """The cached token; None when there is none or it does not open (fetch a new one)."""
        return self._state.get(TOKEN_STATE, CachedToken)

    def put(self, token: CachedToken) -> None:
        self._state.put(TOKEN_STATE, token)

    def delete(self) -> None:
        self._state.delete(TOKEN_STATE)


class LeaseDocument:
    """`state/fcm_lease`, read with its version and written on condition it did not change."""

    def __init__(self, client: firestore.Client) -> None:
        self._ref = client.collection("state").document(LEASE_DOCUMENT)

    def read(self) -> Versioned[FcmLease]:
        return Versioned.of(self._ref.get(**reads()), FcmLease)

    def write_if_unchanged(self, lease: FcmLease, since: datetime | None) -> datetime | None:
        """Write `lease` on condition nobody wrote the document since `since` (a create when
        None: there was none); the new version, or None when somebody did (nothing written)."""
        data = lease.model_dump(mode="python")
        try:
            if since is not None:
                result = self._ref.update(data, option=unchanged_since(since), **writes())
            else:
                result = self._ref.create(data, **writes())
        except stale_errors():
            return None
        update_time = result.update_time
        # proto-plus hands the Timestamp field over as a datetime (DatetimeWithNanoseconds, whose
        # nanoseconds the next precondition needs); the field's annotation names the message.
        assert isinstance(update_time, datetime)
        return update_time


class CredentialsStateDocument:
    """`state/google_credentials`."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._ref = client.collection("state").document(CREDENTIALS_STATE)

    def get(self) -> CredentialsState:
        snapshot = self._ref.get(**reads())
        if not snapshot.exists:
            return CredentialsState()
        return CredentialsState.model_validate(snapshot.to_dict())

    def put(self, state: CredentialsState) -> None:
        self._ref.set(state.model_dump(mode="python"), **writes())

    def claim_fcm_expiry_notice(self, expires_at: datetime) -> bool:
        """Record that the email about `expires_at` is being sent; False if it was already.

        One email per expiry, even with two runs at once: the first to write it wins (a
        transaction: its commit fails when the document changed since its read, and is retried).
        """
        ref = self._ref

        @firestore.transactional
        def claim(transaction: firestore.Transaction) -> bool:
            snapshot = ref.get(transaction=transaction, **reads())
            data: dict[str, Any] = (snapshot.to_dict() or {}) if snapshot.exists else {}
            if data.get("fcm_expiry_notified_for") == expires_at:
                return False
            transaction.set(ref, {**data, "fcm_expiry_notified_for": expires_at})
            return True

        # `transaction.set` only adds to the commit. The decorator begins and commits the
        # transaction itself, and `Transaction._begin`/`_commit` take no retry or timeout: those
        # two calls keep the client's defaults (the decorator retries a contended commit).
        return bool(claim(self._client.transaction()))


class GoogleDocuments:
    """Google's documents over one client, as the Google stack takes them."""

    def __init__(self, client: firestore.Client, *, sealer: Sealer) -> None:
        self.auth = AuthMark(client)
        self.token = TokenCache(client, sealer=sealer)
        self.fcm_lease = LeaseDocument(client)
        self.credentials = CredentialsStateDocument(client)
        self.refresh = RefreshDocument(client)
        self.smart_tracking = Repository(client, SMART_TRACKING, SmartTrackingState)


class RefreshDocument:
    """`state/google_refresh`."""

    def __init__(self, client: firestore.Client) -> None:
        self._ref = client.collection("state").document(REFRESH_STATE)

    def get(self) -> RefreshState:
        snapshot = self._ref.get(**reads())
        return (
            RefreshState.model_validate(snapshot.to_dict()) if snapshot.exists else RefreshState()
        )

    def put(self, state: RefreshState) -> None:
        self._ref.set(state.model_dump(mode="python"), **writes())


__all__ = [
    "AUTH_STATE",
    "CREDENTIALS_STATE",
    "LEASE_DOCUMENT",
    "REFRESH_STATE",
    "TOKEN_STATE",
    "AuthMark",
    "CachedToken",
    "CredentialsState",
    "CredentialsStateDocument",
    "FcmLease",
    "GoogleDocuments",
    "LeaseDocument",
    "RefreshDocument",
    "RefreshState",
    "SmartTrackingState",
    "TokenCache",
]
