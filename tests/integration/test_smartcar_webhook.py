"""Smartcar's receiver on the Firestore emulator, feeding the OsmAnd test server.

Deliveries are the conformance sample (or it with fresh ids and times), signed like Smartcar
signs them; what matters is what reaches Traccar and what Firestore holds afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from shared.errors import ConfigError, PayloadTooLarge, Unauthorized
from shared.models import Device, Location, Source
from shared.pipeline import CUT_RETRY_AFTER, WEBHOOK_ANSWER_WITHIN
from shared.runtime import Runtime
from shared.sources.smartcar.webhook import MAX_EVENT_BYTES, Answer
from shared.traccar_status import TRACCAR_DOWN
from tests.conftest import make_settings, sweep
from tests.fakes.osmand import OsmAndServer

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN = "sc-management-token-7f1e2d3c"
SAMPLE = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
VEHICLE = SAMPLE["vehicleId"]
UNIQUE_ID = f"smartcar-{VEHICLE}"


@pytest.fixture
def runtime(firestore_client: firestore.Client, osmand: OsmAndServer, tmp_path: Path) -> Runtime:
    osmand.add_known_id(UNIQUE_ID)
    settings = make_settings(tmp_path, traccar_server_url=osmand.url)
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.secrets.add_version(settings.smartcar_management_token_secret, TOKEN)
    return runtime


def receive(runtime: Runtime, raw: bytes, signature: str | None) -> Answer:
    """What the `webhooks` function's /smartcar route calls."""
    return runtime.smartcar.webhook.receive(raw, signature)


def sign(raw: bytes) -> str:
    return hmac.new(TOKEN.encode(), raw, hashlib.sha256).hexdigest()


def fresh(**changes: Any) -> dict[str, Any]:
    """The sample as a new delivery: its own eventId, measured a minute ago."""
    event = copy.deepcopy(SAMPLE)
    event["eventId"] = str(uuid.uuid4())
    measured = (int(time.time()) - 60) * 1000
    for signal in event["data"]["signals"]:
        signal["meta"] = {"oemUpdatedAt": measured, "fetchedAt": measured + 2000}
    event["meta"]["deliveredAt"] = measured + 3000
    event.update(changes)
    return event


def deliver(runtime: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(event).encode()
    return receive(runtime, raw, sign(raw)).body


def documents(client: firestore.Client, collection: str) -> dict[str, dict[str, Any]]:
    return {s.id: s.to_dict() for s in client.collection(collection).stream()}


def test_a_signed_delivery_becomes_one_position_and_is_stored_whole(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    raw = (DATA / "smartcar_vehicle_state_v4.json").read_bytes()

    answer = receive(runtime, raw, sign(raw)).body

    assert answer == {"status": "processed", "eventId": SAMPLE["eventId"], "pushed": 1,
                      "queued": 0}  # fmt: skip
    [position] = osmand.positions
    assert (position.unique_id, position.latitude, position.longitude) == (
        UNIQUE_ID, 37.4292, -122.1381)  # fmt: skip
    # Timed at meta.deliveredAt, as Traccar's own Smartcar decoder times its positions.
    assert int(position.fix_time.timestamp()) == 1731940331 and position.valid
    assert position.course == 174
    assert position.attributes["batteryLevel"] == 78
    assert position.attributes["odometer"] == 10254300.0
    assert position.attributes["stateOfCharge"] == 78
    # `charge` is an OsmAnd field name: shared/traccar.py renames attributes that clash.
    assert position.attributes["charge"] is False
    assert position.speed_knots is None

    event = documents(firestore_client, "smartcar_events")[SAMPLE["eventId"]]
    assert event["body"] == raw.decode() and event["vehicle_id"] == VEHICLE
    assert event["skipped"] == ["motion-currentspeed: COMPATIBILITY:VEHICLE_NOT_CAPABLE"]
    assert (event["expire_at"] - event["received_at"]).days == 30
    claim = documents(firestore_client, "webhook_events")[f"smartcar_{SAMPLE['eventId']}"]
    assert claim["source"] == "smartcar" and claim["expire_at"] == event["expire_at"]
    vehicle = documents(firestore_client, "smartcar_vehicles")[VEHICLE]
    assert sorted(vehicle["signals"]) == sorted(s["code"] for s in SAMPLE["data"]["signals"])
    assert vehicle["signals"]["motion-currentspeed"]["error"] == (
        "COMPATIBILITY:VEHICLE_NOT_CAPABLE")  # fmt: skip
    device = Device.model_validate(runtime.store.devices.get(VEHICLE))
    assert (device.source, device.name, device.traccar_unique_id) == (
        Source.SMARTCAR, "TESLA Model 3 2020", UNIQUE_ID)  # fmt: skip


PARKED_SAMPLE = json.loads((DATA / "smartcar_parked_charging.json").read_text())


def parked() -> list[dict[str, Any]]:
    """The parked car's two deliveries, moved to the last minutes (positions older than the
    dedup window count as delivered)."""
    events = copy.deepcopy(PARKED_SAMPLE)
    shift = (int(time.time()) - 1200) * 1000 - events[0]["meta"]["deliveredAt"]
    for event in events:
        event["meta"]["deliveredAt"] += shift
        for signal in event["data"]["signals"]:
            signal["meta"] = {key: at + shift for key, at in signal["meta"].items()}
    return events


def test_a_parked_charging_car_gets_one_position_per_delivery(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    # Both deliveries repeat the location with the same oemUpdatedAt (the car did not move):
    # deduplicating on the position's fingerprint dropped the second and its new readings.
    events = parked()
    first, second = (deliver(runtime, event) for event in events)

    assert (first["pushed"], second["pushed"]) == (1, 1)
    one, two = osmand.positions
    assert [int(p.fix_time.timestamp()) for p in (one, two)] == [
        event["meta"]["deliveredAt"] // 1000 for event in events]  # fmt: skip
    assert (two.latitude, two.longitude) == (one.latitude, one.longitude) == (37.4292, -122.1381)
    assert one.valid and not two.valid  # the second brought no new location
    assert (one.attributes["batteryLevel"], two.attributes["batteryLevel"]) == (61, 62)
    # Every numeric or boolean signal reaches Traccar: its key where Traccar has one.
    assert two.attributes["power"] == 230.1
    assert two.attributes["charge"] is True
    assert two.attributes["range"] == 306.0
    assert two.attributes["charge-amperage-amperes"] == 16
    assert two.attributes["lock"] is True  # closure-islocked: Traccar's KEY_LOCK
    assert "closure-islocked" not in two.attributes and "status" not in two.attributes


def test_two_deliveries_of_the_same_second_and_place_are_two_positions(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    first, second = parked()
    second["meta"]["deliveredAt"] = first["meta"]["deliveredAt"]

    assert [deliver(runtime, event)["pushed"] for event in (first, second)] == [1, 1]
    assert len(osmand.positions) == 2
    assert deliver(runtime, second) == {"status": "duplicate", "eventId": second["eventId"]}
    assert len(osmand.positions) == 2


def test_a_redelivered_event_pushes_once(runtime: Runtime, osmand: OsmAndServer) -> None:
    event = fresh()

    first, again = deliver(runtime, event), deliver(runtime, event)

    assert first["status"] == "processed"
    assert again == {"status": "duplicate", "eventId": event["eventId"]}
    assert len(osmand.positions) == 1


def test_the_device_document_maps_the_vehicle_to_another_traccar_device(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    osmand.add_known_id("my-model-3")
    runtime.store.devices.put(
        Device(
            id=VEHICLE, source=Source.SMARTCAR, name="Family car", traccar_unique_id="my-model-3"
        )
    )

    deliver(runtime, fresh())

    assert [p.unique_id for p in osmand.positions] == ["my-model-3"]
    device = runtime.store.devices.get(VEHICLE)
    assert device is not None
    assert (device.name, device.traccar_unique_id) == ("Family car", "my-model-3")


def test_a_delivery_without_location_is_pushed_at_the_last_known_position(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    deliver(runtime, fresh())
    later = fresh()
    later["data"]["signals"] = [
        s for s in later["data"]["signals"] if s["code"] == "tractionbattery-stateofcharge"
    ]
    later["data"]["signals"][0]["body"]["value"] = 64
    later["meta"]["deliveredAt"] += 30_000  # later, yet not ahead of the clock

    answer = deliver(runtime, later)

    assert answer["pushed"] == 1
    first, second = osmand.positions
    assert (second.latitude, second.longitude) == (first.latitude, first.longitude)
    assert int(second.fix_time.timestamp()) == later["meta"]["deliveredAt"] // 1000
    assert second.attributes["batteryLevel"] == 64 and second.course is None


def test_a_delivery_without_any_known_position_is_stored_not_pushed(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    event = fresh()
    event["data"]["signals"] = event["data"]["signals"][1:]  # no location

    answer = deliver(runtime, event)

    assert answer == {"status": "stored", "eventId": event["eventId"], "pushed": 0}
    assert osmand.positions == []
    assert event["eventId"] in documents(firestore_client, "smartcar_events")
    assert "odometer-traveleddistance" in documents(firestore_client, "smartcar_vehicles")[
        VEHICLE]["signals"]  # fmt: skip


def test_a_failed_location_signal_falls_back_to_the_last_known_position(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    deliver(runtime, fresh())
    event = fresh()
    location = event["data"]["signals"][0]
    del location["body"]
    location["status"] = {"error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}, "value": "ERROR"}

    deliver(runtime, event)

    assert [(p.latitude, p.longitude) for p in osmand.positions] == [(37.4292, -122.1381)] * 2
    assert [p.valid for p in osmand.positions] == [True, False]


def test_a_vehicle_error_is_stored_and_logged(
    runtime: Runtime,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = [
        {
            "type": "VEHICLE_STATE",
            "code": "ASLEEP",
            "state": "ERROR",
            "description": "Vehicle is in sleep mode",
            "signals": [{"code": "location-preciselocation"}],
        }
    ]
    event = fresh(eventType="VEHICLE_ERROR")
    event["data"] = {"user": SAMPLE["data"]["user"], "vehicle": SAMPLE["data"]["vehicle"],
                     "errors": errors}  # fmt: skip

    with caplog.at_level(logging.WARNING):
        answer = deliver(runtime, event)

    assert answer == {"status": "recorded", "eventId": event["eventId"]}
    assert osmand.positions == []
    vehicle = documents(firestore_client, "smartcar_vehicles")[VEHICLE]
    assert vehicle["last_error"] == errors
    assert documents(firestore_client, "smartcar_events")[event["eventId"]]["event_type"] == (
        "VEHICLE_ERROR")  # fmt: skip
    [record] = [r for r in caplog.records if r.getMessage() == "Smartcar reports a vehicle error"]
    assert record.errors == ["VEHICLE_STATE:ASLEEP:ERROR"]  # type: ignore[attr-defined]


def delivered_at(seconds_ago: int) -> dict[str, Any]:
    """A new delivery, delivered `seconds_ago` (its position is timed at deliveredAt)."""
    event = fresh()
    event["meta"]["deliveredAt"] = (int(time.time()) - seconds_ago) * 1000
    return event


def test_deliveries_to_a_busy_vehicle_are_answered_at_once_and_delivered_by_the_lease_holder(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    # Issue 16: Smartcar drops a delivery after three retries; a 429 for a busy vehicle lost it.
    assert deliver(runtime, delivered_at(50))["pushed"] == 1  # the vehicle and its device exist
    device = runtime.store.devices.get(VEHICLE)
    assert device is not None
    go_on = threading.Event()

    def nothing_new_once_told() -> list[Location]:
        go_on.wait(30)
        return []

    def held_run() -> None:  # a sync run of the vehicle, holding its lease until told to end
        runtime.sync.pipeline.run(device, nothing_new_once_told)

    holder = threading.Thread(target=held_run)
    holder.start()
    while runtime.store.delivery.state(VEHICLE).lease_owner is None:
        time.sleep(0.01)
    # Sent out of order, as Smartcar may: Traccar gets them oldest first. Each was measured at
    # a place of its own just before its delivery; the newest measured arrives first.
    events = [delivered_at(20), delivered_at(40), delivered_at(30)]
    for event, latitude in zip(events, (37.43, 37.41, 37.42), strict=True):
        moved_to(event, latitude, measured_ms=event["meta"]["deliveredAt"] - 1000)
    answers, latencies = [], []
    for event in events:
        started = time.monotonic()
        answers.append(deliver(runtime, event))
        latencies.append(time.monotonic() - started)

    assert [a["status"] for a in answers] == ["queued"] * 3
    assert max(latencies) < 1.0  # no wait for the lease: each stored and answered at once
    assert len(osmand.positions) == 1
    assert deliver(runtime, events[0])["status"] == "duplicate"  # a retry stays one delivery
    go_on.set()
    holder.join(30)

    # The lease holder delivered them before letting go, once each, in order.
    times = [int(p.fix_time.timestamp()) for p in osmand.positions[1:]]
    assert times == sorted(e["meta"]["deliveredAt"] // 1000 for e in events)
    # Ordered by oemUpdatedAt (PROTOCOLS.md §3): the locations measured before the newest one
    # that had come in are not sent back; their positions stay at the newest place, invalid.
    places = [(p.latitude, p.valid) for p in osmand.positions[1:]]
    assert places == [(37.43, False), (37.43, False), (37.43, True)]
    state = runtime.store.delivery.state(VEHICLE)
    assert (state.lease_owner, state.outbox_count, state.handoff_since) == (None, 0, None)
    assert documents(firestore_client, "outbox") == {}
    assert sweep(runtime.sync) == [] and len(osmand.positions) == 4


def moved_to(event: dict[str, Any], latitude: float, *, measured_ms: int) -> dict[str, Any]:
    """`event` with its location at `latitude` (the sample's longitude), measured then."""
    [location] = [s for s in event["data"]["signals"] if s["code"] == "location-preciselocation"]
    location["body"]["latitude"] = latitude
    location["meta"] = {"oemUpdatedAt": measured_ms, "fetchedAt": measured_ms + 500}
    return event


def test_a_location_older_than_the_stored_one_never_sends_the_car_back(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    # Out of order (PROTOCOLS.md §3: order by oemUpdatedAt): a delivery whose location was
    # measured before the one the bridge has comes later; its position, timed at its
    # deliveredAt, would be Traccar's newest and put the car back where it was.
    now_ms = int(time.time()) * 1000
    newer = moved_to(fresh(), 37.45, measured_ms=now_ms - 60_000)
    newer["meta"]["deliveredAt"] = now_ms - 55_000
    older = moved_to(fresh(), 37.40, measured_ms=now_ms - 120_000)
    older["meta"]["deliveredAt"] = now_ms - 50_000
    [charge] = [s for s in older["data"]["signals"] if s["code"] == STATE_OF_CHARGE]
    charge["body"]["value"] = 71
    charge["meta"] = {"oemUpdatedAt": now_ms - 51_000}

    assert [deliver(runtime, event)["pushed"] for event in (newer, older)] == [1, 1]

    first, second = osmand.positions
    assert (first.latitude, first.valid) == (37.45, True)
    # The older delivery's position: at the newest known place, not a fix, with its readings.
    assert (second.latitude, second.longitude, second.valid) == (37.45, -122.1381, False)
    assert int(second.fix_time.timestamp()) == older["meta"]["deliveredAt"] // 1000
    assert second.attributes["batteryLevel"] == 71 and second.course is None
    # The stored location stays the newest measured: the next check compares with it.
    vehicle = documents(firestore_client, "smartcar_vehicles")[VEHICLE]
    stored = vehicle["signals"]["location-preciselocation"]
    assert (stored["body"]["latitude"], stored["measured_at"]) == (37.45, now_ms // 1000 - 60)
    assert vehicle["signals"][STATE_OF_CHARGE]["body"]["value"] == 71

    # A location measured later than the stored one is sent as it is, valid.
    latest = moved_to(fresh(), 37.47, measured_ms=now_ms - 30_000)
    latest["meta"]["deliveredAt"] = now_ms - 29_000
    deliver(runtime, latest)
    assert (osmand.positions[-1].latitude, osmand.positions[-1].valid) == (37.47, True)


STATE_OF_CHARGE = "tractionbattery-stateofcharge"


def test_a_hanging_traccar_gets_the_push_deadline_and_the_answer_comes_in_time(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    # PROTOCOLS.md §3: a 2xx within 15 s, else Smartcar counts a failure and retries. The
    # shared client waits 15 s for Traccar's answer: the webhook's run pushes until
    # WEBHOOK_PUSH_WITHIN (12 s) after the delivery arrived instead, answers within
    # WEBHOOK_ANSWER_WITHIN (13 s), and what it could not push waits for the sweep.
    deliver(runtime, fresh())  # the vehicle and its device exist
    event = fresh()
    event["meta"]["deliveredAt"] += 10_000
    osmand.stall(25.0, times=1)  # Traccar takes the connection and does not answer
    started = time.monotonic()

    answer = deliver(runtime, event)

    assert time.monotonic() - started < WEBHOOK_ANSWER_WITHIN
    assert (answer["status"], answer["pushed"], answer["queued"]) == ("processed", 0, 1)
    osmand.stop()  # Traccar restarted: the hung request was never stored
    osmand.start()
    assert len(osmand.positions) == 1
    # Cut by the deadline, not refused: no backoff, and the traccar_down watch is not started
    # by a wait the webhook itself ended (the sweep's own push would be). It may have been
    # stored: it waits CUT_RETRY_AFTER, then the sweep pushes it (test_push_deadline_cuts.py).
    state = runtime.store.delivery.state(VEHICLE)
    assert (state.outbox_count, state.failures) == (1, 0)
    assert state.retry_at is not None
    assert datetime.now(UTC) < state.retry_at <= datetime.now(UTC) + CUT_RETRY_AFTER
    assert TRACCAR_DOWN not in runtime.operations_document.read().watch
    assert f"smartcar_{event['eventId']}" in documents(firestore_client, "webhook_events")
    assert sweep(runtime.sync) == [] and len(osmand.positions) == 1
    assert deliver(runtime, event)["status"] == "duplicate" and len(osmand.positions) == 1


def test_a_traccar_answering_after_ten_seconds_gets_the_position_once_in_time(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    # A slow Traccar, not a hanging one: it stores the position and answers after 10 s, within
    # what is left of the delivery's 12 s. Answered as pushed within Smartcar's budget, nothing
    # left for the sweep to push a second time (an 8 s deadline cut it: stored twice).
    deliver(runtime, fresh())
    event = fresh()
    event["meta"]["deliveredAt"] += 10_000
    osmand.stall(10.0, times=1)
    started = time.monotonic()

    answer = deliver(runtime, event)

    assert time.monotonic() - started < WEBHOOK_ANSWER_WITHIN
    assert (answer["status"], answer["pushed"], answer["queued"]) == ("processed", 1, 0)
    assert len(osmand.positions) == 2
    state = runtime.store.delivery.state(VEHICLE)
    assert (state.outbox_count, state.failures, state.retry_at) == (0, 0, None)
    assert sweep(runtime.sync) == [] and len(osmand.positions) == 2
    assert deliver(runtime, event)["status"] == "duplicate" and len(osmand.positions) == 2


def test_a_copy_arriving_while_the_first_is_pushed_is_handed_off_and_makes_no_second_position(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    # Smartcar's retry of an event whose first delivery is still being pushed (its claim
    # pending under the vehicle's lease): stored and answered at once, one position in Traccar.
    event = fresh()
    osmand.stall(1.0, times=1)  # the first copy's push takes a second
    first: list[dict[str, Any]] = []
    pushing = threading.Thread(target=lambda: first.append(deliver(runtime, event)))
    pushing.start()
    while not osmand.requests:
        time.sleep(0.01)

    copy_answer = deliver(runtime, event)
    pushing.join(30)

    assert copy_answer["status"] == "queued"
    assert first[0]["status"] == "processed"
    assert len(osmand.positions) == 1
    state = runtime.store.delivery.state(VEHICLE)
    assert (state.lease_owner, state.outbox_count) == (None, 0)
    assert documents(firestore_client, "outbox") == {}
    assert deliver(runtime, event)["status"] == "duplicate"
    assert sweep(runtime.sync) == [] and len(osmand.positions) == 1


def test_a_delivery_arriving_as_the_lease_ends_is_delivered_by_the_sweep(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    # A run whose lease is about to end and that lets go without delivering anything more
    # (it died, or had committed already when the delivery was read).
    runtime.store.delivery.acquire(VEHICLE, "ending-run", now=now, until=now + timedelta(seconds=1))
    event = fresh()

    assert deliver(runtime, event)["status"] == "queued"
    time.sleep(max(0.0, (now + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))
    assert osmand.positions == []
    # The sweep refresh_devices and every scheduled sync run make.
    assert sweep(runtime.sync) == [VEHICLE]

    assert len(osmand.positions) == 1
    assert deliver(runtime, event)["status"] == "duplicate"
    assert sweep(runtime.sync) == [] and len(osmand.positions) == 1


def test_a_position_traccar_refuses_waits_in_the_outbox_and_the_event_is_done(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    osmand.respond_with(503)
    event = fresh()

    answer = deliver(runtime, event)

    assert (answer["pushed"], answer["queued"]) == (0, 1)
    assert f"smartcar_{event['eventId']}" in documents(firestore_client, "webhook_events")
    assert len(documents(firestore_client, "outbox")) == 1


def test_an_unsigned_or_missigned_delivery_stores_nothing(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    raw = json.dumps(fresh()).encode()

    with pytest.raises(Unauthorized, match="missing"):
        receive(runtime, raw, None)
    with pytest.raises(Unauthorized, match="wrong"):
        receive(runtime, raw, sign(raw + b" "))

    assert osmand.positions == []
    for collection in ("webhook_events", "smartcar_events", "smartcar_vehicles", "devices"):
        assert documents(firestore_client, collection) == {}


def test_an_event_type_the_bridge_does_not_use_is_stored_only(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    event = {"eventId": str(uuid.uuid4()), "eventType": "VEHICLE_SOMETHING_NEW", "data": {}}

    assert deliver(runtime, event)["status"] == "stored"
    assert event["eventId"] in documents(firestore_client, "smartcar_events")
    assert documents(firestore_client, "devices") == {} and osmand.positions == []


def test_the_older_delivery_shape_is_processed(runtime: Runtime, osmand: OsmAndServer) -> None:
    event = fresh()
    event["triggers"] = event["data"].pop("triggers")
    retrieved = event["meta"]["deliveredAt"]
    event["meta"] = {"version": "3.0", "retrievedAt": retrieved}
    del event["data"]["signals"][0]["meta"]

    deliver(runtime, event)

    [position] = osmand.positions
    assert int(position.fix_time.timestamp()) == retrieved // 1000


def test_a_delivery_too_large_for_one_document_is_refused_before_storing(
    runtime: Runtime, firestore_client: firestore.Client
) -> None:
    event = fresh()
    event["padding"] = "x" * MAX_EVENT_BYTES
    raw = json.dumps(event).encode()

    with pytest.raises(PayloadTooLarge):
        receive(runtime, raw, sign(raw))
    assert documents(firestore_client, "webhook_events") == {}


def test_without_a_management_token_the_error_names_its_secret(
    firestore_client: firestore.Client, tmp_path: Path
) -> None:
    runtime = Runtime(make_settings(tmp_path), firestore_client=firestore_client)

    with pytest.raises(ConfigError, match="smartcar-management-token"):
        receive(runtime, (DATA / "smartcar_verify_v4.json").read_bytes(), None)


def test_the_vehicle_view_shows_every_signal_even_those_that_never_move_it(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    event = parked()[0]
    event["data"]["signals"] = event["data"]["signals"][1:]  # no location: nothing to push

    assert deliver(runtime, event)["pushed"] == 0

    latest = runtime.smartcar.views.latest_signals(VEHICLE)
    by_code = {entry.code: entry.body for entry in latest.signals}
    assert by_code["closure-islocked"] == {"value": True}
    assert by_code["charge-voltage"] == {"unit": "volts", "value": 229.5}
