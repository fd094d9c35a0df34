"""The `webhooks` function as deployed (a functions-framework process) receiving Smartcar's
conformance deliveries over HTTP, on the emulator, feeding the OsmAnd test server."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.secrets import LocalSecretStore
from tests.e2e.functions import (
    REQUEST_TIMEOUT,
    ROOT,
    Function,
    environment,
    running,
)
from tests.fakes.osmand import OsmAndServer

DATA = ROOT / "tests" / "data"
TOKEN = "sc-management-token-e2e-4b9a1c"
STATE = (DATA / "smartcar_vehicle_state_v4.json").read_bytes()
EVENT = json.loads(STATE)
UNIQUE_ID = f"smartcar-{EVENT['vehicleId']}"
STORED = ("webhook_events", "smartcar_events", "smartcar_vehicles", "devices", "device_state")


@pytest.fixture(scope="module")
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=[UNIQUE_ID]) as server:
        yield server


@pytest.fixture(scope="module")
def webhooks(
    emulator: Emulator, traccar: OsmAndServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Function]:
    workdir = tmp_path_factory.mktemp("smartcar-e2e")
    LocalSecretStore(workdir / "secrets").add_version("smartcar-management-token", TOKEN)
    env = environment(emulator.address, workdir, TRACCAR_SERVER_URL=traccar.url)
    with running([("webhooks", "webhooks", {})], env=env, workdir=workdir) as functions:
        yield functions["webhooks"]


@pytest.fixture
def traccar_positions(firestore_client: firestore.Client, traccar: OsmAndServer) -> OsmAndServer:
    traccar.reset()
    traccar.clear_positions()
    return traccar


def post(function: Function, body: bytes, signature: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["SC-Signature"] = signature
    return requests.post(
        function.url + "/smartcar", data=body, headers=headers, timeout=REQUEST_TIMEOUT
    )


def sign(body: bytes) -> str:
    return hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()


def stored(client: firestore.Client) -> dict[str, int]:
    return {name: len(list(client.collection(name).stream())) for name in STORED}


@pytest.mark.parametrize(
    ("sample", "challenge"),
    [
        ("smartcar_verify_v4.json", "3a5c8f72-6a0e-4a41-8b43-9d5c1e0f2b7a"),
        ("smartcar_verify_v2.json", "9c9c9c9c"),
    ],
)
def test_verify_is_answered_with_the_challenge_hmac(
    webhooks: Function, firestore_client: firestore.Client, sample: str, challenge: str
) -> None:
    answer = post(webhooks, (DATA / sample).read_bytes())

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    expected = hmac.new(TOKEN.encode(), challenge.encode(), hashlib.sha256).hexdigest()
    assert answer.json() == {"challenge": expected}


def test_a_signed_delivery_reaches_traccar_as_one_position(
    webhooks: Function, traccar_positions: OsmAndServer, firestore_client: firestore.Client
) -> None:
    answer = post(webhooks, STATE, sign(STATE))

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "processed"
    [position] = traccar_positions.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        UNIQUE_ID, 37.4292, -122.1381)  # fmt: skip
    assert (
        int(position.fix_time.timestamp()) == 1731940331 and position.course == 174
    )  # deliveredAt
    assert position.attributes["batteryLevel"] == 78
    assert position.attributes["odometer"] == 10254300.0
    assert stored(firestore_client)["smartcar_events"] == 1


def test_the_same_event_delivered_four_times_at_once_makes_one_position(
    webhooks: Function, traccar_positions: OsmAndServer, firestore_client: firestore.Client
) -> None:
    signature = sign(STATE)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: post(webhooks, STATE, signature), range(4)))

    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    # One copy is processed; the others are duplicates or, arriving while its claim was
    # pending under the vehicle's lease, handed off ("queued") to the same outbox entry (ADR
    # 0002): one position either way.
    copies = sorted(a.json()["status"] for a in answers if a.json()["status"] != "duplicate")
    assert copies == ["processed"] + ["queued"] * (len(copies) - 1), [a.text for a in answers]
    assert len(traccar_positions.positions) == 1
    assert stored(firestore_client)["webhook_events"] == 1


@pytest.mark.parametrize("signature", [None, "0" * 64, sign(STATE + b"\n")])
def test_an_unsigned_or_missigned_delivery_is_a_401_and_stores_nothing(
    webhooks: Function,
    traccar_positions: OsmAndServer,
    firestore_client: firestore.Client,
    signature: str | None,
) -> None:
    answer = post(webhooks, STATE, signature)

    assert answer.status_code == 401
    assert "SC-Signature" in answer.json()["error"]
    assert traccar_positions.positions == []
    assert set(stored(firestore_client).values()) == {0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"eventId": "x", "eventType": ', "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"", "empty body"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_malformed_body_is_a_400_with_a_clear_message_and_stores_nothing(
    webhooks: Function, firestore_client: firestore.Client, body: bytes, message: str
) -> None:
    answer = post(webhooks, body, sign(body))

    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert set(stored(firestore_client).values()) == {0}


def test_a_signed_delivery_missing_its_vehicle_is_a_400(
    webhooks: Function, firestore_client: firestore.Client
) -> None:
    body = json.dumps({"eventId": "e-1", "eventType": "VEHICLE_STATE", "data": {}}).encode()

    answer = post(webhooks, body, sign(body))

    assert answer.status_code == 400 and "vehicleId" in answer.json()["error"]
    assert set(stored(firestore_client).values()) == {0}


def test_a_body_over_one_mebibyte_is_a_413_and_stores_nothing(
    webhooks: Function, firestore_client: firestore.Client
) -> None:
    body = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'

    answer = post(webhooks, body, sign(body))

    assert answer.status_code == 413
    assert "larger than" in answer.json()["error"]
    assert set(stored(firestore_client).values()) == {0}
