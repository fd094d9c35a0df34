"""Several Google accounts in one deployment (issue 17, point 1; ADR 0004).

`GoogleAccounts` is the registry of the deployment's accounts (`google_accounts/<slot>` in
Firestore) and hands out each account's `GoogleStack`, built on first use and kept for the
instance: an account has its own credentials secret, auth state, FCM lease and token cache
(`layout`). It is what the routes and the hourly refresh talk to:

- `upload` (`PUT /auth/secrets`) files a secrets.json under its `username`: the same username
  again replaces that account's credentials, a new one adds an account. The first account takes
  the original layout (slot `primary`), later ones their key's;
- `resolve` (`?account=` of `PUT /auth/aas-token`, `POST /auth/token-status`): optional while
  there is at most one account, a 400 naming the parameter when there are several;
- `views` (`GET /auth/accounts`): each account's state, never a secret;
- `remove` (`DELETE /auth/accounts/<username>`): the account's devices' services and jobs, its
  secret's versions (disabled: the functions may not delete secrets), its documents, its entry;
- `refresh` / `refresh_for_listing`: each account's device list;
- as the pipeline's Google source (`fetch`, `fetch_manual`), a device is located with its own
  account's credentials (`Device.account`; none: the first account).

A deployment upgraded from the one-account bridge has no registry yet: the first time the
accounts are read, the credentials found in the original secret are recorded as the `primary`
account (no manual step, no data moved).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from shared.errors import BadRequest, Conflict, NotFound
from shared.models import Device, Location, Model, Source, utc_now
from shared.sources.google.credentials import read_secrets
from shared.sources.google.errors import CredentialsMissing
from shared.sources.google.layout import AccountLayout, account_key, normalized
from shared.store.google import PRIMARY_SLOT, AccountRecord

if TYPE_CHECKING:
    from shared.secrets import SecretStore
    from shared.services import Services
    from shared.sources.google.account import CredentialsUploaded
    from shared.sources.google.credentials import GoogleSecretsUpload
    from shared.sources.google.refresh import RefreshReport
    from shared.sources.google.stack import GoogleStack
    from shared.store import Repository
    from shared.store.google import AccountRegistry

logger = logging.getLogger(__name__)

# How long a sync run trusts the registry it read: an account added meanwhile is looked up
# again at once (a miss re-reads), one removed has no services left to run.
REGISTRY_TTL_SECONDS = 60.0
ACCOUNT_PARAMETER = "account"


class AccountView(Model):
    """One account of `GET /auth/accounts`: its state, never a secret."""

    username: str
    status: Literal["ok", "auth_required"]
    reason: str | None = None
    since: datetime | None = None
    credentials_stored: bool
    aas_token_present: bool
    uploaded_at: datetime | None = None
    added_at: datetime
    devices: int
    alerts: list[str]


class AccountRemoved(Model):
    """The answer of `DELETE /auth/accounts/<username>`."""

    status: Literal["deleted"] = "deleted"
    account: str
    services_deleted: list[str]
    # The devices stay listed (their positions and delivery state are kept); their syncs end.
    devices: list[str]


def layout_of(record: AccountRecord) -> AccountLayout:
    return AccountLayout.first() if record.id == PRIMARY_SLOT else AccountLayout(record.id)


class GoogleAccounts:
    source = Source.GOOGLE

    def __init__(
        self,
        *,
        registry: AccountRegistry,
        secrets: SecretStore,
        secret_name: str,
        devices: Repository[Device],
        stack: Callable[[AccountLayout], GoogleStack],
        forget_documents: Callable[[AccountLayout], None],
        services: Callable[[], Services],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._registry = registry
        self._secrets = secrets
        self._secret_name = secret_name
        self._devices = devices
        self._make_stack = stack
        self._forget_documents = forget_documents
        self._services = services
        self._clock = clock
        self._stacks: dict[str | None, GoogleStack] = {}
        self._lock = threading.Lock()
        self._records: list[AccountRecord] | None = None
        self._read_at = 0.0

    # --- the registry ------------------------------------------------------------------------

    def accounts(self, *, fresh: bool = True) -> list[AccountRecord]:
        """The deployment's accounts, the first one first; a one-account deployment from before
        the registry gets its `primary` record here (see the module docstring)."""
        cached = self._records
        if (
            not fresh
            and cached is not None
            and time.monotonic() - self._read_at < REGISTRY_TTL_SECONDS
        ):
            return cached
        records = self._registry.list()
        if not any(record.id == PRIMARY_SLOT for record in records):
            adopted = self._adopt_original()
            if adopted is not None:
                records.append(adopted)
        records.sort(key=lambda record: (record.id != PRIMARY_SLOT, normalized(record.username)))
        self._records, self._read_at = records, time.monotonic()
        return records

    def _adopt_original(self) -> AccountRecord | None:
        try:
            credentials = read_secrets(self._secrets, self._secret_name)
        except CredentialsMissing:
            return None  # no credentials in the original secret: no account yet
        record = AccountRecord(
            id=PRIMARY_SLOT, username=credentials.username, added_at=self._clock()
        )
        if self._registry.create(record):
            logger.info("the stored Google credentials are now the first account")
            return record
        return self._registry.get(PRIMARY_SLOT)  # recorded meanwhile by another instance

    def find(self, username: str, *, fresh: bool = True) -> AccountRecord | None:
        wanted = normalized(username)
        for record in self.accounts(fresh=fresh):
            if normalized(record.username) == wanted:
                return record
        return None

    def _known(self, username: str) -> AccountRecord:
        record = self.find(username)
        if record is None:
            raise NotFound(f"unknown Google account: {username}")
        return record

    # --- the stacks ----------------------------------------------------------------------------

    def stack(self, layout: AccountLayout) -> GoogleStack:
        with self._lock:
            if layout.key not in self._stacks:
                self._stacks[layout.key] = self._make_stack(layout)
            return self._stacks[layout.key]

    @property
    def first(self) -> GoogleStack:
        """The first account's stack (the original layout), whether it holds credentials or not."""
        return self.stack(AccountLayout.first())

    def resolve(self, username: str | None) -> GoogleStack:
        """The stack of `?account=<username>`; without one, the only account (or the first
        account's layout when there is none yet: its routes say that nothing is stored)."""
        if username is not None:
            return self.stack(layout_of(self._known(username)))
        records = self.accounts()
        if len(records) > 1:
            names = ", ".join(record.username for record in records)
            raise BadRequest(
                f"{ACCOUNT_PARAMETER}: several Google accounts are stored ({names}); name one "
                f"with ?{ACCOUNT_PARAMETER}=<username>"
            )
        return self.stack(layout_of(records[0])) if records else self.first

    def for_device(self, device_id: str) -> GoogleStack:
        """The stack of the account a device belongs to (the first account's for a device of
        another source or an unknown one: its routes answer those)."""
        device = self._devices.get(device_id)
        if device is None or device.source != Source.GOOGLE:
            return self.first
        return self._stack_of(device, fresh=True)

    def _stack_of(self, device: Device, *, fresh: bool) -> GoogleStack:
        if device.account is None:
            return self.first
        record = self.find(device.account, fresh=fresh)
        if record is None and not fresh:
            record = self.find(device.account)  # added since the registry was read
        if record is None:
            raise Conflict(
                f"device {device.id} belongs to the Google account {device.account}, which is "
                "no longer stored: upload its secrets.json with PUT /auth/secrets"
            )
        return self.stack(layout_of(record))

    # --- the routes ----------------------------------------------------------------------------

    def upload(self, upload: GoogleSecretsUpload) -> CredentialsUploaded:
        """`PUT /auth/secrets`: file the credentials under their username (see the module doc)."""
        from shared.sources.google.account import CredentialsUploaded

        record = self.find(upload.username)
        if record is None:
            record = AccountRecord(
                id=PRIMARY_SLOT, username=upload.username.strip(), added_at=self._clock()
            )
            if not self._registry.create(record):
                record = record.model_copy(update={"id": account_key(upload.username)})
                if not self._registry.create(record):
                    record = self._known(upload.username)  # filed meanwhile by a racing upload
            self._records = None
            logger.info("a Google account was added", extra={"account_slot": record.id})
        restarted = self.stack(layout_of(record)).account.upload_secrets(upload)
        return CredentialsUploaded(services_restarted=restarted, account=record.username)

    def replace_aas_token(self, username: str | None, aas_token: str) -> CredentialsUploaded:
        from shared.sources.google.account import CredentialsUploaded

        stack = self.resolve(username)
        restarted = stack.account.replace_aas_token(aas_token)
        return CredentialsUploaded(
            services_restarted=restarted, account=stack.account.credentials().username
        )

    def views(self) -> list[AccountView]:
        """`GET /auth/accounts`."""
        records = self.accounts()
        devices = [d for d in self._devices.list() if d.source == Source.GOOGLE]
        views = []
        for record in records:
            layout = layout_of(record)
            account = self.stack(layout).account
            status = account.token_status()
            auth = account.auth_state()
            views.append(
                AccountView(
                    username=record.username,
                    status=auth.status,
                    reason=auth.reason or None,
                    since=auth.since if auth.status == "auth_required" else None,
                    credentials_stored=status.credentials.stored,
                    aas_token_present=status.credentials.aas_token_present,
                    uploaded_at=status.credentials.uploaded_at,
                    added_at=record.added_at,
                    devices=sum(1 for d in devices if layout.owns(d, record.username)),
                    alerts=sorted(account.alerts.current()),
                )
            )
        return views

    def remove(self, username: str) -> AccountRemoved:
        """`DELETE /auth/accounts/<username>` (see the module docstring). In this order, so that
        a failure leaves a removal that can be asked again: no job runs any more, then the
        credentials go, then the documents, then the record."""
        record = self._known(username)
        layout = layout_of(record)

        def owned(device: Device) -> bool:
            return layout.owns(device, record.username)

        services = self._services()
        service_ids = services.of_source(Source.GOOGLE, owned)
        deleted = [service_id for service_id in service_ids if services.delete(service_id)]
        self.stack(layout).account.tokens.invalidate()
        self._secrets.disable_versions(layout.secret_name(self._secret_name))
        self._forget_documents(layout)
        self._registry.delete(record.id)
        with self._lock:
            self._stacks.pop(layout.key, None)
        self._records = None
        devices = sorted(d.id for d in self._devices.list() if owned(d))
        logger.info(
            "a Google account was removed",
            extra={"account_slot": record.id, "services_deleted": len(deleted)},
        )
        return AccountRemoved(account=record.username, services_deleted=deleted, devices=devices)

    # --- the hourly refresh and the listing ---------------------------------------------------

    def refresh(self) -> list[RefreshReport]:
        """Each account's refresh; the first account's (which says why it was skipped) when
        there is none."""
        records = self.accounts()
        if not records:
            return [self.first.refresh.refresh()]
        reports = []
        for record in records:
            report = self.stack(layout_of(record)).refresh.refresh()
            reports.append(report.model_copy(update={"account": record.username}))
        return reports

    def refresh_for_listing(self) -> None:
        records = self.accounts()
        for layout in [layout_of(r) for r in records] or [AccountLayout.first()]:
            self.stack(layout).refresh.refresh_for_listing()

    # --- the pipeline's source -----------------------------------------------------------------

    def fetch(self, device: Device) -> list[Location]:
        return self._stack_of(device, fresh=False).source.fetch(device)

    def fetch_manual(self, device: Device) -> list[Location]:
        return self._stack_of(device, fresh=False).source.fetch_manual(device)


__all__ = ["ACCOUNT_PARAMETER", "AccountRemoved", "AccountView", "GoogleAccounts"]
