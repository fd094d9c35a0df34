"""The Smartcar pull source against a local Smartcar over real sockets: API v3 with the
instance's application token and `sc-user-id`; vehicles connected before the upgrade moved to
v3 under the user their v2 tokens are filed under, and read with those tokens (refreshed
before they expire) while v3 refuses that user."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import pytest
import requests
from google.cloud import firestore

from shared.models import Device, Fetched, Location, Source, utc_now
from shared.runtime import Runtime
from shared.sources.smartcar.connect import ExchangeQuery
from shared.sources.smartcar.errors import NotConnected, SmartcarAuthError, SmartcarRateLimited
from shared.sources.smartcar.stack import SmartcarStack
from tests.conftest import Clock, make_settings
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smartcar import ALL_PERMISSIONS, FakeVehicle, SmartcarServer

if TYPE_CHECKING:
    from shared.store.smartcar import VehicleRecord

CLIENT_ID = "8229df9f-91a0-4ff0-a1ae-a1f38ee24d07"
CLIENT_SECRET = "sc-client-secret-b7d1f0a2"
REDIRECT_URI = "https://bridge.example.test/smartcar/exchange"
CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
VAN = "1c2d3e4f-0000-4b0c-9d3e-aaaaaaaaaaaa"
REQUEST_TIMEOUT = 10.0
# A Smartcar user id (a UUID) the fake's v3 does not know: v2 tokens filed under it are read
# with v2 (v3 refuses that user for the vehicle).
UNKNOWN_USER = "0b7c6a3e-1d2f-4e5a-8b9c-0d1e2f3a4b5c"


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI
    ) as server:
        server.add_vehicle(FakeVehicle(CAR))
        yield server


@pytest.fixture
def runtime(
    firestore_client: firestore.Client,
    smartcar: SmartcarServer,
    osmand: OsmAndServer,
    tmp_path: Path,
) -> Runtime:
    # Settings alone point the SDK at the fake: nothing is set in the environment.
    settings = make_settings(
        tmp_path,
        traccar_server_url=osmand.url,
        smartcar_client_id=CLIENT_ID,
        smartcar_redirect_uri=REDIRECT_URI,
        smartcar_api_origin=smartcar.url,
        smartcar_auth_origin=smartcar.token_url,
        smartcar_connect_origin=smartcar.url,
        smartcar_vehicle_api_url=smartcar.vehicle_api_url,
        smartcar_iam_token_url=smartcar.iam_token_url,
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.secrets.add_version(settings.smartcar_client_secret_secret, CLIENT_SECRET)
    for vehicle in (CAR, VAN):
        osmand.add_known_id(f"smartcar-{vehicle}")
    return runtime


def smartcar_at(runtime: Runtime, clock: Callable[[], datetime]) -> SmartcarStack:
    """The runtime's Smartcar parts on the test's clock."""
    return runtime.smartcar_stack(clock=clock)


def connect_vehicles(runtime: Runtime, clock: Callable[[], datetime]) -> None:
    connect = smartcar_at(runtime, clock).connect
    started = connect.start()
    back = requests.get(started.authorize_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
    query = {k: v[0] for k, v in parse_qs(back.headers["Location"].split("?", 1)[1]).items()}
    connect.exchange(ExchangeQuery(**query))


def connect_before_v3(
    runtime: Runtime,
    smartcar: SmartcarServer,
    clock: Callable[[], datetime],
    *,
    filed_under: str | None = None,
) -> None:
    """The vehicles as a v2 Connect left them: a token pair in the secret, filed under the
    user's id (or `filed_under`), devices recorded, no user id known to the vehicle records."""
    from shared.sources.smartcar.client import TokenSet

    issued = smartcar.issue_legacy_tokens()
    now = clock()
    tokens = TokenSet(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=now + timedelta(seconds=issued["expires_in"]),
        refresh_expires_at=now + timedelta(days=60),
    )
    owner = filed_under or smartcar.user.id
    smartcar_at(runtime, clock).tokens.connect(owner, tokens, smartcar.user.vehicles)
    for vehicle_id in smartcar.user.vehicles:
        runtime.store.devices.put(device(vehicle_id))


def device(vehicle_id: str = CAR) -> Device:
    return Device(id=vehicle_id, source=Source.SMARTCAR, traccar_unique_id=f"smartcar-{vehicle_id}")


def stored_tokens(runtime: Runtime) -> dict:
    return json.loads(runtime.secrets.read(runtime.settings.smartcar_tokens_secret))


def v2_grants(smartcar: SmartcarServer) -> list[str]:
    """The v2 token requests (a refused v3 read's application token left out)."""
    return [grant for grant in smartcar.grants() if grant != "client_credentials"]


def v2_reads(smartcar: SmartcarServer) -> list[str]:
    return [r.path for r in smartcar.requests if r.path.startswith("/v2.0/")]


def test_a_sync_job_pulls_the_connected_vehicle_into_traccar(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    connect_vehicles(runtime, utc_now)

    report = runtime.sync.sync_device(CAR)

    assert (report.result.fetched, report.result.pushed) == (1, 1)
    [position] = osmand.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        f"smartcar-{CAR}", 37.4292, -122.1381)  # fmt: skip
    assert position.fix_time.isoformat() == "2024-11-18T14:32:08+00:00"  # sc-data-age
    assert position.attributes["batteryLevel"] == 78
    assert position.attributes["odometer"] == 10254300.0
    assert position.attributes["range"] == 402.5
    # API v3: one call of the budget, the application token and the user's id.
    [read] = smartcar.v3_calls(CAR)
    assert read.path == f"/v3/vehicles/{CAR}/signals"
    assert read.headers["sc-user-id"] == smartcar.user.id
    assert set(smartcar.grants()) == {"client_credentials"}  # no user token anywhere
    assert not [r for r in smartcar.requests if r.path.startswith("/v2.0/")]


def test_pulls_are_deduplicated_on_what_they_fetched_not_on_the_position(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    """Issue 16: a parked car answers the same location with the same oemUpdatedAt pull after
    pull. A pull that fetched a new reading gives one position with it (`valid=false`: the
    location is not new); one that fetched nothing new gives nothing."""
    connect_vehicles(runtime, utc_now)
    car = smartcar.vehicles[CAR]
    first = runtime.sync.sync_device(CAR)
    again = runtime.sync.sync_device(CAR)  # the same readings at the same times

    car.battery_fraction = 0.80  # charging while parked: a new state of charge, later
    car.signal_ages = {"tractionbattery-stateofcharge": "2024-11-18T15:02:08.000Z"}
    charged = runtime.sync.sync_device(CAR)
    charged_again = runtime.sync.sync_device(CAR)
    car.latitude, car.longitude = 37.4419, -122.1430  # it drives off
    car.signal_ages["location-preciselocation"] = "2024-11-18T15:20:00.000Z"
    moved = runtime.sync.sync_device(CAR)

    pushed = [r.result.pushed for r in (first, again, charged, charged_again, moved)]
    assert pushed == [1, 0, 1, 0, 1]
    parked, charging, driving = osmand.positions
    assert (charging.latitude, charging.longitude) == (parked.latitude, parked.longitude)
    assert parked.valid and not charging.valid and driving.valid
    assert charging.fix_time.isoformat() == "2024-11-18T15:02:08+00:00"  # its newest reading
    assert (parked.attributes["batteryLevel"], charging.attributes["batteryLevel"]) == (78, 80)
    assert charging.attributes["odometer"] == 10254300.0  # all it fetched, not only the new
    assert (driving.latitude, driving.longitude) == (37.4419, -122.1430)
    # What the pulls fetched is the vehicle's latest, for the views and the next pull.
    latest = runtime.smartcar.views.latest_signals(CAR).signals
    charge = next(entry for entry in latest if entry.code == "tractionbattery-stateofcharge")
    assert charge.body == {"unit": "percent", "value": 80.0}


def test_the_application_token_serves_every_pull_until_its_hour_ends(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    smartcar.add_vehicle(FakeVehicle(VAN, latitude=48.85, longitude=2.35))
    connect_vehicles(runtime, clock)
    stack = smartcar_at(runtime, clock)  # an instance of its own
    connected = len(smartcar.grants())

    stack.source.fetch(device(CAR))
    stack.source.fetch(device(VAN))
    clock.advance(timedelta(minutes=50).total_seconds())
    stack.source.fetch(device(CAR))
    assert len(smartcar.grants()) == connected + 1
    clock.advance(timedelta(minutes=9).total_seconds())  # its hour nearly over
    stack.source.fetch(device(CAR))

    assert smartcar.grants()[connected:] == ["client_credentials", "client_credentials"]
    reads = smartcar.v3_calls(CAR) + smartcar.v3_calls(VAN)
    assert len({r.headers["authorization"] for r in reads}) == 2


def test_a_refused_application_token_is_replaced_and_the_read_retried(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_vehicles(runtime, clock)
    stack = smartcar_at(runtime, clock)
    stack.source.fetch(device())
    fetched = len(smartcar.grants())
    smartcar.expire_app_tokens()
    smartcar.vehicles[CAR].battery_fraction = 0.8  # something new to fetch

    [location] = stack.source.fetch(device())

    assert (location.lat, location.battery) == (37.4292, 80)
    assert len(smartcar.grants()) == fetched + 1


def test_a_vehicle_connected_before_v3_keeps_its_v2_tokens_until_its_user_id_is_known(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    stack = smartcar_at(runtime, clock)

    [before] = stack.source.fetch(device())
    assert [r.path for r in smartcar.requests if r.path.endswith("/batch")]
    assert UNKNOWN_USER in stored_tokens(runtime)["users"]

    # A webhook delivery names the user (data.user.id): from then on, API v3.
    from shared.store.smartcar import SmartcarStore, VehicleRecord

    store = SmartcarStore(runtime.store.client)
    store.record(
        new_device=device(),
        update=lambda record: record.model_copy(update={"user_id": smartcar.user.id}),
        now=clock.now,
    )
    [after] = stack.source.fetch(device())

    assert (before.lat, after.lat) == (37.4292, 37.4292)
    users = [r.headers["sc-user-id"] for r in smartcar.v3_calls(CAR)]
    assert users == [UNKNOWN_USER, smartcar.user.id]  # refused, then the recorded user
    assert stored_tokens(runtime)["users"] == {}  # the v2 tokens are dropped
    assert isinstance(store.vehicle(CAR), VehicleRecord)


def vehicle_record(runtime: Runtime, vehicle_id: str = CAR) -> VehicleRecord | None:
    from shared.store.smartcar import SmartcarStore

    return SmartcarStore(runtime.store.client).vehicle(vehicle_id)


def test_a_vehicle_connected_before_v3_is_pulled_with_v3_under_its_tokens_user(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    """The v2 Vehicles API is deprecated (PROTOCOLS.md §3): a vehicle whose record names no
    user is read with v3 under the user its v2 tokens are filed under, and that id recorded."""
    connect_before_v3(runtime, smartcar, utc_now)
    tokens_secret = runtime.settings.smartcar_tokens_secret

    first = runtime.sync.sync_device(CAR)

    assert (first.result.fetched, first.result.pushed) == (1, 1)
    [read] = smartcar.v3_calls(CAR)
    assert read.headers["sc-user-id"] == smartcar.user.id
    assert v2_reads(smartcar) == []  # not one v2 call
    record = vehicle_record(runtime)
    assert record is not None and record.user_id == smartcar.user.id  # by the final commit
    assert (record.make, record.traccar_unique_id) == ("TESLA", f"smartcar-{CAR}")
    assert "location-preciselocation" in record.signals
    # Kept until a pull reads the recorded id: that pull drops them.
    assert CAR in stored_tokens(runtime)["users"][smartcar.user.id]["vehicles"]
    runtime.sync.sync_device(CAR)
    assert stored_tokens(runtime)["users"] == {}

    # The next pull needs no token file: none readable, every v2 token revoked.
    runtime.secrets.disable_versions(tokens_secret)
    smartcar.revoke_access_tokens()
    smartcar.revoke_refresh_tokens()
    car = smartcar.vehicles[CAR]
    car.battery_fraction = 0.8  # a new reading, measured later
    car.signal_ages = {"tractionbattery-stateofcharge": "2024-11-18T15:02:08.000Z"}
    third = runtime.sync.sync_device(CAR)

    assert third.result.pushed == 1 and osmand.positions[-1].attributes["batteryLevel"] == 80
    assert len(smartcar.v3_calls(CAR)) == 3 and v2_reads(smartcar) == []
    assert smartcar.grants() == ["client_credentials"]


def test_tokens_filed_under_no_user_id_are_asked_whose_they_are_with_v2_get_user(
    runtime: Runtime, smartcar: SmartcarServer
) -> None:
    connect_before_v3(runtime, smartcar, utc_now, filed_under="legacy-owner")

    assert runtime.sync.sync_device(CAR).result.pushed == 1

    assert v2_reads(smartcar) == ["/v2.0/user"]  # one v2 call, and no v2 read of the car
    assert [r.headers["sc-user-id"] for r in smartcar.v3_calls(CAR)] == [smartcar.user.id]
    record = vehicle_record(runtime)
    assert record is not None and record.user_id == smartcar.user.id


def test_a_v3_refusal_of_the_tokens_user_falls_back_to_v2_for_that_pull(
    runtime: Runtime,
    smartcar: SmartcarServer,
    osmand: OsmAndServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect_before_v3(runtime, smartcar, utc_now, filed_under=UNKNOWN_USER)

    with caplog.at_level("WARNING", logger="shared.sources.smartcar.source"):
        report = runtime.sync.sync_device(CAR)

    assert report.result.pushed == 1 and osmand.positions[-1].latitude == 37.4292
    # v3 was asked under the tokens' user and refused (404), then the v2 batch read the car.
    assert [r.headers["sc-user-id"] for r in smartcar.v3_calls(CAR)] == [UNKNOWN_USER]
    assert v2_reads(smartcar) == [f"/v2.0/vehicles/{CAR}/batch"]
    assert "refused the v2 tokens' user" in caplog.text
    # Nothing learned: no user id recorded, the v2 tokens kept for the next pull.
    record = vehicle_record(runtime)
    assert record is None or record.user_id is None
    assert CAR in stored_tokens(runtime)["users"][UNKNOWN_USER]["vehicles"]
    runtime.sync.sync_device(CAR)
    assert len(smartcar.v3_calls(CAR)) == 2  # each pull tries v3 again


def test_connect_drops_the_v2_tokens_of_the_vehicles_it_names(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock)

    connect_vehicles(runtime, clock)
    smartcar_at(runtime, clock).source.fetch(device())

    assert stored_tokens(runtime)["users"] == {}
    assert len(smartcar.v3_calls(CAR)) == 1


def test_an_access_token_near_its_end_is_refreshed_before_use(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    before = stored_tokens(runtime)["users"][UNKNOWN_USER]
    clock.advance(timedelta(hours=1, minutes=56).total_seconds())

    [location] = smartcar_at(runtime, clock).source.fetch(device())

    assert isinstance(location, Location) and location.lat == 37.4292
    assert v2_grants(smartcar) == ["refresh_token"]
    after = stored_tokens(runtime)["users"][UNKNOWN_USER]
    assert after["refresh_token"] != before["refresh_token"]
    assert datetime.fromisoformat(after["expires_at"]) == clock.now + timedelta(hours=2)
    # The old version holding the spent tokens is no longer readable.
    folder = runtime.settings.secrets_dir / runtime.settings.smartcar_tokens_secret
    assert sorted(p.name for p in folder.iterdir()) == ["1.disabled", "2"]


def test_a_fresh_access_token_is_used_as_it_is(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    clock.advance(timedelta(hours=1, minutes=54).total_seconds())

    smartcar_at(runtime, clock).source.fetch(device())

    assert v2_grants(smartcar) == []


def test_a_refused_access_token_is_refreshed_once_and_the_read_retried(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    smartcar.revoke_access_tokens()

    locations = smartcar_at(runtime, clock).source.fetch(device())

    assert len(locations) == 1
    assert v2_grants(smartcar) == ["refresh_token"]


def test_two_vehicles_of_one_user_syncing_at_once_refresh_the_tokens_once(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    smartcar.add_vehicle(FakeVehicle(VAN, latitude=48.85, longitude=2.35))
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    clock.advance(timedelta(hours=2).total_seconds())
    found: dict[str, list[Location]] = {}
    barrier = threading.Barrier(2)

    def pull(vehicle_id: str) -> None:
        barrier.wait()
        found[vehicle_id] = smartcar_at(runtime, clock).source.fetch(device(vehicle_id))

    threads = [threading.Thread(target=pull, args=(v,)) for v in (CAR, VAN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert smartcar.grants().count("refresh_token") == 1
    assert (found[CAR][0].lat, found[VAN][0].lat) == (37.4292, 48.85)


def test_refresh_tokens_near_their_end_are_renewed(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock)
    stack = smartcar_at(runtime, clock)
    store, client = stack.tokens, stack.client()

    clock.advance(timedelta(days=52).total_seconds())
    assert store.refresh_expiring(client) == []
    clock.advance(timedelta(days=2).total_seconds())
    assert store.refresh_expiring(client) == [smartcar.user.id]

    entry = stored_tokens(runtime)["users"][smartcar.user.id]
    assert datetime.fromisoformat(entry["refresh_expires_at"]) == clock.now + timedelta(days=60)


def test_a_revoked_connection_asks_for_a_new_connect(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock, filed_under=UNKNOWN_USER)
    smartcar.revoke_access_tokens()
    smartcar.revoke_refresh_tokens()

    with pytest.raises(SmartcarAuthError, match="invalid_grant"):
        smartcar_at(runtime, clock).source.fetch(device())


def test_a_vehicle_without_the_location_permission_gives_no_position(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    smartcar.vehicles[CAR].permissions = ALL_PERMISSIONS - {"read_location"}
    connect_vehicles(runtime, clock)

    assert smartcar_at(runtime, clock).source.fetch(device()) == []


def test_a_read_the_vehicle_does_not_permit_is_left_out(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    smartcar.vehicles[CAR].permissions = ALL_PERMISSIONS - {"read_odometer", "read_battery"}
    connect_vehicles(runtime, clock)

    [location] = smartcar_at(runtime, clock).source.fetch(device())

    assert location.attributes == {} and location.battery is None


def test_smartcars_rate_limit_is_a_retry_later_with_its_delay(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_vehicles(runtime, clock)
    smartcar.rate_limit(retry_after=30)

    with pytest.raises(SmartcarRateLimited) as raised:
        smartcar_at(runtime, clock).source.fetch(device())
    assert raised.value.retry_after == 30 and raised.value.status == 429


def test_a_vehicle_never_connected_is_reported_as_such(runtime: Runtime, clock: Clock) -> None:
    with pytest.raises(NotConnected, match="/smartcar/connect"):
        smartcar_at(runtime, clock).source.fetch(device())


def test_an_unreachable_smartcar_is_a_connection_error(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock, tmp_path: Path
) -> None:
    from shared.sources.smartcar.errors import SmartcarConnectionError

    connect_vehicles(runtime, clock)
    settings = runtime.settings.model_copy(
        update={"smartcar_vehicle_api_url": "http://127.0.0.1:9/v3"}
    )
    offline = Runtime(settings, firestore_client=runtime.firestore_client)

    with pytest.raises(SmartcarConnectionError, match="not reached"):
        smartcar_at(offline, clock).source.fetch(device())


def test_the_hourly_refresh_renews_refresh_tokens_near_their_end(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    assert smartcar_at(runtime, clock).renewal.renew_expiring().skipped
    connect_before_v3(runtime, smartcar, clock)

    assert smartcar_at(runtime, clock).renewal.renew_expiring().refreshed == 0
    clock.advance(timedelta(days=54).total_seconds())
    report = smartcar_at(runtime, clock).renewal.renew_expiring()

    assert (report.refreshed, report.error) == (1, None)
    entry = stored_tokens(runtime)["users"][smartcar.user.id]
    assert datetime.fromisoformat(entry["refresh_expires_at"]) == clock.now + timedelta(days=60)


def test_a_failed_renewal_is_reported_not_raised(
    runtime: Runtime, smartcar: SmartcarServer, clock: Clock
) -> None:
    connect_before_v3(runtime, smartcar, clock)
    smartcar.revoke_refresh_tokens()
    clock.advance(timedelta(days=54).total_seconds())

    report = smartcar_at(runtime, clock).renewal.renew_expiring()

    assert report.refreshed == 0 and report.error and "invalid_grant" in report.error


def test_a_pulled_position_dated_ahead_of_the_clock_is_skipped(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    smartcar.add_vehicle(FakeVehicle(VAN, data_age="2037-01-01T00:00:00.000Z"))
    connect_vehicles(runtime, utc_now)

    forged = runtime.sync.sync_device(VAN)
    genuine = runtime.sync.sync_device(CAR)

    assert (forged.result.fetched, forged.result.pushed) == (0, 0)  # skipped, not an error
    assert runtime.store.delivery.state(VAN).last_location is None
    assert genuine.result.pushed == 1
    assert [p.unique_id for p in osmand.positions] == [f"smartcar-{CAR}"]


def iso_ago(seconds: int) -> str:
    return (utc_now() - timedelta(seconds=seconds)).isoformat(timespec="seconds")


def delivery(runtime: Runtime, smartcar: SmartcarServer, latitude: float, ago: int) -> bytes:
    """A signed webhook delivery of CAR at `latitude`, measured `ago` seconds ago."""
    from tests.integration.test_smartcar_webhook import SAMPLE, TOKEN

    runtime.secrets.add_version(runtime.settings.smartcar_management_token_secret, TOKEN)
    event = json.loads(json.dumps(SAMPLE))
    event["eventId"] = f"delivery-{latitude}-{ago}"
    event["vehicleId"] = event["data"]["vehicle"]["id"] = CAR
    event["data"]["user"]["id"] = smartcar.user.id
    measured = (int(utc_now().timestamp()) - ago) * 1000
    event["data"]["signals"] = event["data"]["signals"][:1]  # the location alone
    event["data"]["signals"][0]["body"]["latitude"] = latitude
    event["data"]["signals"][0]["meta"] = {"oemUpdatedAt": measured}
    event["meta"]["deliveredAt"] = measured + 1000
    return json.dumps(event).encode()


def deliver(runtime: Runtime, raw: bytes) -> dict:
    from tests.integration.test_smartcar_webhook import sign

    return runtime.smartcar.webhook.receive(raw, sign(raw)).body


def stored_latitude(runtime: Runtime) -> float:
    latest = runtime.smartcar.views.latest_signals(CAR).signals
    [location] = [entry for entry in latest if entry.code == "location-preciselocation"]
    assert location.body is not None
    return location.body["latitude"]


def test_a_pulled_location_older_than_a_delivered_one_never_sends_the_car_back(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    # Smartcar's API may answer a location older than the one a webhook delivered (PROTOCOLS.md
    # §3: order by oemUpdatedAt): the pull's position stays at the newest place, invalid.
    car = smartcar.vehicles[CAR]
    car.data_age = iso_ago(300)
    connect_vehicles(runtime, utc_now)
    runtime.sync.sync_device(CAR)
    assert deliver(runtime, delivery(runtime, smartcar, 37.45, ago=120))["pushed"] == 1
    car.latitude = 37.4419  # measured before the delivered location, with a newer charge
    car.battery_fraction = 0.81
    car.signal_ages = {"location-preciselocation": iso_ago(200),
                       "tractionbattery-stateofcharge": iso_ago(60)}  # fmt: skip

    assert runtime.sync.sync_device(CAR).result.pushed == 1

    pulled = osmand.positions[-1]
    assert (pulled.latitude, pulled.valid, pulled.attributes["batteryLevel"]) == (37.45, False, 81)
    assert stored_latitude(runtime) == 37.45


def test_a_pull_never_overwrites_a_newer_location_delivered_during_its_run(
    runtime: Runtime, smartcar: SmartcarServer, osmand: OsmAndServer
) -> None:
    # A delivery arriving while a pull runs is handed off and its records committed at once;
    # the pull's records, committed after, must not put its older location in their place.
    car = smartcar.vehicles[CAR]
    car.data_age = iso_ago(300)
    connect_vehicles(runtime, utc_now)
    runtime.sync.sync_device(CAR)
    car.latitude, car.signal_ages = 37.4419, {"location-preciselocation": iso_ago(200)}
    answers = []

    def pull_while_a_delivery_arrives() -> Fetched:
        fetched = runtime.smartcar.source.fetch(device())
        answers.append(deliver(runtime, delivery(runtime, smartcar, 37.46, ago=100)))
        return fetched

    runtime.sync.pipeline.run(device(), pull_while_a_delivery_arrives)

    assert answers[0]["status"] == "queued"  # handed off under the pull's lease
    assert [p.latitude for p in osmand.positions[1:]] == [37.4419, 37.46]
    assert stored_latitude(runtime) == 37.46
    # So the next delivery without a newer location stays at the newest place.
    deliver(runtime, delivery(runtime, smartcar, 37.44, ago=150))
    assert (osmand.positions[-1].latitude, osmand.positions[-1].valid) == (37.46, False)
