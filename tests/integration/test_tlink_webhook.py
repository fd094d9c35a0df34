"""TLINK's push through the `webhooks` function's app, on the emulator and the OsmAnd test server.

`tests/data/tlink_push.json` is the conformance payload (PROTOCOLS.md §4);
`tlink_push_location.json` is the same packet with a location sensor ("lat,lng") and a switch
added, since TLINK documents no location payload of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.pipeline import CUT_RETRY_AFTER, WEBHOOK_ANSWER_WITHIN
from shared.runtime import get_runtime
from shared.secrets import LocalSecretStore
from shared.sources.tlink.webhook import signature
from shared.store import Store
from shared.web import MAX_BODY_BYTES
from tests.conftest import PROJECT, sweep
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PUSH = (DATA / "tlink_push.json").read_bytes()
LOCATED = (DATA / "tlink_push_location.json").read_bytes()
JSON = {"Content-Type": "application/json"}
SHARED_SECRET = "tlink-shared-secret-4c1d9e"
PATH_TOKEN = "p4th-t0ken-b7e2c9a1"
# 2019-05-10 14:16:21 Asia/Shanghai
PACKET_EPOCH = 1557468981


def body_with(base: bytes = PUSH, **changes: Any) -> bytes:
    data = json.loads(base)
    data.update(changes)
    return json.dumps(data).encode()


@pytest.fixture
def env(
    emulator: Emulator,
    firestore_client: firestore.Client,
    osmand: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    osmand.add_known_id("tlink-2864")
    yield {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "TRACCAR_SERVER_URL": osmand.url,
        # Most tests push without a protection, on purpose; the secure default has its own.
        "TLINK_ALLOW_UNAUTHENTICATED": "true",
    }
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture
def start(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., FlaskClient]:
    def start_webhooks(**extra: str) -> FlaskClient:
        for name, value in {**env, **extra}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        get_runtime.cache_clear()
        app = functions_framework.create_app("webhooks", str(ROOT / "functions/webhooks/main.py"))
        return app.test_client()

    return start_webhooks


@pytest.fixture
def webhooks(start: Callable[..., FlaskClient]) -> FlaskClient:
    return start()


@pytest.fixture
def secrets(env: dict[str, str]) -> LocalSecretStore:
    return LocalSecretStore(Path(env["SECRETS_DIR"]))


@pytest.fixture
def store(firestore_client: firestore.Client) -> Store:
    return Store(firestore_client)


def ids(client: firestore.Client, collection: str) -> list[str]:
    return sorted(snapshot.id for snapshot in client.collection(collection).stream())


def nothing_stored(client: firestore.Client) -> bool:
    return all(
        not ids(client, name)
        for name in ("tlink_devices", "tlink_readings", "webhook_events", "devices")
    )


# --- Ingestion -------------------------------------------------------------------------------


def test_the_conformance_push_binds_the_device_and_stores_its_reading(
    webhooks: FlaskClient, firestore_client: firestore.Client, osmand: OsmAndServer
) -> None:
    answer = webhooks.post("/tlink", data=PUSH, headers=JSON)

    assert answer.status_code == 200, answer.data
    assert answer.get_json() == {
        "status": "ok",
        "deviceId": 2864,
        "storedReadings": 1,
        "location": "none",
    }
    device = firestore_client.document("tlink_devices/2864").get().to_dict()
    assert (device["user_id"], device["parent_user_id"], device["device_id"]) == (
        "385",
        "217",
        2864,
    )
    latest = device["sensors"]["11922"]
    assert (latest["value"], latest["re_val"], latest["type_id"]) == ("5.0", "5.0000", 1)
    assert latest["time"] == datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC)
    reading = firestore_client.document(f"tlink_readings/2864_11922_{PACKET_EPOCH}").get()
    assert reading.exists and reading.to_dict()["value"] == "5.0"
    assert reading.to_dict()["expire_at"] == latest["time"] + timedelta(days=365)
    bridge = firestore_client.document("devices/tlink-2864").get().to_dict()
    assert (bridge["source"], bridge["traccar_unique_id"], bridge["name"]) == (
        "tlink",
        "tlink-2864",
        "TLINK 2864",
    )
    [event] = ids(firestore_client, "webhook_events")
    assert event.startswith("tlink-") and len(event) == len("tlink-") + 64
    # No position in the push and none known from the pull API: nothing goes to Traccar.
    assert osmand.positions == []


def test_a_redelivered_push_is_answered_without_storing_anything_twice(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    first = webhooks.post("/tlink", data=LOCATED, headers=JSON)
    device_before = firestore_client.document("tlink_devices/2864").get()

    again = webhooks.post("/tlink", data=LOCATED, headers=JSON)

    assert first.get_json()["status"] == "ok"
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert firestore_client.document("tlink_devices/2864").get().update_time == (
        device_before.update_time
    )
    assert len(ids(firestore_client, "tlink_readings")) == 3


def test_a_located_push_reaches_traccar_with_its_sensor_values(
    webhooks: FlaskClient, osmand: OsmAndServer
) -> None:
    answer = webhooks.post("/tlink", data=LOCATED, headers=JSON)

    assert answer.get_json() == {
        "status": "ok",
        "deviceId": 2864,
        "storedReadings": 3,
        "location": "synced",
    }
    [position] = osmand.positions
    assert position.unique_id == "tlink-2864"
    assert (position.latitude, position.longitude) == (31.230416, 121.473701)
    # The location sensor's own time, 14:16:20 in Shanghai.
    assert int(position.fix_time.timestamp()) == PACKET_EPOCH - 1
    assert position.attributes["sensor_11922"] == 5.0
    assert position.attributes["sensor_11926"] == 1.0
    assert "sensor_11925" not in position.attributes


def test_a_push_for_a_device_placed_by_the_pull_api_is_pushed_there_with_names(
    webhooks: FlaskClient, osmand: OsmAndServer
) -> None:
    from shared.sources.tlink.ingest import report_from_api
    from shared.sources.tlink.models import ApiDevice

    source = get_runtime().tlink.source
    pulled = ApiDevice.model_validate(
        {"id": 2864, "deviceName": "Cold room", "lat": "48.8566", "lng": "2.3522",
         "sensorsList": [{"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1,
                          "value": "4.0", "unit": "℃"}]}
    )  # fmt: skip
    source.ingestion.apply(report_from_api(pulled, "385", source.zone))

    answer = webhooks.post("/tlink", data=PUSH, headers=JSON)

    assert answer.get_json()["location"] == "synced"
    [position] = osmand.positions
    assert (position.latitude, position.longitude) == (48.8566, 2.3522)
    assert not position.valid  # the console's pin, not a fix (PROTOCOLS.md §4)
    assert int(position.fix_time.timestamp()) == PACKET_EPOCH
    assert position.attributes["Temperature"] == 5.0


def test_a_location_of_unknown_encoding_loses_that_position_only(
    webhooks: FlaskClient, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    located = json.loads(LOCATED)
    located["sensorsDates"][1]["value"] = "N31.2 E121.4"
    raw = json.dumps(located).encode()

    answer = webhooks.post("/tlink", data=raw, headers=JSON)

    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["storedReadings"], body["location"]) == (3, "none")
    [skipped] = body["skipped"]
    assert "sensorsId 11925" in skipped and '"lat,lng"' in skipped
    assert osmand.positions == []
    assert len(ids(firestore_client, "tlink_readings")) == 3
    [event] = [s.to_dict() for s in firestore_client.collection("webhook_events").stream()]
    assert event["skipped"] == [skipped]


def test_a_push_keeps_a_switch_state_from_switcher(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    webhooks.post("/tlink", data=LOCATED, headers=JSON)

    document = firestore_client.collection("tlink_devices").document("2864").get().to_dict()
    assert document["sensors"]["11926"]["switcher"] == "1"


def test_the_latest_value_only_moves_forward_while_history_keeps_both(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    newer = body_with(
        time="2019-05-10 15:00:00",
        sensorsDates=[
            {"sensorsId": 11922, "sensorsTypeId": 1, "value": "7.5", "times": "15:00:00"}
        ],
    )
    older = body_with(time="2019-05-10 14:00:00", sensorsDates=[
        {"sensorsId": 11922, "sensorsTypeId": 1, "value": "3.5", "times": "14:00:00"}])  # fmt: skip

    assert webhooks.post("/tlink", data=newer, headers=JSON).status_code == 200
    assert webhooks.post("/tlink", data=older, headers=JSON).status_code == 200

    latest = firestore_client.document("tlink_devices/2864").get().to_dict()["sensors"]["11922"]
    assert latest["value"] == "7.5"
    assert len(ids(firestore_client, "tlink_readings")) == 2


def test_readings_are_deduplicated_on_sensor_and_time_across_pushes(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    # Two different packets (other rawData) repeating the same sensor reading.
    webhooks.post("/tlink", data=PUSH, headers=JSON)
    webhooks.post("/tlink", data=body_with(rawData="00"), headers=JSON)

    assert ids(firestore_client, "tlink_readings") == [f"2864_11922_{PACKET_EPOCH}"]
    assert len(ids(firestore_client, "webhook_events")) == 2


# --- Refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (body_with(deviceId=None), "deviceId"),
        (body_with(time="yesterday"), "time"),
    ],
)  # fmt: skip
def test_a_malformed_push_is_a_400_and_stores_nothing(
    webhooks: FlaskClient, firestore_client: firestore.Client, body: bytes, message: str
) -> None:
    answer = webhooks.post("/tlink", data=body, headers=JSON)

    assert answer.status_code == 400
    assert message in answer.get_json()["error"]
    assert nothing_stored(firestore_client)


def test_an_oversized_push_is_a_413_and_stores_nothing(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    big = body_with(rawData="0" * MAX_BODY_BYTES)

    answer = webhooks.post("/tlink", data=big, headers=JSON)

    assert answer.status_code == 413 and answer.is_json
    assert nothing_stored(firestore_client)


def test_the_push_needs_no_json_content_type(webhooks: FlaskClient) -> None:
    answer = webhooks.post("/tlink", data=PUSH, headers={"Content-Type": "text/plain"})

    assert answer.status_code == 200


def test_a_required_signature_is_checked_on_the_raw_body(
    start: Callable[..., FlaskClient],
    secrets: LocalSecretStore,
    firestore_client: firestore.Client,
) -> None:
    secrets.add_version("tlink-webhook-secret", SHARED_SECRET + "\n")
    webhooks = start(TLINK_REQUIRE_SIGNATURE="true")
    good = signature(SHARED_SECRET, PUSH)

    missing = webhooks.post("/tlink", data=PUSH, headers=JSON)
    wrong = webhooks.post("/tlink", data=PUSH, headers={**JSON, "X-TLink-Signature": "sha256=00"})
    other_body = webhooks.post(
        "/tlink", data=PUSH + b" ", headers={**JSON, "X-TLink-Signature": good}
    )
    assert [r.status_code for r in (missing, wrong, other_body)] == [401, 401, 401]
    assert "X-TLink-Signature" in missing.get_json()["error"]
    assert nothing_stored(firestore_client)

    signed = webhooks.post("/tlink", data=PUSH, headers={**JSON, "X-TLink-Signature": good})
    upper = webhooks.post(
        "/tlink", data=body_with(rawData="01"),
        headers={**JSON, "X-TLink-Signature": signature(SHARED_SECRET, body_with(rawData="01"))
                 .upper()},
    )  # fmt: skip
    assert (signed.status_code, upper.status_code) == (200, 200)


def test_a_required_signature_without_its_secret_is_a_configuration_error(
    start: Callable[..., FlaskClient], firestore_client: firestore.Client
) -> None:
    webhooks = start(TLINK_REQUIRE_SIGNATURE="true")

    answer = webhooks.post("/tlink", data=PUSH, headers=JSON)

    assert answer.status_code == 503
    assert "TLINK_REQUIRE_SIGNATURE" in answer.get_json()["error"]
    assert nothing_stored(firestore_client)


def test_a_required_path_token_hides_the_receiver_elsewhere(
    start: Callable[..., FlaskClient],
    secrets: LocalSecretStore,
    firestore_client: firestore.Client,
) -> None:
    secrets.add_version("tlink-path-token", PATH_TOKEN)
    webhooks = start(TLINK_REQUIRE_PATH_TOKEN="true")

    bare = webhooks.post("/tlink", data=PUSH, headers=JSON)
    wrong = webhooks.post("/tlink/not-the-token", data=PUSH, headers=JSON)
    assert (bare.status_code, wrong.status_code) == (404, 404)
    assert nothing_stored(firestore_client)

    right = webhooks.post(f"/tlink/{PATH_TOKEN}", data=PUSH, headers=JSON)
    assert right.status_code == 200


def test_without_a_path_token_setting_a_token_path_is_no_route(webhooks: FlaskClient) -> None:
    assert webhooks.post("/tlink/anything", data=PUSH, headers=JSON).status_code == 404


# --- Failures after the delivery was recorded --------------------------------------------------


def test_a_push_for_a_busy_device_is_answered_at_once_and_swept_after_the_lease(
    webhooks: FlaskClient,
    store: Store,
    firestore_client: firestore.Client,
    osmand: OsmAndServer,
) -> None:
    now = datetime.now(UTC)
    # A run holding the lease that ends without delivering more (died, or committed already).
    state, lease = store.delivery.acquire(
        "tlink-2864", "another-run", now=now, until=now + timedelta(minutes=10)
    )

    busy = webhooks.post("/tlink", data=LOCATED, headers=JSON)

    # Issue 16: no 429; the push is stored with its event done, its position in the outbox.
    assert busy.status_code == 200
    assert (busy.get_json()["status"], busy.get_json()["location"]) == ("ok", "queued")
    assert len(ids(firestore_client, "tlink_readings")) == 3
    assert osmand.positions == []
    assert webhooks.post("/tlink", data=LOCATED, headers=JSON).get_json()["status"] == (
        "duplicate")  # fmt: skip

    store.delivery.release(lease, state)
    assert sweep(get_runtime().sync) == ["tlink-2864"]

    assert len(osmand.positions) == 1
    assert sweep(get_runtime().sync) == [] and len(osmand.positions) == 1


def test_a_position_traccar_refuses_waits_in_the_outbox_and_the_push_counts_as_done(
    webhooks: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    osmand.respond_with(503)

    answer = webhooks.post("/tlink", data=LOCATED, headers=JSON)
    again = webhooks.post("/tlink", data=LOCATED, headers=JSON)

    assert answer.status_code == 200 and answer.get_json()["location"] == "error"
    assert again.get_json()["status"] == "duplicate"
    [waiting] = store.delivery.outbox("tlink-2864")
    assert (waiting.location.lat, waiting.location.lon) == (31.230416, 121.473701)


def test_a_hanging_traccar_delays_the_answer_by_the_push_deadline_only(
    webhooks: FlaskClient, store: Store, osmand: OsmAndServer
) -> None:
    # The webhooks function stops at 30 s; the shared client waits up to 15 s for Traccar: the
    # receiver's run pushes until WEBHOOK_PUSH_WITHIN (12 s) after the push arrived, answers
    # within WEBHOOK_ANSWER_WITHIN (13 s), and the rest waits for the sweep.
    osmand.stall(25.0, times=1)
    started = time.monotonic()

    answer = webhooks.post("/tlink", data=LOCATED, headers=JSON)

    assert time.monotonic() - started < WEBHOOK_ANSWER_WITHIN
    assert (answer.status_code, answer.get_json()["location"]) == (200, "queued")
    osmand.stop()  # Traccar restarted: the hung request was never stored
    osmand.start()
    assert len(store.delivery.outbox("tlink-2864")) == 1
    # Cut by the deadline, not refused by Traccar: no backoff; it waits CUT_RETRY_AFTER (it
    # may have been stored), then the sweep pushes it (test_push_deadline_cuts.py).
    state = store.delivery.state("tlink-2864")
    assert state.failures == 0
    assert state.retry_at is not None
    assert datetime.now(UTC) < state.retry_at <= datetime.now(UTC) + CUT_RETRY_AFTER
    assert sweep(get_runtime().sync) == [] and osmand.positions == []


# --- Nobody outside puts a position into Traccar (issue 13) ----------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")


def pushed_at(moment: datetime, base: bytes = LOCATED, **sensor_times: datetime) -> bytes:
    """`base` sent at `moment` (its sensors read then), or a sensor at its own `sensor_times`
    (keyed `s<sensorsId>`)."""
    data = json.loads(base)
    local = moment.astimezone(SHANGHAI)
    data["time"] = local.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in data["sensorsDates"]:
        at = sensor_times.get(f"s{sensor['sensorsId']}", moment).astimezone(SHANGHAI)
        sensor["times"] = at.strftime("%H:%M:%S")
    return json.dumps(data).encode()


def sensors_push(device: int, sensor_ids: list[int], moment: datetime, value: str = "1") -> bytes:
    local = moment.astimezone(SHANGHAI)
    return json.dumps({
        "flag": "00", "deviceId": device, "deviceUserid": 385, "parentUserId": "217",
        "time": local.strftime("%Y-%m-%d %H:%M:%S"),
        "sensorsDates": [
            {"sensorsId": sensor, "sensorsTypeId": 1, "value": value,
             "times": local.strftime("%H:%M:%S")}
            for sensor in sensor_ids
        ],
    }).encode()  # fmt: skip


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def mail_settings(smtp: SmtpServer) -> dict[str, str]:
    return {
        "NOTIFY_SMTP_HOST": smtp.host,
        "NOTIFY_SMTP_PORT": str(smtp.port),
        "NOTIFY_EMAIL_FROM": "bridge@example.org",
        "NOTIFY_EMAIL_TO": "me@example.org",
    }


def subjects(smtp: SmtpServer) -> list[str]:
    return [mail.message["Subject"] for mail in smtp.messages]


def test_with_no_protection_configured_pushes_are_refused_by_default_naming_what_to_set(
    start: Callable[..., FlaskClient], firestore_client: firestore.Client, smtp: SmtpServer
) -> None:
    shipped = start(TLINK_ALLOW_UNAUTHENTICATED="false", **mail_settings(smtp))

    answers = [shipped.post(path, data=LOCATED, headers=JSON) for path in ("/tlink", "/tlink/x")]

    assert [answer.status_code for answer in answers] == [503, 503]
    error = answers[0].get_json()["error"]
    for setting in ("TLINK_REQUIRE_PATH_TOKEN", "TLINK_REQUIRE_SIGNATURE",
                    "TLINK_ALLOW_UNAUTHENTICATED", "tlink-path-token"):  # fmt: skip
        assert setting in error
    assert nothing_stored(firestore_client)
    # The owner hears of it, once.
    assert subjects(smtp) == ["[traccar-bridge] TLINK push refused"]
    assert "TLINK_REQUIRE_PATH_TOKEN" in smtp.messages[0].message.get_content()


def test_a_push_without_the_configured_protection_stores_nothing_and_is_mailed_once(
    start: Callable[..., FlaskClient],
    secrets: LocalSecretStore,
    firestore_client: firestore.Client,
    smtp: SmtpServer,
) -> None:
    secrets.add_version("tlink-path-token", PATH_TOKEN)
    secrets.add_version("tlink-webhook-secret", SHARED_SECRET)
    protected = {
        "TLINK_ALLOW_UNAUTHENTICATED": "false",
        "TLINK_REQUIRE_PATH_TOKEN": "true",
        **mail_settings(smtp),
    }
    first_instance = start(**protected)
    refused = [
        first_instance.post("/tlink", data=LOCATED, headers=JSON),
        first_instance.post("/tlink/guess", data=LOCATED, headers=JSON),
    ]
    # Another instance (a new runtime), now also wanting a signature: still one mail in all.
    second_instance = start(**protected, TLINK_REQUIRE_SIGNATURE="true")
    refused.append(second_instance.post(f"/tlink/{PATH_TOKEN}", data=LOCATED, headers=JSON))

    assert [answer.status_code for answer in refused] == [404, 404, 401]
    assert nothing_stored(firestore_client)
    assert subjects(smtp) == ["[traccar-bridge] TLINK push refused"]
    good = signature(SHARED_SECRET, LOCATED)
    accepted = second_instance.post(
        f"/tlink/{PATH_TOKEN}", data=LOCATED, headers={**JSON, "X-TLink-Signature": good}
    )
    assert accepted.status_code == 200 and accepted.get_json()["location"] == "synced"


def test_a_flood_dated_2037_is_skipped_and_genuine_positions_still_reach_traccar(
    webhooks: FlaskClient, firestore_client: firestore.Client, osmand: OsmAndServer
) -> None:
    forged = [pushed_at(datetime(2037, 6, 1, second, tzinfo=UTC)) for second in range(3)]

    answers = [webhooks.post("/tlink", data=body, headers=JSON) for body in forged]

    assert [answer.status_code for answer in answers] == [200] * 3
    assert {(a.get_json()["storedReadings"], a.get_json()["location"]) for a in answers} == {
        (0, "none")
    }
    assert osmand.positions == [] and ids(firestore_client, "tlink_readings") == []

    now = datetime.now(UTC).replace(microsecond=0)
    genuine = webhooks.post("/tlink", data=pushed_at(now - timedelta(seconds=30)), headers=JSON)

    assert genuine.get_json()["location"] == "synced"
    [position] = osmand.positions
    assert position.fix_time == now - timedelta(seconds=30)
    latest = firestore_client.document("tlink_devices/2864").get().to_dict()["sensors"]
    assert latest["11922"]["time"] == now - timedelta(seconds=30)


def test_a_reading_dated_ahead_is_skipped_while_the_rest_of_the_push_is_stored(
    webhooks: FlaskClient, firestore_client: firestore.Client, osmand: OsmAndServer
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    # The location sensor claims a fix three hours ahead; the other two are read now.
    body = pushed_at(now, s11925=now + timedelta(hours=3))

    answer = webhooks.post("/tlink", data=body, headers=JSON)

    assert answer.status_code == 200
    assert answer.get_json() == {
        "status": "ok", "deviceId": 2864, "storedReadings": 2, "location": "none"
    }  # fmt: skip
    assert ids(firestore_client, "tlink_readings") == [
        f"2864_11922_{int(now.timestamp())}",
        f"2864_11926_{int(now.timestamp())}",
    ]
    assert osmand.positions == []
    sensors = firestore_client.document("tlink_devices/2864").get().to_dict()["sensors"]
    assert sorted(sensors) == ["11922", "11926"]


def test_a_device_full_of_sensors_skips_new_ones_once_mailed_and_keeps_its_known_ones(
    start: Callable[..., FlaskClient], firestore_client: firestore.Client, smtp: SmtpServer
) -> None:
    webhooks = start(TLINK_MAX_SENSORS_PER_DEVICE="3", **mail_settings(smtp))
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    filled = webhooks.post("/tlink", data=sensors_push(7, [1, 2, 3], now), headers=JSON)
    grown = [  # a new sensor id on every push, as in the attack
        webhooks.post("/tlink", data=sensors_push(7, [1, 100 + n], now + timedelta(seconds=n + 1)),
                      headers=JSON)
        for n in range(3)
    ]  # fmt: skip
    genuine = webhooks.post(
        "/tlink", data=sensors_push(7, [1, 2, 3], now + timedelta(minutes=5), "9"), headers=JSON
    )

    assert filled.get_json()["storedReadings"] == 3
    assert [(a.status_code, a.get_json()["storedReadings"]) for a in grown] == [(200, 1)] * 3
    assert genuine.status_code == 200 and genuine.get_json()["storedReadings"] == 3
    device = firestore_client.document("tlink_devices/7").get().to_dict()
    assert sorted(device["sensors"]) == ["1", "2", "3"]
    assert {sensor["value"] for sensor in device["sensors"].values()} == {"9"}
    assert not any(
        reading.startswith("7_10") for reading in ids(firestore_client, "tlink_readings")
    )
    assert len(ids(firestore_client, "tlink_readings")) == 3 + 3 + 3
    assert subjects(smtp) == ["[traccar-bridge] TLINK device 7: too many sensors"]


def test_past_the_device_cap_a_push_for_a_new_device_is_skipped_and_known_ones_still_stored(
    start: Callable[..., FlaskClient], firestore_client: firestore.Client
) -> None:
    webhooks = start(RECEIVER_MAX_DEVICES="2")
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    first = [webhooks.post("/tlink", data=sensors_push(d, [1], now), headers=JSON) for d in (1, 2)]
    third = webhooks.post("/tlink", data=sensors_push(3, [1], now), headers=JSON)
    known = webhooks.post(
        "/tlink", data=sensors_push(1, [1], now + timedelta(seconds=1)), headers=JSON
    )

    assert [answer.get_json()["status"] for answer in first] == ["ok", "ok"]
    assert third.status_code == 200
    assert third.get_json() == {
        "status": "skipped", "deviceId": 3, "storedReadings": 0, "location": "none"
    }  # fmt: skip
    assert known.get_json()["storedReadings"] == 1
    assert ids(firestore_client, "tlink_devices") == ["1", "2"]
    assert "tlink-3" not in ids(firestore_client, "devices")
    assert not any(r.startswith("3_") for r in ids(firestore_client, "tlink_readings"))


def test_a_push_naming_another_user_does_not_rebind_the_device(
    webhooks: FlaskClient, firestore_client: firestore.Client
) -> None:
    webhooks.post("/tlink", data=PUSH, headers=JSON)

    forged = webhooks.post(
        "/tlink",
        data=body_with(deviceUserid=999, parentUserId="998", time="2019-05-10 14:17:21",
                       sensorsDates=[{"sensorsId": 11922, "sensorsTypeId": 1, "value": "6.0",
                                      "times": "14:17:21"}]),
        headers=JSON,
    )  # fmt: skip

    assert forged.status_code == 200 and forged.get_json()["storedReadings"] == 1
    device = firestore_client.document("tlink_devices/2864").get().to_dict()
    assert (device["user_id"], device["parent_user_id"]) == ("385", "217")
    reading = firestore_client.document(f"tlink_readings/2864_11922_{PACKET_EPOCH + 60}").get()
    assert reading.to_dict()["user_id"] == "385"


# --- Alarms: one Traccar event per alarm, not one per position -------------------------------

SWITCH = 11926  # the switch of tlink_push_location.json, in alarm there (`isAlarm` "1")


def switch_push(moment: datetime, is_alarm: str | None) -> bytes:
    """The located packet sent at `moment` with its switch's `isAlarm`, or without the switch
    (None: a packet carrying the device's other sensors only)."""
    data = json.loads(pushed_at(moment))
    if is_alarm is None:
        data["sensorsDates"] = [s for s in data["sensorsDates"] if s["sensorsId"] != SWITCH]
    for sensor in data["sensorsDates"]:
        if sensor["sensorsId"] == SWITCH:
            sensor["isAlarm"] = is_alarm
    return json.dumps(data).encode()


def test_a_sensor_staying_in_alarm_raises_one_traccar_alarm_event_per_alarm(
    webhooks: FlaskClient, osmand: OsmAndServer
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    # The switch goes into alarm; a packet of the other sensors; still in alarm; alarm over;
    # a new alarm. Traccar (its default `event.ignoreDuplicateAlerts`, imitated by the fake)
    # raises an event for a position whose alarm the previous position did not carry.
    flags = ["1", None, "1", "0", "1"]
    moments = [start + timedelta(minutes=minute) for minute in range(len(flags))]

    answers = [
        webhooks.post("/tlink", data=switch_push(moment, flag), headers=JSON)
        for moment, flag in zip(moments, flags, strict=True)
    ]

    assert [answer.get_json()["location"] for answer in answers] == ["synced"] * len(flags)
    assert [position.attributes.get("alarm") for position in osmand.positions] == [
        "general", "general", "general", None, "general"
    ]  # fmt: skip
    assert [(event.alarm, event.fix_time) for event in osmand.alarm_events] == [
        ("general", moments[0]),
        ("general", moments[4]),
    ]


def test_a_position_in_alarm_that_traccar_refused_keeps_its_alarm_until_delivered(
    webhooks: FlaskClient, osmand: OsmAndServer, store: Store
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    osmand.respond_with(503, times=1)

    refused = webhooks.post("/tlink", data=switch_push(start, "1"), headers=JSON)
    [waiting] = store.delivery.outbox("tlink-2864")

    assert refused.get_json()["location"] == "error"
    assert waiting.location.attributes["alarm"] == "general"
    # The next push delivers the waiting position first, then its own, both in alarm.
    later = webhooks.post(
        "/tlink", data=switch_push(start + timedelta(minutes=1), "1"), headers=JSON
    )

    assert later.get_json()["location"] == "synced"
    assert [position.attributes.get("alarm") for position in osmand.positions] == ["general"] * 2
    assert [event.fix_time for event in osmand.alarm_events] == [start]
    assert store.delivery.outbox("tlink-2864") == []
