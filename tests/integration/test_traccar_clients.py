"""The Traccar clients against the local Traccar fakes, over real sockets.

`OsmAndClient` against the OsmAnd test server (which decodes like Traccar): what arrives, with
which types and units, and how every kind of failure is told apart. `TraccarApi` against the
fake REST API, sharing its device table with the OsmAnd server as a real Traccar does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from shared.models import Location
from shared.traccar import (
    BasicLogin,
    Deadline,
    OsmAndClient,
    PushOutcome,
    TraccarApi,
    TraccarAuthError,
    TraccarConnectionError,
    TraccarResponseError,
)
from tests.fakes.osmand import OsmAndServer
from tests.fakes.traccar_api import FakeTraccarApi

UNIQUE_ID = "abc123"
TOKEN = "traccar-api-token-0123456789"
# Short, so that the timeout tests stay fast; the stall is far longer.
SHORT_TIMEOUT = 0.3


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as pooled:
        yield pooled


@pytest.fixture
def osmand() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids={UNIQUE_ID}) as server:
        yield server


@pytest.fixture
def client(session: requests.Session, osmand: OsmAndServer) -> OsmAndClient:
    return OsmAndClient(session, osmand.url, connect_timeout=1.0, read_timeout=SHORT_TIMEOUT)


@pytest.fixture
def api_server(osmand: OsmAndServer) -> Iterator[FakeTraccarApi]:
    with FakeTraccarApi(TOKEN, devices=osmand.devices) as server:
        yield server


@pytest.fixture
def api(session: requests.Session, api_server: FakeTraccarApi) -> TraccarApi:
    return TraccarApi(session, api_server.url, TOKEN, timeout=(1.0, SHORT_TIMEOUT))


def location(**overrides: object) -> Location:
    values: dict[str, object] = {
        "id": UNIQUE_ID,
        "lat": 48.8566,
        "lon": 2.3522,
        "timestamp": 1_700_000_000,
    }
    values.update(overrides)
    return Location.model_validate(values)


def query_of(server: OsmAndServer, index: int = -1) -> list[tuple[str, str]]:
    """The parameters of a push: a form body, the query string left empty (PROTOCOLS.md §1)."""
    request = server.requests[index]
    assert "?" not in request.target
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qsl(request.body.decode("ascii"), keep_blank_values=True)


# --- OsmAnd client ---------------------------------------------------------------------------


def test_accepted_push_arrives_with_every_field_in_traccar_units_and_types(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    sent = location(
        altitude=35.5,
        accuracy=12.0,
        speed=21.6,  # knots already: Traccar must store it unchanged
        bearing=271.5,
        battery=87.0,
        attributes={
            "ignition": True,
            "charging": False,
            "rpm": 933,
            "fuel": 24.5,
            "address": "1 rue de la Paix & co; 75002=Paris #2",
        },
    )

    result = client.push(sent, UNIQUE_ID)

    assert (result.outcome, result.status, result.error) == (PushOutcome.ACCEPTED, 200, None)
    [position] = osmand.positions
    assert position.unique_id == UNIQUE_ID
    assert (position.latitude, position.longitude) == (48.8566, 2.3522)
    assert position.fix_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert position.altitude == 35.5
    assert position.accuracy == 12.0
    assert position.speed_knots == 21.6
    assert position.course == 271.5
    assert position.valid is True
    assert position.attributes == {
        "batteryLevel": 87.0,
        "ignition": True,
        "charging": False,
        "rpm": 933.0,  # Traccar stores every numeric attribute as a double
        "fuel": 24.5,
        "address": "1 rue de la Paix & co; 75002=Paris #2",
    }
    assert type(position.attributes["ignition"]) is bool
    request = osmand.requests[-1]
    assert (request.method, urlsplit(request.target).query) == ("POST", "")
    assert ("address", "1 rue de la Paix & co; 75002=Paris #2") in query_of(osmand)


def test_absent_optional_fields_are_not_sent(client: OsmAndClient, osmand: OsmAndServer) -> None:
    result = client.push(location(), UNIQUE_ID)

    assert result.outcome is PushOutcome.ACCEPTED
    assert query_of(osmand) == [
        ("id", UNIQUE_ID),
        ("lat", "48.8566"),
        ("lon", "2.3522"),
        ("timestamp", "1700000000"),
    ]
    [position] = osmand.positions
    assert (position.speed_knots, position.course, position.altitude) == (None, None, None)
    assert position.attributes == {}


def test_push_uses_the_unique_id_given_not_the_location_id(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    result = client.push(location(id="google-canonic-id"), UNIQUE_ID)

    assert result.outcome is PushOutcome.ACCEPTED
    assert osmand.positions[0].unique_id == UNIQUE_ID


def test_attributes_named_like_osmand_fields_are_renamed_and_never_override_them(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    attributes = {
        "id": "someone-else",
        "lat": "0.0",
        "timestamp": 1,
        "speed": 99,
        "batteryLevel": 5,
        "cell": "1,2,3,4",
        "attr_lat": "already here",
    }

    result = client.push(location(speed=3.0, battery=80.0, attributes=attributes), UNIQUE_ID)

    assert result.outcome is PushOutcome.ACCEPTED
    [position] = osmand.positions
    assert position.unique_id == UNIQUE_ID
    assert (position.latitude, position.longitude) == (48.8566, 2.3522)
    assert position.fix_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert position.speed_knots == 3.0
    assert position.cell_towers == ()
    assert position.attributes == {
        "batteryLevel": 80.0,
        "attr_id": "someone-else",
        "attr_attr_lat": 0.0,  # "attr_lat" was taken by an attribute of its own
        "attr_timestamp": 1.0,
        "attr_speed": 99.0,
        "attr_batteryLevel": 5.0,
        "attr_cell": "1,2,3,4",
        "attr_lat": "already here",
    }


def test_non_finite_values_are_left_out_rather_than_sent_unparsable(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    sent = location(altitude=float("nan"), attributes={"temp": float("inf"), "ok": 1.5})

    result = client.push(sent, UNIQUE_ID)

    assert result.outcome is PushOutcome.ACCEPTED
    [position] = osmand.positions
    assert position.altitude is None
    assert position.attributes == {"ok": 1.5}


def test_unknown_device_is_told_apart_and_nothing_is_recorded(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    result = client.push(location(), "not-in-traccar")

    assert (result.outcome, result.status) == (PushOutcome.UNKNOWN_DEVICE, 400)
    assert "not-in-traccar" in (result.error or "")
    assert osmand.positions == []


@pytest.mark.parametrize("status", [500, 503, 401, 413, 429, 302])
def test_server_errors_and_other_statuses_mean_retry_later_with_the_status(
    client: OsmAndClient, osmand: OsmAndServer, status: int
) -> None:
    osmand.respond_with(status, times=1)

    result = client.push(location(), UNIQUE_ID)

    assert (result.outcome, result.status) == (PushOutcome.RETRY_LATER, status)
    assert str(status) in (result.error or "")
    assert client.push(location(), UNIQUE_ID).outcome is PushOutcome.ACCEPTED


def test_refused_connection_means_retry_later_and_the_session_recovers(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    assert client.push(location(), UNIQUE_ID).outcome is PushOutcome.ACCEPTED  # pooled now
    osmand.stop()

    result = client.push(location(timestamp=1_700_000_060), UNIQUE_ID)

    assert (result.outcome, result.status) == (PushOutcome.RETRY_LATER, None)
    assert "refused" in (result.error or "")
    osmand.start()
    assert client.push(location(timestamp=1_700_000_060), UNIQUE_ID).outcome is (
        PushOutcome.ACCEPTED
    )
    assert len(osmand.positions) == 2


def test_connection_closed_without_reply_means_retry_later_and_says_so(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    osmand.close_without_reply(times=1)

    result = client.push(location(), UNIQUE_ID)

    assert (result.outcome, result.status) == (PushOutcome.RETRY_LATER, None)
    assert "closed without a reply" in (result.error or "")
    assert "cannot parse" in (result.error or "")
    assert osmand.positions == []


def test_read_timeout_means_retry_later_within_the_timeout(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    osmand.stall(5.0, times=1)
    started = time.monotonic()

    result = client.push(location(), UNIQUE_ID)

    assert time.monotonic() - started < 2.0
    assert (result.outcome, result.status) == (PushOutcome.RETRY_LATER, None)
    assert "timeout" in (result.error or "")
    assert not result.cut  # the client's own timeout: Traccar's failure


def test_a_push_with_a_deadline_ends_by_it_whatever_the_client_timeouts(
    session: requests.Session, osmand: OsmAndServer
) -> None:
    # A webhook's answer budget (PROTOCOLS.md §3: Smartcar retries after 15 s): the shared
    # client's timeouts (5 s connect, 15 s read) give way to what is left of the deadline.
    patient = OsmAndClient(session, osmand.url, connect_timeout=5.0, read_timeout=15.0)
    osmand.stall(10.0, times=1)
    started = time.monotonic()

    result = patient.push(location(), UNIQUE_ID, deadline=Deadline.after(1.0))

    assert time.monotonic() - started < 3.0
    assert (result.outcome, result.status, result.tried) == (PushOutcome.RETRY_LATER, None, True)
    # Sent, its wait ended by the deadline, not by Traccar: said so (Traccar may store it).
    assert result.cut and "may have stored" in (result.error or "")
    late = patient.push(location(), UNIQUE_ID, deadline=Deadline.after(0.0))
    assert (late.outcome, late.tried) == (PushOutcome.RETRY_LATER, False)
    assert len(osmand.requests) == 1  # the late one was never sent


def test_api_calls_under_a_deadline_end_by_it_together(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    # `ensure_device` makes up to six calls: the deadline bounds them all, not each.
    patient = TraccarApi(session, api_server.url, TOKEN, timeout=(5.0, 15.0))
    api_server.stall(1.0)  # every call answers after a second
    started = time.monotonic()

    with pytest.raises(TraccarConnectionError):
        patient.until(Deadline.after(2.5)).ensure_device("new-tracker", "New tracker")

    assert time.monotonic() - started < 4.0  # unbounded, the three calls take 3 s and succeed


def test_error_text_never_shows_credentials_of_the_url(
    session: requests.Session, osmand: OsmAndServer
) -> None:
    client = OsmAndClient(session, f"http://bridge:pa55word-secret@127.0.0.1:{osmand.port}/")
    osmand.stop()

    result = client.push(location(), UNIQUE_ID)

    assert result.outcome is PushOutcome.RETRY_LATER
    assert "pa55word-secret" not in (result.error or "")
    assert "48.8566" not in (result.error or "")  # nor the position from the query string
    assert f"127.0.0.1:{osmand.port}" in (result.error or "")


# --- REST API client -------------------------------------------------------------------------


def test_find_device_answers_none_then_the_device_once_it_exists(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    assert api.find_device("new-tracker") is None
    registered = api_server.devices.add("new-tracker", "Keys")

    found = api.find_device("new-tracker")

    assert found is not None
    assert (found.id, found.name, found.uniqueId) == (registered.id, "Keys", "new-tracker")


def test_create_device_makes_it_known_to_the_osmand_endpoint(
    api: TraccarApi, api_server: FakeTraccarApi, client: OsmAndClient
) -> None:
    assert client.push(location(), "new-tracker").outcome is PushOutcome.UNKNOWN_DEVICE

    created = api.create_device("new-tracker", "Keys")

    assert (created.name, created.uniqueId) == ("Keys", "new-tracker")
    assert [device.id for device in api_server.created] == [created.id]
    assert client.push(location(), "new-tracker").outcome is PushOutcome.ACCEPTED


def test_create_device_without_a_name_uses_the_unique_id(api: TraccarApi) -> None:
    assert api.create_device("new-tracker", "").name == "new-tracker"


def test_ensure_device_creates_once_and_then_finds_it(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    first = api.ensure_device("new-tracker", "Keys")
    second = api.ensure_device("new-tracker", "Keys")

    assert first == second
    assert len(api_server.created) == 1
    posts = [request for request in api_server.requests if request.method == "POST"]
    assert len(posts) == 1


def test_ensure_device_returns_the_existing_one_without_creating(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    existing = api_server.devices.add("old-tracker", "Car")

    assert api.ensure_device("old-tracker", "Other name").id == existing.id
    assert api_server.created == []


def test_ensure_device_after_losing_the_creation_race_finds_the_winner(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    # Right after our second lookup (uniqueId, then all=true), before our POST.
    api_server.race_next_lookup("new-tracker", "Created elsewhere", lookups=2)

    device = api.ensure_device("new-tracker", "Keys")

    assert (device.name, device.uniqueId) == ("Created elsewhere", "new-tracker")
    assert api_server.created == []  # our POST got the duplicate 400
    methods = [request.method for request in api_server.requests]
    assert methods == ["GET", "GET", "POST", "GET"]


def test_create_of_a_duplicate_is_a_response_error_with_status_400(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api_server.devices.add("old-tracker")

    with pytest.raises(TraccarResponseError) as caught:
        api.create_device("old-tracker", "Car")

    assert caught.value.status == 400
    assert "Unique index" in str(caught.value)
    assert "\tat " not in str(caught.value)  # the first line of the stack trace only
    assert isinstance(caught.value.__cause__, requests.HTTPError)


def test_wrong_token_is_an_auth_error_that_does_not_show_the_token(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    wrong = "wrong-token-abcdefghijkl"
    api = TraccarApi(session, api_server.url, wrong, timeout=1.0)

    with pytest.raises(TraccarAuthError) as caught:
        api.ensure_device("new-tracker", "Keys")

    assert caught.value.status == 401
    assert wrong not in str(caught.value) and TOKEN not in str(caught.value)
    assert isinstance(caught.value.__cause__, requests.HTTPError)
    assert api_server.created == []


def test_server_down_is_a_connection_error(api: TraccarApi, api_server: FakeTraccarApi) -> None:
    api_server.stop()

    with pytest.raises(TraccarConnectionError) as caught:
        api.find_device("new-tracker")

    assert "refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_slow_api_is_a_connection_error_within_the_timeout(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api_server.stall(5.0, times=1)
    started = time.monotonic()

    with pytest.raises(TraccarConnectionError, match="timeout"):
        api.find_device("new-tracker")

    assert time.monotonic() - started < 2.0


def test_server_error_is_a_response_error_and_ensure_does_not_retry_it(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api_server.respond_with(500)

    with pytest.raises(TraccarResponseError) as caught:
        api.ensure_device("new-tracker", "Keys")

    assert caught.value.status == 500
    assert len(api_server.requests) == 1


def test_a_body_that_is_not_a_device_list_is_a_response_error(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api_server.respond_with(200, times=1)  # empty body

    with pytest.raises(TraccarResponseError, match="not JSON"):
        api.find_device("new-tracker")


def test_base_url_with_a_trailing_slash_reaches_api_devices(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    api = TraccarApi(session, api_server.url + "/", TOKEN)

    assert api.find_device("new-tracker") is None
    assert urlsplit(api_server.requests[-1].target).path == "/api/devices"


def test_a_boolean_charge_attribute_is_traccars_own_charge_flag(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    client.push(location(attributes={"charge": True}), UNIQUE_ID)
    client.push(location(attributes={"charge": "maybe"}), UNIQUE_ID)

    charging, odd = osmand.positions
    assert charging.attributes == {"charge": True}
    assert odd.attributes == {"attr_charge": "maybe"}


def test_traccars_status_and_event_keys_are_never_sent_for_something_else(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    # No source has a reading of Traccar's `status` (a protocol's status word) or `event`.
    client.push(location(attributes={"status": "running", "event": 7}), UNIQUE_ID)

    [position] = osmand.positions
    assert position.attributes == {"attr_status": "running", "attr_event": 7}


def test_valid_false_reaches_traccar_as_the_positions_validity(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    client.push(location(attributes={"valid": False}), UNIQUE_ID)
    client.push(location(), UNIQUE_ID)

    stale, fresh = osmand.positions
    assert (stale.valid, fresh.valid) == (False, True)
    assert "valid" not in stale.attributes


# --- Traccar's limits (PROTOCOLS.md §1: 4096-byte request line, 16 KiB body before 6.14) -------


def sensors(count: int, *, name_length: int) -> dict[str, object]:
    """`count` TLINK-like readings with long UTF-8 names (9 bytes each once percent-encoded)."""
    return {f"{'温度传感器探头' * (name_length // 7)}{index:03d}": 21.5 for index in range(count)}


def test_a_device_with_150_sensors_of_long_utf8_names_is_delivered_whole(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    readings = sensors(150, name_length=7)
    assert len(urlencode(readings)) > 4096  # would not fit a request line

    result = client.push(location(attributes=readings), UNIQUE_ID)

    assert (result.outcome, result.dropped) == (PushOutcome.ACCEPTED, ())
    [position] = osmand.positions
    assert position.attributes == readings
    assert len(osmand.requests[-1].request_line) < 100


def test_attributes_past_the_body_limit_are_dropped_least_useful_first_and_named(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    readings = sensors(300, name_length=14)
    assert len(urlencode(readings)) > 16 * 1024
    kept = {"ignition": True, "batteryLevel": 50, "odometer": 12_000.0, "charge": True}

    result = client.push(location(battery=80.0, attributes={**readings, **kept}), UNIQUE_ID)

    assert result.outcome is PushOutcome.ACCEPTED
    assert result.dropped and set(result.dropped) <= set(readings)
    assert result.error is None
    [position] = osmand.positions
    assert (position.latitude, position.longitude) == (48.8566, 2.3522)
    assert position.attributes["ignition"] is True
    assert position.attributes["odometer"] == 12_000.0
    assert position.attributes["charge"] is True
    assert position.attributes["batteryLevel"] == 80.0
    assert not set(result.dropped) & set(position.attributes)
    assert len(osmand.requests[-1].body) <= 16 * 1024
    # What fitted went through: only as much was dropped as the limit asked for.
    assert len(position.attributes) > 100


def test_one_attribute_larger_than_the_body_limit_is_dropped_and_the_position_goes(
    client: OsmAndClient, osmand: OsmAndServer
) -> None:
    result = client.push(location(attributes={"photo": "x" * 20_000, "rpm": 900}), UNIQUE_ID)

    assert (result.outcome, result.dropped) == (PushOutcome.ACCEPTED, ("photo",))
    assert osmand.positions[0].attributes == {"rpm": 900.0}


# --- Traccar as deployed (PROTOCOLS.md §2): credentials that expire, devices users can see ------


def test_a_device_nobody_is_linked_to_is_found_by_an_administrator_listing_all(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    registered = api_server.devices.add("auto-registered", "Van")  # linked to nobody

    found = api.find_device("auto-registered")

    assert found is not None
    assert (found.id, found.name, found.uniqueId) == (registered.id, "Van", "auto-registered")
    queries = [parse_qsl(urlsplit(r.target).query) for r in api_server.requests]
    assert ("all", "true") in queries[-1] and ("keyword", "auto-registered") in queries[-1]


def test_a_device_made_with_the_service_account_is_linked_to_the_configured_user_and_found(
    session: requests.Session, osmand: OsmAndServer
) -> None:
    with FakeTraccarApi(TOKEN, devices=osmand.devices, service_account_token="svc-9") as server:
        owner = server.add_user("family@example.com", "pw-family")
        api = TraccarApi(session, server.url, "svc-9", timeout=(1.0, SHORT_TIMEOUT))

        created = api.ensure_device("tag-1", "Keys", category="tag", user_id=owner)
        again = api.ensure_device("tag-1", "Keys", category="tag", user_id=owner)

        assert again == created and len(server.created) == 1
        assert server.linked_users("tag-1") == {owner}
        assert server.record("tag-1")["category"] == "tag"


def test_a_created_device_can_join_a_group_instead(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api.ensure_device("car-1", "Car", category="car", group_id=7)

    assert api_server.record("car-1")["groupId"] == 7


def test_basic_credentials_of_a_dedicated_user_work_and_its_devices_are_its_own(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    api_server.add_user("bridge@example.com", "pw:with-colon")
    login = BasicLogin("bridge@example.com", "pw:with-colon")
    api = TraccarApi(session, api_server.url, login, timeout=(1.0, SHORT_TIMEOUT))

    created = api.ensure_device("tracker-7", "Bike")

    assert api.find_device("tracker-7") == created


def test_a_user_who_cannot_see_an_existing_device_gets_an_error_naming_what_to_link(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    api_server.devices.add("someone-elses", "Van")
    api_server.add_user("bridge@example.com", "pw-bridge-0123")
    login = BasicLogin("bridge@example.com", "pw-bridge-0123")
    api = TraccarApi(session, api_server.url, login, timeout=(1.0, SHORT_TIMEOUT))

    with pytest.raises(TraccarResponseError) as caught:
        api.ensure_device("someone-elses", "Van")

    message = str(caught.value)
    assert "someone-elses" in message and "bridge@example.com" in message
    assert "link" in message and "pw-bridge-0123" not in message


def test_an_expired_token_is_an_auth_error_saying_so(
    api: TraccarApi, api_server: FakeTraccarApi
) -> None:
    api_server.expire_token(TOKEN)

    with pytest.raises(TraccarAuthError) as caught:
        api.find_device("abc")

    assert caught.value.status == 401
    assert "expire" in str(caught.value) and TOKEN not in str(caught.value)


def test_ensure_attributes_as_a_plain_user_updates_the_devices_it_sees_and_counts_the_rest(
    session: requests.Session, api_server: FakeTraccarApi
) -> None:
    user = api_server.add_user("bridge@example.com", "pw-bridge")
    api_server.devices.add("seen", "Seen")
    api_server.devices.add("unseen", "Linked to nobody")
    api_server.link("seen", user_id=user)
    api = TraccarApi(
        session,
        api_server.url,
        BasicLogin("bridge@example.com", "pw-bridge"),
        timeout=(1.0, SHORT_TIMEOUT),
    )

    result = api.ensure_attributes(["seen", "unseen", "never-made"], {"command.sender": "findHub"})

    assert (result.found, result.missing, result.updated) == (1, 2, ("seen",))
    assert api_server.record("seen")["attributes"] == {"command.sender": "findHub"}
    assert api_server.record("unseen")["attributes"] == {}
