"""Syncing Google trackers: OAuth, Nova and MCS fakes over real sockets, the emulator, Traccar.

The whole chain of a scheduled sync: token, FCM login, locate, push, decryption, pipeline,
OsmAnd. Reports are made by the independent test encryptor (`tests.unit.google.encryptor`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import functions_framework
import pytest

from shared.config import get_settings
from shared.errors import RetryLater
from shared.models import Device, Source
from shared.runtime import Runtime, get_runtime
from shared.services import ServiceSpec
from shared.sources.google.alerts import OWNER_KEY
from shared.sources.google.credentials import GoogleSecretsUpload
from shared.sources.google.errors import (
    CheckinFailed,
    CredentialsReplaced,
    FcmError,
    OwnerKeyRefused,
)
from shared.sources.google.lease import FcmLeases
from shared.store.google import LeaseDocument
from tests.conftest import PROJECT, Clock, make_settings
from tests.fakes.google_auth import SPOT_SCOPE
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import AGGREGATED, LAST_KNOWN, Report

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000
HELD = timedelta(seconds=90)


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=3) as fake:
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        for index, tracker in enumerate(fake.trackers):
            tracker.recent = Report(
                "own", timestamp=T0 + index, latitude=48.85 + index, longitude=2.35,
                altitude=30, accuracy=5.0, is_own_report=True, status=LAST_KNOWN,
            )  # fmt: skip
        yield fake


@pytest.fixture
def traccar(google: FakeGoogle) -> Iterator[OsmAndServer]:
    with OsmAndServer(known_ids=[t.tracker.canonic_id for t in google.trackers]) as server:
        yield server


def make_runtime(tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer,
                 **overrides: object) -> Runtime:  # fmt: skip
    settings = make_settings(
        tmp_path, **google.settings(), traccar_server_url=traccar.url, **overrides
    )
    runtime = Runtime(settings, firestore_client=firestore_client)
    google.store_secrets(runtime.secrets)
    for tracker in google.trackers:
        canonic = tracker.tracker.canonic_id
        runtime.store.devices.put(
            Device(id=canonic, source=Source.GOOGLE, name=tracker.tracker.name,
                   traccar_unique_id=canonic)
        )  # fmt: skip
        runtime.services.upsert(canonic, ServiceSpec(timer=600, delta=5))
    return runtime


@pytest.fixture
def runtime(tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer) -> Runtime:
    return make_runtime(tmp_path, firestore_client, google, traccar)


def pushed(traccar: OsmAndServer) -> dict[str, list[tuple[float, float, int]]]:
    found: dict[str, list[tuple[float, float, int]]] = {}
    for position in traccar.positions:
        found.setdefault(position.unique_id, []).append(
            (position.latitude, position.longitude, int(position.fix_time.timestamp()))
        )
    return found


def test_a_scheduled_sync_pushes_the_decrypted_positions_and_never_a_semantic_one(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    tracker = google.trackers[0]
    tracker.network = [
        Report("crowdsourced", timestamp=T0 - 600, latitude=-33.8688, longitude=151.2093,
               accuracy=12.5, time_offset=0x1234_5678, status=AGGREGATED),
        Report("semantic", timestamp=T0 - 300, place="Home"),
    ]  # fmt: skip

    report = runtime.sync.sync_device("canonic-0")

    assert report.result.pushed == 2
    assert [r.location.loc_status for r in report.locations] == ["AGGREGATED", "LAST_KNOWN"]
    assert pushed(traccar)["canonic-0"] == [
        (-33.8688, 151.2093, T0 - 600),
        (48.85, 2.35, T0),
    ]
    own = next(p for p in traccar.positions if p.latitude == 48.85)
    assert own.altitude == 30 and own.accuracy == 5.0
    assert [locate.contributor_type for locate in google.nova.locates] == [2, 2, 2]


def test_one_fcm_session_locates_every_due_google_device(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    first = runtime.sync.sync_device("canonic-0")

    assert first.result.pushed == 1
    assert len(google.mcs.logins) == 1
    assert sorted(locate.canonic_id for locate in google.nova.locates) == [
        "canonic-0", "canonic-1", "canonic-2",
    ]  # fmt: skip
    # The companions' positions went through their own pipelines.
    assert sorted(pushed(traccar)) == ["canonic-0", "canonic-1", "canonic-2"]
    assert runtime.store.delivery.state("canonic-2").last_location.lat == 50.85

    # Their own scheduled runs of the same minute do not locate again.
    second = runtime.sync.sync_device("canonic-1")
    assert second.result.fetched == 0 and second.result.pushed == 0
    assert len(google.mcs.logins) == 1 and len(google.nova.locates) == 3


def test_devices_not_due_soon_stay_out_of_the_session(
    tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer, clock: Clock
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, google, traccar)
    runtime.services.upsert("canonic-2", ServiceSpec(timer=3600))
    source = runtime.google_stack(clock=clock).source

    source.fetch(runtime.store.devices.get("canonic-0"))  # all three located at t0
    clock.advance(600 - 50)  # timer 600: canonic-1 is due within a minute, canonic-2 is not
    source.fetch(runtime.store.devices.get("canonic-0"))

    second = [locate.canonic_id for locate in google.nova.locates[3:]]
    assert sorted(second) == ["canonic-0", "canonic-1"]


def test_paused_and_unserviced_devices_are_not_located_with_the_batch(
    runtime: Runtime, google: FakeGoogle
) -> None:
    runtime.store.services.delete("canonic-1")
    service = runtime.store.services.get("canonic-2")
    runtime.store.services.put(service.model_copy(update={"paused": True}))

    runtime.sync.sync_device("canonic-0")

    assert [locate.canonic_id for locate in google.nova.locates] == ["canonic-0"]


def test_a_run_finding_the_fcm_lease_held_is_told_to_retry_later(
    runtime: Runtime, google: FakeGoogle, clock: Clock
) -> None:
    from shared.models import utc_now

    now = utc_now()
    FcmLeases(document=LeaseDocument(runtime.store.client)).acquire(
        "another-run", now=now, until=now + timedelta(seconds=90)
    )

    with pytest.raises(RetryLater) as caught:
        runtime.sync.sync_device("canonic-0")

    assert caught.value.status == 429 and caught.value.retry_after > 0
    assert google.mcs.logins == [] and google.nova.locates == []
    # The device's pipeline lease was given back: a later run is not blocked by it.
    assert runtime.store.delivery.state("canonic-0").lease_owner is None


def test_sync_device_answers_429_with_retry_after_while_a_locate_runs(
    runtime: Runtime, google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.models import utc_now

    now = utc_now()
    FcmLeases(document=LeaseDocument(runtime.store.client)).acquire(
        "another-run", now=now, until=now + timedelta(seconds=90)
    )
    settings = runtime.settings
    for name, value in {
        "GCP_PROJECT": PROJECT,
        "SECRETS_DIR": str(settings.secrets_dir),
        **{k: v for k, v in google.environment().items() if k != "SSL_CERT_FILE"},
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(settings.secrets_dir.parent)
    get_settings.cache_clear()
    get_runtime.cache_clear()
    app = functions_framework.create_app("sync_device", str(ROOT / "functions/sync_device/main.py"))

    response = app.test_client().post("/", json={"device_id": "canonic-0"})

    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "locate" in json.loads(response.data)["error"]
    get_settings.cache_clear()
    get_runtime.cache_clear()


def test_a_silent_tracker_ends_its_run_well_and_backs_off_until_it_answers(
    tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer, clock: Clock
) -> None:
    runtime = make_runtime(
        tmp_path, firestore_client, google, traccar, fcm_timeout=2,
        google_silent_backoff_max=1800,
    )  # fmt: skip
    source = runtime.google_stack(clock=clock).source
    device = runtime.store.devices.get("canonic-0")
    assert device is not None
    google.trackers[0].answers = False

    # No error: Cloud Scheduler would retry into the same wait. The companions that did answer
    # are brought along all the same.
    found = source.fetch(device)
    assert sorted({location.id for location in found}) == ["canonic-1", "canonic-2"]
    assert len(google.nova.locates) == 3

    def locates_of_0() -> int:
        return sum(locate.canonic_id == "canonic-0" for locate in google.nova.locates)

    # Its own runs in the same round, and the batches of others, leave it out: 10 min first.
    clock.advance(60)
    assert source.fetch(device) == []
    clock.advance(530)
    source.fetch(runtime.store.devices.get("canonic-1"))  # type: ignore[arg-type]
    assert locates_of_0() == 1
    # Then it is tried again; silent again, it waits twice as long (20 min), then at most
    # GOOGLE_SILENT_BACKOFF_MAX (30 min here).
    clock.advance(10)
    source.fetch(device)
    assert locates_of_0() == 2
    clock.advance(19 * 60)
    source.fetch(device)
    assert locates_of_0() == 2
    clock.advance(61)
    source.fetch(device)
    assert locates_of_0() == 3
    lease = FcmLeases(document=LeaseDocument(firestore_client)).read()
    assert lease.silent["canonic-0"].misses == 3
    assert lease.silent["canonic-0"].until == clock.now + timedelta(minutes=30)

    # It answers again: located at its next attempt, and off the list.
    google.trackers[0].answers = True
    clock.advance(30 * 60)
    assert {location.id for location in source.fetch(device)} >= {"canonic-0"}
    assert "canonic-0" not in FcmLeases(document=LeaseDocument(firestore_client)).read().silent


def test_a_manual_sync_locates_a_silent_tracker_despite_its_backoff(
    tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, google, traccar, fcm_timeout=2)
    google.trackers[0].answers = False
    runtime.sync.sync_device("canonic-0")  # the scheduled run: silent, no error
    runtime.sync.sync_device("canonic-0")  # its retry, had there been one: backing off
    assert sum(locate.canonic_id == "canonic-0" for locate in google.nova.locates) == 1

    # The API's sync (force) asks Google now, and says what it found.
    with pytest.raises(FcmError, match="device canonic-0: no answer"):
        runtime.sync.sync_device("canonic-0", force=True)
    assert sum(locate.canonic_id == "canonic-0" for locate in google.nova.locates) == 2


def test_the_fresh_look_of_a_silent_tracker_is_a_504_naming_it(
    tmp_path: Path, firestore_client, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    runtime = make_runtime(tmp_path, firestore_client, google, traccar, fcm_timeout=2)
    google.trackers[0].answers = False

    with pytest.raises(FcmError, match="device canonic-0: no answer from Google within 2 s"):
        runtime.google.fresh_locations("canonic-0")


def new_recent_reports(google: FakeGoogle, at: int) -> None:
    for index, tracker in enumerate(google.trackers):
        tracker.recent = Report("own", timestamp=at + index, latitude=40.0 + index,
                                longitude=3.0, is_own_report=True, status=LAST_KNOWN)  # fmt: skip


def test_an_owner_key_rotated_between_two_syncs_is_renewed_stored_and_kept(
    firestore_client, runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1
    # An end-to-end-encryption reset: the trackers' identity keys are wrapped with a new owner
    # key (version 2); the stored secrets.json keeps version 1's (PROTOCOLS.md §5).
    google.rotate_owner_key()
    new_recent_reports(google, T0 + 100)

    renewed = runtime.sync.sync_device("canonic-0", force=True)

    assert renewed.result.pushed == 1
    assert [request.version for request in google.spot.requests] == [-1]  # the latest
    assert google.auth.spot_token_requests == 1
    stored = json.loads(runtime.secrets.read("google-secrets"))
    assert (stored["owner_key"], stored["owner_key_version"]) == (google.owner_key.hex(), 2)
    assert stored["aas_token"] == google.aas_token  # the rest of the credentials as they were

    # A cold instance reads the renewed key from the secret: the Spot API is not asked again.
    new_recent_reports(google, T0 + 200)
    cold = Runtime(runtime.settings, firestore_client=firestore_client)
    assert cold.sync.sync_device("canonic-0", force=True).result.pushed == 1
    assert len(google.spot.requests) == 1
    assert [p[2] for p in pushed(traccar)["canonic-0"]] == [T0, T0 + 100, T0 + 200]


def test_a_renewed_owner_key_that_still_fails_is_the_devices_error(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    google.rotate_owner_key()
    # Google's Spot API still serves the old key: a renewal that does not help.
    google.spot.publish(google.owner_key_version, bytes(32))

    with pytest.raises(OwnerKeyRefused, match="device canonic-0: ") as caught:
        runtime.sync.sync_device("canonic-0")

    assert caught.value.device == "canonic-0"
    assert len(google.spot.requests) == 1  # once per session, not once per device
    assert traccar.positions == []


def test_a_warm_instance_asks_google_for_one_spot_token_for_its_renewals(
    runtime: Runtime, google: FakeGoogle
) -> None:
    """Issue 14 point 4: the Spot token is kept (in memory) like the Find My Device token."""
    for at in (T0 + 100, T0 + 200):
        google.rotate_owner_key()
        new_recent_reports(google, at)
        assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1

    assert len(google.spot.requests) == 2
    assert google.auth.spot_token_requests == 1
    stored = json.loads(runtime.secrets.read("google-secrets"))
    assert (stored["owner_key"], stored["owner_key_version"]) == (google.owner_key.hex(), 3)


def test_a_kept_spot_token_the_spot_api_refuses_is_replaced_once(
    runtime: Runtime, google: FakeGoogle
) -> None:
    google.rotate_owner_key()
    new_recent_reports(google, T0 + 100)
    assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1
    google.auth.revoke_access_tokens(SPOT_SCOPE)  # Google stops honouring the kept one early
    google.rotate_owner_key()
    new_recent_reports(google, T0 + 200)

    assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1
    # The refused call (the fake records answered ones only), then one with a fresh token.
    assert len(google.spot.requests) == 2
    assert google.auth.spot_token_requests == 2
    stored = json.loads(runtime.secrets.read("google-secrets"))
    assert stored["owner_key_version"] == 3


def test_an_update_naming_a_newer_owner_key_version_renews_the_key_that_still_decrypts(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    """The version-triggered renewal (PROTOCOLS.md §5, "Owner key renewal"): Google rewrapped,
    so the update names a newer `ownerKeyVersion` while its identity key still decrypts with
    the stored key; the current key and its version are fetched and stored all the same."""
    # As the bridge stores the credentials after a renewal: the owner key with its version.
    versioned = {**google.secrets(), "owner_key_version": google.owner_key_version}
    runtime.secrets.add_version("google-secrets", json.dumps(versioned))
    google.rewrap_owner_key()

    synced = runtime.sync.sync_device("canonic-0", force=True)

    assert synced.result.pushed == 1
    assert [p[2] for p in pushed(traccar)["canonic-0"]] == [T0]
    assert [request.version for request in google.spot.requests] == [-1]
    stored = json.loads(runtime.secrets.read("google-secrets"))
    assert (stored["owner_key"], stored["owner_key_version"]) == (google.owner_key.hex(), 2)

    # Stored: the next run finds its version current and asks the Spot API nothing.
    new_recent_reports(google, T0 + 100)
    assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1
    assert len(google.spot.requests) == 1


def test_credentials_uploaded_during_a_renewal_are_kept_and_decrypt_the_next_run(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    """Issue 14 point 4: a renewal does not write over an upload that landed meanwhile."""
    google.rotate_owner_key()
    new_recent_reports(google, T0 + 100)
    # The user made new credentials after the reset and uploads them while the bridge waits
    # for the Spot API.
    uploaded = GoogleSecretsUpload.model_validate(google.secrets())
    google.spot.while_answering = lambda: runtime.google.account.upload_secrets(uploaded)

    with pytest.raises(CredentialsReplaced, match="next run") as caught:
        runtime.sync.sync_device("canonic-0", force=True)

    assert caught.value.status == 409
    assert runtime.secrets.read("google-secrets") == uploaded.to_json()  # the upload won
    assert OWNER_KEY not in runtime.google.account.alerts.current()
    assert traccar.positions == []

    google.spot.while_answering = None
    new_recent_reports(google, T0 + 200)
    assert runtime.sync.sync_device("canonic-0", force=True).result.pushed == 1
    assert len(google.spot.requests) == 1  # the uploaded owner key is the current one


def test_a_report_dated_ahead_of_the_clock_is_skipped_and_the_others_pushed(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer, caplog: pytest.LogCaptureFixture
) -> None:
    google.trackers[0].network = [
        # 2037-01-01: a tracker's clock gone wrong, or a forged report (issue 13).
        Report("crowdsourced", timestamp=2_114_380_800, latitude=-33.8688, longitude=151.2093,
               accuracy=12.5, status=AGGREGATED),
    ]  # fmt: skip

    report = runtime.sync.sync_device("canonic-0")

    assert (report.result.fetched, report.result.pushed) == (1, 1)
    assert pushed(traccar)["canonic-0"] == [(48.85, 2.35, T0)]
    newest = runtime.store.delivery.state("canonic-0").last_location
    assert newest is not None and newest.timestamp == T0
    assert "Google report dated ahead of the clock skipped" in caplog.text


def test_reports_that_do_not_decrypt_or_lack_a_time_are_counted_in_the_result_and_push_log(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    offset = 0x0ABC_DE00
    google.trackers[0].network = [
        Report("crowdsourced", timestamp=T0 - 300, latitude=45.0, longitude=5.0,
               time_offset=offset),
        # Encrypted for another rotation window than the one it names: its tag fails.
        Report("crowdsourced", timestamp=T0 - 200, latitude=45.1, longitude=5.0,
               time_offset=offset, encrypt_time_counter=offset + 0x10_000),
        Report("crowdsourced", timestamp=T0 - 100, latitude=45.2, longitude=5.0,
               time_offset=offset),
    ]  # fmt: skip
    # Two timestamps for three network locations: the third has none (paired by index).
    google.trackers[0].network_timestamps = [T0 - 300, T0 - 200]

    report = runtime.sync.sync_device("canonic-0")

    # One bad report costs that report only: the good network location and the recent one go.
    assert pushed(traccar)["canonic-0"] == [(45.0, 5.0, T0 - 300), (48.85, 2.35, T0)]
    assert (report.result.fetched, report.result.pushed, report.result.skipped) == (2, 2, 2)
    entries, _ = runtime.store.delivery.push_log(device_id="canonic-0", limit=10)
    assert [entry.skipped_reports for entry in entries] == [2, 2]
    # The companions located in the same session skipped nothing.
    others, _ = runtime.store.delivery.push_log(device_id="canonic-1", limit=10)
    assert [entry.skipped_reports for entry in others] == [0]
    assert runtime.store.delivery.state("canonic-0").last_result.skipped == 2  # type: ignore[union-attr]


def test_traccar_gets_the_accuracy_and_what_kind_of_report_each_position_was(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    google.trackers[0].network = [
        Report("crowdsourced", timestamp=T0 - 600, latitude=1.0, longitude=1.0, accuracy=250.0),
        Report("crowdsourced", timestamp=T0 - 500, latitude=2.0, longitude=2.0, accuracy=20.0),
        Report("crowdsourced", timestamp=T0 - 400, latitude=3.0, longitude=3.0, accuracy=300.0,
               status=AGGREGATED),
    ]  # fmt: skip

    runtime.sync.sync_device("canonic-0")

    seen = {p.latitude: (p.accuracy, p.attributes) for p in traccar.positions
            if p.unique_id == "canonic-0"}  # fmt: skip
    assert seen == {
        1.0: (250.0, {"reportType": "crowdsourced", "approximate": True}),
        2.0: (20.0, {"reportType": "crowdsourced"}),
        3.0: (300.0, {"reportType": "aggregated"}),
        48.85: (5.0, {"reportType": "own"}),
    }


def test_a_last_known_report_reaches_traccar_as_a_fix_of_its_own_time_told_apart_by_type(
    runtime: Runtime, google: FakeGoogle, traccar: OsmAndServer
) -> None:
    google.trackers[0].network = [
        Report("crowdsourced", timestamp=T0 - 600, latitude=1.0, longitude=1.0, accuracy=20.0),
        Report("crowdsourced", timestamp=T0 - 500, latitude=2.0, longitude=2.0, accuracy=20.0,
               status=AGGREGATED),
    ]  # fmt: skip

    runtime.sync.sync_device("canonic-0")  # the tracker's `recent` report is LAST_KNOWN

    # A LAST_KNOWN report is measured at its own time (PROTOCOLS.md §5): a true fix of that
    # moment, told apart by `reportType`, not dropped by a Traccar filtering invalid fixes.
    mine = {p.latitude: p for p in traccar.positions if p.unique_id == "canonic-0"}
    assert {lat: p.valid for lat, p in mine.items()} == {1.0: True, 2.0: True, 48.85: True}
    assert mine[48.85].attributes["reportType"] == "own"  # the fake's recent report is its own
    # `valid` is OsmAnd's field, not an attribute Traccar would keep beside it.
    assert all("valid" not in p.attributes for p in traccar.positions)


def test_an_android_phone_is_located_and_pushed_like_a_tracker(
    tmp_path: Path, firestore_client, google: FakeGoogle
) -> None:
    phone = google.add_phone("phone-canonic", "Anna's Pixel")
    phone.recent = Report("own", timestamp=T0, latitude=45.5, longitude=9.2, is_own_report=True,
                          status=LAST_KNOWN)  # fmt: skip
    with OsmAndServer(known_ids=["phone-canonic"]) as traccar:
        runtime = make_runtime(tmp_path, firestore_client, google, traccar,
                               auto_register_services=True)  # fmt: skip
        for tracker in google.trackers:  # only the phone this time
            runtime.services.delete(tracker.tracker.canonic_id)
        refreshed = runtime.google.refresh.refresh()
        assert "phone-canonic" in refreshed.auto_registered
        assert runtime.store.devices.get("phone-canonic").kind == "phone"
        assert runtime.store.devices.get("canonic-0").kind == "tracker"

        report = runtime.sync.sync_device("phone-canonic")

        assert report.result.pushed >= 1
        assert pushed(traccar)["phone-canonic"] == [(45.5, 9.2, T0)]


def test_the_run_checks_in_before_its_login_and_a_refused_check_in_is_the_runs_error(
    runtime: Runtime, google: FakeGoogle
) -> None:
    runtime.sync.sync_device("canonic-0")
    assert [who for _, who in google.auth.checkins] == [google.identity.android_id]
    assert google.auth.checkins[0][0] <= google.mcs.logins[0][0]

    google.auth.refuse_checkins()
    with pytest.raises(CheckinFailed, match="check-in") as failed:
        runtime.google.source.locate_now(runtime.store.devices.get("canonic-1"))
    assert failed.value.status == 502 and "no answer" not in failed.value.message
    assert google.auth.new_registrations == 0 and len(google.mcs.logins) == 1
