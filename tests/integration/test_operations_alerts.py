"""Issue 20, points 2 and 3: operations alerts once per incident with their end, on `/health`;
rotated credentials accepted with their predecessor during the grace, then alone.

Over the Firestore emulator, a real local SMTP server, the file-backed secrets and a real
OsmAnd socket that refuses (a closed port).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

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
from shared.store.google import GoogleAlert
from shared.traccar_status import TRACCAR_DOWN, OsmAndWatch
from shared.web import API_TOKEN_SECRET, bearer_matches
from tests.conftest import Clock, make_settings
from tests.fakes.smtp import SmtpServer

T = TypeVar("T")


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


def day_limits(runtime: Runtime, clock: Clock) -> OperationsAlerts:
    """The alerts with a day as both silence limits."""
    return OperationsAlerts(
        document=runtime.operations_document,
        services=runtime.store.services,
        delivery=runtime.store.delivery,
        notifier=lambda: runtime.notifier,
        device_silent=timedelta(hours=24),
        webhooks_silent=timedelta(hours=24),
        clock=clock,
    )


def subjects(smtp: SmtpServer) -> list[str]:
    # Unfolded: a long subject is folded onto several header lines.
    return [" ".join(str(mail.message["Subject"]).split()) for mail in smtp.messages]


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
    alerts = day_limits(mailing, clock)
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


def test_parked_positions_alert_once_and_end_when_none_is_parked(
    mailing: Runtime, smtp: SmtpServer, clock: Clock
) -> None:
    """A position Traccar refuses again and again while taking later ones is parked and no run
    retries it by itself (shared/pipeline.py): somebody is told, also for a device without a
    sync service (a webhook-fed one)."""
    states = mailing.store.client.collection("device_state")
    states.document("tlink-7").set(
        DeviceState(id="tlink-7", parked_count=2, last_sync=clock.now).model_dump(mode="python")
    )
    states.document("calm").set(DeviceState(id="calm").model_dump(mode="python"))
    alerts = day_limits(mailing, clock)

    assert alerts.evaluate().opened == ["positions_parked:tlink-7"]
    assert alerts.evaluate().opened == []  # once per incident
    assert subjects(smtp) == [
        "[traccar-bridge] Traccar keeps refusing positions of tlink-7 - action required"
    ]
    [mail] = smtp.messages
    assert "GET /push-log?device_id=<id>" in mail.message.get_body().get_content()
    [alert] = service_status.health(mailing.store).alerts or []
    assert alert.name == "positions_parked:tlink-7" and "2 position(s)" in (alert.reason or "")

    # A manual sync delivered them: none parked any more.
    states.document("tlink-7").update({"parked_count": 0})
    assert alerts.evaluate().ended == ["positions_parked:tlink-7"]
    assert subjects(smtp)[1:] == [
        "[traccar-bridge] Resolved: Traccar keeps refusing positions of tlink-7"
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


# --- one mail per end, whatever the instances racing -----------------------------------------


def race(*calls: Callable[[], T]) -> list[T]:
    """Each call on its own thread, all released at once; their results."""
    start = threading.Barrier(len(calls))
    results: list[T] = []

    def run(call: Callable[[], T]) -> None:
        start.wait()
        results.append(call())

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == len(calls), "a racing call failed (see the thread's traceback)"
    return results


def test_instances_racing_open_and_end_each_incident_once_with_one_mail_each(
    tmp_path: Path, firestore_client, smtp: SmtpServer
) -> None:
    """Two instances (each its own Runtime and Firestore client) meet the same incidents at the
    same moment, then see them end at the same moment: each incident is opened by one and
    ended by one, one mail each time."""
    from google.cloud import firestore

    settings = make_settings(
        tmp_path,
        notify_smtp_host=smtp.host,
        notify_smtp_port=smtp.port,
        notify_email_from="bridge@example.org",
        notify_email_to="me@example.org",
    )
    instances = [
        Runtime(settings, firestore_client=firestore_client),
        Runtime(settings, firestore_client=firestore.Client(project=firestore_client.project)),
    ]
    first = instances[0]
    first.store.services.put(Service(id="quiet", name="Quiet", timer=600, delta=0))
    incidents = ["device_silent:quiet", TRACCAR_DOWN]

    def device_state(position_at: datetime, *, pushed_at: datetime | None = None) -> None:
        location = Location(id="quiet", lat=1.0, lon=2.0, timestamp=int(position_at.timestamp()))
        state = DeviceState(id="quiet", last_location=location)
        if pushed_at is not None:  # a run that pushed: Traccar accepts again
            state = DeviceState(
                id="quiet",
                last_location=location,
                last_sync=pushed_at,
                last_result=SyncResult(pushed=1),
            )
        first.store.client.collection("device_state").document("quiet").set(
            state.model_dump(mode="python")
        )

    def refused_push(runtime: Runtime) -> Callable[[], None]:
        # A fresh watch per round: an instance that already alerted stays quiet, by design.
        watch = OsmAndWatch(
            document=runtime.operations_document,
            notifier=lambda: runtime.notifier,
            down_after=timedelta(minutes=30),
        )

        def push() -> None:
            watch.failing("connection refused")
            watch.settle()

        return push

    rounds = 3
    for _ in range(rounds):
        # Opening: the device silent for 25 h, Traccar refusing since 2 h; both instances
        # evaluate and both meet a refused push at once.
        now = datetime.now(UTC)
        device_state(now - timedelta(hours=25))
        first.operations_document.set_watch(TRACCAR_DOWN, now - timedelta(hours=2))
        race(*(r.alerts.evaluate for r in instances), *(refused_push(r) for r in instances))
        open_now = service_status.health(first.store).alerts or []
        assert sorted(alert.name for alert in open_now) == incidents

        # Ending: a new position, pushed after the outage began; both evaluate at once.
        now = datetime.now(UTC)
        device_state(now, pushed_at=now)
        reports = race(*(runtime.alerts.evaluate for runtime in instances))
        assert sorted(name for report in reports for name in report.ended) == incidents
        assert service_status.health(first.store).alerts is None

    titles = ["Device quiet sends no positions", "Traccar does not accept positions"]
    opened = [f"[traccar-bridge] {title} - action required" for title in titles]
    resolved = [f"[traccar-bridge] Resolved: {title}" for title in titles]
    assert sorted(subjects(smtp)) == sorted(rounds * (opened + resolved))


def test_ending_an_incident_nobody_opened_mails_nothing(mailing: Runtime, smtp: SmtpServer) -> None:
    assert mailing.operations_document.resolve(TRACCAR_DOWN) is None
    mailing.operations_document.alerts.open(
        TRACCAR_DOWN, GoogleAlert(reason="refused", since=datetime.now(UTC))
    )
    ended = mailing.operations_document.resolve(TRACCAR_DOWN)
    assert ended is not None and ended.reason == "refused"
    assert mailing.operations_document.resolve(TRACCAR_DOWN) is None
    assert subjects(smtp) == []
