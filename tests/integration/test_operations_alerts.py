"""Issue 20, points 2 and 3: operations alerts once per incident with their end, on `/health`;
rotated credentials accepted with their predecessor during the grace, then alone.

Over the Firestore emulator, a real local SMTP server, the file-backed secrets and a real
OsmAnd socket that refuses (a closed port).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import flask
import pytest
from pydantic import SecretStr

from shared import service_status
from shared.alerts import OperationsAlerts
from shared.errors import NotFound, Unauthorized
from shared.models import DeviceState, Location, Service, SyncResult
from shared.runtime import Runtime
from shared.secrets import CachedSecrets, LocalSecretStore
from shared.sources.tlink.webhook import PathTokenCheck, SignatureCheck, signature
from shared.traccar_status import TRACCAR_DOWN, OsmAndWatch
from shared.web import API_TOKEN_SECRET, bearer_matches
from tests.conftest import Clock, make_settings
from tests.fakes.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailing(tmp_path: Path, firestore_client, smtp: SmtpServer) -> Runtime:
    settings = make_settings(
        tmp_path,
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
    )
    return Runtime(settings, firestore_client=firestore_client)


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(mail.message["Subject"]) for mail in smtp.messages]


def test_traccar_refusing_past_the_limit_alerts_once_and_its_end_once(
    mailing: Runtime, smtp: SmtpServer, clock: Clock
) -> None:
    watch = OsmAndWatch(
        document=mailing.operations_document,
        notifier=lambda: mailing.notifier,
        down_after=timedelta(minutes=30),
        clock=clock,
    )

    def run(*outcomes: str) -> None:
        """One run's pushes, then its end (the pipeline settles after its final commit)."""
        for outcome in outcomes:
            watch.working() if outcome == "ok" else watch.failing(outcome)
        watch.settle()

    run("connection refused")
    clock.advance(29 * 60)
    run("connection refused")
    assert subjects(smtp) == []
    assert service_status.health(mailing.store).alerts is None
    clock.advance(2 * 60)
    run("connection refused", "connection refused")
    run("connection refused")
    assert subjects(smtp) == [
        "[traccar-bridge] Traccar does not accept positions - action required"
    ]
    report = service_status.health(mailing.store)
    assert [alert.name for alert in report.alerts or []] == [TRACCAR_DOWN]
    assert report.public().alerts and report.public().alerts[0].reason is None
    run("ok")
    run("ok")
    assert subjects(smtp)[1:] == ["[traccar-bridge] Resolved: Traccar does not accept positions"]
    assert service_status.health(mailing.store).alerts is None


def test_a_silent_device_alerts_once_honours_its_override_and_ends_with_a_new_position(
    mailing: Runtime, smtp: SmtpServer, clock: Clock
) -> None:
    store = mailing.store
    store.services.put(Service(id="quiet", name="Quiet", timer=600, delta=0))
    store.services.put(Service(id="patient", timer=600, delta=0, silent_hours=0))
    old = int((clock.now - timedelta(hours=25)).timestamp())
    for device_id in ("quiet", "patient"):
        location = Location(id=device_id, lat=1.0, lon=2.0, timestamp=old)
        mailing.store.client.collection("device_state").document(device_id).set(
            DeviceState(id=device_id, last_location=location).model_dump(mode="python")
        )
    alerts = OperationsAlerts(
        document=mailing.operations_document,
        services=store.services,
        delivery=store.delivery,
        notifier=lambda: mailing.notifier,
        device_silent=timedelta(hours=24),
        webhooks_silent=timedelta(hours=24),
        clock=clock,
    )
    assert alerts.evaluate().opened == ["device_silent:quiet"]
    assert alerts.evaluate().opened == []  # once per incident
    assert subjects(smtp) == ["[traccar-bridge] Device quiet sends no positions - action required"]
    names = [a.name for a in service_status.health(store).alerts or []]
    assert names == ["device_silent:quiet"]

    fresh = Location(id="quiet", lat=1.0, lon=2.0, timestamp=int(clock.now.timestamp()))
    mailing.store.client.collection("device_state").document("quiet").set(
        DeviceState(
            id="quiet", last_location=fresh, last_sync=clock.now, last_result=SyncResult(pushed=1)
        ).model_dump(mode="python")
    )
    assert alerts.evaluate().ended == ["device_silent:quiet"]
    assert subjects(smtp)[1:] == ["[traccar-bridge] Resolved: Device quiet sends no positions"]


def test_webhooks_that_used_to_arrive_and_stopped_alert(
    mailing: Runtime, smtp: SmtpServer, clock: Clock
) -> None:
    alerts = OperationsAlerts(
        document=mailing.operations_document,
        services=mailing.store.services,
        delivery=mailing.store.delivery,
        notifier=lambda: mailing.notifier,
        device_silent=timedelta(hours=24),
        webhooks_silent=timedelta(hours=24),
        clock=clock,
    )
    assert alerts.evaluate().opened == []  # never arrived: nothing to miss
    mailing.operations_document.webhook_seen("tlink", clock.now)
    clock.advance(25 * 3600)
    assert alerts.evaluate().opened == ["webhooks_silent:tlink"]
    mailing.operations_document.webhook_seen("tlink", clock.now)
    assert alerts.evaluate().ended == ["webhooks_silent:tlink"]
    assert subjects(smtp) == [
        "[traccar-bridge] No tlink webhooks arrive - action required",
        "[traccar-bridge] Resolved: No tlink webhooks arrive",
    ]


# --- rotation ---------------------------------------------------------------------------------


def age_versions(directory: Path, name: str, hours: float) -> None:
    """Make every stored version of `name` `hours` older (the local store dates them by mtime)."""
    for path in (directory / name).iterdir():
        stamp = path.stat().st_mtime - hours * 3600
        os.utime(path, (stamp, stamp))


def test_a_rotated_api_token_accepts_both_during_the_grace_then_only_the_new(
    tmp_path: Path, firestore_client
) -> None:
    settings = make_settings(tmp_path, api_token="old-token", rotation_grace_hours=24)
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.secrets.add_version(API_TOKEN_SECRET, "old-token")
    age_versions(settings.secrets_dir, API_TOKEN_SECRET, 100)
    runtime.secrets.add_version(API_TOKEN_SECRET, "new-token\n")
    app = flask.Flask(__name__)
    env_token = SecretStr("old-token")  # what the instance started with

    def accepted(token: str) -> bool:
        with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            return bearer_matches(flask.request, env_token, rotated=runtime.api_token_versions)

    assert accepted("new-token") and accepted("old-token")
    assert not accepted("other")
    age_versions(settings.secrets_dir, API_TOKEN_SECRET, 25)  # the new one added 25 h ago
    runtime.cached_secrets.forget(API_TOKEN_SECRET)
    assert accepted("new-token")
    assert not accepted("old-token")  # though it is the instance's API_TOKEN


def test_rotated_tlink_path_token_and_signature_secret_overlap_for_the_grace(
    tmp_path: Path, firestore_client
) -> None:
    settings = make_settings(tmp_path, tlink_require_path_token=True, tlink_require_signature=True)
    runtime = Runtime(settings, firestore_client=firestore_client)
    store = runtime.secrets
    for name, value in (
        (settings.tlink_path_token_secret, "path-1"),
        (settings.tlink_webhook_secret_name, "key-1"),
    ):
        store.add_version(name, value)
        age_versions(settings.secrets_dir, name, 100)
    store.add_version(settings.tlink_path_token_secret, "path-2")
    store.add_version(settings.tlink_webhook_secret_name, "key-2")
    source = runtime.tlink.source
    path = PathTokenCheck(
        source=source, required=True, secret_name=settings.tlink_path_token_secret,
        grace=timedelta(hours=24),
    )  # fmt: skip
    sign = SignatureCheck(
        source=source, required=True, secret_name=settings.tlink_webhook_secret_name,
        grace=timedelta(hours=24),
    )  # fmt: skip
    body = b'{"deviceId": 1}'
    path("path-1")
    path("path-2")
    sign(body, signature("key-1", body))
    sign(body, signature("key-2", body))
    with pytest.raises(NotFound):
        path("path-0")

    for name in (settings.tlink_path_token_secret, settings.tlink_webhook_secret_name):
        age_versions(settings.secrets_dir, name, 25)
        runtime.cached_secrets.forget(name)
    path("path-2")
    sign(body, signature("key-2", body))
    with pytest.raises(NotFound):
        path("path-1")
    with pytest.raises(Unauthorized):
        sign(body, signature("key-1", body))


def test_a_new_version_is_accepted_at_once_despite_the_cache(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "secrets")
    cache = CachedSecrets(store, min_reread=0.0)
    now = datetime.now(UTC)
    store.add_version("tok", "one")
    assert cache.accepted("tok", grace=timedelta(hours=1), now=now) == ["one"]
    time.sleep(0.01)
    store.add_version("tok", "two")
    assert "two" in cache.accepted("tok", grace=timedelta(hours=1), now=now, fresh=True)
