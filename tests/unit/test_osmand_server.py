"""The OsmAnd test server decodes like Traccar: every conformance line, and the edges that matter.

The conformance lines (tests/data/traccar_osmand*.txt, copied from Traccar's own decoder tests)
are sent verbatim over a socket; each line has its expected decoding written out here, and a
line without one fails the run. The other tests pin the rules the bridge relies on: unknown ids,
Java's number and date parsing, the form body, the JSON form, and the connection closed without
a reply when a value does not parse.
"""

from __future__ import annotations

import http.client
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.fakes.osmand import (
    BODY_LIMIT_SINCE_6_14,
    CellTower,
    DecodedPosition,
    OsmAndServer,
    WifiAccessPoint,
)

DATA = Path(__file__).resolve().parents[1] / "data"
KNOWN_IDS = {
    "123456",
    "902064",
    "353861053849681",
    "861001000719969",
    "123456789012345",
    "48241179",
    "8737767034",
}


def conformance_lines(name: str) -> list[str]:
    lines = (DATA / name).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


QUERY_LINES = [line.split("\t") for line in conformance_lines("traccar_osmand.txt")]
JSON_LINES = conformance_lines("traccar_osmand_json.txt")


@pytest.fixture
def server() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=KNOWN_IDS) as running:
        yield running


def send(
    server: OsmAndServer,
    target: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    content_type: str | None = None,
) -> int | None:
    """Send the request target verbatim; the status, or None when closed without a reply."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        connection.request(method, target, body=body, headers=headers)
        return connection.getresponse().status
    except http.client.RemoteDisconnected:
        return None
    finally:
        connection.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def only_position(server: OsmAndServer) -> DecodedPosition:
    positions = server.positions
    assert len(positions) == 1, positions
    return positions[0]


def now_ms() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# Each conformance line, decoded as Traccar decodes it. `None` for the time: the server's clock.
EXPECTED_QUERY: dict[str, tuple[int, dict[str, object] | None]] = {
    "/?id=123456&timestamp=1377177267&cell=257,02,16,2224&cell=257,02,16,2223,-90"
    "&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70": (
        200,
        {
            "unique_id": "123456",
            "latitude": None,
            "longitude": None,
            "outdated": True,
            "fix_time": at("2013-08-22T13:14:27Z"),
            "cell_towers": (CellTower(257, 2, 16, 2224), CellTower(257, 2, 16, 2223, -90)),
            "wifi_access_points": (
                WifiAccessPoint("00:14:22:01:23:45", -80),
                WifiAccessPoint("00:1C:B3:09:85:15", -70),
            ),
            "attributes": {},
        },
    ),
    "/?timestamp=1377177267&lat=60.0&lon=30.0": (400, None),
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z"
    "&hdop=6.0&altitude=224.0&speed=0.0": (
        200,
        {
            "unique_id": "902064",
            "latitude": 42.06288,
            "longitude": -88.23412,
            "fix_time": at("2016-01-27T18:55:47Z"),
            "altitude": 224.0,
            "speed_knots": 0.0,
            "attributes": {"hdop": 6.0},
        },
    ),
    "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0"
    "&speed=0.0": (
        200,
        {
            "unique_id": "902064",
            "latitude": 42.06288,
            "longitude": -88.23412,
            "fix_time": at("2015-09-12T14:38:06.579Z"),  # milliseconds, kept
            "altitude": 224.0,
            "speed_knots": 0.0,
            "attributes": {"hdop": 6.0},
        },
    ),
    "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0"
    "&id=353861053849681": (
        200,
        {
            "unique_id": "353861053849681",
            "latitude": 49.60688,
            "longitude": 6.15788,
            "fix_time": at("2014-06-04T09:10:11Z"),  # yyyy-MM-dd HH:mm:ss in the server's UTC
            "altitude": 384.7,
            "speed_knots": 0.0,
            "course": None,
            "attributes": {},
        },
    ),
    "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0"
    "&hdop=0.0": (
        200,
        {
            "unique_id": "123456",
            "latitude": 60.0,
            "longitude": 30.0,
            "fix_time": at("2013-08-22T13:14:27Z"),
            "speed_knots": 0.0,
            "course": 0.0,
            "altitude": 0.0,
            "attributes": {"hdop": 0.0},
        },
    ),
    "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0": (
        200,
        {
            "unique_id": "123456",
            "latitude": 60.0,
            "longitude": 30.0,
            "fix_time": at("2013-08-22T13:14:27Z"),
            "speed_knots": None,
            "course": None,
            "altitude": None,
            "accuracy": None,
            "valid": True,
            "outdated": False,
            "attributes": {},
        },
    ),
    "/?lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456": (
        200,
        {
            "unique_id": "123456",  # from deviceid
            "latitude": 60.0,
            "longitude": 30.0,
            "fix_time": None,
            "speed_knots": 0.0,
            "course": 0.0,  # from heading
            "altitude": 0.0,
            "attributes": {"vacc": 0.0, "hacc": 0.0},
        },
    ),
    "/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87": (
        200,
        {
            "unique_id": "861001000719969",
            "latitude": 41.666667,
            "longitude": -0.883333,
            "fix_time": None,
            "altitude": 350.059479,
            "speed_knots": 0.0,
            "attributes": {"batteryLevel": 87.0},
        },
    ),
    "/?id=123456&timestamp=1377177267&location=60.0,30.0": (
        200,
        {
            "unique_id": "123456",
            "latitude": 60.0,
            "longitude": 30.0,
            "fix_time": at("2013-08-22T13:14:27Z"),
            "attributes": {},
        },
    ),
    "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
    "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24": (
        200,
        {
            "unique_id": "123456789012345",
            "latitude": 40.7232948571,
            "longitude": -74.0061408571,
            "fix_time": at("2017-09-07T05:56:50Z"),
            "course": 7.19889788244,
            "speed_knots": 40.0,  # knots, as sent
            "attributes": {"ignition": True, "rpm": 933.0, "fuel": 24.0},
        },
    ),
}


def test_every_conformance_line_has_an_expected_decoding() -> None:
    assert [target for target, *_ in QUERY_LINES] == list(EXPECTED_QUERY)
    markers = {target: marker for target, *marker in QUERY_LINES}
    for target, (status, expected) in EXPECTED_QUERY.items():
        if markers[target] == ["rejected"]:
            assert status == 400
        if markers[target] == ["no-position"]:
            assert expected is not None and expected["latitude"] is None


@pytest.mark.parametrize(
    "target",
    [target for target, *_ in QUERY_LINES],
    ids=[f"line{number}" for number in range(1, len(QUERY_LINES) + 1)],
)
def test_conformance_line_decodes_like_traccar(server: OsmAndServer, target: str) -> None:
    status, expected = EXPECTED_QUERY[target]
    before = now_ms()
    assert send(server, target) == status
    after = now_ms()
    if expected is None:
        assert server.positions == []
        return
    position = only_position(server)
    for name, value in expected.items():
        actual = getattr(position, name)
        if name == "fix_time" and value is None:
            assert before <= actual <= after
        elif name == "attributes":
            assert actual == value
            # Typed like Traccar: numbers are doubles, true/false booleans.
            assert {key: type(item) for key, item in actual.items()} == {
                key: type(item) for key, item in value.items()
            }
        else:
            assert actual == value, name


def test_the_line_without_id_is_rejected_with_400_and_nothing_recorded(
    server: OsmAndServer,
) -> None:
    assert send(server, "/?timestamp=1377177267&lat=60.0&lon=30.0") == 400
    assert server.positions == []


def test_unknown_id_is_400_and_a_known_one_after_registration_is_accepted(
    server: OsmAndServer,
) -> None:
    assert send(server, "/?id=stranger&lat=1.0&lon=2.0&timestamp=1700000000") == 400
    assert server.positions == []
    server.add_known_id("stranger")
    assert send(server, "/?id=stranger&lat=1.0&lon=2.0&timestamp=1700000000") == 200
    assert only_position(server).unique_id == "stranger"


def test_unknown_id_answers_400_before_later_values_are_even_parsed(
    server: OsmAndServer,
) -> None:
    # Traccar stops at the unknown id: a bad value after it does not close the connection.
    assert send(server, "/?id=stranger&lat=not-a-number") == 400


@pytest.mark.parametrize(
    "target",
    [
        "/?id=123456&lat=sixty&lon=30.0",
        "/?id=123456&lat=60.0&lon=30.0&timestamp=2016-01-27T18:55:47",  # ISO without a zone
        "/?id=123456&lat=60.0&lon=30.0&timestamp=yesterday",
        "/?id=123456&lat=91.0&lon=30.0",  # Position.setLatitude range check
        "/?id=123456&location=60.0",
        "/?id=123456&cell=257,02,16",
        "/?id=123456&lat=60.0&lon=30.0&speed=%ZZ",
        "/?id=123456&lat=1_000&lon=30.0",  # Python would read 1000, Java does not
    ],
)
def test_a_value_that_does_not_parse_closes_the_connection_without_reply(
    server: OsmAndServer, target: str
) -> None:
    assert send(server, target) is None
    assert server.positions == []
    assert len(server.errors) == 1


def test_timestamp_below_int_max_is_seconds_and_above_is_milliseconds(
    server: OsmAndServer,
) -> None:
    assert send(server, "/?id=123456&lat=1.0&lon=2.0&timestamp=2147483646") == 200
    assert send(server, "/?id=123456&lat=1.0&lon=2.0&timestamp=2147483647") == 200
    first, second = server.positions
    assert first.fix_time == at("2038-01-19T03:14:06Z")
    assert second.fix_time == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=2147483647)


def test_iso_timestamp_with_an_offset_is_converted_to_utc(server: OsmAndServer) -> None:
    assert (
        send(server, "/?id=123456&lat=1.0&lon=2.0&timestamp=2016-01-27T20:55:47.1234%2B02:00")
        == 200
    )
    assert only_position(server).fix_time == at("2016-01-27T18:55:47.123Z")


def test_other_keys_become_attributes_typed_like_java(server: OsmAndServer) -> None:
    target = (
        "/?id=123456&lat=1.0&lon=2.0&a=1e3&b=True&c=false&d=text&e=&f=-0.5f&g=NaN&h=+7"
        "&driverUniqueId=D1&charge=TRUE&valid=0&batt=55.5"
    )
    assert send(server, target) == 200
    position = only_position(server)
    attributes = dict(position.attributes)
    assert math.isnan(attributes.pop("g"))
    assert attributes == {
        "a": 1000.0,
        "b": "True",  # only exactly "true"/"false" are booleans
        "c": False,
        "d": "text",
        # "e" is empty: Traccar does not store an empty string
        "f": -0.5,
        "h": 7.0,  # '+' is a space, and Java trims it away
        "driverUniqueId": "D1",
        "charge": True,  # Boolean.parseBoolean ignores case
        "batteryLevel": 55.5,
    }
    assert position.valid is False


def test_semicolons_separate_parameters_like_netty(server: OsmAndServer) -> None:
    assert send(server, "/any/path?id=123456;lat=1.5;lon=2.5") == 200
    position = only_position(server)
    assert (position.latitude, position.longitude) == (1.5, 2.5)


def test_latitude_without_longitude_is_recorded_without_position(server: OsmAndServer) -> None:
    assert send(server, "/?id=123456&lat=1.5&timestamp=1700000000") == 200
    position = only_position(server)
    assert (position.latitude, position.longitude, position.outdated) == (None, None, True)


def test_form_body_is_read_when_the_uri_has_no_query(server: OsmAndServer) -> None:
    body = b"id=123456&lat=1.5&lon=2.5&timestamp=1700000000"
    form = "application/x-www-form-urlencoded"
    assert send(server, "/", method="POST", body=body, content_type=form) == 200
    assert only_position(server).latitude == 1.5
    # With a query, the body is not looked at.
    assert send(server, "/?id=123456", method="POST", body=body, content_type=form) == 200
    assert server.positions[1].latitude is None


def test_a_request_line_over_4096_bytes_is_a_bad_request_without_id(server: OsmAndServer) -> None:
    # Netty's HttpRequestDecoder keeps 4096 bytes of initial line: longer is GET /bad-request.
    base = "/?id=123456&lat=1.5&lon=2.5&note="
    fits = base + "x" * (4096 - len(f"GET {base} HTTP/1.1"))
    assert send(server, fits) == 200
    assert send(server, fits + "x") == 400
    assert len(server.positions) == 1


def test_a_form_body_over_16_kib_is_413_before_traccar_6_14_and_fits_64_kib_since() -> None:
    form = "application/x-www-form-urlencoded"
    head = b"id=123456&lat=1.5&lon=2.5&note="
    body = head + b"x" * (16 * 1024 - len(head))
    with OsmAndServer(known_ids=KNOWN_IDS) as old:
        assert send(old, "/", method="POST", body=body, content_type=form) == 200
        assert send(old, "/", method="POST", body=body + b"x", content_type=form) == 413
        assert len(old.positions) == 1
    with OsmAndServer(known_ids=KNOWN_IDS, max_body=BODY_LIMIT_SINCE_6_14) as new:
        assert send(new, "/", method="POST", body=body * 3, content_type=form) == 200


def test_a_form_body_carries_percent_encoded_utf8_names_and_values(server: OsmAndServer) -> None:
    body = "id=123456&lat=1.5&lon=2.5&" + urlencode({"温度传感器": "高"})
    form = "application/x-www-form-urlencoded"
    assert send(server, "/", method="POST", body=body.encode(), content_type=form) == 200
    assert only_position(server).attributes == {"温度传感器": "高"}


def test_any_method_and_path_is_accepted(server: OsmAndServer) -> None:
    for method in ("GET", "POST", "PUT", "PATCH"):
        assert send(server, "/osmand/x?id=123456&lat=1.0&lon=2.0", method=method) == 200
    assert len(server.positions) == 4


EXPECTED_JSON = [
    {
        "unique_id": "48241179",
        "latitude": 37.4219983,
        "longitude": -122.084,
        "fix_time": at("2025-06-15T13:45:12.862Z"),
        "speed_knots": 0.0,
        "course": None,  # heading -1 means unknown
        "altitude": 5.0,
        "accuracy": None,  # 5 m is below osmand.minAccuracy (10)
        "valid": True,
        "attributes": {
            "event": "motionchange",
            "motion": False,
            "odometer": 0,
            "activity": "still",
            "batteryLevel": 100,  # level 1 → 100 %
        },
    },
    {
        "unique_id": "8737767034",
        "latitude": -6.1148096,
        "longitude": 106.6837015,
        "fix_time": at("2021-07-21T08:06:34.444Z"),
        "speed_knots": pytest.approx(36.2915, abs=1e-4),  # 18.67 m/s
        "course": 63.0,
        "altitude": 35.7,
        "accuracy": None,
        "valid": True,
        "attributes": {
            "event": "motionchange",
            "motion": False,
            "odometer": 0,
            "activity": "still",
            "batteryLevel": 79,
        },
    },
]


@pytest.mark.parametrize(
    ("line", "expected"), list(zip(JSON_LINES, EXPECTED_JSON, strict=True)), ids=["json1", "json2"]
)
def test_json_conformance_line_decodes_like_traccar(
    server: OsmAndServer, line: str, expected: dict[str, object]
) -> None:
    assert (
        send(server, "/", method="POST", body=line.encode(), content_type="application/json") == 200
    )
    position = only_position(server)
    for name, value in expected.items():
        assert getattr(position, name) == value, name
    assert "charge" not in position.attributes  # is_charging false sets nothing


def test_json_unknown_device_is_404(server: OsmAndServer) -> None:
    body = JSON_LINES[0].replace("48241179", "stranger").encode()
    assert send(server, "/", method="POST", body=body, content_type="application/json") == 404
    assert server.positions == []


def test_json_extras_charging_and_missing_coords(server: OsmAndServer) -> None:
    body = (
        b'{"device_id":"48241179","location":{"timestamp":"2025-06-15T13:45:12Z",'
        b'"battery":{"level":0.5,"is_charging":true},'
        b'"extras":{"n":12,"x":12.0,"e":1E2,"s":"v","empty":"","t":true,"o":{},"z":null}}}'
    )
    assert send(server, "/", method="POST", body=body, content_type="application/json") == 200
    position = only_position(server)
    assert (position.latitude, position.valid, position.outdated) == (None, False, True)
    assert position.attributes == {
        "batteryLevel": 50,
        "charge": True,
        "n": 12,
        "x": 12.0,
        "e": 100.0,
        "s": "v",
        "t": True,
    }
    assert type(position.attributes["n"]) is int
    assert type(position.attributes["x"]) is float


def test_json_coords_missing_a_field_closes_the_connection(server: OsmAndServer) -> None:
    body = JSON_LINES[0].replace('"altitude":5', '"altitude_x":5').encode()
    assert send(server, "/", method="POST", body=body, content_type="application/json") is None
    assert server.positions == []


def test_failure_modes_answer_then_recover(server: OsmAndServer) -> None:
    target = "/?id=123456&lat=1.0&lon=2.0"
    server.respond_with(503, times=2)
    assert [send(server, target) for _ in range(3)] == [503, 503, 200]
    server.close_without_reply(times=1)
    assert [send(server, target) for _ in range(2)] == [None, 200]
    assert len(server.positions) == 2
    assert len(server.requests) == 5


def test_stopped_server_refuses_and_restarts_on_the_same_port(server: OsmAndServer) -> None:
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        send(server, "/?id=123456&lat=1.0&lon=2.0")
    server.start()
    assert server.port == port
    assert send(server, "/?id=123456&lat=1.0&lon=2.0") == 200


# --- Alarm events (AlarmEventHandler, event.ignoreDuplicateAlerts) -----------------------------


def alarm_at(server: OsmAndServer, seconds: int, alarm: str | None) -> None:
    flag = f"&alarm={alarm}" if alarm is not None else ""
    assert send(server, f"/?id=123456&lat=1.0&lon=2.0&timestamp={1_700_000_000 + seconds}{flag}")


def events(server: OsmAndServer) -> list[tuple[str, int]]:
    return [(e.alarm, int(e.fix_time.timestamp()) - 1_700_000_000) for e in server.alarm_events]


def test_an_alarm_repeated_by_the_next_position_raises_no_second_event_by_default(
    server: OsmAndServer,
) -> None:
    for seconds, alarm in [(0, "general"), (1, "general"), (2, None), (3, "general"),
                           (4, "general,sos"), (5, "sos")]:  # fmt: skip
        alarm_at(server, seconds, alarm)

    # Traccar's default `event.ignoreDuplicateAlerts=true`: only what the last position lacked.
    assert events(server) == [("general", 0), ("general", 3), ("sos", 4)]


def test_with_duplicate_alerts_on_every_position_in_alarm_raises_an_event() -> None:
    with OsmAndServer(known_ids=KNOWN_IDS, ignore_duplicate_alerts=False) as server:
        for seconds in range(3):
            alarm_at(server, seconds, "general")

        assert events(server) == [("general", 0), ("general", 1), ("general", 2)]


def test_a_position_older_than_the_last_raises_no_event_and_stays_not_last(
    server: OsmAndServer,
) -> None:
    alarm_at(server, 10, None)
    alarm_at(server, 5, "general")  # older: no event, and not the device's last position
    alarm_at(server, 11, "general")

    assert events(server) == [("general", 11)]
