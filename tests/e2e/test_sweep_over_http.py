"""The sweep of handed-off deliveries as Cloud Scheduler calls it: `refresh_devices?sweep=only`
over HTTP, next to the `webhooks` function, both deployed processes on the emulator (issue 16).

A delivery that finds the device's lease held is handed off to the device's outbox and answered
at once; when the lease holder dies without delivering it, the sweep job (every minute in
the cloud, `infra/terraform/scheduler.tf`) delivers it once the lease has ended. Webhook-only
devices (TLINK here, Smartcar alike) have no sync job that would sweep after its run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import utc_now
from shared.store import Store
from tests.e2e.functions import REQUEST_TIMEOUT, ROOT, Function, environment, running
from tests.fakes.osmand import OsmAndServer

DATA = ROOT / "tests" / "data"
PUSH = (DATA / "tlink_push.json").read_bytes()  # TLINK's sample, no location
LOCATED = (DATA / "tlink_push_location.json").read_bytes()
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the zone of TLINK's naive times (default setting)
DEVICE = "tlink-2864"
# Long enough for a warm function to answer the delivery while the lease is held.
LEASE_SECONDS = 5


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=[DEVICE]) as server:
        yield server


@pytest.fixture(scope="module")
def deployed(
    emulator: Emulator, traccar: OsmAndServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Function]]:
    workdir = tmp_path_factory.mktemp("sweep-e2e")
    env = environment(emulator.address, workdir, TRACCAR_SERVER_URL=traccar.url)
    specs = [
        ("webhooks", "webhooks", {"TLINK_ALLOW_UNAUTHENTICATED": "true"}),
        ("refresh_devices", "refresh_devices", {}),
    ]
    with running(specs, env=env, workdir=workdir) as functions:
        yield functions


@pytest.fixture
def store(firestore_client: firestore.Client, traccar: OsmAndServer) -> Store:
    traccar.reset()
    traccar.clear_positions()
    return Store(firestore_client)


def post(function: Function, path: str, body: bytes = b"{}") -> requests.Response:
    return requests.post(
        function.url + path,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=REQUEST_TIMEOUT,
    )


def located_at(seconds_ago: int) -> bytes:
    moment = datetime.now(SHANGHAI) - timedelta(seconds=seconds_ago)
    body = json.loads(LOCATED)
    body["time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in body["sensorsDates"]:
        sensor["times"] = moment.strftime("%H:%M:%S")
    return json.dumps(body).encode()


def sweep(deployed: dict[str, Function]) -> list[str]:
    answer = post(deployed["refresh_devices"], "/?sweep=only")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The sweep and nothing else: no device refresh, no renewal, no alert evaluation.
    assert set(body) == {"swept"}
    return body["swept"]


def test_a_delivery_handed_off_under_a_lease_whose_holder_died_is_delivered_by_the_sweep(
    deployed: dict[str, Function], store: Store, traccar: OsmAndServer
) -> None:
    # Warm both functions (their runtimes load on the first request): the delivery below
    # must be answered while the lease is still held.
    assert post(deployed["webhooks"], "/tlink", PUSH).json()["location"] == "none"
    assert sweep(deployed) == []  # nothing handed off: one query, nothing run
    now = utc_now()
    until = now + timedelta(seconds=LEASE_SECONDS)
    store.delivery.acquire(DEVICE, "a-run-that-dies", now=now, until=until)

    answer = post(deployed["webhooks"], "/tlink", located_at(120))

    assert answer.status_code == 200, answer.text
    assert answer.json()["location"] == "queued"  # handed off, answered at once
    assert traccar.positions == []
    assert store.delivery.state(DEVICE).handoff_since is not None
    # The holder never delivers it: its run died. Once its lease has ended, the sweep does.
    time.sleep(max(0.0, (until - utc_now()).total_seconds()) + 0.5)
    assert sweep(deployed) == [DEVICE]
    [position] = traccar.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        DEVICE,
        31.230416,
        121.473701,
    )
    state = store.delivery.state(DEVICE)
    assert (state.outbox_count, state.handoff_since, state.lease_owner) == (0, None, None)
    assert sweep(deployed) == []  # delivered once
    assert len(traccar.positions) == 1


def test_a_sweep_request_with_another_value_is_a_400_naming_the_parameter(
    deployed: dict[str, Function], store: Store
) -> None:
    answer = post(deployed["refresh_devices"], "/?sweep=all")

    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "sweep" in answer.json()["error"]
