"""The hourly refresh of TLINK's and Smartcar's devices (`shared.device_refresh`), against the
TLINK and Smartcar fakes (real sockets), the emulator and a real SMTP server: the account's
devices are listed and recorded, new ones mailed about once (not on the first refresh),
auto-registered unless excluded or fed by their vendor's webhooks; a vendor without its pull
settings is skipped, and one that fails does not stop the other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import functions_framework
import pytest
from google.cloud import firestore

from shared.config import get_settings
from shared.device_refresh import VendorRefreshReport
from shared.models import ExcludedDevice, Source
from shared.runtime import Runtime, get_runtime
from shared.services import calls_a_month
from shared.sources.tlink.ingest import report_from_push
from shared.sources.tlink.models import PushBody
from shared.store.smartcar import SmartcarStore, VehicleRecord, vehicle_device
from tests.conftest import PROJECT, make_settings
from tests.fakes.smartcar import FakeVehicle, SmartcarServer
from tests.fakes.smtp import SmtpServer
from tests.fakes.tlink import FakeTlink

ROOT = Path(__file__).resolve().parents[2]
PUSH = (ROOT / "tests" / "data" / "tlink_push.json").read_text()  # device 2864 pushes
CLIENT_ID = "8229df9f-91a0-4ff0-a1ae-a1f38ee24d07"
CLIENT_SECRET = "sc-client-secret-b7d1f0a2"
CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"
VAN = "1c2d3e4f-0000-4b0c-9d3e-aaaaaaaaaaaa"


def tlink_device(number: int, name: str) -> dict[str, Any]:
    """A device as `getDeviceSensorDatas` lists it (PROTOCOLS.md §4), one sensor."""
    return {
        "id": number, "deviceName": name, "lat": "31.2304", "lng": "121.4737", "isLine": 1,
        "sensorsList": [{"id": number * 10, "sensorName": "Temperature", "sensorTypeId": 1,
                         "value": "5.0", "isAlarms": "0", "updateDate": "2019-05-10 14:16:21"}],
    }  # fmt: skip


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def tlink() -> Iterator[FakeTlink]:
    with FakeTlink() as server:
        yield server


@pytest.fixture
def smartcar() -> Iterator[SmartcarServer]:
    with SmartcarServer(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri="https://b.test/x"
    ) as server:
        server.add_vehicle(FakeVehicle(CAR))
        server.add_vehicle(FakeVehicle(VAN))
        yield server


def settings_overrides(
    smtp: SmtpServer, tlink: FakeTlink, smartcar: SmartcarServer | None
) -> dict[str, object]:
    found: dict[str, object] = {
        "notify_smtp_host": smtp.host,
        "notify_smtp_port": smtp.port,
        "notify_email_from": "bridge@example.org",
        "notify_email_to": "me@example.org",
        "tlink_api_url": tlink.url,
    }
    if smartcar is not None:
        found.update(
            smartcar_client_id=CLIENT_ID,
            smartcar_api_origin=smartcar.url,
            smartcar_auth_origin=smartcar.token_url,
            smartcar_vehicle_api_url=smartcar.vehicle_api_url,
            smartcar_iam_token_url=smartcar.iam_token_url,
        )
    return found


def make_runtime(
    tmp_path: Path,
    client: firestore.Client,
    smtp: SmtpServer,
    tlink: FakeTlink,
    smartcar: SmartcarServer | None = None,
    **overrides: object,
) -> Runtime:
    settings = make_settings(tmp_path, **settings_overrides(smtp, tlink, smartcar), **overrides)
    return Runtime(settings, firestore_client=client)


def store_tlink_credentials(runtime: Runtime, tlink: FakeTlink) -> None:
    credentials = json.dumps(tlink.credentials(userId="385"))
    runtime.secrets.add_version("tlink-credentials", credentials)


def subjects(smtp: SmtpServer) -> list[str]:
    return [mail.message["Subject"].removeprefix("[traccar-bridge] ") for mail in smtp.messages]


def refresh(runtime: Runtime) -> dict[str, VendorRefreshReport]:
    return {report.source: report for report in (v.refresh() for v in runtime.vendor_refreshes)}


def push(runtime: Runtime) -> None:
    """Device 2864 pushes once through TLINK's webhook ingestion: its webhooks feed it."""
    source = runtime.tlink.source
    source.ingestion.apply(report_from_push(PushBody.model_validate_json(PUSH), source.zone))


def test_without_pull_settings_each_vendor_is_skipped_and_nothing_is_called(
    tmp_path: Path, firestore_client: firestore.Client, smtp: SmtpServer, tlink: FakeTlink
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink)

    reports = refresh(runtime)

    assert reports["tlink"].status == "skipped"
    assert "tlink-credentials" in (reports["tlink"].reason or "")
    assert reports["smartcar"].status == "skipped"
    assert reports["smartcar"].reason == "SMARTCAR_CLIENT_ID is not set"
    assert tlink.grants == [] and tlink.api_calls == []
    assert runtime.store.devices.list() == [] and runtime.store.services.list() == []
    assert smtp.messages == []


def test_tlink_devices_are_listed_and_registered_but_excluded_and_pushing_ones(
    tmp_path: Path, firestore_client: firestore.Client, smtp: SmtpServer, tlink: FakeTlink
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink)
    store_tlink_credentials(runtime, tlink)
    for number, name in ((2864, "Truck"), (2865, "Cold room"), (2866, "Gate")):
        tlink.add_device("385", tlink_device(number, name))
    push(runtime)  # 2864 pushes: fed by webhooks
    runtime.store.excluded_devices.put(ExcludedDevice(id="tlink-2866"))

    report = refresh(runtime)["tlink"]

    assert report.status == "ok" and report.devices == 3
    assert report.auto_registered == ["tlink-2865"]
    assert report.webhook_fed == ["tlink-2864"]
    assert report.new == []  # the first refresh mails no "new device"
    service = runtime.store.services.get("tlink-2865")
    assert service is not None and (service.timer, service.delta) == (600, 5)
    assert runtime.store.services.get("tlink-2864") is None
    assert runtime.store.services.get("tlink-2866") is None
    stored = runtime.store.devices.get("tlink-2865")
    assert stored is not None and stored.name == "Cold room"
    assert subjects(smtp) == ["Device auto-registered: Cold room"]


def test_a_new_tlink_device_is_mailed_about_once_then_registered(
    tmp_path: Path, firestore_client: firestore.Client, smtp: SmtpServer, tlink: FakeTlink
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink)
    store_tlink_credentials(runtime, tlink)
    tlink.add_device("385", tlink_device(2865, "Cold room"))
    refresh(runtime)
    tlink.add_device("385", tlink_device(2867, "Boiler"))

    second = refresh(runtime)["tlink"]
    third = refresh(runtime)["tlink"]

    assert second.new == ["tlink-2867"] and second.auto_registered == ["tlink-2867"]
    assert third.new == [] and third.auto_registered == []
    assert subjects(smtp) == [
        "Device auto-registered: Cold room",
        "New device: Boiler",
        "Device auto-registered: Boiler",
    ]


def test_without_auto_registration_devices_are_still_listed_and_mailed_about(
    tmp_path: Path, firestore_client: firestore.Client, smtp: SmtpServer, tlink: FakeTlink
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink, auto_register_services=False)
    store_tlink_credentials(runtime, tlink)
    refresh(runtime)
    tlink.add_device("385", tlink_device(2865, "Cold room"))

    report = refresh(runtime)["tlink"]

    assert report.new == ["tlink-2865"] and report.auto_registered == []
    assert runtime.store.services.list() == []
    assert subjects(smtp) == ["New device: Cold room"]


def seed_vehicle(runtime: Runtime, vehicle_id: str, user_id: str, *, webhook: bool) -> None:
    """A vehicle as Connect (or a webhook delivery, `webhook`) left it."""
    now = datetime.now(ZoneInfo("UTC"))

    def update(record: VehicleRecord) -> VehicleRecord:
        fed = {"last_event_at": now, "last_event_id": "e1"} if webhook else {}
        return record.model_copy(update={"user_id": user_id, **fed})

    device = vehicle_device(vehicle_id, "TESLA", "Model 3", 2020, now)
    SmartcarStore(runtime.store.client).record(new_device=device, update=update, now=now)


def test_smartcar_vehicles_of_known_users_are_listed_and_pulled_within_the_call_budget(
    tmp_path: Path,
    firestore_client: firestore.Client,
    smtp: SmtpServer,
    tlink: FakeTlink,
    smartcar: SmartcarServer,
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink, smartcar)
    runtime.secrets.add_version("smartcar-client-secret", CLIENT_SECRET)
    seed_vehicle(runtime, CAR, smartcar.user.id, webhook=True)  # its webhooks feed it

    report = refresh(runtime)["smartcar"]

    # VAN, connected by the same user and unknown until now, is recorded from GET /connections.
    assert report.status == "ok" and report.devices == 2
    assert report.auto_registered == [VAN] and report.webhook_fed == [CAR]
    van = runtime.store.devices.get(VAN)
    assert van is not None and van.source == Source.SMARTCAR
    service = runtime.store.services.get(VAN)
    # AUTO_REGISTER_TIMER (600 s) would spend 4464 calls a month; the budget is 500.
    assert service is not None and calls_a_month(service.timer, service.delta) <= 500
    assert service.timer == 5401
    assert runtime.store.services.get(CAR) is None


def test_a_failing_vendor_is_reported_and_the_other_still_refreshes(
    tmp_path: Path,
    firestore_client: firestore.Client,
    smtp: SmtpServer,
    tlink: FakeTlink,
    smartcar: SmartcarServer,
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink, smartcar)
    runtime.secrets.add_version("smartcar-client-secret", CLIENT_SECRET)
    store_tlink_credentials(runtime, tlink)
    tlink.refuse_every_token()
    seed_vehicle(runtime, CAR, smartcar.user.id, webhook=False)

    reports = refresh(runtime)

    assert reports["tlink"].status == "error" and reports["tlink"].reason
    assert reports["smartcar"].status == "ok"
    assert sorted(reports["smartcar"].auto_registered) == sorted([CAR, VAN])


def test_the_refresh_devices_function_answers_both_vendor_reports(
    tmp_path: Path,
    firestore_client: firestore.Client,
    smtp: SmtpServer,
    tlink: FakeTlink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, smtp, tlink)
    store_tlink_credentials(runtime, tlink)
    tlink.add_device("385", tlink_device(2865, "Cold room"))
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "GCP_PROJECT": PROJECT,
        "SECRETS_DIR": str(runtime.settings.secrets_dir),
        "TLINK_API_URL": tlink.url,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    try:
        app = functions_framework.create_app(
            "refresh_devices", str(ROOT / "functions/refresh_devices/main.py")
        )
        body = app.test_client().post("/", json={}).get_json()
    finally:
        get_settings.cache_clear()
        get_runtime.cache_clear()

    vendors = {report["source"]: report for report in body["sources"][-2:]}
    assert vendors["tlink"]["status"] == "ok"
    assert vendors["tlink"]["auto_registered"] == ["tlink-2865"]
    assert vendors["smartcar"]["status"] == "skipped"
    assert runtime.store.services.get("tlink-2865") is not None
