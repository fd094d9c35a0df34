"""Smartcar's tokens: the v3 application token (`ApplicationToken`, one per instance, kept in
memory until its hour ends) and the v2 user tokens of vehicles connected before the upgrade.

API v3 needs no user tokens: a vehicle whose user id the bridge knows (Connect's redirect, a
webhook's `data.user.id`) is read with the application token and `sc-user-id`. The v2 tokens
below are used only for a vehicle whose user id is not known yet, and dropped from the secret
(`forget_vehicle`) once it is.

The v2 tokens: one secret (`SMARTCAR_TOKENS_SECRET`), one entry per Smartcar user.

    {"users": {"<userId>": {"access_token", "refresh_token", "expires_at", "refresh_expires_at",
                            "vehicles": ["<vehicleId>", ...], "updated_at"}}}

One entry per user rather than per vehicle: Connect gives one token pair for every vehicle the
user authorised, and a refresh replaces the pair, so per-vehicle copies would go stale. Each
change writes a new version of the whole secret and disables the older ones (an old refresh
token stops being readable), then destroys the disabled ones but the newest
`KEPT_DISABLED_VERSIONS`: a refresh comes every two hours while a vehicle is pulled, and Secret
Manager bills disabled versions as enabled ones until they are destroyed
(https://cloud.google.com/secret-manager/pricing), so hundreds would pile up each month.
Changes are made under a Firestore lease (`smartcar_locks/tokens`): two refreshes at once (two
vehicles of one user syncing together) or a refresh and a Connect never lose each other's
write, and a refresh token is never spent twice.

Tokens are refreshed before they expire: on use when the access token (2 hours) has less than
`ACCESS_MARGIN` left or was just refused, and by `refresh_expiring` (meant for an hourly job)
when a refresh token (60 days) has less than `REFRESH_MARGIN` left.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, Field, ValidationError

from shared.errors import ConfigError, RetryLater
from shared.models import Model, utc_now
from shared.secrets import CachedSecrets, SecretNotFound, SecretStore, missing
from shared.sources.smartcar.client import (
    AppToken,
    SdkOrigins,
    SmartcarApi,
    SmartcarClient,
    TokenSet,
    configure_sdk,
)
from shared.sources.smartcar.errors import NotConnected, SmartcarError

if TYPE_CHECKING:
    import requests

    from shared.store.smartcar import SmartcarStore

logger = logging.getLogger(__name__)

ACCESS_MARGIN = timedelta(minutes=5)
REFRESH_MARGIN = timedelta(days=7)
LOCK_NAME = "tokens"
# Longer than a refresh takes (one token request); a crashed holder blocks others this long.
LOCK_DURATION = timedelta(seconds=60)
LOCK_WAIT_SECONDS = 10.0
LOCK_POLL_SECONDS = 0.2
# Disabled versions kept after a change (the newest ones: what an operator may re-enable when a
# change went wrong); older ones are destroyed, at most `DESTROYED_PER_CHANGE` per change so a
# backlog from before this pruning goes over several changes, well inside the lease.
KEPT_DISABLED_VERSIONS = 2
DESTROYED_PER_CHANGE = 20
# An application token is replaced this long before its hour ends: a read started with it
# must not meet its end halfway.
APP_TOKEN_MARGIN = timedelta(minutes=2)


class UserTokens(TokenSet):
    vehicles: list[str] = Field(default_factory=list)
    updated_at: AwareDatetime


class TokenFile(Model):
    users: dict[str, UserTokens] = Field(default_factory=dict)

    def user_of(self, vehicle_id: str) -> str | None:
        """The user whose tokens reach `vehicle_id` (the newest entry if several do)."""
        owners = [(tokens.updated_at, user) for user, tokens in self.users.items()
                  if vehicle_id in tokens.vehicles]  # fmt: skip
        return max(owners)[1] if owners else None


class TokenStore:
    """Reads, changes and refreshes the token secret; see the module docstring."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        locks: Callable[[], SmartcarStore],
        secret_name: str,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._secrets = secrets
        # Where the lease over the secret's changes lives; made by the first change, so that
        # reading tokens never loads the Firestore documents' module.
        self._locks = locks
        self._name = secret_name
        self._clock = clock
        self._sleep = sleep

    def load(self) -> TokenFile:
        try:
            text = self._secrets.read(self._name)
        except SecretNotFound:
            return TokenFile()
        try:
            return TokenFile.model_validate_json(text)
        except ValidationError:
            raise ConfigError(f"secret {self._name} does not hold Smartcar tokens") from None

    def connect(self, user_id: str, tokens: TokenSet, vehicles: list[str]) -> None:
        """Keep a Connect's tokens: they replace the user's, and their vehicles leave any other
        user's entry (a vehicle reconnected by a new owner)."""

        def edit(file: TokenFile) -> None:
            for other, entry in file.users.items():
                if other != user_id:
                    entry.vehicles = [v for v in entry.vehicles if v not in vehicles]
            file.users[user_id] = UserTokens(
                **tokens.model_dump(), vehicles=sorted(vehicles), updated_at=self._clock()
            )

        self._change(edit)

    def forget_vehicle(self, vehicle_id: str) -> bool:
        """Drop the v2 tokens' hold on a vehicle whose user id is now known (API v3 reads it
        with the application token); a user left without vehicles loses the entry. False when
        the secret held nothing for it (no lease taken, no version written)."""
        if self.load().user_of(vehicle_id) is None:
            return False

        def edit(file: TokenFile) -> None:
            for user_id in list(file.users):
                entry = file.users[user_id]
                entry.vehicles = [v for v in entry.vehicles if v != vehicle_id]
                if not entry.vehicles:
                    del file.users[user_id]

        self._change(edit)
        logger.info(
            "Smartcar v2 tokens dropped: the user id is known", extra={"vehicle_id": vehicle_id}
        )
        return True

    def access_token(
        self, vehicle_id: str, client: SmartcarClient, *, refused: str | None = None
    ) -> str:
        """A usable access token for the vehicle, refreshed first when it is about to expire or
        is `refused` (Smartcar just answered 401 to it)."""
        file = self.load()
        user_id = file.user_of(vehicle_id)
        if user_id is None:
            raise NotConnected(
                f"Smartcar vehicle {vehicle_id} is not connected: open /smartcar/connect"
            )
        entry = file.users[user_id]
        if entry.access_token != refused and not self._expiring(entry.expires_at, ACCESS_MARGIN):
            return entry.access_token
        return self._refresh(user_id, client, refused=refused).access_token

    def refresh_expiring(self, client: SmartcarClient) -> list[str]:
        """Refresh every user whose refresh token nears its end; answers their ids."""
        due = [
            user_id
            for user_id, entry in self.load().users.items()
            if self._expiring(entry.refresh_expires_at, REFRESH_MARGIN)
        ]
        for user_id in due:
            self._refresh(user_id, client, refused=None, margin=REFRESH_MARGIN)
        return due

    def _expiring(self, moment: datetime, margin: timedelta) -> bool:
        return moment - self._clock() < margin

    def _refresh(
        self,
        user_id: str,
        client: SmartcarClient,
        *,
        refused: str | None,
        margin: timedelta = ACCESS_MARGIN,
    ) -> UserTokens:
        refreshed: list[UserTokens] = []

        def edit(file: TokenFile) -> None:
            entry = file.users.get(user_id)
            if entry is None:
                raise NotConnected(f"Smartcar user {user_id} is not connected any more")
            expiring = self._expiring(entry.expires_at, ACCESS_MARGIN) or self._expiring(
                entry.refresh_expires_at, margin
            )
            if entry.access_token != refused and not expiring:
                refreshed.append(entry)  # refreshed meanwhile by someone else
                return
            tokens = client.refresh(entry.refresh_token)
            file.users[user_id] = entry.model_copy(
                update={**tokens.model_dump(), "updated_at": self._clock()}
            )
            refreshed.append(file.users[user_id])
            logger.info("Smartcar tokens refreshed", extra={"smartcar_user": user_id})

        self._change(edit)
        return refreshed[0]

    def _change(self, edit: Callable[[TokenFile], None]) -> None:
        """Load, edit and store the secret under the lease; nothing is stored if `edit` raises."""
        owner = uuid.uuid4().hex
        self._take_lock(owner)
        try:
            file = self.load()
            before = file.model_dump_json()
            edit(file)
            text = file.model_dump_json()
            if text != before:
                version = self._secrets.add_version(self._name, text)
                self._secrets.disable_versions(self._name, keep=version)
                self._prune()
        finally:
            self._locks().release_lock(LOCK_NAME, owner)

    def _prune(self) -> None:
        """Destroy the old disabled versions. The change itself is stored by then: a pruning
        the function may not do (a deployment whose role lacks `versions.destroy`) is logged,
        never the change's failure."""
        try:
            self._secrets.destroy_disabled(
                self._name, keep=KEPT_DISABLED_VERSIONS, limit=DESTROYED_PER_CHANGE
            )
        except ConfigError as exc:
            logger.warning("Smartcar token secret not pruned", extra={"error": str(exc)})

    def _take_lock(self, owner: str) -> None:
        waited = 0.0
        while True:
            now = self._clock()
            if self._locks().acquire_lock(LOCK_NAME, owner, now=now, until=now + LOCK_DURATION):
                return
            if waited >= LOCK_WAIT_SECONDS:
                raise RetryLater("Smartcar tokens are being changed by another call", retry_after=5)
            self._sleep(LOCK_POLL_SECONDS)
            waited += LOCK_POLL_SECONDS


class ApplicationToken:
    """The instance's v3 application token: fetched on first use, kept in memory until
    `APP_TOKEN_MARGIN` before its hour ends, fetched again early when Smartcar `refused` it.
    One per instance (the composition root makes one per stack); a lock keeps concurrent
    pulls from each fetching one. Never stored: it costs one request an hour to get again."""

    def __init__(
        self, *, api: Callable[[], SmartcarApi], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._api = api
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AppToken | None = None

    def __call__(self, *, refused: str | None = None) -> str:
        with self._lock:
            token = self._token
            if (
                token is None
                or token.value == refused
                or token.expires_at - self._clock() < APP_TOKEN_MARGIN
            ):
                token = self._token = self._api().application_token()
            return token.value


class ClientFactory:
    """A `SmartcarClient` with the application's credentials, the client secret read through
    the instance's secret cache when a call needs it (a missing secret fails that call only).

    The SDK's origins are set once, by the first client made: an instance that never calls
    Smartcar (a webhook, an hourly refresh with nobody connected) never imports the SDK.
    """

    def __init__(
        self,
        *,
        origins: SdkOrigins,
        secrets: CachedSecrets,
        client_secret_name: str,
        client_id: str,
        redirect_uri: str | None,
        mode: str,
        scopes: list[str],
        session: Callable[[], requests.Session],
        vehicle_api_url: str,
        token_url: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._session = session
        self._vehicle_api_url = vehicle_api_url
        self._token_url = token_url
        self._origins = origins
        self._configured = False
        self._secrets = secrets
        self._client_secret_name = client_secret_name
        self._client_id = client_id
        self._redirect_uri = redirect_uri
        self._mode = mode
        self._scopes = scopes
        self._clock = clock

    def _secret(self) -> str:
        name = self._client_secret_name
        try:
            return self._secrets.read(name).strip()
        except SecretNotFound as exc:
            raise ConfigError(missing("Smartcar client secret", name, exc)) from None

    def api(self) -> SmartcarApi:
        """The v3 client with the application's credentials, over the instance's session."""
        return SmartcarApi(
            session=self._session(),
            base_url=self._vehicle_api_url,
            token_url=self._token_url,
            client_id=self._client_id,
            client_secret=self._secret(),
            clock=self._clock,
        )

    def __call__(self) -> SmartcarClient:
        secret = self._secret()
        if not self._configured:
            configure_sdk(self._origins)
            self._configured = True
        return SmartcarClient(
            client_id=self._client_id,
            client_secret=secret,
            redirect_uri=self._redirect_uri,
            mode=self._mode,
            scopes=self._scopes,
            clock=self._clock,
        )


class TokenRefreshReport(Model):
    """What `refresh_devices` did for Smartcar: users whose refresh token it renewed."""

    source: str = "smartcar"
    refreshed: int = 0
    skipped: str | None = None
    error: str | None = None


class TokenRenewal:
    """Renews the refresh tokens that end within `REFRESH_MARGIN` (run hourly by refresh_devices).

    A refresh token lives 60 days and is renewed only by using it; a vehicle that is never
    pulled (webhooks only) would otherwise need a new Connect every two months.
    """

    def __init__(self, *, tokens: TokenStore, client: Callable[[], SmartcarClient]) -> None:
        self._tokens = tokens
        self._client = client

    def renew_expiring(self) -> TokenRefreshReport:
        if not self._tokens.load().users:
            return TokenRefreshReport(skipped="no Smartcar account connected")
        try:
            renewed = self._tokens.refresh_expiring(self._client())
        except (ConfigError, SmartcarError) as exc:
            logger.warning("Smartcar token renewal failed", extra={"error": str(exc)})
            return TokenRefreshReport(error=str(exc))
        return TokenRefreshReport(refreshed=len(renewed))
