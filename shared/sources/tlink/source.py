"""The TLINK source of one instance: pulls for `sync_device`, and the pieces pushes share.

`TlinkStack.source` (`runtime.sources[Source.TLINK]`) is a `TlinkSource`. `fetch(device)` pulls
the device from `getDeviceSensorDatas` (its bound user, else the credentials' `userId`) and
feeds each answer through the same ingestion as a push; the pipeline then pushes the
Locations. `discover()` pulls every device of a user, page after page, and records them.
The API client is built on first pull: a webhooks instance never builds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import requests
from pydantic import ValidationError

from shared.errors import ConfigError, Conflict
from shared.models import Device, Location, Source, utc_now
from shared.secrets import CachedSecrets, SecretNotFound, SecretStore, missing
from shared.sources.tlink.client import TlinkAuthError, TlinkClient
from shared.sources.tlink.ingest import Ingestion, report_from_api, tlink_device_id
from shared.sources.tlink.models import Credentials
from shared.store.sealed import SealedState
from shared.store.tlink import TlinkRepository, TokenDocument

if TYPE_CHECKING:
    from shared.notify import Notifier

SECRET_CACHE_SECONDS = 60.0  # a rotated webhook secret is picked up within a minute


class TlinkSource:
    source = Source.TLINK

    def __init__(
        self,
        *,
        repository: TlinkRepository,
        secrets: SecretStore,
        cached_secrets: CachedSecrets,
        http_session: requests.Session,
        state: SealedState,  # the access token's cache (`state/tlink_token`), sealed
        api_url: str,
        credentials_secret: str,
        time_zone: str,
        reading_retention: timedelta,
        max_future_skew: float,
        max_sensors_per_device: int,
        max_devices: int,
        notifier: Callable[[], Notifier],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.repository = repository
        self._secrets = secrets
        self._cached_secrets = cached_secrets
        self._http_session = http_session
        self._state = state
        self._api_url = api_url
        self._credentials_secret = credentials_secret
        self.zone = ZoneInfo(time_zone)
        self._clock = clock
        self.ingestion = Ingestion(
            repository,
            retention=reading_retention,
            max_future_skew=max_future_skew,
            max_sensors=max_sensors_per_device,
            max_devices=max_devices,
            notifier=notifier,
            clock=clock,
        )

    @functools.cached_property
    def client(self) -> TlinkClient:
        """Built on first pull: a webhooks instance never builds it."""
        return TlinkClient(
            self._http_session,
            self._api_url,
            credentials=self.credentials,
            token_cache=TokenDocument(self._state),
            clock=self._clock,
        )

    def credentials(self) -> Credentials:
        """The pull credentials, read from the secrets backend (the client keeps its copy)."""
        name = self._credentials_secret
        try:
            return Credentials.model_validate_json(self._secrets.read(name))
        except SecretNotFound as exc:
            raise TlinkAuthError(missing("TLINK credentials", name, exc)) from None
        except ValidationError as exc:
            fields = sorted({".".join(map(str, error["loc"])) or "body" for error in exc.errors()})
            raise TlinkAuthError(
                f"secret {name} is not TLINK credentials JSON (check: {', '.join(fields)})"
            ) from None

    def secret(self, name: str) -> str:
        """A secret's value, cached for `SECRET_CACHE_SECONDS` (one read per minute at most)."""
        return self._cached_secrets.read(name, max_age=SECRET_CACHE_SECONDS)

    def required_secret(self, name: str, setting: str) -> str:
        """A secret a setting turned on; its absence is a configuration error (500)."""
        try:
            value = self.secret(name).strip()
        except SecretNotFound as exc:
            raise ConfigError(
                f"{setting} is on but secret {name} has no value; {exc.how_to_store}"
            ) from None
        if not value:
            raise ConfigError(f"{setting} is on but secret {name} is empty")
        return value

    def accepted_secrets(
        self, name: str, setting: str, *, grace: timedelta, fresh: bool = False
    ) -> list[str]:
        """Every value of a rotated secret still accepted: the newest, and the one before it
        during `grace` (`shared.secrets.accepted_values`); none is a configuration error."""
        values = [
            value.strip()
            for value in self._cached_secrets.accepted(
                name, grace=grace, now=self._clock(), fresh=fresh
            )
            if value.strip()
        ]
        return values or [self.required_secret(name, setting)]

    # --- Pull --------------------------------------------------------------------------------

    def fetch(self, device: Device) -> list[Location]:
        """Pull the device's data; store it; its Location when the position is known."""
        device_id = tlink_device_id(device)
        stored = self.repository.device(device_id)
        user_id = (stored.user_id if stored else None) or self.credentials().userId
        if not user_id:
            raise Conflict(
                f"no TLINK user is bound to {device.id}: it binds on its first push, or set "
                f"userId in secret {self._credentials_secret}"
            )
        locations = []
        for found in self.client.device_sensor_datas(user_id, device_id=device_id):
            if found.id != device_id:  # TLINK filters by deviceId; never mix devices up
                continue
            ingested = self.ingestion.apply(report_from_api(found, user_id, self.zone))
            if ingested.location is not None:
                locations.append(ingested.location)
        return locations

    def discover(self, user_id: str | None = None) -> list[Device]:
        """Pull every device of `user_id` (default: the credentials' `userId`) and record them."""
        user = user_id or self.credentials().userId
        if not user:
            raise Conflict(
                "no TLINK user to discover: pass one or set userId in secret "
                f"{self._credentials_secret}"
            )
        return [
            self.ingestion.apply(report_from_api(found, user, self.zone)).device
            for found in self.client.device_sensor_datas(user)
        ]
