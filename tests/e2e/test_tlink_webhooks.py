"""TLINK end to end: `webhooks` and `sync_device` as deployed processes (functions-framework).

The conformance payload (tests/data/tlink_push.json) and its located variant go over HTTP to
the receiver; positions land in the OsmAnd test server; the pull runs against the TLINK fake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.models import Device, Source
from shared.secrets import LocalSecretStore
from shared.sources.tlink.webhook import signature
from shared.store import Store
from shared.web import MAX_BODY_BYTES
from tests.e2e.functions import (
    REQUEST_TIMEOUT,
    ROOT,
    Function,
    environment,
    running,
)
from tests.fakes.osmand import OsmAndServer
from tests.fakes.tlink import FakeTlink

DATA = ROOT / "tests" / "data"
PUSH = (DATA / "tlink_push.json").read_bytes()
LOCATED = (DATA / "tlink_push_location.json").read_bytes()
SHARED_SECRET = "e2e-tlink-secret-0b6d41"
PATH_TOKEN = "e2e-path-token-93af7c"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["tlink-2864"]) as server:
        yield server


@pytest.fixture(scope="module")
def tlink() -> Iterator[FakeTlink]:
    with FakeTlink() as server:
        yield server


@pytest.fixture(scope="module")
def deployed(
    emulator: Emulator,
    traccar: OsmAndServer,
    tlink: FakeTlink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Function]]:
    workdir = tmp_path_factory.mktemp("tlink-e2e")
    secrets = LocalSecretStore(workdir / "secrets")
    secrets.add_version("tlink-webhook-secret", SHARED_SECRET)
    secrets.add_version("tlink-path-token", PATH_TOKEN)
    secrets.add_version("tlink-credentials", json.dumps(tlink.credentials(userId="385")))
    env = environment(
        emulator.address, workdir, TRACCAR_SERVER_URL=traccar.url, TLINK_API_URL=tlink.url
    )
    protected = {"TLINK_REQUIRE_SIGNATURE": "true", "TLINK_REQUIRE_PATH_TOKEN": "true"}
    # "webhooks" takes unprotected pushes on purpose; "default" is configured as shipped.
    specs = [
        ("webhooks", "webhooks", {"TLINK_ALLOW_UNAUTHENTICATED": "true"}),
        ("webhooks", "protected", protected),
        ("webhooks", "default", {}),
        ("sync_device", "sync_device", {}),
    ]
    with running(specs, env=env, workdir=workdir) as functions:
        yield functions


@pytest.fixture
def store(firestore_client: firestore.Client, traccar: OsmAndServer) -> Store:
    traccar.reset()
    traccar.clear_positions()
    return Store(firestore_client)


def post(function: Function, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(
        function.url + path,
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=REQUEST_TIMEOUT,
    )


def located_at(seconds_ago: int) -> bytes:
    """The located push, sent `seconds_ago` (recent: the pipeline's dedup window is a week)."""
    moment = datetime.now(SHANGHAI) - timedelta(seconds=seconds_ago)
    body = json.loads(LOCATED)
    body["time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in body["sensorsDates"]:
        sensor["times"] = moment.strftime("%H:%M:%S")
    return json.dumps(body).encode()


def test_the_conformance_push_is_stored_over_http(
    deployed: dict[str, Function], store: Store, firestore_client: firestore.Client
) -> None:
    answer = post(deployed["webhooks"], "/tlink", PUSH)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok", "deviceId": 2864, "storedReadings": 1,
                             "location": "none"}  # fmt: skip
    assert firestore_client.document("tlink_readings/2864_11922_1557468981").get().exists
    assert store.devices.get("tlink-2864") is not None


def test_four_simultaneous_deliveries_make_one_position_and_four_2xx(
    deployed: dict[str, Function], store: Store, traccar: OsmAndServer
) -> None:
    webhooks = deployed["webhooks"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: post(webhooks, "/tlink", LOCATED), range(4)))

    assert [answer.status_code for answer in answers] == [200] * 4
    # One copy runs the pipeline; every other is a duplicate or, when it arrived while that
    # copy's event was pending under its lease, handed off to the same outbox entry (keyed by
    # the position's fingerprint: ADR 0002), answered `queued` at once. One position either way.
    bodies = [answer.json() for answer in answers]
    copies = [body for body in bodies if body["status"] != "duplicate"]
    assert [body["status"] for body in copies] == ["ok"] * len(copies), bodies
    assert sorted(body["location"] for body in copies) == ["queued"] * (len(copies) - 1) + [
        "synced"
    ], bodies
    [position] = traccar.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        "tlink-2864",
        31.230416,
        121.473701,
    )


def test_simultaneous_pushes_of_one_device_all_reach_traccar(
    deployed: dict[str, Function], store: Store, traccar: OsmAndServer
) -> None:
    webhooks = deployed["webhooks"]
    bodies = [located_at(seconds_ago) for seconds_ago in (30, 20, 10)]

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda body: post(webhooks, "/tlink", body), bodies))

    assert [answer.status_code for answer in answers] == [200] * 3, [a.text for a in answers]
    # A push finding another's run holding the lease is handed off to the outbox and answered
    # at once ("queued"); that run delivers it before it lets go (issue 16, ADR 0002).
    assert {answer.json()["location"] for answer in answers} <= {"synced", "queued"}
    assert len(traccar.positions) == 3
    assert len({position.fix_time for position in traccar.positions}) == 3  # each once


def test_the_protected_receiver_wants_its_path_token_and_signature(
    deployed: dict[str, Function], store: Store
) -> None:
    protected = deployed["protected"]
    good = signature(SHARED_SECRET, PUSH)

    no_token = post(protected, "/tlink", PUSH, **{"X-TLink-Signature": good})
    unsigned = post(protected, f"/tlink/{PATH_TOKEN}", PUSH)
    accepted = post(protected, f"/tlink/{PATH_TOKEN}", PUSH, **{"X-TLink-Signature": good})

    assert (no_token.status_code, unsigned.status_code, accepted.status_code) == (404, 401, 200)
    assert no_token.json()["error"] == "no such route"


def test_a_receiver_configured_with_no_protection_refuses_pushes_naming_what_to_set(
    deployed: dict[str, Function], store: Store, firestore_client: firestore.Client
) -> None:
    answer = post(deployed["default"], "/tlink", PUSH)

    assert answer.status_code == 503, answer.text
    assert "TLINK_REQUIRE_PATH_TOKEN" in answer.json()["error"]
    assert not list(firestore_client.collection("tlink_readings").stream())
    assert store.devices.get("tlink-2864") is None


def test_an_oversized_push_is_a_json_413(deployed: dict[str, Function], store: Store) -> None:
    answer = post(deployed["webhooks"], "/tlink", b"{" + b" " * MAX_BODY_BYTES + b"}")

    assert answer.status_code == 413 and "error" in answer.json()


def test_sync_device_pulls_a_tlink_device_on_schedule(
    deployed: dict[str, Function], store: Store, tlink: FakeTlink, traccar: OsmAndServer
) -> None:
    store.devices.put(
        Device(id="tlink-2864", source=Source.TLINK, name="", traccar_unique_id="tlink-2864")
    )
    tlink.set_devices(
        "385",
        [{"id": 2864, "deviceName": "Cold room", "lat": "31.2304", "lng": "121.4737",
          "sensorsList": [{"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1,
                           "value": "4.5", "updateDate": "2019-05-10 15:00:00"}]}],
    )  # fmt: skip

    answer = requests.post(
        deployed["sync_device"].url, json={"device_id": "tlink-2864"}, timeout=REQUEST_TIMEOUT
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["pushed"] == 1
    [position] = traccar.positions
    assert position.attributes["Temperature"] == 4.5
    assert store.devices.get("tlink-2864").name == "Cold room"  # type: ignore[union-attr]
