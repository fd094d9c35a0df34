"""What needs the user about the Google account (issue 14, points 3 and 6): NeedsBrowser, MCS
refusing the login again and again, an owner key that no longer decrypts. Each is emailed once
per incident and listed by `/health` until it clears; none of them pauses anything.

Over the local OAuth, Nova and MCS fakes, the Firestore emulator, the local scheduler backend,
the file-backed secrets and a real local SMTP server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared import service_status
from shared.models import Device, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec
from shared.sources.google.alerts import MCS_LOGIN, MCS_REFUSALS_ALERT, OWNER_KEY, SIGN_IN
from shared.sources.google.credentials import GoogleSecretsUpload
from shared.sources.google.errors import (
    AuthExpired,
    AuthFailed,
    McsLoginFailed,
    OwnerKeyNotRenewable,
    SignInRequired,
)
from shared.sources.google.stack import GoogleStack
from tests.conftest import Clock, make_settings
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.fakes.smtp import SmtpServer
from tests.unit.google.encryptor import LAST_KNOWN, Report

T0 = 1_790_000_000


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=1) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        fake.trackers[0].recent = Report(
            "own", timestamp=T0, latitude=48.85, longitude=2.35, accuracy=5.0,
            is_own_report=True, status=LAST_KNOWN,
        )  # fmt: skip
        yield fake


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def traccar() -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=["canonic-0"]) as server:
        yield server


@pytest.fixture
def runtime(
    tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer, traccar: OsmAndServer
) -> Runtime:
    settings = make_settings(
        tmp_path,
        **google.settings(),
        traccar_server_url=traccar.url,
        fcm_timeout=3,
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    google.store_secrets(runtime.secrets)
    runtime.store.devices.put(
        Device(id="canonic-0", source=Source.GOOGLE, name="Tracker 0",
               traccar_unique_id="canonic-0")
    )  # fmt: skip
    runtime.services.upsert("canonic-0", ServiceSpec(timer=600, delta=5))
    return runtime


def stack(runtime: Runtime, clock: Clock) -> GoogleStack:
    return runtime.google_stack(clock=clock)


def alert_names(runtime: Runtime) -> list[str]:
    report = service_status.health(runtime.store)
    return [alert.name for alert in report.alerts or []]


def paused(runtime: Runtime) -> list[bool]:
    return [job.paused for job in runtime.store.local_jobs.list()]


def test_needs_browser_alerts_once_keeps_the_token_and_backs_off_for_hours(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    google.auth.needs_browser()
    account = stack(runtime, clock).account

    with pytest.raises(SignInRequired, match=r"accounts\.google\.com") as first:
        account.list_devices()
    assert first.value.status == 503
    # Within the backoff Google is not asked again, and nobody is emailed again.
    clock.advance(1800)
    with pytest.raises(SignInRequired):
        account.list_devices()

    assert google.auth.oauth_requests == 1
    assert [m.message["Subject"] for m in smtp.messages] == [
        "[traccar-bridge] Google wants a browser sign-in - action required"
    ]
    secrets = json.loads(runtime.secrets.read(runtime.settings.google_secret_name))
    assert secrets["aas_token"] == google.aas_token  # kept
    assert runtime.store.state.auth().status == "ok"
    assert not any(paused(runtime))
    health = service_status.health(runtime.store)
    assert health.status == "ok"
    assert alert_names(runtime) == [SIGN_IN]
    assert health.public().alerts[0].reason is None  # type: ignore[index]

    # After the backoff Google is asked again; still refused: the wait doubles, no new email.
    clock.advance(3600)
    with pytest.raises(SignInRequired):
        account.list_devices()
    assert google.auth.oauth_requests == 2
    clock.advance(3600 + 60)
    with pytest.raises(SignInRequired):
        account.list_devices()
    assert google.auth.oauth_requests == 2
    assert len(smtp.messages) == 1

    # The user signed in: the next attempt gets a token and the alert clears.
    google.auth.signed_in()
    clock.advance(2 * 3600)
    assert [d.id for d in account.list_devices()] == ["canonic-0"]
    assert alert_names(runtime) == []


def test_new_credentials_end_the_sign_in_backoff_at_once(
    runtime: Runtime, google: FakeGoogle, clock: Clock
) -> None:
    google.auth.needs_browser()
    account = stack(runtime, clock).account
    with pytest.raises(SignInRequired):
        account.list_devices()
    google.auth.signed_in()

    account.upload_secrets(GoogleSecretsUpload.model_validate(google.secrets()))

    assert alert_names(runtime) == []
    assert [d.id for d in account.list_devices()] == ["canonic-0"]


def test_a_passing_bad_authentication_is_no_expiry(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    google.auth.bad_authentication(times=1)

    assert [d.id for d in runtime.google.account.list_devices()] == ["canonic-0"]
    assert runtime.store.state.auth().status == "ok"
    assert smtp.messages == []
    assert not any(paused(runtime))


def test_a_5xx_from_google_oauth_fails_the_run_and_alerts_nobody(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    google.auth.fail_with(503)

    with pytest.raises(AuthFailed):
        runtime.google.account.list_devices()

    assert runtime.store.state.auth().status == "ok"
    assert smtp.messages == [] and alert_names(runtime) == []


def test_mcs_refusing_the_login_repeatedly_alerts_once_until_a_login(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    google.mcs.refuse_logins()
    source = stack(runtime, clock).source

    for attempt in range(MCS_REFUSALS_ALERT + 1):
        with pytest.raises(McsLoginFailed):
            source.fetch(runtime.store.devices.get("canonic-0"))  # type: ignore[arg-type]
        clock.advance(600)
        expected = [MCS_LOGIN] if attempt + 1 >= MCS_REFUSALS_ALERT else []
        assert alert_names(runtime) == expected

    assert [m.message["Subject"] for m in smtp.messages] == [
        "[traccar-bridge] Google push channel refused - action required"
    ]
    assert not any(paused(runtime))

    google.mcs.refuse_logins(False)
    assert source.fetch(runtime.store.devices.get("canonic-0"))  # type: ignore[arg-type]
    assert alert_names(runtime) == []


@pytest.mark.parametrize("shared_key", ["missing", "another account's"])
def test_an_owner_key_that_cannot_be_renewed_says_what_to_upload_and_alerts_once(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock, shared_key: str
) -> None:
    source = stack(runtime, clock).source
    device = runtime.store.devices.get("canonic-0")
    assert device is not None
    uploaded = google.secrets()
    if shared_key == "missing":
        del uploaded["shared_key"]
    else:
        uploaded["shared_key"] = "5a" * 32
    runtime.secrets.add_version("google-secrets", json.dumps(uploaded))
    google.rotate_owner_key()

    for _ in range(2):
        with pytest.raises(OwnerKeyNotRenewable, match="shared_key") as caught:
            source.fetch(device)
        assert caught.value.status == 503
        assert "upload" in caught.value.message and "PUT /auth/secrets" in caught.value.message
        clock.advance(600)

    # Without a shared_key the Spot API is never asked; with a wrong one, once: the next run
    # backs off (see the test below).
    assert len(google.spot.requests) == (0 if shared_key == "missing" else 1)
    assert alert_names(runtime) == [OWNER_KEY]
    assert [m.message["Subject"] for m in smtp.messages] == [
        "[traccar-bridge] Google owner key outdated - action required"
    ]
    # New credentials with the current owner key: decrypted again, the alert is gone.
    source.account.upload_secrets(GoogleSecretsUpload.model_validate(google.secrets()))
    clock.advance(timedelta(minutes=10).total_seconds())
    assert source.fetch(device)
    assert alert_names(runtime) == []


def test_a_shared_key_that_does_not_decrypt_is_not_tried_again_for_hours_or_until_an_upload(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    """Issue 14 point 4: a wrong shared_key does not make every run call the Spot API again."""
    source = stack(runtime, clock).source
    device = runtime.store.devices.get("canonic-0")
    assert device is not None
    wrong = {**google.secrets(), "shared_key": "5a" * 32}
    runtime.secrets.add_version("google-secrets", json.dumps(wrong))
    google.rotate_owner_key()

    def run() -> OwnerKeyNotRenewable:
        with pytest.raises(OwnerKeyNotRenewable) as caught:
            source.fetch(device)
        clock.advance(600)
        return caught.value

    run()
    assert len(google.spot.requests) == 1
    backing_off = [run() for _ in range(5)]  # the next 50 minutes
    assert len(google.spot.requests) == 1
    # The run's error still says what to upload, and when Google is asked again.
    assert "PUT /auth/secrets" in backing_off[-1].message
    assert "version 2" in backing_off[-1].message and "asked again after" in backing_off[-1].message
    assert backing_off[-1].status == 503
    assert alert_names(runtime) == [OWNER_KEY] and len(smtp.messages) == 1

    clock.advance(timedelta(hours=6).total_seconds())
    run()  # the backoff is over: asked once more, and backing off again
    run()
    assert len(google.spot.requests) == 2

    # New credentials (still with a wrong shared_key) deserve a try at once.
    source.account.upload_secrets(GoogleSecretsUpload.model_validate(wrong))
    run()
    assert len(google.spot.requests) == 3

    # Google moves on to a newer owner key version: that one is asked for at once too.
    google.rotate_owner_key()
    run()
    assert len(google.spot.requests) == 4


def test_needs_browser_for_the_spot_token_is_the_sign_in_alert_with_its_backoff(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock
) -> None:
    """Issue 14 point 4: the Spot token's refusals get the Find My Device token's handling."""
    source = stack(runtime, clock).source
    device = runtime.store.devices.get("canonic-0")
    assert device is not None
    assert source.fetch(device)  # the Find My Device token is kept: only the Spot one is asked
    clock.advance(600)
    google.rotate_owner_key()
    google.auth.needs_browser()
    asked = google.auth.oauth_requests

    with pytest.raises(SignInRequired, match=r"accounts\.google\.com") as caught:
        source.fetch(device)
    assert caught.value.status == 503
    clock.advance(600)  # within the backoff Google is not asked again
    with pytest.raises(SignInRequired):
        source.fetch(device)

    assert google.auth.oauth_requests == asked + 1
    assert alert_names(runtime) == [SIGN_IN]
    assert [m.message["Subject"] for m in smtp.messages] == [
        "[traccar-bridge] Google wants a browser sign-in - action required"
    ]
    secrets = json.loads(runtime.secrets.read(runtime.settings.google_secret_name))
    assert secrets["aas_token"] == google.aas_token  # kept
    assert runtime.store.state.auth().status == "ok"
    assert not any(paused(runtime))

    google.auth.signed_in()
    clock.advance(3600)
    assert source.fetch(device)
    assert alert_names(runtime) == []


@pytest.mark.parametrize("refusals", [1, 2])
def test_bad_authentication_for_the_spot_token_is_an_expiry_only_when_asked_twice(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer, clock: Clock, refusals: int
) -> None:
    source = stack(runtime, clock).source
    device = runtime.store.devices.get("canonic-0")
    assert device is not None
    assert source.fetch(device)
    clock.advance(600)
    google.rotate_owner_key()
    google.auth.bad_authentication(times=refusals)

    if refusals == 1:  # Google's passing mood: the second, fresh request gets the token
        assert source.fetch(device)
        assert runtime.store.state.auth().status == "ok" and smtp.messages == []
        return
    with pytest.raises(AuthExpired) as caught:
        source.fetch(device)
    assert caught.value.status == 503
    assert runtime.store.state.auth().status == "auth_required"
    assert all(paused(runtime))
    secrets = json.loads(runtime.secrets.read(runtime.settings.google_secret_name))
    assert "aas_token" not in secrets
    assert alert_names(runtime) == []  # the expiry email, not the owner key alert
    assert len(smtp.messages) == 1
