"""TLINK push parsing and the ingestion rules: times, positions, attributes (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.errors import BadRequest
from shared.models import Device, Source
from shared.sources.tlink.ingest import (
    DeviceReport,
    Reading,
    attribute_value,
    attributes,
    parse_lat_lng,
    reading_time,
    report_from_api,
    report_from_push,
    tlink_device_id,
)
from shared.sources.tlink.models import ApiDevice, PushBody, SensorState
from shared.sources.tlink.webhook import parse_push

DATA = Path(__file__).resolve().parents[2] / "data"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CONFORMANCE = (DATA / "tlink_push.json").read_bytes()


def push(**changes: object) -> bytes:
    body = json.loads(CONFORMANCE)
    body.update(changes)
    return json.dumps(body).encode()


def test_the_conformance_push_becomes_one_reading_at_shanghai_time() -> None:
    report = report_from_push(parse_push(CONFORMANCE), SHANGHAI)

    assert (report.device_id, report.user_id, report.parent_user_id) == (2864, "385", "217")
    # 2019-05-10 14:16:21 in Shanghai (UTC+8) is 06:16:21 UTC.
    assert report.time == datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC)
    [reading] = report.readings
    assert (reading.sensor_id, reading.type_id, reading.value, reading.re_val) == (
        11922,
        1,
        "5.0",
        "5.0000",
    )
    assert reading.time == report.time
    assert report.position is None


@pytest.mark.parametrize(
    ("packet", "times", "expected"),
    [
        ("2019-05-10 14:16:21", "14:16:05", "2019-05-10 14:16:05"),
        # A reading just before midnight in a packet sent just after it: the day before.
        ("2019-05-11 00:00:03", "23:59:58", "2019-05-10 23:59:58"),
        # A sensor clock slightly ahead across midnight: the day after.
        ("2019-05-10 23:59:59", "00:00:02", "2019-05-11 00:00:02"),
    ],
)
def test_a_sensor_time_lands_on_the_day_closest_to_the_packet(
    packet: str, times: str, expected: str
) -> None:
    local = datetime.strptime(packet, "%Y-%m-%d %H:%M:%S")
    sensor = datetime.strptime(times, "%H:%M:%S").time()

    moment = reading_time(local, sensor, SHANGHAI)

    assert moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") == expected


def test_a_sensor_without_times_takes_the_packet_time_and_the_zone_is_a_setting() -> None:
    local = datetime(2019, 5, 10, 14, 16, 21)

    assert reading_time(local, None, ZoneInfo("Etc/UTC")) == local.replace(tzinfo=UTC)
    assert reading_time(local, time(14, 0), ZoneInfo("Europe/Paris")) == datetime(
        2019, 5, 10, 12, 0, tzinfo=UTC
    )


def test_a_location_sensor_places_the_device_at_its_reading_time() -> None:
    report = report_from_push(
        parse_push((DATA / "tlink_push_location.json").read_bytes()), SHANGHAI
    )

    assert report.position is not None
    assert (report.position.lat, report.position.lng) == (31.230416, 121.473701)
    assert report.position.time == datetime(2019, 5, 10, 6, 16, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["31.23 121.47", "N31.23,E121.47", "31.23;121.47", '{"lat":31.2}', "91,10", "1,181"]
)
def test_other_location_encodings_lose_that_position_only_naming_the_sensor(value: str) -> None:
    body = push(sensorsDates=[{"sensorsId": 777, "sensorsTypeId": 3, "value": value},
                              {"sensorsId": 778, "sensorsTypeId": 1, "value": "5"}])  # fmt: skip

    report = report_from_push(parse_push(body), SHANGHAI)

    assert report.position is None and len(report.readings) == 2
    [skipped] = report.skipped
    assert "sensorsDates.0 (sensorsId 777)" in skipped and '"lat,lng"' in skipped


def test_a_pushed_location_sensor_with_lat_lng_fields_places_the_device() -> None:
    body = push(sensorsDates=[{"sensorsId": 777, "sensorsTypeId": 3, "value": "",
                               "lat": "31.5", "lng": 121.25}])  # fmt: skip

    report = report_from_push(parse_push(body), SHANGHAI)

    assert report.position is not None
    assert (report.position.lat, report.position.lng) == (31.5, 121.25)


@pytest.mark.parametrize("value", ["", "0,0", "0.0, 0.0", None])
def test_a_location_sensor_without_a_fix_gives_no_position(value: str | None) -> None:
    body = push(sensorsDates=[{"sensorsId": 777, "sensorsTypeId": 3, "value": value}])

    report = report_from_push(parse_push(body), SHANGHAI)

    assert report.position is None and len(report.readings) == 1


def test_parse_lat_lng_accepts_signs_and_spaces() -> None:
    assert parse_lat_lng(" -33.8688 , 151.2093 ") == (-33.8688, 151.2093)
    assert parse_lat_lng("+48,-2") == (48.0, -2.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"{not json", "not valid JSON"),
        (b"[]", "body"),
        (push(deviceId=None), "deviceId"),
        (push(deviceId="abc"), "deviceId"),
        (push(time="10/05/2019 14:16"), "time: Value error, expected a time as 'yyyy-MM-dd"),
        (push(sensorsDates=[{"value": "1"}]), "sensorsDates.0.sensorsId"),
        (push(sensorsDates=[{"sensorsId": 1, "times": "25:61:00"}]), "sensorsDates.0.times"),
        (push(sensorsDates="nope"), "sensorsDates"),
    ],
)
def test_a_malformed_push_is_refused_with_a_message_naming_the_field(
    body: bytes, message: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_push(body)

    assert message in refused.value.message


def test_a_push_out_of_the_epoch_range_is_refused() -> None:
    with pytest.raises(BadRequest, match=r"time: .*out of range"):
        report_from_push(parse_push(push(time="2099-01-01 00:00:00")), SHANGHAI)


def test_vendor_numbers_and_strings_are_both_accepted() -> None:
    body = PushBody.model_validate(
        {
            "deviceId": "2864",
            "deviceUserid": 385,
            "time": "2019-05-10 14:16:21",
            "sensorsDates": [{"sensorsId": "11922", "value": 5.5, "isLine": 1, "isAlarm": True}],
        }
    )

    assert body.deviceId == 2864 and body.deviceUserid == "385"
    sensor = body.sensorsDates[0]
    assert (sensor.sensorsId, sensor.value, sensor.isLine, sensor.isAlarm) == (
        11922,
        "5.5",
        "1",
        "1",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5.0", 5.0), ("5", 5), ("-12", -12), ("1e3", 1000.0), (".5", 0.5), ("on", "on"),
     ("nan", "nan"), ("inf", "inf"), ("12 kPa", "12 kPa"), ("31.2,121.4", "31.2,121.4")],
)  # fmt: skip
def test_numeric_text_becomes_a_number_and_the_rest_stays_text(text: str, expected: object) -> None:
    value = attribute_value(text)

    assert value == expected and type(value) is type(expected)


def test_attributes_use_sensor_names_else_ids_and_leave_the_location_out() -> None:
    moment = datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC)
    report = DeviceReport(
        device_id=2864,
        origin="push",
        time=moment,
        readings=(
            Reading(11922, moment, type_id=1, value="5.0"),
            Reading(11923, moment, type_id=1, value="61"),
            Reading(11924, moment, type_id=1, value="on"),
            Reading(11925, moment, type_id=3, value="31.2,121.4"),
            Reading(11927, moment, type_id=1, value=None),
        ),
    )
    sensors = {
        "11922": SensorState(sensor_id=11922, name="Temperature"),
        "11923": SensorState(sensor_id=11923, name="Temperature"),
    }

    assert attributes(report, sensors) == {
        "Temperature": 5.0,
        "Temperature_11923": 61,
        "sensor_11924": "on",
    }


def test_a_pulled_device_keeps_names_units_and_its_configured_place() -> None:
    device = ApiDevice.model_validate(
        {
            "id": 2864,
            "deviceName": "Cold room",
            "lat": "31.2304",
            "lng": "121.4737",
            "sensorsList": [
                {"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1, "value": "5.0",
                 "unit": "℃", "updateDate": "2019-05-10 14:16:21"},
                {"id": 11923, "sensorName": "Door", "sensorTypeId": 2, "value": "0",
                 "updateDate": 1557469000000},
                {"id": 11924, "sensorName": "Spare", "value": "1", "updateDate": ""},
            ],
        }
    )  # fmt: skip

    report = report_from_api(device, "385", SHANGHAI)

    assert report.api_lat_lng == (31.2304, 121.4737) and report.position is None
    assert report.name == "Cold room" and report.user_id == "385"
    times = [reading.time for reading in report.readings]
    assert times == [
        datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC),
        datetime(2019, 5, 10, 6, 16, 40, tzinfo=UTC),
        None,
    ]
    assert report.time == times[1]
    assert report.readings[0].unit == "℃"


@pytest.mark.parametrize(("lat", "lng"), [("", ""), (None, None), ("0", "0"), ("95", "10")])
def test_a_pulled_device_without_a_usable_place_has_none(lat: object, lng: object) -> None:
    device = ApiDevice.model_validate({"id": 1, "lat": lat, "lng": lng})

    assert report_from_api(device, "385", SHANGHAI).api_lat_lng is None


def test_bridge_ids_map_to_tlink_device_ids() -> None:
    device = Device(id="tlink-2864", source=Source.TLINK, traccar_unique_id="tlink-2864")
    assert tlink_device_id(device) == 2864
    with pytest.raises(BadRequest):
        tlink_device_id(device.model_copy(update={"id": "2864"}))


def test_an_unknown_time_zone_stops_the_start_naming_the_variable() -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    with pytest.raises(ConfigError, match=r"TLINK_TIME_ZONE: .*unknown IANA time zone"):
        load_settings(_env_file=None, tlink_time_zone="Mars/Olympus")
