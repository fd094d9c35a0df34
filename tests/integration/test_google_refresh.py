"""The hourly refresh of the Google account: device list, new devices, auto-registration, FCM
expiry watch; over the local Google fakes, the emulator and a real local SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest

from shared.config import get_settings
from shared.models import AuthState, Device, ExcludedDevice, Source
from shared.runtime import Runtime, get_runtime
from shared.sources.google.credentials import GoogleSecretsUpload
from tests.conftest import PROJECT, Clock, make_settings
from tests.fakes.nova import FakeGoogle
from tests.fakes.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        yield fake


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def make_runtime(
    tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer, **overrides: object
) -> Runtime:
    settings = make_settings(
        tmp_path,
        **google.settings(),
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
        **overrides,
    )
    return Runtime(settings, firestore_client=firestore_client)


@pytest.fixture
def runtime(tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer) -> Runtime:
    runtime = make_runtime(tmp_path, firestore_client, google, smtp)
    google.store_secrets(runtime.secrets)
    return runtime


def subjects(smtp: SmtpServer) -> list[str]:
    return [mail.message["Subject"].removeprefix("[traccar-bridge] ") for mail in smtp.messages]


def test_the_first_refresh_stores_the_devices_and_registers_them_without_new_device_mails(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    report = runtime.google_stack(clock=clock).refresh.refresh()

    assert (report.status, report.devices) == ("ok", 2)
    assert report.new == ["canonic-0", "canonic-1"]
    assert report.auto_registered == ["canonic-0", "canonic-1"]
    stored = runtime.store.devices.get("canonic-1")
    assert (stored.name, stored.model, stored.traccar_unique_id) == (
        "Tracker 1", "Acme Tag", "canonic-1",
    )  # fmt: skip
    assert stored.first_seen == stored.last_seen == clock.now
    services = runtime.store.services.list()
    assert [(s.id, s.timer, s.delta) for s in services] == [
        ("canonic-0", 600, 5), ("canonic-1", 600, 5),
    ]  # fmt: skip
    assert sorted(job.device_id for job in runtime.store.local_jobs.list()) == [
        "canonic-0", "canonic-1",
    ]  # fmt: skip
    assert subjects(smtp) == [
        "Device auto-registered: Tracker 0", "Device auto-registered: Tracker 1",
    ]  # fmt: skip


def test_a_device_added_later_is_announced_and_registered_once(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    google_stack = runtime.google_stack(clock=clock)
    google_stack.refresh.refresh()
    google.add_tracker("canonic-new", "Bike")
    clock.advance(3600)

    report = google_stack.refresh.refresh()
    again = google_stack.refresh.refresh()

    assert report.new == ["canonic-new"] and report.auto_registered == ["canonic-new"]
    assert again.new == [] and again.auto_registered == []
    assert subjects(smtp)[2:] == ["New device: Bike", "Device auto-registered: Bike"]
    first_seen = runtime.store.devices.get("canonic-0")
    assert first_seen.last_seen == clock.now and first_seen.first_seen < clock.now


def test_excluded_devices_are_not_registered_and_registration_can_be_off(
    tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, google, smtp)
    google.store_secrets(runtime.secrets)
    runtime.store.excluded_devices.put(ExcludedDevice(id="canonic-0"))

    assert runtime.google_stack().refresh.refresh().auto_registered == ["canonic-1"]

    off = make_runtime(tmp_path, firestore_client, google, smtp, auto_register_services=False)
    google.add_tracker("canonic-2", "Wallet")
    assert off.google_stack().refresh.refresh().auto_registered == []
    assert runtime.store.services.get("canonic-2") is None


def test_an_expiring_fcm_installation_token_alarms_nobody(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    # PROTOCOLS.md §5: the installation token is used neither to listen nor to locate, and
    # upstream runs for months without refreshing it: its expiry is no incident.
    runtime = make_runtime(
        runtime.settings.secrets_dir.parent, runtime.store.client, google, smtp,
        auto_register_services=False,
    )  # fmt: skip
    google_stack = runtime.google_stack(clock=clock)
    google.identity.installation_expires_in = 3600
    google_stack.account.upload_secrets(GoogleSecretsUpload.model_validate(google.secrets()))

    clock.advance(2 * 3600)  # expired
    report = google_stack.refresh.refresh()

    assert report.status == "ok" and report.devices == 2
    assert "fcm_expiry_notified" not in report.model_dump()
    assert subjects(smtp) == []


def test_google_is_not_called_without_credentials_or_when_they_expired(
    tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, google, smtp)

    missing = runtime.google_stack().refresh.refresh()
    google.store_secrets(runtime.secrets)
    runtime.store.state.put("auth", AuthState(status="auth_required", reason="test"))
    expired = runtime.google_stack().refresh.refresh()

    assert missing.status == "skipped" and "PUT /auth/secrets" in missing.reason
    assert expired.status == "skipped" and "auth_required" in expired.reason
    assert google.auth.requests == [] and google.nova.requests == []
    assert smtp.messages == []


def test_a_refusal_during_the_refresh_is_reported_as_auth_required(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    google.auth.revoke()

    report = runtime.google_stack().refresh.refresh()

    assert report.status == "auth_required" and "BadAuthentication" in report.reason
    assert subjects(smtp) == ["Google credentials expired - action required"]


def test_the_refresh_devices_function_answers_the_google_report(
    runtime: Runtime, google: FakeGoogle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime.store.devices.put(Device(id="tlink-7", source=Source.TLINK, traccar_unique_id="t7"))
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "GCP_PROJECT": PROJECT,
        "SECRETS_DIR": str(runtime.settings.secrets_dir),
        "AUTO_REGISTER_SERVICES": "false",
        **google.environment(),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    app = functions_framework.create_app(
        "refresh_devices", str(ROOT / "functions/refresh_devices/main.py")
    )

    body = app.test_client().post("/", json={}).get_json()

    get_settings.cache_clear()
    get_runtime.cache_clear()
    google_report, smartcar_report, tlink_devices, smartcar_vehicles = body["sources"]
    assert google_report["status"] == "ok" and google_report["devices"] == 2
    assert smartcar_report == {
        "source": "smartcar",
        "refreshed": 0,
        "skipped": "no Smartcar account connected",
        "error": None,
    }
    # Neither TLINK's nor Smartcar's pulls are configured: both skipped, the refresh goes on.
    assert (tlink_devices["source"], tlink_devices["status"]) == ("tlink", "skipped")
    assert (smartcar_vehicles["source"], smartcar_vehicles["status"]) == ("smartcar", "skipped")
    assert body["devices"] == 3


def test_smart_tracking_that_outlived_its_device_runs_ends_with_the_refresh(
    tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    from shared.store import Repository
    from shared.store.google import SmartTrackingState

    runtime = make_runtime(tmp_path, firestore_client, google, smtp, smart_tracking_enabled=True)
    states = Repository(firestore_client, "smart_tracking", SmartTrackingState)
    states.put(
        SmartTrackingState(id="gone", until=clock.now - timedelta(seconds=1), since=clock.now,
                           original_timer=600, original_delta=5)
    )  # fmt: skip

    report = runtime.google_stack(clock=clock).refresh.refresh()

    assert report.smart_tracking_ended == ["gone"] and states.list() == []


def test_a_removed_device_comes_back_with_the_next_refresh_unless_excluded(
    runtime: Runtime, clock: Clock
) -> None:
    """Issue 20: `DELETE /devices/<id>` says so; an excluded device stays away."""
    refresh = runtime.google_stack(clock=clock).refresh
    refresh.refresh()
    runtime.services.exclude("canonic-1")

    back = runtime.removal.remove("canonic-0")
    away = runtime.removal.remove("canonic-1")
    refresh.refresh()

    assert (back.comes_back, away.comes_back) == (True, False)
    assert [device.id for device in runtime.store.devices.list()] == ["canonic-0"]
    # The device that came back is registered again; the excluded one has no service.
    assert [service.id for service in runtime.store.services.list()] == ["canonic-0"]
