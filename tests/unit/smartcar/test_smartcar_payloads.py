"""Smartcar's delivery shapes: the 4.0 sample, the older 3.0 shape, and Smartcar's time formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import BadRequest
from shared.sources.smartcar.payloads import epoch_seconds, parse_event

DATA = Path(__file__).resolve().parents[2] / "data"


def state_sample() -> dict:
    return json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())


def test_the_v4_sample_parses_with_its_vendor_fields() -> None:
    event = parse_event(state_sample())

    assert event.eventId == "550e8400-e29b-41d4-a716-446655440000"
    assert event.vehicle_id == "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
    assert event.user_id == "e0514ef4-5226-4d6f-9a6f-3c2b1a0f9e8d"
    assert [s.code for s in event.data.signals] == [
        "location-preciselocation",
        "odometer-traveleddistance",
        "tractionbattery-stateofcharge",
        "charge-ischarging",
        "motion-currentspeed",
    ]
    assert event.delivered_at() == 1731940331
    failed = event.data.signals[-1]
    assert failed.body is None and failed.failure() == "COMPATIBILITY:VEHICLE_NOT_CAPABLE"


def test_the_older_shape_with_top_level_triggers_and_retrieved_at_is_read() -> None:
    document = state_sample()
    document["triggers"] = document["data"].pop("triggers")
    document["meta"] = {"version": "3.0", "retrievedAt": 1731940329000}
    del document["vehicleId"]

    event = parse_event(document)

    assert event.triggers and event.delivered_at() == 1731940329
    assert event.vehicle_id == document["data"]["vehicle"]["id"]


def test_unknown_fields_are_ignored() -> None:
    document = state_sample()
    document["futureField"] = {"anything": [1, 2]}
    document["data"]["signals"][0]["newMeta"] = True

    assert parse_event(document).eventId == document["eventId"]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"eventType": "VEHICLE_STATE"}, "eventId"),
        ({"eventId": "", "eventType": "VEHICLE_STATE"}, "eventId"),
        ({"eventId": "e", "eventType": "VEHICLE_STATE", "data": {"signals": [{}]}}, "code"),
        ({"eventId": "e", "eventType": "VEHICLE_STATE", "data": {"signals": "x"}}, "signals"),
    ],
)
def test_a_delivery_missing_what_matters_names_the_field(document: dict, field: str) -> None:
    with pytest.raises(BadRequest, match=field):
        parse_event(document)


@pytest.mark.parametrize(
    ("moment", "seconds"),
    [
        (1731940328000, 1731940328),  # epoch ms (the samples)
        (1700000000, 1700000000),  # epoch s (Smartcar's 3.0 example)
        ("2025-07-31T19:38:42.332Z", 1753990722),  # ISO (Smartcar's VERIFY example)
        ("2025-07-31T19:38:42", 1753990722),  # no zone: UTC, never local time
        ("2025-07-31T21:38:42+02:00", 1753990722),
        ("yesterday", None),
        (True, None),
        (-5, None),
        (float("inf"), None),
        (None, None),
    ],
)
def test_smartcar_times_become_epoch_seconds(moment: object, seconds: int | None) -> None:
    assert epoch_seconds(moment) == seconds  # type: ignore[arg-type]
