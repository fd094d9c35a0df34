"""Google refusing the AAS token: the expiry handling runs once; new credentials undo it.

Over the local OAuth, Nova and MCS fakes, the Firestore emulator, the local scheduler backend,
the file-backed secrets and a real local SMTP server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import service_status
from shared.errors import BridgeError
from shared.models import Device, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec
from shared.sources.google.credentials import GoogleSecretsUpload
from shared.sources.google.errors import AuthExpired, AuthFailed, CredentialsMissing
from tests.conftest import make_settings
from tests.fakes.nova import FakeGoogle
from tests.fakes.smtp import SmtpServer


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        yield fake


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def runtime(tmp_path: Path, firestore_client, google: FakeGoogle, smtp: SmtpServer) -> Runtime:
    settings = make_settings(
        tmp_path,
        **google.settings(),
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    google.store_secrets(runtime.secrets)
    store = runtime.store
    for tracker in google.trackers:
        store.devices.put(
            Device(id=tracker.tracker.canonic_id, source=Source.GOOGLE, name=tracker.tracker.name,
                   traccar_unique_id=tracker.tracker.canonic_id)
        )  # fmt: skip
        runtime.services.upsert(tracker.tracker.canonic_id, ServiceSpec(timer=600, delta=5))
    store.devices.put(Device(id="tlink-7", source=Source.TLINK, traccar_unique_id="tlink-7"))
    runtime.services.upsert("tlink-7", ServiceSpec(timer=600))
    return runtime


def stored(runtime: Runtime) -> dict:
    return json.loads(runtime.secrets.read(runtime.settings.google_secret_name))


def paused_jobs(runtime: Runtime) -> dict[str, bool]:
    return {job.device_id: job.paused for job in runtime.store.local_jobs.list()}


def test_concurrent_refusals_run_the_expiry_handling_exactly_once(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    google.auth.revoke()
    errors: list[BaseException] = []

    def run() -> None:
        # Each thread is another function instance: its own account, token cache and clients.
        account = runtime.google_stack().account
        try:
            account.access_token(account.credentials())
        except BridgeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(errors) == 4
    assert all(isinstance(e, AuthExpired | CredentialsMissing) for e in errors), errors
    [mail] = smtp.messages
    assert "Google credentials expired" in mail.message["Subject"]
    assert runtime.store.state.auth().status == "auth_required"
    assert service_status.health(runtime.store).status == "auth_required"
    # Google jobs paused, TLINK's untouched.
    assert paused_jobs(runtime) == {"canonic-0": True, "canonic-1": True, "tlink-7": False}
    assert {s.id: s.paused for s in runtime.store.services.list()} == {
        "canonic-0": True, "canonic-1": True, "tlink-7": False,
    }  # fmt: skip
    # The dead token is gone from the stored secret; the rest is intact.
    remaining = stored(runtime)
    assert "aas_token" not in remaining
    assert remaining["owner_key"] == google.owner_key.hex()


def test_a_sync_after_the_expiry_never_calls_google_and_only_drains_the_outbox(
    runtime: Runtime, google: FakeGoogle
) -> None:
    google.auth.revoke()
    source = runtime.google.source
    device = runtime.store.devices.get("canonic-0")
    with pytest.raises(AuthExpired):
        source.fetch(device)
    calls = len(google.auth.requests)

    assert source.fetch(device) == []
    with pytest.raises(CredentialsMissing, match="PUT /auth/aas-token") as caught:
        source.locate_now(device)  # the API's fresh look says why

    assert caught.value.status == 503
    assert len(google.auth.requests) == calls
    assert google.nova.locates == [] and google.mcs.logins == []


def test_uploading_credentials_resumes_the_paused_jobs_and_clears_the_state(
    runtime: Runtime, google: FakeGoogle
) -> None:
    google.auth.revoke()
    account = runtime.google.account
    with pytest.raises(AuthExpired):
        account.access_token(account.credentials())
    google.aas_token = "aas_et/a-fresh-one"
    google.auth.add_account(google.username, google.aas_token, google.identity.android_id)

    restarted = account.upload_secrets(GoogleSecretsUpload.model_validate(google.secrets()))

    assert restarted == 2
    assert paused_jobs(runtime) == {"canonic-0": False, "canonic-1": False, "tlink-7": False}
    assert not any(s.paused for s in runtime.store.services.list())
    assert runtime.store.state.auth().status == "ok"
    assert google.auth.is_valid(account.access_token(account.credentials()))


def test_a_new_aas_token_alone_brings_the_account_back(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    google.auth.revoke()
    account = runtime.google.account
    with pytest.raises(AuthExpired):
        account.list_devices()
    google.auth.add_account(google.username, "aas_et/new", google.identity.android_id)

    restarted = account.replace_aas_token("aas_et/new")

    assert restarted == 2
    assert stored(runtime) == {**google.secrets(), "aas_token": "aas_et/new"}
    assert [d.id for d in account.list_devices()] == ["canonic-0", "canonic-1"]
    assert len(smtp.messages) == 1


def test_a_refusal_of_credentials_replaced_meanwhile_changes_nothing(
    runtime: Runtime, google: FakeGoogle, smtp: SmtpServer
) -> None:
    account = runtime.google.account
    old = account.credentials()
    account.replace_aas_token("aas_et/uploaded-while-the-old-one-was-refused")

    outcome = runtime.google.expiry.expire(old, "BadAuthentication")

    assert isinstance(outcome, AuthFailed)
    assert runtime.store.state.auth().status == "ok"
    assert smtp.messages == []
    assert stored(runtime)["aas_token"] == "aas_et/uploaded-while-the-old-one-was-refused"
    assert not any(paused_jobs(runtime).values())
