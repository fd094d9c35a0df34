"""The API's TLINK views (seed 002) through the `api` function's app, fed by real pushes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask.testing import FlaskClient
from google.cloud import firestore

from devtools.emulator import Emulator
from shared.config import get_settings
from shared.runtime import get_runtime
from tests.conftest import PROJECT
from tests.fakes.osmand import OsmAndServer

ROOT = Path(__file__).resolve().parents[2]
PUSH = json.loads((ROOT / "tests/data/tlink_push.json").read_bytes())
TOKEN = "tlink-views-token-8e1f2a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def clients(
    emulator: Emulator,
    firestore_client: firestore.Client,
    osmand: OsmAndServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[FlaskClient, FlaskClient]]:
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "GCP_PROJECT": PROJECT,
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "SECRETS_DIR": str(tmp_path / "secrets"),
        "TRACCAR_SERVER_URL": osmand.url,
        "API_TOKEN": TOKEN,
        "TLINK_ALLOW_UNAUTHENTICATED": "true",  # pushes without a protection, on purpose
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    webhooks = functions_framework.create_app("webhooks", str(ROOT / "functions/webhooks/main.py"))
    api = functions_framework.create_app("api", str(ROOT / "functions/api/main.py"))
    yield webhooks.test_client(), api.test_client()
    get_settings.cache_clear()
    get_runtime.cache_clear()


@pytest.fixture
def webhooks(clients: tuple[FlaskClient, FlaskClient]) -> FlaskClient:
    return clients[0]


@pytest.fixture
def api(clients: tuple[FlaskClient, FlaskClient]) -> FlaskClient:
    return clients[1]


def push(
    webhooks: FlaskClient,
    *,
    device: int = 2864,
    user: int = 385,
    at: str = "2019-05-10 14:16:21",
    values: dict[int, str] | None = None,
) -> None:
    sensors = [
        {"sensorsId": sensor, "sensorsTypeId": 1, "value": value, "times": at[-8:]}
        for sensor, value in (values or {11922: "5.0"}).items()
    ]
    body = {**PUSH, "deviceId": device, "deviceUserid": user, "time": at, "sensorsDates": sensors}
    answer = webhooks.post("/tlink", json=body)
    assert answer.status_code == 200, answer.data


def get(api: FlaskClient, path: str, **query: Any) -> Any:
    answer = api.get(path, query_string=query, headers=AUTH)
    assert answer.status_code == 200, answer.data
    return answer.get_json()


def error(api: FlaskClient, path: str, status: int, **query: Any) -> str:
    answer = api.get(path, query_string=query, headers=AUTH)
    assert answer.status_code == status, answer.data
    return answer.get_json()["error"]


def test_the_views_need_the_bearer_token(api: FlaskClient) -> None:
    for path in (
        "/tlink/users/385/devices",
        "/tlink/users/385/devices/2864/latest",
        "/tlink/users/385/devices/2864/history",
    ):
        assert api.get(path).status_code == 401


def test_a_users_devices_come_by_device_id_page_by_page(
    webhooks: FlaskClient, api: FlaskClient
) -> None:
    for device in (100, 9, 10):
        push(webhooks, device=device)
    push(webhooks, device=5, user=999)  # another user's

    first = get(api, "/tlink/users/385/devices", pageSize=2)
    second = get(api, "/tlink/users/385/devices", pageSize=2, page=2)

    assert (first["total"], first["pages"], first["page"], first["pageSize"]) == (3, 2, 1, 2)
    assert [d["deviceId"] for d in first["devices"]] == [9, 10]  # numeric order, not text
    assert [d["deviceId"] for d in second["devices"]] == [100]
    device = first["devices"][0]
    assert (device["userId"], device["parentUserId"], device["traccarUniqueId"]) == (
        "385",
        "217",
        "tlink-9",
    )
    [sensor] = device["sensors"]
    assert sensor["sensorId"] == 11922 and sensor["latest"]["value"] == "5.0"
    assert sensor["latest"]["time"] == "2019-05-10T06:16:21Z"
    assert [reading["value"] for reading in sensor["history"]] == ["5.0"]


def test_the_device_list_filters_by_device_and_time_and_caps_history(
    webhooks: FlaskClient, api: FlaskClient
) -> None:
    for minute, value in enumerate(["1", "2", "3", "4"]):
        push(webhooks, at=f"2019-05-10 14:1{minute}:00", values={11922: value})
    push(webhooks, device=77)

    page = get(
        api,
        "/tlink/users/385/devices",
        deviceId=2864,
        startTime="2019-05-10 14:11:00",
        endTime="2019-05-10T06:13:00Z",  # ISO 8601 in UTC: 14:13 in Shanghai
        historyLimit=2,
    )

    [device] = page["devices"]
    assert page["total"] == 1 and device["deviceId"] == 2864
    [sensor] = device["sensors"]
    assert [reading["value"] for reading in sensor["history"]] == ["4", "3"]
    assert sensor["hasMore"] is True
    assert sensor["latest"]["value"] == "4"


def test_latest_shows_each_sensor_and_only_to_the_devices_user(
    webhooks: FlaskClient, api: FlaskClient
) -> None:
    push(webhooks, values={11922: "5.0", 11901: "61"})

    latest = get(api, "/tlink/users/385/devices/2864/latest")

    assert [s["sensorId"] for s in latest["sensors"]] == [11901, 11922]
    assert [s["latest"]["value"] for s in latest["sensors"]] == ["61", "5.0"]
    assert "history" not in latest["sensors"][0]
    assert "not bound to user 999" in error(api, "/tlink/users/999/devices/2864/latest", 404)
    assert "unknown TLINK device" in error(api, "/tlink/users/385/devices/4242/latest", 404)
    assert "unknown TLINK device" in error(api, "/tlink/users/385/devices/abc/latest", 404)


def test_latest_shows_a_switch_and_a_sensor_of_a_push_that_never_moves_the_device(
    webhooks: FlaskClient, api: FlaskClient
) -> None:
    body = {**PUSH, "sensorsDates": [
        {"sensorsId": 11926, "sensorsTypeId": 2, "value": "", "switcher": "1",
         "isAlarm": "1", "times": "14:16:21"},
        {"sensorsId": 11922, "sensorsTypeId": 1, "value": "5.0", "times": "14:16:21"},
    ]}  # fmt: skip
    assert webhooks.post("/tlink", json=body).get_json()["location"] == "none"

    latest = get(api, "/tlink/users/385/devices/2864/latest")

    switch = next(s for s in latest["sensors"] if s["sensorId"] == 11926)
    assert (switch["latest"]["switcher"], switch["latest"]["isAlarm"]) == ("1", "1")
    history = get(api, "/tlink/users/385/devices/2864/history", sensorId=11926)
    assert history["sensors"][0]["history"][0]["switcher"] == "1"


def test_history_pages_through_one_sensor_newest_first(
    webhooks: FlaskClient, api: FlaskClient
) -> None:
    for minute in range(5):
        push(webhooks, at=f"2019-05-10 14:1{minute}:00", values={11922: str(minute), 11901: "x"})
    path = "/tlink/users/385/devices/2864/history"

    first = get(api, path, sensorId=11922, historyLimit=2)
    last = get(api, path, sensorId=11922, historyLimit=2, page=3)
    windowed = get(api, path, startTime="2019-05-10 14:11:00", endTime="2019-05-10 14:12:00")

    [sensor] = first["sensors"]
    assert [r["value"] for r in sensor["history"]] == ["4", "3"] and sensor["hasMore"] is True
    assert (first["page"], first["historyLimit"], first["deviceId"]) == (1, 2, 2864)
    [oldest] = last["sensors"]
    assert [r["value"] for r in oldest["history"]] == ["0"] and oldest["hasMore"] is False
    assert {s["sensorId"]: [r["value"] for r in s["history"]] for s in windowed["sensors"]} == {
        11901: ["x", "x"],
        11922: ["2", "1"],
    }


@pytest.mark.parametrize(
    ("path", "query", "status", "message"),
    [
        ("/tlink/users/385/devices", {"pageSize": 101}, 400, "pageSize"),
        ("/tlink/users/385/devices", {"page": 0}, 400, "page"),
        ("/tlink/users/385/devices", {"pagesize": 5}, 400, "pagesize"),
        ("/tlink/users/385/devices", {"startTime": "May 10"}, 400, "startTime: expected"),
        ("/tlink/users/385/devices",
         {"startTime": "2019-05-11 00:00:00", "endTime": "2019-05-10 00:00:00"}, 400,
         "startTime is after endTime"),
        ("/tlink/users/385/devices/2864/history", {"historyLimit": 0}, 400, "historyLimit"),
        ("/tlink/users/385/devices/2864/history", {"historyLimit": 1000, "page": 11}, 400,
         "narrow the time range"),
        ("/tlink/users/385/devices/2864/history", {"sensorId": 1}, 404, "no sensor 1"),
    ],
)  # fmt: skip
def test_bad_view_queries_are_refused_clearly(
    webhooks: FlaskClient,
    api: FlaskClient,
    path: str,
    query: dict[str, Any],
    status: int,
    message: str,
) -> None:
    push(webhooks)

    assert message in error(api, path, status, **query)


def test_an_unknown_user_has_an_empty_page(api: FlaskClient) -> None:
    page = get(api, "/tlink/users/nobody/devices")

    assert (page["total"], page["pages"], page["devices"]) == (0, 0, [])


def test_ids_firestore_cannot_hold_are_a_json_4xx_not_a_500(api: FlaskClient) -> None:
    """Two 500s `make fuzz` found (300 examples per operation against `make run`): a deviceId
    past Firestore's 64-bit integers in the query, and a path id of non-ASCII digits ("¹",
    which str.isdigit() takes and int() refuses)."""
    too_large = api.get("/tlink/users/0/devices?deviceId=51255332481948565504", headers=AUTH)
    superscript = api.get("/tlink/users/385/devices/%C2%B9/latest", headers=AUTH)
    past_int64 = api.get(f"/tlink/users/385/devices/{2**63}/latest", headers=AUTH)

    assert too_large.status_code == 400 and "deviceId" in too_large.get_json()["error"]
    for answer in (superscript, past_int64):
        assert answer.status_code == 404 and "unknown TLINK device" in answer.get_json()["error"]
