"""A vendor delivering the same event again and again, all at once: one position in Traccar.

The `webhooks` function runs as deployed (a functions-framework process: gunicorn, threads) on
the Firestore emulator. Smartcar retries a delivery it thinks failed, and its retries carry the
same `eventId` with their own delivery id and time, signed anew; TLINK resends the same body.
Here four copies arrive at the same moment, also while Traccar refuses positions: the event
becomes exactly one position in Traccar, once Traccar takes it.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import Device
from shared.runtime import Runtime
from shared.secrets import LocalSecretStore
from tests.conftest import PROJECT, make_settings
from tests.e2e.functions import REQUEST_TIMEOUT, ROOT, Function, environment, running
from tests.fakes.osmand import OsmAndServer

DATA = ROOT / "tests" / "data"
TOKEN = "resilience-smartcar-token-51d2"
SMARTCAR = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
VEHICLE = SMARTCAR["vehicleId"]
TLINK = json.loads((DATA / "tlink_push_location.json").read_text())
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the zone of TLINK's naive times (default setting)
COPIES = 4


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=[f"smartcar-{VEHICLE}", f"tlink-{TLINK['deviceId']}"]) as server:
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("duplicates")
    LocalSecretStore(folder / "secrets").add_version("smartcar-management-token", TOKEN)
    return folder


@pytest.fixture(scope="module")
def webhooks(emulator: Emulator, traccar: OsmAndServer, workdir: Path) -> Iterator[Function]:
    env = environment(
        emulator.address,
        workdir,
        TRACCAR_SERVER_URL=traccar.url,
        TLINK_ALLOW_UNAUTHENTICATED="true",  # TLINK's copies come unprotected, on purpose
    )
    with running([("webhooks", "webhooks", {})], env=env, workdir=workdir) as started:
        yield started["webhooks"]


@pytest.fixture
def osmand(traccar: OsmAndServer, firestore_client: firestore.Client) -> OsmAndServer:
    """Traccar up and empty, over an empty database (migrated, as a deployed one is long
    before copies race: the copies race each other, not the schema check of issue 20)."""
    from shared.store.migrations import Migrations

    Migrations(firestore_client).ensure_current()
    traccar.reset()
    traccar.clear_positions()
    return traccar


def smartcar_delivery(event_id: str) -> bytes:
    """A fresh delivery (its own delivery id and time) of the event `event_id`."""
    event = copy.deepcopy(SMARTCAR)
    event["eventId"] = event_id
    event["meta"]["deliveryId"] = str(uuid.uuid4())
    event["meta"]["deliveredAt"] = int(time.time() * 1000)
    return json.dumps(event).encode()


def tlink_push() -> bytes:
    body = copy.deepcopy(TLINK)
    moment = datetime.now(SHANGHAI) - timedelta(minutes=1)
    body["time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in body["sensorsDates"]:
        sensor["times"] = moment.strftime("%H:%M:%S")
    return json.dumps(body).encode()


def at_once(function: Function, path: str, bodies: list[bytes]) -> list[requests.Response]:
    def post(body: bytes) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if path == "/smartcar":
            headers["SC-Signature"] = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
        url = function.url + path
        return requests.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def statuses(answers: list[requests.Response]) -> list[str]:
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    return sorted(a.json()["status"] for a in answers)


def assert_one_processed(vendor: str, answers: list[requests.Response]) -> None:
    """One copy is processed in full; every other one is a duplicate, or, when it arrived while
    that copy's claim was pending under its lease, handed off to the device's outbox (ADR 0002:
    stored, answered at once; the outbox entry is keyed by the position's fingerprint, so it
    is the very entry the first copy's position would take, never a second position)."""
    kinds = statuses(answers)
    copies = [a.json() for a in answers if a.json()["status"] != "duplicate"]
    assert copies, kinds
    if vendor == "smartcar":
        assert sorted(c["status"] for c in copies) == ["processed"] + ["queued"] * (
            len(copies) - 1
        ), kinds
    else:  # TLINK answers "ok" for both; a handed-off copy's location is queued
        assert all(c["status"] == "ok" for c in copies), kinds
        assert sum(c["location"] != "queued" for c in copies) <= 1, copies


def test_four_redeliveries_of_one_smartcar_event_at_once_make_one_position(
    webhooks: Function, osmand: OsmAndServer
) -> None:
    event_id = str(uuid.uuid4())

    answers = at_once(webhooks, "/smartcar", [smartcar_delivery(event_id) for _ in range(COPIES)])

    assert_one_processed("smartcar", answers)
    assert len(osmand.positions) == 1


@pytest.mark.parametrize("vendor", ["smartcar", "tlink"])
def test_copies_arriving_at_once_while_traccar_refuses_make_one_position_once_it_is_back(
    vendor: str,
    webhooks: Function,
    osmand: OsmAndServer,
    emulator: Emulator,
    workdir: Path,
    tmp_path: Path,
) -> None:
    if vendor == "smartcar":
        event_id = str(uuid.uuid4())
        bodies = [smartcar_delivery(event_id) for _ in range(COPIES)]
        device_id = VEHICLE
    else:
        bodies = [tlink_push()] * COPIES
        device_id = f"tlink-{TLINK['deviceId']}"
    osmand.respond_with(503)

    answers = at_once(webhooks, f"/{vendor}", bodies)

    assert_one_processed(vendor, answers)
    assert osmand.positions == []
    osmand.reset()  # Traccar is back: the device's next pipeline run drains its outbox
    runtime = Runtime(
        make_settings(tmp_path, traccar_server_url=osmand.url, secrets_dir=workdir / "secrets"),
        firestore_client=firestore.Client(project=PROJECT),
    )
    device: Device | None = runtime.store.devices.get(device_id)
    assert device is not None
    # What the vendor's next delivery (or a manual sync) runs: nothing new, the outbox first.
    assert runtime.pipeline.run(device, list, force=True).result.pushed == 1
    assert len(osmand.positions) == 1
    assert runtime.pipeline.run(device, list, force=True).result.pushed == 0
