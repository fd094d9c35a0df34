"""The TLINK source of one instance: pulls for `sync_device`, and the pieces pushes share.

`runtime.sources[Source.TLINK]` is a `TlinkSource`. `fetch(device)` pulls the device from
`getDeviceSensorDatas` (its bound user, else the credentials' `userId`) and feeds each answer
through the same ingestion as a push; the pipeline then pushes the Locations. `discover()`
pulls every device of a user, page after page, and records them (for a device refresh).
Everything is built on first use: a webhooks instance never builds the API client.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from shared.errors import ConfigError, Conflict
from shared.models import Device, Location, Source, utc_now
from shared.secrets import SecretNotFound
from shared.sources.tlink.client import TlinkAuthError, TlinkClient
from shared.sources.tlink.ingest import Ingestion, report_from_api, tlink_device_id
from shared.sources.tlink.models import Credentials
from shared.sources.tlink.store import TlinkRepository
from shared.sources.tlink.views import TlinkViews

if TYPE_CHECKING:
    from shared.runtime import Runtime

SECRET_CACHE_SECONDS = 60.0  # a rotated webhook secret is picked up within a minute


def tlink_source(runtime: Runtime) -> TlinkSource:
    """The instance's TLINK source, as `runtime.sources` holds it."""
    source = runtime.sources.get(Source.TLINK)
    if not isinstance(source, TlinkSource):
        raise ConfigError("runtime.sources has no TlinkSource for Source.TLINK")
    return source


class TlinkSource:
    source = Source.TLINK

    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._runtime = runtime
        self._clock = clock
        self._secrets: dict[str, tuple[str, float]] = {}
        self._secrets_lock = threading.Lock()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self._runtime.settings.tlink_time_zone)

    @functools.cached_property
    def repository(self) -> TlinkRepository:
        return TlinkRepository(self._runtime.firestore_client)

    @functools.cached_property
    def ingestion(self) -> Ingestion:
        retention = timedelta(days=self._runtime.settings.tlink_reading_retention_days)
        return Ingestion(self.repository, retention=retention, clock=self._clock)

    @functools.cached_property
    def views(self) -> TlinkViews:
        return TlinkViews(self.repository, self.zone)

    @functools.cached_property
    def client(self) -> TlinkClient:
        return TlinkClient(
            self._runtime.http_session,
            str(self._runtime.settings.tlink_api_url),
            credentials=self.credentials,
            state=self._runtime.store.state,
            clock=self._clock,
        )

    def credentials(self) -> Credentials:
        """The pull credentials, read from the secrets backend (the client keeps its copy)."""
        name = self._runtime.settings.tlink_credentials_secret
        try:
            return Credentials.model_validate_json(self._runtime.secrets.read(name))
        except SecretNotFound:
            raise TlinkAuthError(f"no TLINK credentials: store them in secret {name}") from None
        except ValidationError as exc:
            fields = sorted({".".join(map(str, error["loc"])) or "body" for error in exc.errors()})
            raise TlinkAuthError(
                f"secret {name} is not TLINK credentials JSON (check: {', '.join(fields)})"
            ) from None

    def secret(self, name: str) -> str:
        """A secret's value, cached for `SECRET_CACHE_SECONDS` (one read per minute at most)."""
        now = time.monotonic()
        with self._secrets_lock:
            cached = self._secrets.get(name)
            if cached is not None and now - cached[1] < SECRET_CACHE_SECONDS:
                return cached[0]
        value = self._runtime.secrets.read(name)
        with self._secrets_lock:
            self._secrets[name] = (value, now)
        return value

    def required_secret(self, name: str, setting: str) -> str:
        """A secret a setting turned on; its absence is a configuration error (500)."""
        try:
            value = self.secret(name).strip()
        except SecretNotFound:
            raise ConfigError(f"{setting} is on but secret {name} has no value") from None
        if not value:
            raise ConfigError(f"{setting} is on but secret {name} is empty")
        return value

    # --- Pull --------------------------------------------------------------------------------

    def fetch(self, device: Device) -> list[Location]:
        """Pull the device's data; store it; its Location when the position is known."""
        device_id = tlink_device_id(device)
        stored = self.repository.device(device_id)
        user_id = (stored.user_id if stored else None) or self.credentials().userId
        if not user_id:
            raise Conflict(
                f"no TLINK user is bound to {device.id}: it binds on its first push, or set "
                f"userId in secret {self._runtime.settings.tlink_credentials_secret}"
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
                f"{self._runtime.settings.tlink_credentials_secret}"
            )
        return [
            self.ingestion.apply(report_from_api(found, user, self.zone)).device
            for found in self.client.device_sensor_datas(user)
        ]
