"""TLINK's pull against the local TLINK fake (real sockets), on the emulator and OsmAnd server.

`sync_device` runs the pull for a TLINK device through the same ingestion as a push; the OAuth
token is obtained once, shared through Firestore, renewed on `invalid_token` (refresh grant,
then password grant) and before it expires; `getDeviceSensorDatas` is read page after page.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from shared.config import Settings
from shared.errors import Conflict
from shared.models import Device, Source
from shared.runtime import Runtime
from shared.sources.tlink.client import (
    TOKEN_MARGIN,
    TlinkAuthError,
    TlinkClient,
    TlinkConnectionError,
)
from shared.sources.tlink.models import CachedToken, Credentials
from shared.store.sealed import SealedState, Sealer
from shared.store.tlink import TokenDocument
from tests.conftest import Clock, make_settings
from tests.fakes.osmand import OsmAndServer
from tests.fakes.tlink import FakeTlink

DEVICE = Device(id="tlink-2864", source=Source.TLINK, name="", traccar_unique_id="tlink-2864")
KEY = os.urandom(32)
SEALER = Sealer(key=lambda: KEY)


def cold_room(value: str = "5.0", update: str = "2019-05-10 14:16:21") -> dict[str, Any]:
    """A device as `getDeviceSensorDatas` lists it (TLINK's sample, PROTOCOLS.md §4): the pin
    set in the console, a numeric sensor and a switch (its state in `switcher`, the alarm flag
    `isAlarms`)."""
    return {
        "id": 2864,
        "deviceName": "Cold room",
        "lat": "31.2304",
        "lng": "121.4737",
        "isLine": 1,
        "sensorsList": [
            {"id": 11922, "sensorName": "Temperature", "sensorTypeId": 1, "value": value,
             "unit": "℃", "isLine": 1, "isAlarms": "1", "updateDate": update},
            {"id": 11923, "sensorName": "Door", "sensorTypeId": 2, "value": "",
             "switcher": 0, "isAlarms": "0", "updateDate": update},
        ],
    }  # fmt: skip


def truck(update: str = "2019-05-10 14:16:21") -> dict[str, Any]:
    """A device with a location sensor: its fix in the sensor's own `lat`/`lng`."""
    device = cold_room(update=update)
    device["sensorsList"].append(
        {"id": 11925, "sensorName": "GPS", "sensorTypeId": 3, "value": "", "lat": "31.2456",
         "lng": "121.4901", "isAlarms": "0", "updateDate": update}
    )  # fmt: skip
    return device


@pytest.fixture
def tlink() -> Iterator[FakeTlink]:
    with FakeTlink() as server:
        yield server


def settings_for(tmp_path: Path, tlink: FakeTlink, osmand: OsmAndServer) -> Settings:
    return make_settings(tmp_path, tlink_api_url=tlink.url, traccar_server_url=osmand.url)


@pytest.fixture
def runtime(
    tmp_path: Path, firestore_client: firestore.Client, tlink: FakeTlink, osmand: OsmAndServer
) -> Runtime:
    runtime = Runtime(settings_for(tmp_path, tlink, osmand), firestore_client=firestore_client)
    runtime.secrets.add_version("tlink-credentials", json.dumps(tlink.credentials(userId="385")))
    runtime.store.devices.put(DEVICE)
    osmand.add_known_id("tlink-2864")
    tlink.add_device("385", cold_room())
    return runtime


def readings(client: firestore.Client) -> list[str]:
    return sorted(snapshot.id for snapshot in client.collection("tlink_readings").stream())


def test_sync_device_pulls_stores_and_pushes_a_tlink_device(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    report = runtime.sync.sync_device("tlink-2864")

    assert (report.result.fetched, report.result.pushed) == (1, 1)
    [position] = osmand.positions
    assert position.unique_id == "tlink-2864"
    # The console's pin is not a fix: the readings go at it, never as a valid position.
    assert (position.latitude, position.longitude) == (31.2304, 121.4737)
    assert not position.valid
    assert position.fix_time == datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC)
    assert (position.attributes["Temperature"], position.attributes["Door"]) == (5.0, 0.0)
    [call] = tlink.api_calls
    assert call == {"userId": 385, "currPage": 1, "pageSize": 100, "deviceId": 2864}
    assert tlink.grants == ["password"]
    assert len(readings(firestore_client)) == 2
    stored = runtime.store.devices.get("tlink-2864")
    assert stored is not None and stored.name == "Cold room"


def test_a_location_sensor_places_the_device_at_its_own_lat_lng(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    tlink.set_devices("385", [truck()])

    runtime.sync.sync_device("tlink-2864")

    [position] = osmand.positions
    assert (position.latitude, position.longitude) == (31.2456, 121.4901) and position.valid
    document = firestore_client.collection("tlink_devices").document("2864").get().to_dict()
    sensors = document["sensors"]
    assert sensors["11922"]["is_alarm"] == "1"  # the pull's `isAlarms`
    assert sensors["11923"]["switcher"] == "0"
    assert sensors["11925"]["value"] == "31.2456,121.4901"


def test_traccar_gets_its_own_keys_only_where_they_mean_what_traccar_means(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    device = truck()
    # Labels chosen in TLINK's console that happen to be Traccar's keys (PROTOCOLS.md §1).
    device["sensorsList"] += [
        {"id": 11930, "sensorName": "status", "sensorTypeId": 8, "value": "running",
         "isAlarms": "0", "updateDate": "2019-05-10 14:16:21"},
        {"id": 11931, "sensorName": "battery", "sensorTypeId": 1, "value": "87",
         "unit": "%", "isAlarms": "0", "updateDate": "2019-05-10 14:16:21"},
    ]  # fmt: skip
    tlink.set_devices("385", [device])

    runtime.sync.sync_device("tlink-2864")

    [position] = osmand.positions
    assert "status" not in position.attributes and "battery" not in position.attributes
    assert position.attributes["status_11930"] == "running"
    assert position.attributes["battery_11931"] == 87
    # The temperature sensor is in alarm (`isAlarms` "1"): Traccar's generic alarm.
    assert position.attributes["alarm"] == "general"


def test_no_alarm_is_sent_while_no_sensor_is_in_alarm(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    device = truck()
    device["sensorsList"][0]["isAlarms"] = "0"
    tlink.set_devices("385", [device])

    runtime.sync.sync_device("tlink-2864")

    [position] = osmand.positions
    assert "alarm" not in position.attributes and position.valid


def test_the_data_endpoint_is_called_as_tlinks_sample_calls_it(
    runtime: Runtime, tlink: FakeTlink
) -> None:
    # The fake answers 405 to anything but GET with a JSON body, as TLINK's sample calls it.
    runtime.sync.sync_device("tlink-2864")

    assert len(tlink.api_calls) == 1


def test_an_unchanged_device_is_not_pushed_again_and_the_token_is_reused(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    runtime.sync.sync_device("tlink-2864")

    again = runtime.sync.sync_device("tlink-2864")

    assert again.result.pushed == 0 and len(osmand.positions) == 1
    assert len(readings(firestore_client)) == 2
    assert tlink.grants == ["password"] and len(tlink.api_calls) == 2


def test_an_expired_token_is_refreshed_and_the_call_retried(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    runtime.sync.sync_device("tlink-2864")
    tlink.expire_access_tokens()
    tlink.set_devices("385", [cold_room("6.5", "2019-05-10 14:26:21")])

    report = runtime.sync.sync_device("tlink-2864")

    assert report.result.pushed == 1
    assert tlink.grants == ["password", "refresh_token"]
    assert osmand.positions[-1].attributes["Temperature"] == 6.5


def test_a_refused_refresh_token_falls_back_to_the_password_grant(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    runtime.sync.sync_device("tlink-2864")
    tlink.expire_access_tokens()
    tlink.revoke_refresh_tokens()
    tlink.set_devices("385", [cold_room("6.5", "2019-05-10 14:26:21")])

    report = runtime.sync.sync_device("tlink-2864")

    assert report.result.pushed == 1
    assert tlink.grants == ["password", "refresh_token", "password"]


def test_a_new_instance_reuses_the_token_another_one_stored(
    runtime: Runtime,
    tlink: FakeTlink,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
    tmp_path: Path,
) -> None:
    runtime.sync.sync_device("tlink-2864")
    cold = Runtime(settings_for(tmp_path, tlink, osmand), firestore_client=firestore_client)

    tlink.set_devices("385", [cold_room("6.5", "2019-05-10 14:26:21")])
    cold.sync.sync_device("tlink-2864")

    assert tlink.grants == ["password"] and len(osmand.positions) == 2
    token = cold.sealed_state().get("tlink_token", CachedToken)
    assert token is not None
    assert set(token.model_dump()) == {"access_token", "expires_at", "obtained_at", "grant"}


def test_the_stored_token_is_sealed_and_no_plaintext_reaches_firestore(
    runtime: Runtime, tlink: FakeTlink, firestore_client: firestore.Client
) -> None:
    runtime.sync.sync_device("tlink-2864")
    token = runtime.sealed_state().get("tlink_token", CachedToken)
    assert token is not None

    stored = firestore_client.document("state/tlink_token").get().to_dict()

    # What the webhooks function (Firestore, no key) could read: one opaque field.
    assert set(stored) == {"sealed"} and stored["sealed"].startswith("v1.")
    assert token.access_token not in repr(stored) and "password" not in repr(stored)


def test_a_token_that_does_not_open_is_obtained_anew_and_the_pull_still_works(
    runtime: Runtime,
    tlink: FakeTlink,
    osmand: OsmAndServer,
    firestore_client: firestore.Client,
    tmp_path: Path,
) -> None:
    runtime.sync.sync_device("tlink-2864")
    # An instance whose key differs (rotated since, or the document was sealed elsewhere).
    other = Runtime(
        settings_for(tmp_path / "rotated", tlink, osmand), firestore_client=firestore_client
    )
    other.secrets.add_version("tlink-credentials", json.dumps(tlink.credentials(userId="385")))
    tlink.set_devices("385", [cold_room("6.5", "2019-05-10 14:26:21")])

    report = other.sync.sync_device("tlink-2864")

    assert report.result.pushed == 1 and len(osmand.positions) == 2
    assert tlink.grants == ["password", "password"]  # the unreadable token was replaced
    assert other.sealed_state().get("tlink_token", CachedToken) is not None
    assert runtime.sealed_state().get("tlink_token", CachedToken) is None  # the old key's view


def test_the_token_is_renewed_before_it_expires(
    runtime: Runtime, tlink: FakeTlink, firestore_client: firestore.Client
) -> None:
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    client = TlinkClient(
        requests.Session(),
        tlink.url,
        credentials=lambda: Credentials.model_validate(tlink.credentials()),
        token_cache=TokenDocument(SealedState(firestore_client, sealer=SEALER)),
        clock=clock,
    )
    first = client.access_token()
    clock.advance(tlink.expires_in - TOKEN_MARGIN.total_seconds() - 1)
    assert client.access_token() == first

    clock.advance(2)  # inside the margin: renewed without waiting for a refusal
    renewed = client.access_token()

    assert renewed != first and tlink.grants == ["password", "refresh_token"]
    assert list(client.device_sensor_datas("385")) != []


def test_all_pages_of_a_users_devices_are_read(tlink: FakeTlink, firestore_client: Any) -> None:
    tlink.set_devices("385", [{"id": number, "deviceName": f"d{number}"} for number in range(205)])
    client = TlinkClient(
        requests.Session(),
        tlink.url,
        credentials=lambda: Credentials.model_validate(tlink.credentials()),
        token_cache=TokenDocument(SealedState(firestore_client, sealer=SEALER)),
    )

    devices = list(client.device_sensor_datas("385"))

    assert [device.id for device in devices] == list(range(205))
    assert [(call["currPage"], call["pageSize"]) for call in tlink.api_calls] == [
        (1, 100),
        (2, 100),
        (3, 100),
    ]


def test_discover_records_every_device_of_the_user(
    runtime: Runtime, tlink: FakeTlink, firestore_client: firestore.Client
) -> None:
    tlink.add_device("385", {"id": 9, "deviceName": "Greenhouse"})

    found = runtime.tlink.source.discover()

    assert sorted(device.id for device in found) == ["tlink-2864", "tlink-9"]
    device = firestore_client.document("tlink_devices/9").get().to_dict()
    assert (device["user_id"], device["name"]) == ("385", "Greenhouse")


def test_a_push_binding_is_used_when_the_credentials_name_no_user(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    runtime.secrets.add_version("tlink-credentials", json.dumps(tlink.credentials()))
    tlink.set_devices("777", [cold_room()])
    source = runtime.tlink.source
    with pytest.raises(Conflict, match="no TLINK user is bound to tlink-2864"):
        source.fetch(DEVICE)

    from shared.sources.tlink.ingest import DeviceReport

    source.ingestion.apply(DeviceReport(device_id=2864, origin="push", time=None, user_id="777"))
    runtime.sync.sync_device("tlink-2864")

    assert tlink.api_calls[-1]["userId"] == 777 and len(osmand.positions) == 1


def test_wrong_credentials_are_an_auth_error_that_shows_no_secret(
    runtime: Runtime, tlink: FakeTlink
) -> None:
    runtime.secrets.add_version(
        "tlink-credentials",
        json.dumps(tlink.credentials(password="wrong-password-1234", userId="385")),
    )

    with pytest.raises(TlinkAuthError) as refused:
        runtime.sync.sync_device("tlink-2864")

    assert refused.value.status == 503
    assert "password grant" in refused.value.message
    assert "wrong-password-1234" not in refused.value.message
    # The failed run gave its lease back: the next run is not "busy".
    runtime.secrets.add_version("tlink-credentials", json.dumps(tlink.credentials(userId="385")))
    assert runtime.sync.sync_device("tlink-2864").result.pushed == 1


def test_missing_credentials_say_which_secret_to_fill(runtime: Runtime, tmp_path: Path) -> None:
    settings = runtime.settings.model_copy(update={"tlink_credentials_secret": "nothing-here"})
    bare = Runtime(settings, firestore_client=runtime.firestore_client)

    with pytest.raises(TlinkAuthError, match="secret nothing-here"):
        bare.tlink.source.fetch(DEVICE)


def test_an_unreachable_tlink_is_a_connection_error_without_the_url(
    runtime: Runtime, tlink: FakeTlink
) -> None:
    tlink.stop()

    with pytest.raises(TlinkConnectionError) as failed:
        runtime.sync.sync_device("tlink-2864")

    assert failed.value.status == 503
    assert tlink.password not in failed.value.message and "oauth" not in failed.value.message


def test_a_token_tlink_keeps_refusing_is_an_auth_error(runtime: Runtime, tlink: FakeTlink) -> None:
    runtime.sync.sync_device("tlink-2864")
    tlink.refuse_every_token()

    with pytest.raises(TlinkAuthError, match="freshly issued"):
        runtime.sync.sync_device("tlink-2864")

    assert tlink.grants == ["password", "refresh_token"]


def test_a_failed_page_is_a_response_error(runtime: Runtime, tlink: FakeTlink) -> None:
    from shared.sources.tlink.client import TlinkResponseError

    runtime.tlink.source.client.access_token()  # the token first, then the call fails
    tlink.respond_with(500, times=1)

    with pytest.raises(TlinkResponseError, match="HTTP 500"):
        runtime.sync.sync_device("tlink-2864")

    assert runtime.sync.sync_device("tlink-2864").result.pushed == 1


# --- What a pull or a push may claim (issue 13) ----------------------------------------------


def test_a_pulled_reading_dated_ahead_is_skipped_and_the_rest_stored_and_pushed(
    runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer, firestore_client: firestore.Client
) -> None:
    device = cold_room()
    device["sensorsList"][0]["updateDate"] = "2037-06-01 00:00:00"  # the temperature
    tlink.set_devices("385", [device])

    report = runtime.sync.sync_device("tlink-2864")

    assert report.result.pushed == 1
    [position] = osmand.positions
    assert position.fix_time == datetime(2019, 5, 10, 6, 16, 21, tzinfo=UTC)
    assert "Temperature" not in position.attributes and position.attributes["Door"] == 0.0
    assert readings(firestore_client) == ["2864_11923_1557468981"]
    stored = firestore_client.document("tlink_devices/2864").get().to_dict()
    assert sorted(stored["sensors"]) == ["11923"]


def test_only_a_pull_for_the_new_user_rebinds_a_device_never_a_push(
    tmp_path: Path, runtime: Runtime, tlink: FakeTlink, osmand: OsmAndServer
) -> None:
    settings = make_settings(
        tmp_path,
        tlink_api_url=tlink.url,
        traccar_server_url=osmand.url,
        tlink_allow_unauthenticated=True,
    )
    webhooks = Runtime(settings, firestore_client=runtime.firestore_client).tlink.webhook
    push = json.loads((Path(__file__).parents[1] / "data" / "tlink_push.json").read_text())
    webhooks.receive(json.dumps(push).encode(), signature_header=None, path_token=None)
    forged = {**push, "deviceUserid": 999, "parentUserId": "998", "time": "2019-05-10 14:20:00"}

    answer = webhooks.receive(json.dumps(forged).encode(), signature_header=None, path_token=None)

    assert answer.status == "ok" and answer.stored_readings == 1
    stored = runtime.tlink.source.repository.device(2864)
    assert stored is not None and (stored.user_id, stored.parent_user_id) == ("385", "217")
    runtime.sync.sync_device("tlink-2864")
    assert tlink.api_calls[-1]["userId"] == 385  # still pulled for its own user

    tlink.set_devices("999", [cold_room()])
    runtime.tlink.source.discover("999")  # TLINK itself lists the device under user 999

    rebound = runtime.tlink.source.repository.device(2864)
    assert rebound is not None and rebound.user_id == "999"
    runtime.sync.sync_device("tlink-2864")
    assert tlink.api_calls[-1]["userId"] == 999
