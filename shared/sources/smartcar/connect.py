"""Smartcar Connect: an operator starts it (`start`), Smartcar's redirect finishes it (`exchange`).

Decision: `GET /smartcar/connect` stays behind the API's bearer token like every other route.
It answers 302 to Smartcar Connect, with the same URL in its JSON body, so an operator runs
`curl -si -H "Authorization: Bearer $API_TOKEN" $API/smartcar/connect` and opens the URL in a
browser (or a script follows it). `GET /smartcar/exchange`, where Smartcar sends the browser
back, cannot get the bearer header from a browser, and a token in a query string would end up
in browser history and request logs: it is public, and the single-use `state` is what proves an
operator started the flow. The state is 32 random bytes; only its SHA-256 is stored
(`smartcar_connect_states`), it expires after `STATE_LIFETIME`, and the first exchange that
presents it deletes it, whatever the outcome (a code is single use too).

API v3 (PROTOCOLS.md §3; smartcar.com/docs `connect/handle-the-response`): Smartcar's redirect
names the user (`user_id`) instead of carrying a code, and there are no user tokens to keep. An
exchange lists the user's connections (`GET /connections?filter[userId]=`, application token
and `sc-user-id`; only those whose user is that user count, `SmartcarApi.connections`) and
records each vehicle as a device (`smartcar-<vehicleId>` in Traccar unless its device
document says otherwise) with the user id, which every later pull sends as `sc-user-id`. v2
tokens still held for those vehicles (a Connect before the upgrade) are dropped. A user id of
whom Smartcar lists no vehicle is refused: nothing is recorded.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import AwareDatetime, Field

from shared.errors import BadRequest
from shared.models import Model, utc_now
from shared.sources.smartcar.client import SmartcarApi, SmartcarClient, VehicleAttributes
from shared.sources.smartcar.errors import SmartcarAuthError
from shared.sources.smartcar.tokens import ApplicationToken, TokenStore
from shared.store.smartcar import ConnectState, SmartcarStore, VehicleRecord, vehicle_device

STATE_LIFETIME = timedelta(minutes=15)
STATE_BYTES = 32


class ConnectStart(Model):
    authorize_url: str
    expires_at: AwareDatetime


class ExchangeQuery(Model):
    """What Smartcar Connect puts on the redirect: a code, or an error, and our state."""

    user_id: str | None = Field(None, min_length=1, max_length=200)
    code: str | None = Field(None, min_length=1, max_length=2_000)  # v2 only: not used any more
    state: str | None = Field(None, min_length=1, max_length=500)
    error: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=2_000)


class ConnectedVehicle(Model):
    id: str
    make: str | None
    model: str | None
    year: int | None
    traccar_unique_id: str


class Connected(Model):
    status: str = "connected"
    user_id: str
    vehicles: list[ConnectedVehicle]


def state_id(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


class SmartcarConnect:
    """Connect's two halves: `start` (the operator) and `exchange` (Smartcar's redirect)."""

    def __init__(
        self,
        *,
        store: SmartcarStore,
        client: Callable[[], SmartcarClient],
        api: Callable[[], SmartcarApi],
        app_token: ApplicationToken,
        tokens: TokenStore,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._client = client
        self._api = api
        self._app_token = app_token
        self._tokens = tokens
        self._clock = clock

    def start(self) -> ConnectStart:
        """A fresh state, stored, and the Connect URL that carries it."""
        client = self._client()
        state = secrets.token_urlsafe(STATE_BYTES)
        now = self._clock()
        expires_at = now + STATE_LIFETIME
        url = client.authorize_url(state)
        self._store.put_state(
            ConnectState(id=state_id(state), created_at=now, expire_at=expires_at)
        )
        return ConnectStart(authorize_url=url, expires_at=expires_at)

    def exchange(self, query: ExchangeQuery) -> Connected:
        """Finish a Connect: check and spend the state, then the user's vehicles, devices."""
        store = self._store
        if query.state is None:
            raise BadRequest("state: missing; start again at GET /smartcar/connect")
        pending = store.take_state(state_id(query.state))
        now = self._clock()
        if pending is None:
            raise BadRequest("state: unknown or used already; start again at GET /smartcar/connect")
        if pending.expire_at <= now:
            raise BadRequest("state: expired; start again at GET /smartcar/connect")
        if query.error is not None:
            reason = (
                f"{query.error}: {query.error_description}"
                if query.error_description
                else query.error
            )
            raise BadRequest(f"Smartcar Connect was not completed ({reason})")
        user_id = query.user_id
        if user_id is None:
            raise BadRequest("user_id: missing; Smartcar Connect (API v3) names the user")

        api = self._api()
        token = self._app_token()
        try:
            described = api.connections(user_id, token)
        except SmartcarAuthError:
            described = api.connections(user_id, self._app_token(refused=token))
        if not described:
            raise BadRequest(f"user_id: Smartcar lists no vehicle connected by {user_id}")
        vehicles = [record_connected_vehicle(store, vehicle, user_id, now) for vehicle in described]
        for vehicle in described:
            self._tokens.forget_vehicle(vehicle.id)
        return Connected(user_id=user_id, vehicles=vehicles)


def record_connected_vehicle(
    store: SmartcarStore, vehicle: VehicleAttributes, user_id: str, now: datetime
) -> ConnectedVehicle:
    """Record `vehicle`, connected by `user_id`, as Smartcar lists it: its record (make, model
    and year when given, the user, when it was connected) and its device, made if new. Connect
    and the hourly discovery (`shared.sources.smartcar.refresh`) both call it."""
    new_device = vehicle_device(vehicle.id, vehicle.make, vehicle.model, vehicle.year, now)

    def update(record: VehicleRecord) -> VehicleRecord:
        described = {
            key: value
            for key, value in (
                ("make", vehicle.make),
                ("model", vehicle.model),
                ("year", vehicle.year),
            )
            if value
        }
        return record.model_copy(update={**described, "user_id": user_id, "connected_at": now})

    device, _ = store.record(new_device=new_device, update=update, now=now)
    return ConnectedVehicle(
        id=vehicle.id,
        make=vehicle.make,
        model=vehicle.model,
        year=vehicle.year,
        traccar_unique_id=device.traccar_unique_id,
    )
