"""What a Smartcar delivery may claim (issue 13), on the emulator and the OsmAnd test server.

A signal dated more than MAX_FUTURE_SKEW ahead of the clock, a new signal code past
SMARTCAR_MAX_SIGNALS_PER_VEHICLE and a new vehicle past RECEIVER_MAX_DEVICES are skipped and
logged while the rest of the delivery is stored and answered 2xx; a genuine position after a
flood dated 2037 still reaches Traccar.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from shared.runtime import Runtime
from tests.conftest import make_settings
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smtp import SmtpServer

DATA = Path(__file__).resolve().parents[1] / "data"
TOKEN = "sc-management-token-limits-41a7"
SAMPLE = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
VEHICLE = SAMPLE["vehicleId"]
UNIQUE_ID = f"smartcar-{VEHICLE}"
LOCATION = "location-preciselocation"
ODOMETER = "odometer-traveleddistance"
# 2037-01-01 in epoch milliseconds: the date of issue 13's flood.
FLOOD_MS = int(datetime(2037, 1, 1, tzinfo=UTC).timestamp()) * 1000
SIGNAL_CAP = 8  # the sample's 5 codes and 3 more


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def runtime(
    firestore_client: firestore.Client, osmand: OsmAndServer, smtp: SmtpServer, tmp_path: Path
) -> Runtime:
    osmand.add_known_id(UNIQUE_ID)
    settings = make_settings(
        tmp_path,
        traccar_server_url=osmand.url,
        smartcar_max_signals_per_vehicle=SIGNAL_CAP,
        receiver_max_devices=1,
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.secrets.add_version(settings.smartcar_management_token_secret, TOKEN)
    return runtime


def fresh(vehicle_id: str = VEHICLE, *, minutes_ago: int = 1) -> dict[str, Any]:
    """The sample as a new delivery of `vehicle_id`: its own eventId, measured recently."""
    event = copy.deepcopy(SAMPLE)
    event["eventId"] = str(uuid.uuid4())
    event["vehicleId"] = vehicle_id
    event["data"]["vehicle"]["id"] = vehicle_id
    measured = (int(time.time()) - 60 * minutes_ago) * 1000
    for signal in event["data"]["signals"]:
        signal["meta"] = {"oemUpdatedAt": measured, "fetchedAt": measured + 2000}
    event["meta"]["deliveredAt"] = measured + 3000
    return event


def with_signals(event: dict[str, Any], *codes: str) -> dict[str, Any]:
    measured = event["meta"]["deliveredAt"] - 3000
    for code in codes:
        event["data"]["signals"].append(
            {"code": code, "name": code, "group": "Test", "body": {"value": 1},
             "meta": {"oemUpdatedAt": measured}}
        )  # fmt: skip
    return event


def deliver(runtime: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(event).encode()
    signature = hmac.new(TOKEN.encode(), raw, hashlib.sha256).hexdigest()
    return runtime.smartcar.webhook.receive(raw, signature).body


def document(client: firestore.Client, collection: str, name: str) -> dict[str, Any] | None:
    return client.collection(collection).document(name).get().to_dict()


def signal(event: dict[str, Any], code: str) -> dict[str, Any]:
    return next(s for s in event["data"]["signals"] if s["code"] == code)


def test_a_location_dated_2037_is_skipped_and_the_rest_of_the_delivery_stored(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    forged = fresh()
    signal(forged, LOCATION)["meta"] = {"oemUpdatedAt": FLOOD_MS}
    signal(forged, ODOMETER)["body"]["value"] = 11000

    with caplog.at_level(logging.WARNING):
        answer = deliver(runtime, forged)

    # Stored and answered 2xx; no position, since the vehicle has no genuine one yet.
    assert answer == {"status": "stored", "eventId": forged["eventId"], "pushed": 0}
    assert osmand.positions == []
    event = document(firestore_client, "smartcar_events", forged["eventId"])
    assert event is not None
    assert any(s.startswith(f"{LOCATION}: measured ") for s in event["skipped"])
    vehicle = document(firestore_client, "smartcar_vehicles", VEHICLE)
    assert vehicle is not None and LOCATION not in vehicle["signals"]
    assert vehicle["signals"][ODOMETER]["body"]["value"] == 11000  # the rest is kept
    assert "ahead of the clock skipped" in caplog.text


def test_a_genuine_position_after_a_flood_dated_2037_reaches_traccar(
    runtime: Runtime, osmand: OsmAndServer
) -> None:
    assert deliver(runtime, fresh(minutes_ago=30))["pushed"] == 1  # a last known position
    for _ in range(10):  # the flood: every signal and the delivery dated 2037
        forged = fresh()
        for each in forged["data"]["signals"]:
            each["meta"] = {"oemUpdatedAt": FLOOD_MS}
        forged["meta"]["deliveredAt"] = FLOOD_MS
        assert deliver(runtime, forged)["status"] == "stored"  # 2xx, nothing pushed
    assert len(osmand.positions) == 1

    genuine = fresh(minutes_ago=0)
    signal(genuine, LOCATION)["body"]["latitude"] = 37.5  # the car moved
    answer = deliver(runtime, genuine)

    assert answer["status"] == "processed" and answer["pushed"] == 1
    horizon = time.time() + runtime.settings.max_future_skew
    assert all(p.fix_time.timestamp() <= horizon for p in osmand.positions)  # none from 2037
    newest = osmand.positions[-1]
    measured = genuine["meta"]["deliveredAt"] // 1000  # one position per delivery, timed so
    assert (newest.latitude, int(newest.fix_time.timestamp())) == (37.5, measured)
    state = runtime.store.delivery.state(VEHICLE)
    assert state.last_location is not None and state.last_location.timestamp == measured


def test_past_the_signal_cap_new_codes_are_skipped_and_known_ones_still_update(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client,
    smtp: SmtpServer,
) -> None:  # fmt: skip
    filled = with_signals(fresh(minutes_ago=3), "test-a", "test-b", "test-c")
    assert deliver(runtime, filled)["status"] == "processed"
    vehicle = document(firestore_client, "smartcar_vehicles", VEHICLE)
    assert vehicle is not None and len(vehicle["signals"]) == SIGNAL_CAP

    beyond = with_signals(fresh(minutes_ago=2), "test-new-1", "test-new-2")
    signal(beyond, ODOMETER)["body"]["value"] = 12000
    answer = deliver(runtime, beyond)
    again = with_signals(fresh(minutes_ago=1), "test-new-3")
    signal(again, ODOMETER)["body"]["value"] = 12500
    second = deliver(runtime, again)

    assert answer["status"] == second["status"] == "processed"  # 2xx, position pushed
    assert len(osmand.positions) == 3
    vehicle = document(firestore_client, "smartcar_vehicles", VEHICLE)
    assert vehicle is not None and len(vehicle["signals"]) == SIGNAL_CAP
    assert not any(code.startswith("test-new") for code in vehicle["signals"])
    assert vehicle["signals"][ODOMETER]["body"]["value"] == 12500  # known codes update
    event = document(firestore_client, "smartcar_events", beyond["eventId"])
    assert event is not None
    assert [s for s in event["skipped"] if s.startswith("test-new")] == [
        f"test-new-1: over {SIGNAL_CAP} signals per vehicle",
        f"test-new-2: over {SIGNAL_CAP} signals per vehicle",
    ]
    # One notification for the vehicle, not one per delivery.
    assert [str(m.message["Subject"]) for m in smtp.messages] == [
        f"[traccar-bridge] Smartcar vehicle {VEHICLE} (TESLA Model 3 2020): too many signal codes"
    ]


def test_past_the_vehicle_cap_a_new_vehicle_is_stored_as_an_event_only(
    runtime: Runtime, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    assert deliver(runtime, fresh(minutes_ago=2))["pushed"] == 1  # the one vehicle allowed
    stranger = str(uuid.uuid4())
    osmand.add_known_id(f"smartcar-{stranger}")

    event = fresh(stranger)
    answer = deliver(runtime, event)

    assert answer == {"status": "stored", "eventId": event["eventId"], "pushed": 0}
    assert document(firestore_client, "smartcar_events", event["eventId"]) is not None
    assert document(firestore_client, "smartcar_vehicles", stranger) is None
    assert runtime.store.devices.get(stranger) is None
    assert [p.unique_id for p in osmand.positions] == [UNIQUE_ID]
    # The known vehicle still delivers.
    assert deliver(runtime, fresh())["pushed"] == 1
    assert [p.unique_id for p in osmand.positions] == [UNIQUE_ID, UNIQUE_ID]
