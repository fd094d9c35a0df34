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
from shared.store.repository import GOOGLE_ACCOUNTS_FIELD, Repository, Versioned
from shared.store.sealed import SealedState, Sealer

AUTH_STATE = "auth"
TOKEN_STATE = "google_token"  # noqa: S105 - a document name
LEASE_DOCUMENT = "fcm_lease"
CREDENTIALS_STATE = "google_credentials"
REFRESH_STATE = "google_refresh"
SMART_TRACKING = "smart_tracking"
GOOGLE_ALERTS = "google_alerts"  # a field of `state/auth`
OPEN_ATTEMPTS = 3
# Further accounts (ADR 0004): each one's auth state and alerts are an entry of this map of
# `state/auth` (so `/health` still reads one document), its other documents are the first
# account's names with `-<account key>` appended, and the registry is a collection.
ACCOUNTS_FIELD = GOOGLE_ACCOUNTS_FIELD
ACCOUNTS_COLLECTION = "google_accounts"
PRIMARY_SLOT = "primary"  # the registry's id of the account that owns the original layout


# --- the documents ------------------------------------------------------------------------------


class CachedToken(Document):
    """`state/google_token`: the current access token and what it was made from."""

    token: str
    obtained_at: AwareDatetime
    expires_at: AwareDatetime
    credentials_digest: str


class SilentTracker(Document):
    """A tracker that gave no answer `misses` locates in a row: not located before `until`."""

    misses: int = Field(ge=1)
    until: AwareDatetime


class FcmLease(Document):
    """`state/fcm_lease`: who holds the FCM session, until when, who was located when, and
    which trackers stay silent (their backoff)."""

    owner: str | None = None
    until: AwareDatetime | None = None
    located: dict[str, AwareDatetime] = Field(default_factory=dict)
    silent: dict[str, SilentTracker] = Field(default_factory=dict)

    def backing_off(self, device_id: str, now: datetime) -> bool:
        silent = self.silent.get(device_id)
        return silent is not None and silent.until > now

    def held(self, now: datetime) -> bool:
        return bool(self.owner and self.until and self.until > now)


class OwnerKeyRenewalFailure(Document):
    """The stored `shared_key` did not decrypt the owner key of `version` Google served `at`:
    that version is not asked for again before a backoff (`spot.OwnerKeyRenewal`)."""

    version: int
    at: AwareDatetime


class CredentialsState(Document):
    """`state/google_credentials`: when the credentials were uploaded, the FCM installation
    token's expiry (shown by the token status route, never alerted on), how many sessions
    in a row MCS refused (`mcs_refusals`, reset by a login), and the owner key renewal that
    failed (`owner_key_renewal_failed`). An upload rewrites the document: it clears them."""

    uploaded_at: AwareDatetime | None = None
    fcm_expires_at: AwareDatetime | None = None
    mcs_refusals: int = Field(0, ge=0)
    owner_key_renewal_failed: OwnerKeyRenewalFailure | None = None


class GoogleAlert(Document):
    """An open incident that needs the user (`state/auth`, field `google_alerts.<name>`):
    emailed once when it opened, shown by `/health` until it clears. `retry_at` is when
    Google may be asked again (the sign-in alert's backoff), `attempts` how often it refused."""

    reason: str
    since: AwareDatetime
    retry_at: AwareDatetime | None = None
    attempts: int = Field(1, ge=1)


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
    """`state/auth`, as the expiry handling writes it: the document's own fields for the first
    account, the entry `google_accounts.<key>` for a further one (`account`)."""

    def __init__(self, client: firestore.Client, *, account: str | None = None) -> None:
        self._ref = client.collection("state").document(AUTH_STATE)
        self._path = None if account is None else _field_path(ACCOUNTS_FIELD, account)
        self._account = account

    def _state(self, snapshot: firestore.DocumentSnapshot) -> AuthState:
        if not snapshot.exists:
            return AuthState()
        data = snapshot.to_dict() or {}
        if self._account is not None:
            entry = (data.get(ACCOUNTS_FIELD) or {}).get(self._account)
            return AuthState.model_validate(entry) if isinstance(entry, dict) else AuthState()
        return AuthState.model_validate(data)

    def get(self) -> AuthState:
        """The Google credentials' state; `ok` until something says otherwise."""
        return self._state(self._ref.get(**reads()))

    def mark_required(self, reason: str, *, username: str | None = None) -> bool:
        """Turn the state into `auth_required`; True only for the run that changed it.

        Optimistic, like the leases: read, then write on condition that nobody wrote in between
        (`last_update_time`, or `create` when there is no document yet). Of runs racing here,
        exactly one write succeeds; the others learn it at once (no transaction backoff).
        """
        snapshot = self._ref.get(**reads())
        if self._state(snapshot).status == "auth_required":
            return False
        state = AuthState(status="auth_required", reason=reason, account=username)
        data = state.model_dump(mode="python")
        try:
            if snapshot.exists:
                change = data if self._path is None else {self._path: data}
                self._ref.update(change, option=unchanged_since(snapshot.update_time), **writes())
            elif self._account is None:
                self._ref.create(data, **writes())
            else:
                top = AuthState().model_dump(mode="python")
                self._ref.create({**top, ACCOUNTS_FIELD: {self._account: data}}, **writes())
        except stale_errors():
            return False
        return True

    def mark_ok(self, reason: str, *, username: str | None = None) -> None:
        # Merged: the document also holds the service count `/health` reads (one read), and a
        # further account's entry its alerts.
        data = AuthState(status="ok", reason=reason, account=username).model_dump(mode="python")
        if self._account is None:
            self._ref.set(data, merge=True, **writes())
            return
        from google.api_core.exceptions import AlreadyExists, NotFound

        # Field by field, so that the entry's alerts stay; a complete document when it is the
        # first (its readers find every field).
        fields = {_field_path(ACCOUNTS_FIELD, self._account, k): v for k, v in data.items()}
        for _ in range(2):
            try:
                self._ref.update(fields, **writes())
                return
            except NotFound:
                pass
            top = AuthState().model_dump(mode="python")
            try:
                self._ref.create({**top, ACCOUNTS_FIELD: {self._account: data}}, **writes())
                return
            except AlreadyExists:
                continue  # created meanwhile: update that one

    def forget(self) -> None:
        """The account is removed: a further one's entry goes (its alerts with it); the first
        account's state turns back to `ok`, its alerts cleared."""
        from google.cloud.firestore import DELETE_FIELD

        if self._path is not None:
            change: dict[str, Any] = {self._path: DELETE_FIELD}
        else:
            change = {
                **AuthState(status="ok", reason="account removed").model_dump(mode="python"),
                GOOGLE_ALERTS: DELETE_FIELD,
            }
        try:
            self._ref.update(change, **writes())
        except stale_errors():
            pass  # no document: nothing to forget


class TokenCache:
    """`state/google_token`: the access token every instance reuses, sealed (`sealed`): the
    webhooks function reads Firestore too, but not the key."""

    def __init__(
        self, client: firestore.Client, *, sealer: Sealer, name: str = TOKEN_STATE
    ) -> None:
        self._state = SealedState(client, sealer=sealer)
        self._name = name

    def get(self) -> CachedToken | None:
        """The cached token; None when there is none or it does not open (fetch a new one)."""
        return self._state.get(self._name, CachedToken)

    def put(self, token: CachedToken) -> None:
        self._state.put(self._name, token)

    def delete(self) -> None:
        self._state.delete(self._name)


class LeaseDocument:
    """`state/fcm_lease`, read with its version and written on condition it did not change."""

    def __init__(self, client: firestore.Client, *, name: str = LEASE_DOCUMENT) -> None:
        self._ref = client.collection("state").document(name)

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

    def __init__(self, client: firestore.Client, *, name: str = CREDENTIALS_STATE) -> None:
        self._client = client
        self._ref = client.collection("state").document(name)

    def get(self) -> CredentialsState:
        snapshot = self._ref.get(**reads())
        if not snapshot.exists:
            return CredentialsState()
        return CredentialsState.model_validate(snapshot.to_dict())

    def put(self, state: CredentialsState) -> None:
        self._ref.set(state.model_dump(mode="python"), **writes())

    def add_mcs_refusal(self) -> int:
        """One more MCS session refused in a row; returns how many now. Not atomic: two runs
        never overlap (the FCM lease), and a count off by one only moves the alert a run."""
        count = self.get().mcs_refusals + 1
        self._ref.set({"mcs_refusals": count}, merge=True, **writes())
        return count

    def record_owner_key_failure(self, failure: OwnerKeyRenewalFailure) -> None:
        """Remember the failed renewal (merged: the other fields stay)."""
        self._ref.set(
            {"owner_key_renewal_failed": failure.model_dump(mode="python")}, merge=True, **writes()
        )

    def reset_mcs_refusals(self) -> bool:
        """A session logged in; True when refusals were counted before (one read otherwise)."""
        if self.get().mcs_refusals == 0:
            return False
        self._ref.set({"mcs_refusals": 0}, merge=True, **writes())
        return True


class AlertsDocument:
    """Google's open alerts, kept in `state/auth` (field `GOOGLE_ALERTS`) so that `/health`
    still reads one document. Each alert is its own map entry, written by field path: the
    credentials' state and the services' count beside it stay as they are.

    `field` is another map of the same document: the operations alerts (Traccar down, a
    silent device or vendor: `shared.store.alerts`) use this mechanism under their own."""

    def __init__(
        self, client: firestore.Client, *, field: str | tuple[str, ...] = GOOGLE_ALERTS
    ) -> None:
        self._ref = client.collection("state").document(AUTH_STATE)
        # A further Google account's alerts are a map inside its entry (ADR 0004).
        self._field: tuple[str, ...] = (field,) if isinstance(field, str) else field

    def get(self) -> dict[str, GoogleAlert]:
        snapshot = self._ref.get([_field_path(*self._field)], **reads())
        return _alerts_of(snapshot.to_dict() if snapshot.exists else None, self._field)

    def open(self, name: str, alert: GoogleAlert) -> bool:
        """Record `alert` unless one named `name` is open; True only for the call that opened
        it (optimistic, as `AuthMark.mark_required`: of callers racing, one write succeeds)."""
        for _ in range(OPEN_ATTEMPTS):
            snapshot = self._ref.get(**reads())
            if name in _alerts_of(snapshot.to_dict() if snapshot.exists else None, self._field):
                return False
            try:
                if snapshot.exists:
                    self._ref.update(
                        {_alert_path(name, self._field): alert.model_dump(mode="python")},
                        option=unchanged_since(snapshot.update_time),
                        **writes(),
                    )
                else:
                    nested: dict[str, Any] = {name: alert.model_dump(mode="python")}
                    for part in reversed(self._field):
                        nested = {part: nested}
                    top = AuthState().model_dump(mode="python")
                    self._ref.create({**top, **nested}, **writes())
            except stale_errors():
                continue  # written meanwhile (maybe the services' count): look again
            return True
        return False

    def put(self, name: str, alert: GoogleAlert) -> None:
        """Rewrite an open alert (its next retry)."""
        self._ref.update(
            {_alert_path(name, self._field): alert.model_dump(mode="python")}, **writes()
        )

    def clear(self, *names: str) -> None:
        from google.cloud.firestore import DELETE_FIELD

        try:
            self._ref.update(
                {_alert_path(name, self._field): DELETE_FIELD for name in names}, **writes()
            )
        except stale_errors():
            pass  # no document: nothing open


def _field_path(*parts: str) -> str:
    from google.cloud.firestore_v1.field_path import FieldPath

    return FieldPath(*parts).to_api_repr()


def _alert_path(name: str, field: tuple[str, ...] = (GOOGLE_ALERTS,)) -> str:
    return _field_path(*field, name)


def _alerts_of(
    data: dict[str, Any] | None, field: tuple[str, ...] = (GOOGLE_ALERTS,)
) -> dict[str, GoogleAlert]:
    raw: Any = data or {}
    for part in field:
        raw = raw.get(part) if isinstance(raw, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {name: GoogleAlert.model_validate(value) for name, value in raw.items()}


def account_document(name: str, account: str | None) -> str:
    """The name of an account's own `state` document: the first account's is the original
    name, a further account's has its key appended (ADR 0004)."""
    return name if account is None else f"{name}-{account}"


class GoogleDocuments:
    """One Google account's documents over one client, as the Google stack takes them:
    `account` None is the first account (the original layout), else a further account's key."""

    def __init__(
        self, client: firestore.Client, *, sealer: Sealer, account: str | None = None
    ) -> None:
        self._client = client
        self._account = account
        self.auth = AuthMark(client, account=account)
        self.token = TokenCache(client, sealer=sealer, name=account_document(TOKEN_STATE, account))
        self.fcm_lease = LeaseDocument(client, name=account_document(LEASE_DOCUMENT, account))
        self.credentials = CredentialsStateDocument(
            client, name=account_document(CREDENTIALS_STATE, account)
        )
        self.alerts = AlertsDocument(
            client,
            field=GOOGLE_ALERTS if account is None else (ACCOUNTS_FIELD, account, "alerts"),
        )
        self.refresh = RefreshDocument(client, name=account_document(REFRESH_STATE, account))
        self.smart_tracking = Repository(client, SMART_TRACKING, SmartTrackingState)

    def forget(self) -> None:
        """Delete the account's documents (its token, lease, credentials' state, refresh
        memory) and its entry of `state/auth`: `DELETE /auth/accounts/<username>`."""
        state = self._client.collection("state")
        for name in (TOKEN_STATE, LEASE_DOCUMENT, CREDENTIALS_STATE, REFRESH_STATE):
            state.document(account_document(name, self._account)).delete(**writes())
        self.auth.forget()


class AccountRecord(Document):
    """`google_accounts/<slot>`: a Google account of the deployment. The slot is `primary`
    for the account owning the original layout, else the account's key (ADR 0004)."""

    id: str = Field(min_length=1)
    username: str = Field(min_length=1)
    added_at: AwareDatetime


class AccountRegistry:
    """The `google_accounts` collection (a handful of documents, read whole)."""

    def __init__(self, client: firestore.Client) -> None:
        self._collection = client.collection(ACCOUNTS_COLLECTION)

    def list(self) -> list[AccountRecord]:
        return [
            AccountRecord.model_validate(snapshot.to_dict())
            for snapshot in self._collection.stream(**reads())
        ]

    def get(self, slot: str) -> AccountRecord | None:
        snapshot = self._collection.document(slot).get(**reads())
        return AccountRecord.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def create(self, record: AccountRecord) -> bool:
        """Record `record` unless its slot is taken; True when this call recorded it (of two
        uploads racing for the first account's slot, one wins)."""
        from google.api_core.exceptions import AlreadyExists

        try:
            self._collection.document(record.id).create(
                record.model_dump(mode="python"), **writes()
            )
        except AlreadyExists:
            return False
        return True

    def delete(self, slot: str) -> None:
        self._collection.document(slot).delete(**writes())


class RefreshDocument:
    """`state/google_refresh`."""

    def __init__(self, client: firestore.Client, *, name: str = REFRESH_STATE) -> None:
        self._ref = client.collection("state").document(name)

    def get(self) -> RefreshState:
        snapshot = self._ref.get(**reads())
        return (
            RefreshState.model_validate(snapshot.to_dict()) if snapshot.exists else RefreshState()
        )

    def put(self, state: RefreshState) -> None:
        self._ref.set(state.model_dump(mode="python"), **writes())


__all__ = [
    "ACCOUNTS_COLLECTION",
    "ACCOUNTS_FIELD",
    "AUTH_STATE",
    "CREDENTIALS_STATE",
    "GOOGLE_ALERTS",
    "LEASE_DOCUMENT",
    "PRIMARY_SLOT",
    "REFRESH_STATE",
    "TOKEN_STATE",
    "AccountRecord",
    "AccountRegistry",
    "AlertsDocument",
    "AuthMark",
    "CachedToken",
    "CredentialsState",
    "CredentialsStateDocument",
    "FcmLease",
    "GoogleAlert",
    "GoogleDocuments",
    "LeaseDocument",
    "OwnerKeyRenewalFailure",
    "RefreshDocument",
    "RefreshState",
    "SilentTracker",
    "SmartTrackingState",
    "TokenCache",
    "account_document",
]
