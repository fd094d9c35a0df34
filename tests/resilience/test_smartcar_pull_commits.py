"""A Smartcar pull whose process dies between its fetch and its push, or whose vehicle record
a webhook delivery writes while it runs.

A pull compares what it fetched with the vehicle's record (its latest readings) and gives a
position only when something is new. The readings are merged into the record by the run's
final commit (`Fetched.writes`), never before the push: a process killed in between (the
death simulated as in `test_webhook_commits`: the push raises `ProcessDied` and the process's
Firestore client is cut at that moment) leaves the record as it was, and the next pull, once
the dead run's lease has ended, fetches the same readings as new and delivers their position.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import Location, utc_now
from shared.pipeline import PULL_LEASE_DURATION
from shared.runtime import Runtime
from shared.store.smartcar import SignalEntry, SmartcarStore, VehicleRecord
from tests.conftest import PROJECT, Clock, make_settings
from tests.fakes.osmand import DuplicateDevice, OsmAndServer
from tests.fakes.smartcar import FakeVehicle, SmartcarServer
from tests.integration.test_smartcar_pull import (
    CAR,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    connect_vehicles,
    device,
)
from tests.resilience.faults import FaultyClient
from tests.resilience.test_webhook_commits import DyingSession, ProcessDied, with_clock

CHARGE = "tractionbattery-stateofcharge"
ODOMETER = "odometer-traveleddistance"


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=REDIRECT_URI
    ) as server:
        server.add_vehicle(FakeVehicle(CAR))
        yield server


@pytest.fixture
def client(emulator: Emulator, firestore_client: firestore.Client) -> FaultyClient:
    return FaultyClient(project=PROJECT)


def make_runtime(
    client: firestore.Client, smartcar: SmartcarServer, osmand: OsmAndServer, tmp_path: Path
) -> Runtime:
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
    runtime = Runtime(settings, firestore_client=client)
    runtime.secrets.add_version(settings.smartcar_client_secret_secret, CLIENT_SECRET)
    with contextlib.suppress(DuplicateDevice):  # the other instance's Traccar knows it too
        osmand.add_known_id(f"smartcar-{CAR}")
    return runtime


@pytest.fixture
def runtime(
    client: FaultyClient, smartcar: SmartcarServer, osmand: OsmAndServer, tmp_path: Path
) -> Runtime:
    return make_runtime(client, smartcar, osmand, tmp_path)


@pytest.fixture
def other(
    firestore_client: firestore.Client,
    smartcar: SmartcarServer,
    osmand: OsmAndServer,
    tmp_path: Path,
) -> Runtime:
    """Another instance (its own client): the one that runs after the death."""
    return make_runtime(firestore_client, smartcar, osmand, tmp_path)


def stored_signals(firestore_client: firestore.Client) -> dict[str, SignalEntry]:
    snapshot = firestore_client.document(f"smartcar_vehicles/{CAR}").get()
    return VehicleRecord.model_validate(snapshot.to_dict()).signals


def test_a_pull_whose_process_died_before_its_push_is_delivered_by_the_next_pull(
    runtime: Runtime,
    client: FaultyClient,
    other: Runtime,
    smartcar: SmartcarServer,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
    clock: Clock,
) -> None:
    connect_vehicles(runtime, utc_now)
    assert runtime.sync.sync_device(CAR).result.pushed == 1  # the parked car, delivered
    car = smartcar.vehicles[CAR]
    car.battery_fraction = 0.80  # charging while parked: a new reading to fetch
    car.signal_ages = {CHARGE: "2024-11-18T15:02:08.000Z"}
    before = stored_signals(firestore_client)

    with_clock(runtime, clock, DyingSession(client, after_push=False))
    with pytest.raises((ProcessDied, GoogleAPICallError)):
        runtime.sync.sync_device(CAR)  # fetched the new reading, killed at its push

    assert len(osmand.positions) == 1  # Traccar never got it
    assert stored_signals(firestore_client) == before  # nor does the record say it was had
    clock.advance(PULL_LEASE_DURATION.total_seconds() + 1)  # the dead run's lease has ended
    report = with_clock(other, clock).sync.sync_device(CAR)

    assert (report.result.pushed, report.result.error) == (1, None)
    parked, charging = osmand.positions
    assert (parked.attributes["batteryLevel"], charging.attributes["batteryLevel"]) == (78, 80)
    assert charging.fix_time.isoformat() == "2024-11-18T15:02:08+00:00"
    assert stored_signals(firestore_client)[CHARGE].body == {"unit": "percent", "value": 80.0}
    # Recorded with the delivery: the same readings fetched again give nothing more.
    assert other.sync.sync_device(CAR).result.pushed == 0
    assert len(osmand.positions) == 2


def test_a_delivery_writing_the_record_during_a_pull_keeps_its_changes_and_the_pulls(
    other: Runtime,
    smartcar: SmartcarServer,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
) -> None:
    """The pull's record write joins its run's final commit: a webhook delivery that wrote the
    record after the pull read it fails nothing, and only the signals the pull changed are
    written (newest first against what it read), field by field."""
    runtime = other  # a client without faults
    connect_vehicles(runtime, utc_now)
    runtime.sync.sync_device(CAR)
    car = smartcar.vehicles[CAR]
    car.battery_fraction = 0.80
    car.signal_ages = {CHARGE: "2024-11-18T15:02:08.000Z"}
    store = SmartcarStore(firestore_client)
    source = runtime.smartcar_stack().source

    def delivered_meanwhile(record: VehicleRecord) -> VehicleRecord:
        # A newer odometer reading (2024-11-18T15:30:00Z, after the pull's), and the make.
        odometer = record.signals[ODOMETER].model_copy(
            update={"body": {"unit": "km", "value": 10300.0}, "measured_at": 1731943800}
        )
        signals = {**record.signals, ODOMETER: odometer}
        return record.model_copy(update={"make": "Tesla", "signals": signals})

    def fetch() -> list[Location]:
        found = source.fetch(device())
        store.record(new_device=device(), update=delivered_meanwhile, now=utc_now())
        return found

    report = runtime.pipeline.run(device(), fetch)

    assert (report.result.pushed, report.result.error) == (1, None)
    assert osmand.positions[-1].attributes["batteryLevel"] == 80
    record = store.vehicle(CAR)
    assert record is not None and record.make == "Tesla"  # the delivery's change stays
    assert record.signals[ODOMETER].body == {"unit": "km", "value": 10300.0}  # not the pull's
    assert record.signals[CHARGE].body == {"unit": "percent", "value": 80.0}  # the pull's
    assert runtime.sync.sync_device(CAR).result.pushed == 0  # recorded: nothing new again
