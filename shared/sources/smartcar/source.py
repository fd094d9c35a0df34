"""The Smartcar pull source: a vehicle's position read from Smartcar, for sync jobs.

API v3 (PROTOCOLS.md §3): a vehicle whose user id is known (its record, one read: recorded by
Connect's redirect or a webhook's `data.user.id`) is read with one `GET /vehicles/{id}/signals`
(one call of the monthly budget per pull), with the instance's application token and
`sc-user-id`; when Smartcar refuses the token (its hour ended early) a new one is fetched and
the read repeated once. Every signal is read as a webhook delivery's are
(`signals.read_signals`): the same attributes, units and names on both paths. Once a v3 read
succeeded, the vehicle's v2 tokens, if any, are dropped (`TokenStore.forget_vehicle`).

A pull is deduplicated on what it fetched, as a delivery is on its `eventId` (issue 16): a parked
car answers the same location with the same `oemUpdatedAt` pull after pull, with a new state of
charge now and then. A pull whose readings (value and time of each signal) are all already the
vehicle's latest (its record: what earlier pulls and webhook deliveries stored) gives nothing;
one that fetched a new reading gives one position with all it fetched, timed at its newest
reading, at the fetched location (or the last known one), `valid=false` when that location is
not newer than the record's (`signals.to_location`, as a delivery). The fetched readings are
merged into the record, so the views show them and the next pull compares with them, by the
run's final commit (`Fetched.writes`, `SmartcarStore.signals_write`): a process dying between
the fetch and the push leaves the record as it was, and the next pull fetches the readings as
new again. The position's fingerprint carries a digest of what was fetched
(`Location.delivery`), so the same fetch never makes a second position once it was delivered,
even if that write was lost.

A vehicle connected before the upgrade whose record has no user id yet is moved to API v3 by
its pull (the v2 Vehicles API is deprecated, PROTOCOLS.md §3): the user id is the key its v2
tokens are filed under (`TokenFile.user_of`: Connect filed them under v2 `GET /user`'s id), or,
when that key is not a UUID, the form every Smartcar user id has (so not a user id: the
tokens were filed under another key), v2 `GET /user` asked with its access token.
That id is what v3's `sc-user-id` takes (Smartcar's docs, in tests/fakes/smartcar.py's
docstring). The vehicle is read with v3 and the id recorded on its record by the run's final
commit (`signals_write`'s `fill`, with what was fetched). Its v2 tokens are kept by that pull
and dropped by the next one, the first to read the recorded id (`_v3`): dropped in the same
pull, a process dying before the final commit would leave the vehicle with neither tokens nor
a recorded user id, that is a new Connect. When v3 refuses that user id for the vehicle (or
cannot be reached), the pull reads with v2 as before, logs it and records nothing; the next
pull tries v3 again.

Read with v2: the location, odometer and battery in one batch request, with an access token
refreshed when it nears its end, or once more when Smartcar refuses it.

A vehicle whose permissions do not include the location gives no position. A position dated
more than `MAX_FUTURE_SKEW` ahead of the clock is skipped and logged: recorded, it would stand
above every genuine position to come (issue 13).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from shared.models import (
    AttributeValue,
    Device,
    Fetched,
    Location,
    Source,
    too_far_ahead,
    utc_now,
)
from shared.sources.smartcar.client import (
    SignalsRead,
    SmartcarApi,
    SmartcarClient,
    VehicleSnapshot,
)
from shared.sources.smartcar.errors import SmartcarAuthError, SmartcarError, SmartcarResponseError
from shared.sources.smartcar.signals import METRES_PER_KM
from shared.sources.smartcar.tokens import ApplicationToken, TokenStore
from shared.store import Writes
from shared.store.repository import Versioned
from shared.store.smartcar import SignalEntry, SmartcarStore, VehicleRecord

if TYPE_CHECKING:
    from shared.sources.smartcar.payloads import Signal

logger = logging.getLogger(__name__)


class SmartcarSource:
    source = Source.SMARTCAR

    def __init__(
        self,
        *,
        client: Callable[[], SmartcarClient],
        api: Callable[[], SmartcarApi],
        app_token: ApplicationToken,
        store: Callable[[], SmartcarStore],
        tokens: TokenStore,
        max_future_skew: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._api = api
        self._app_token = app_token
        # The vehicle records: a vehicle's user id and latest signals (one read per pull).
        self._store = store
        self._tokens = tokens
        self._max_future_skew = max_future_skew
        self._clock = clock

    def fetch(self, device: Device) -> Fetched:
        read = self._store().vehicle_read(device.id)
        user_id = read.value.user_id if read.value is not None else None
        if user_id is not None:
            location, writes = self._v3(device, user_id, read)
        else:
            location, writes = self._upgrade(device, read)
        if location is not None and too_far_ahead(
            location.timestamp, now=self._clock(), skew=self._max_future_skew
        ):
            logger.warning(
                "Smartcar position dated ahead of the clock skipped (MAX_FUTURE_SKEW)",
                extra={"vehicle_id": device.id, "timestamp": location.timestamp},
            )
            location = None
        # The readings are recorded by the run's final commit, with the position's outcome.
        return Fetched([] if location is None else [location], writes=writes)

    def _upgrade(
        self, device: Device, read: Versioned[VehicleRecord]
    ) -> tuple[Location | None, Writes | None]:
        """A vehicle whose record names no user: read with v3 under the user its v2 tokens
        belong to, that user id recorded; with v2 when there is none or v3 refuses it."""
        owner = self._tokens.load().user_of(device.id)
        if owner is None:
            return self._v2(device), None  # NotConnected: no tokens either
        user_id = owner if _is_user_id(owner) else self._v2_user_id(device)
        if user_id is None:
            return self._v2(device), None
        try:
            found = self._signals(device.id, user_id)
        except SmartcarError as exc:
            logger.warning(
                "Smartcar API v3 refused the v2 tokens' user for this vehicle: read with v2",
                extra={"vehicle_id": device.id, "smartcar_user": user_id, "error": str(exc)},
            )
            return self._v2(device), None
        logger.info(
            "Smartcar vehicle read with API v3: its user id, from its v2 tokens, is recorded",
            extra={"vehicle_id": device.id, "smartcar_user": user_id},
        )
        if read.value is None:
            read = Versioned(VehicleRecord(id=device.id))
        learned = {"user_id": user_id, "make": found.make, "model": found.model,
                   "year": found.year, "traccar_unique_id": device.traccar_unique_id}  # fmt: skip
        return self._located(device, read, found, fill=learned)

    def _v2_user_id(self, device: Device) -> str | None:
        """The user id v2 `GET /user` gives for the vehicle's access token (one v2 call);
        None (logged) when Smartcar does not give it."""
        client = self._client()
        token = self._tokens.access_token(device.id, client)
        try:
            try:
                return client.user_id(token)
            except SmartcarAuthError:
                return client.user_id(self._tokens.access_token(device.id, client, refused=token))
        except SmartcarError as exc:
            logger.warning(
                "Smartcar v2 user of the vehicle's tokens not read: read with v2",
                extra={"vehicle_id": device.id, "error": str(exc)},
            )
            return None

    def _signals(self, vehicle_id: str, user_id: str) -> SignalsRead:
        """The vehicle's v3 signals, with a new application token once if Smartcar refused
        the one kept (its hour ended early)."""
        api = self._api()
        token = self._app_token()
        try:
            return api.signals(vehicle_id, user_id, token)
        except SmartcarAuthError:
            return api.signals(vehicle_id, user_id, self._app_token(refused=token))

    def _v3(
        self, device: Device, user_id: str, read: Versioned[VehicleRecord]
    ) -> tuple[Location | None, Writes | None]:
        """A vehicle whose record names its user: read with v3."""
        found = self._signals(device.id, user_id)
        # The v2 tokens are of no more use for this vehicle: dropped (a no-op once done). Only
        # here, once the user id is recorded: never in the pull that learned it (`_upgrade`).
        self._tokens.forget_vehicle(device.id)
        return self._located(device, read, found)

    def _located(
        self,
        device: Device,
        read: Versioned[VehicleRecord],
        found: SignalsRead,
        *,
        fill: Mapping[str, object] | None = None,
    ) -> tuple[Location | None, Writes | None]:
        """The pull's position (None: nothing new) and the write merging what it fetched (and
        `fill`) into the vehicle's record, for the run's final commit."""
        # Imported here: the payload models and the webhook's merge load only where a vehicle
        # is read (a cold instance answering for another vendor never imports them).
        from shared.sources.smartcar import signals
        from shared.sources.smartcar.payloads import Signal
        from shared.sources.smartcar.webhook import last_known_of, merge_signals

        parsed = []
        for raw in found.signals:
            try:
                parsed.append(Signal.model_validate(raw))
            except ValidationError:
                logger.info("Smartcar signal not understood", extra={"vehicle_id": device.id})
        now = self._clock()
        # A signal dated ahead would stay the vehicle's latest (and its position the newest)
        # until that date: skipped here, as a delivery's are (issue 13).
        parsed, ahead = signals.split_ahead(parsed, now=now, skew=self._max_future_skew)
        if ahead:
            logger.warning("Smartcar signals dated ahead of the clock skipped (MAX_FUTURE_SKEW)",
                           extra={"vehicle_id": device.id, "skipped": ahead})  # fmt: skip
        record = read.value
        assert record is not None  # a user id was read from it, or a blank one made
        new = [signal for signal in parsed if _is_new(signal, record.signals.get(signal.code))]
        if not new:
            logger.info("Smartcar pull fetched nothing new", extra={"vehicle_id": device.id})
            return None, self._store().signals_write(read, record.signals, fill=fill)
        fetched = _digest(parsed)
        times = [signal.measured_at() for signal in parsed]
        newest = max((moment for moment in times if moment is not None), default=None)
        reading = signals.read_signals(parsed)
        position, located_at = last_known_of(record)
        location = signals.to_location(
            device.id,
            reading,
            delivered_at=newest or int(now.timestamp()),
            last_known=position,
            last_located_at=located_at,
            delivery=f"pull:{fetched}",
        )
        merged = merge_signals(
            record.signals,
            parsed,
            event_id=f"pull:{fetched}",
            now=now,
            fallback_time=int(now.timestamp()),
        )
        return location, self._store().signals_write(read, merged, fill=fill)

    def _v2(self, device: Device) -> Location | None:
        """A vehicle connected before API v3, its user id not known yet: its v2 tokens."""
        client = self._client()
        tokens = self._tokens
        token = tokens.access_token(device.id, client)
        try:
            snapshot = client.snapshot(device.id, token)
        except SmartcarAuthError:
            token = tokens.access_token(device.id, client, refused=token)
            snapshot = client.snapshot(device.id, token)
        return self._location(device, snapshot)

    def _location(self, device: Device, snapshot: VehicleSnapshot) -> Location | None:
        if snapshot.latitude is None or snapshot.longitude is None:
            return None
        attributes: dict[str, AttributeValue] = {}
        if snapshot.odometer_km is not None:
            attributes["odometer"] = round(snapshot.odometer_km * METRES_PER_KM, 1)
        if snapshot.battery_percent is not None:
            attributes["stateOfCharge"] = snapshot.battery_percent
        if snapshot.range_km is not None:
            attributes["range"] = round(snapshot.range_km, 3)
        try:
            return Location(
                id=device.id,
                lat=snapshot.latitude,
                lon=snapshot.longitude,
                timestamp=snapshot.measured_at or int(self._clock().timestamp()),
                battery=snapshot.battery_percent,
                source=Source.SMARTCAR,
                attributes=attributes,
            )
        except ValidationError as exc:
            raise SmartcarResponseError(
                f"Smartcar's location of vehicle {device.id} is not a position: "
                f"{exc.errors()[0]['msg']}"
            ) from None


def _is_user_id(key: str) -> bool:
    """Whether a token file's user key is a Smartcar user id: a UUID, as v2 `GET /user` and
    Connect's `user_id` give them (tests/fakes/smartcar.py's docstring cites the pages)."""
    try:
        uuid.UUID(key)
    except ValueError:
        return False
    return True


def _is_new(signal: Signal, stored: SignalEntry | None) -> bool:
    """Whether a fetched signal is a reading the vehicle's record does not hold yet: another
    value, or the same value measured again (another `oemUpdatedAt`). A failure is no reading,
    and a signal without `oemUpdatedAt` is compared on its value alone: its other times
    (`retrievedAt`) change with every call."""
    if signal.body is None:
        return False
    if stored is None or stored.body is None or stored.body != signal.body:
        return True
    measured = _oem_time(signal)
    return measured is not None and measured != stored.measured_at


def _oem_time(signal: Signal) -> int | None:
    # Imported here, as in `_v3`: the payload models load only where a vehicle is read.
    from shared.sources.smartcar.payloads import epoch_seconds

    return epoch_seconds(signal.meta.oemUpdatedAt)


def _digest(fetched: list[Signal]) -> str:
    """What a pull fetched, as a short digest: each signal's code, `oemUpdatedAt` and value or
    failure (not `retrievedAt`, which changes with every call)."""
    parts = sorted(
        json.dumps([signal.code, _oem_time(signal), signal.body,
                    signal.failure() if signal.body is None else None],
                   sort_keys=True, default=str, separators=(",", ":"))
        for signal in fetched
    )  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
