"""Signals to what Traccar is sent: unit conversions, skipped failures, and no invented position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.models import Source
from shared.sources.smartcar.payloads import Signal, parse_event
from shared.sources.smartcar.signals import LAST_KNOWN, read_signals, to_location

DATA = Path(__file__).resolve().parents[2] / "data"
VEHICLE = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"


def signal(code: str, body: dict[str, Any] | None, at: int = 1731940328000) -> Signal:
    return Signal(code=code, body=body, meta={"oemUpdatedAt": at})


def test_the_v4_sample_becomes_a_position_with_converted_attributes() -> None:
    event = parse_event(json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text()))
    reading = read_signals(event.data.signals)

    location = to_location(VEHICLE, reading, delivered_at=1731940331, last_known=None)

    assert location is not None
    assert (location.id, location.lat, location.lon) == (VEHICLE, 37.4292, -122.1381)
    assert location.timestamp == 1731940331  # deliveredAt: one position per delivery
    assert location.bearing == 174
    assert location.battery == 78
    assert location.speed is None  # motion-currentspeed failed: skipped, not zero
    assert location.source is Source.SMARTCAR
    assert location.attributes == {"odometer": 10254300.0, "stateOfCharge": 78.0, "charge": False}
    assert reading.skipped == ["motion-currentspeed: COMPATIBILITY:VEHICLE_NOT_CAPABLE"]


@pytest.mark.parametrize(
    ("body", "metres"),
    [
        ({"unit": "kilometers", "value": 100}, 100_000.0),
        ({"unit": "miles", "value": 100}, 160_934.4),
        ({"value": 12.5}, 12_500.0),  # no unit: Smartcar's default metric
    ],
)
def test_the_odometer_reaches_traccar_in_metres(body: dict, metres: float) -> None:
    reading = read_signals([signal("odometer-traveleddistance", body)])

    assert reading.attributes["odometer"] == pytest.approx(metres)


def test_the_range_is_in_kilometres() -> None:
    reading = read_signals([signal("tractionbattery-range", {"unit": "miles", "value": 250})])

    assert reading.attributes["range"] == pytest.approx(402.336)


@pytest.mark.parametrize(
    ("body", "knots"),
    [
        ({"unit": "kph", "value": 100}, 53.9957),
        ({"unit": "mph", "value": 60}, 52.1386),
        ({"unit": "miles_per_hour", "value": 60}, 52.1386),
        ({"unit": "kilometers_per_hour", "value": 1.852}, 1.0),
    ],
)
def test_the_speed_is_sent_in_knots(body: dict, knots: float) -> None:
    reading = read_signals([signal("motion-currentspeed", body)])

    assert reading.speed == pytest.approx(knots, abs=1e-4)


@pytest.mark.parametrize(
    ("code", "body"),
    [
        ("odometer-traveleddistance", {"unit": "furlongs", "value": 3}),
        ("motion-currentspeed", {"unit": "knots", "value": 3}),
        ("motion-currentspeed", {"unit": "kph", "value": -3}),
        ("tractionbattery-stateofcharge", {"unit": "percent", "value": 140}),
        ("charge-ischarging", {"value": "yes"}),
        ("location-preciselocation", {"latitude": 91, "longitude": 0}),
        ("location-preciselocation", {"latitude": "37.4", "longitude": 0}),
    ],
)
def test_a_body_that_does_not_hold_what_its_code_promises_is_skipped(code: str, body: dict) -> None:
    reading = read_signals([signal(code, body)])

    assert reading.skipped == [f"{code}: unusable body"]
    assert not reading.located and reading.attributes == {} and reading.speed is None


def test_the_state_of_charge_in_the_older_percentage_form_is_read() -> None:
    reading = read_signals([signal("tractionbattery-stateofcharge", {"percentage": 75})])

    assert reading.battery == 75


def test_the_newest_value_of_a_code_wins_whatever_the_order_in_the_delivery() -> None:
    reading = read_signals(
        [
            signal("charge-ischarging", {"value": True}, at=2_000_000_000_000),
            signal("charge-ischarging", {"value": False}, at=1_000_000_000_000),
        ]
    )

    assert reading.attributes["charge"] is True


def test_a_heading_beyond_a_turn_is_brought_back_into_range() -> None:
    reading = read_signals([signal("location-preciselocation", {"latitude": 1, "longitude": 2,
                                                                 "heading": 365})])  # fmt: skip

    assert reading.bearing == 5


def test_without_a_location_signal_the_last_known_position_carries_the_attributes() -> None:
    reading = read_signals([signal("tractionbattery-stateofcharge", {"value": 64})])

    location = to_location(VEHICLE, reading, delivered_at=1731950000, last_known=(48.85, 2.35))

    assert location is not None
    assert (location.lat, location.lon, location.timestamp) == (48.85, 2.35, 1731950000)
    assert location.loc_status == LAST_KNOWN and location.bearing is None
    assert location.battery == 64
    assert location.attributes == {"stateOfCharge": 64.0, "valid": False}


def test_without_any_known_position_nothing_is_invented() -> None:
    reading = read_signals([signal("tractionbattery-stateofcharge", {"value": 64})])

    assert to_location(VEHICLE, reading, delivered_at=1731950000, last_known=None) is None


def test_a_location_without_its_own_time_takes_the_delivery_time() -> None:
    reading = read_signals([Signal(code="location-preciselocation",
                                   body={"latitude": 1.5, "longitude": 2.5})])  # fmt: skip

    location = to_location(VEHICLE, reading, delivered_at=1731950000, last_known=None)

    assert location is not None and location.timestamp == 1731950000


def test_a_repeated_location_is_not_a_new_fix_and_each_delivery_has_its_own_fingerprint() -> None:
    reading = read_signals([signal("location-preciselocation", {"latitude": 1, "longitude": 2})])

    first, second = (
        to_location(
            VEHICLE,
            reading,
            delivered_at=1731950000,
            last_known=None,
            last_located_at=1731940328,
            delivery=event_id,
        )
        for event_id in ("event-1", "event-2")
    )

    assert first is not None and second is not None
    assert first.attributes == {"valid": False}  # oemUpdatedAt not after the stored one
    assert first.fingerprint() != second.fingerprint()


@pytest.mark.parametrize(
    ("code", "body", "attributes"),
    [
        ("charge-voltage", {"unit": "volts", "value": 230.5}, {"power": 230.5}),
        ("charge-voltage", {"unit": "millivolts", "value": 12}, {"charge-voltage-millivolts": 12}),
        ("charge-amperage", {"unit": "amperes", "value": 16}, {"charge-amperage-amperes": 16}),
        ("closure-islocked", {"value": True}, {"lock": True}),  # Traccar's KEY_LOCK
        ("internalcombustionengine-fuellevel", {"unit": "percent", "value": 42},
         {"fuelLevel": 42}),
        ("internalcombustionengine-amountremaining", {"unit": "liters", "value": 31.5},
         {"fuel": 31.5}),
        ("internalcombustionengine-amountremaining", {"unit": "gallons", "value": 8.3},
         {"internalcombustionengine-amountremaining-gallons": 8.3}),
        ("closure-doors", {"values": [{"row": 0, "column": 0, "isOpen": False},
                                      {"row": 0, "column": 1, "isOpen": True}],
                           "rowCount": 1, "columnCount": 2},
         {"door": True, "closure-doors-rowcount": 1, "closure-doors-columncount": 2}),
        ("closure-doors", {"values": [{"row": 0, "column": 0, "isOpen": False}]},
         {"door": False}),
        ("charge-chargelimits", {"unit": "percent", "value": 80, "mode": "DEFAULT"},
         {"charge-chargelimits-percent": 80}),
        ("tractionbattery-nominalcapacity", {"capacity": 75.0, "unit": "kWh"},
         {"tractionbattery-nominalcapacity-capacity-kwh": 75.0}),
    ],
)  # fmt: skip
def test_every_numeric_or_boolean_signal_passes_through(
    code: str, body: dict, attributes: dict
) -> None:
    reading = read_signals([signal(code, body)])

    assert reading.attributes == attributes and reading.skipped == []
