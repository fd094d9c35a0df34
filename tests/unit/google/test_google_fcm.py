"""One FCM session through the firebase-messaging library, against a local MCS over TLS.

The pushes are real Web-Push "aesgcm" ciphertexts, encrypted by the fake (written from the
draft with `cryptography`) for the test account's own keys, and decrypted by the library
(`http_ece`) exactly as it decrypts Google's: login, DataMessageStanza, decryption, callback,
acknowledgement.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from shared.sources.google.checkin import GcmCheckin
from shared.sources.google.client import NovaClient
from shared.sources.google.credentials import GoogleSecrets
from shared.sources.google.errors import CheckinFailed, FcmError, McsLoginFailed, NovaError
from shared.sources.google.fcm import McsEndpoint, SessionResult, request_uuid_of, run_session
from shared.sources.google.proto import device_update_pb2
from tests.fakes.nova import FCM_PAYLOAD_KEY, FakeGoogle
from tests.fakes.osmand import HOST
from tests.unit.google.encryptor import Report


@pytest.fixture
def google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        # The library verifies MCS's certificate against the default CAs: ours, here.
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.ca_file))
        for tracker in fake.trackers:
            tracker.recent = Report("own", timestamp=1_700_000_000, latitude=1.5, longitude=2.5)
        yield fake


def session_parts(google: FakeGoogle) -> tuple[GoogleSecrets, McsEndpoint, NovaClient, str]:
    credentials = GoogleSecrets.model_validate(google.secrets())
    token = (
        requests.post(
            google.auth.auth_url,
            data={
                "Email": google.username,
                "EncryptedPasswd": google.aas_token,
                "androidId": google.identity.android_id,
                "service": "oauth2:https://www.googleapis.com/auth/android_device_manager",
                "app": "com.google.android.apps.adm",
                "client_sig": "38918a453d07199354f8b19af05ec6562ced5788",
            },
            timeout=5,
        )
        .text.split("Auth=")[1]
        .strip()
    )
    nova = NovaClient(requests.Session(), google.nova.nova_url)
    return credentials, McsEndpoint(HOST, google.mcs.port), nova, token


def locate_sender(google: FakeGoogle, canonic_ids: dict[str, str]):
    credentials, _, nova, token = session_parts(google)

    def send(request_uuid: str) -> None:
        nova.locate(
            token,
            canonic_ids[request_uuid],
            request_uuid=request_uuid,
            fcm_token=credentials.fcm_token,
            now=datetime.now(UTC),
        )

    return send


def checkin(google: FakeGoogle, credentials: dict | None = None):
    """The check-in of the stored (or given library) credentials against the fake."""
    gcm = (credentials or GoogleSecrets.model_validate(google.secrets()).library_credentials())[
        "gcm"
    ]
    client = GcmCheckin(session=requests.Session(), url=google.auth.checkin_url)
    return lambda: client.check_in(str(gcm["android_id"]), str(gcm["security_token"]))


def locate_all(google: FakeGoogle, requests_: dict[str, str], *, timeout: float) -> SessionResult:
    """One FCM session locating `requests_` (request uuid → canonic id) through the fakes."""
    credentials, endpoint, _, _ = session_parts(google)
    return run_session(
        credentials.library_credentials(),
        endpoint,
        list(requests_),
        locate_sender(google, requests_),
        timeout=timeout,
        checkin=checkin(google),
    )


def test_each_locate_answer_is_decrypted_and_matched_to_its_request(google: FakeGoogle) -> None:
    requests_ = {str(uuid.uuid4()): "canonic-0", str(uuid.uuid4()): "canonic-1"}

    result = locate_all(google, requests_, timeout=10)

    assert result.failures == {}
    assert set(result.answers) == set(requests_)
    for request_uuid, update in result.answers.items():
        message = device_update_pb2.DeviceUpdate.FromString(update)
        assert message.fcm_metadata.request_uuid == request_uuid
        canonic = message.device_metadata.identifiers.canonic_ids.canonic_id[0].id
        assert canonic == requests_[request_uuid]
    # Every push was acknowledged, so MCS will not deliver it again.
    assert len(google.mcs.acked) == 2


def test_the_login_is_confirmed_before_the_first_locate_is_sent(google: FakeGoogle) -> None:
    requests_ = {str(uuid.uuid4()): "canonic-0"}

    locate_all(google, requests_, timeout=10)

    [(logged_in_at, android_id)] = google.mcs.logins
    [locate] = google.nova.locates
    assert android_id == google.identity.android_id
    assert logged_in_at < locate.at


def test_pushes_of_other_requests_are_ignored_but_acknowledged(google: FakeGoogle) -> None:
    # An answer to an older run, waiting in FCM: delivered at login, not ours.
    stale = google.trackers[0].tracker.device_update([], None, request_uuid="older-run")
    google.mcs.push(
        google.identity.token, {"data": {FCM_PAYLOAD_KEY: base64.b64encode(stale).decode()}}
    )
    google.mcs.push(google.identity.token, {"data": {"something": "else"}})
    requests_ = {str(uuid.uuid4()): "canonic-1"}

    result = locate_all(google, requests_, timeout=10)

    [(request_uuid, update)] = result.answers.items()
    assert request_uuid_of(update) == request_uuid
    assert len(google.mcs.acked) == 3


def test_an_unanswered_locate_is_missing_once_the_timeout_has_passed(google: FakeGoogle) -> None:
    google.trackers[0].answers = False
    requests_ = {str(uuid.uuid4()): "canonic-0", str(uuid.uuid4()): "canonic-1"}

    started = time.monotonic()
    result = locate_all(google, requests_, timeout=1.5)
    elapsed = time.monotonic() - started

    assert [requests_[u] for u in result.answers] == ["canonic-1"]
    assert 1.5 <= elapsed < 4


def test_a_late_answer_within_the_timeout_is_waited_for(google: FakeGoogle) -> None:
    google.trackers[0].delay = 0.5
    requests_ = {str(uuid.uuid4()): "canonic-0"}

    result = locate_all(google, requests_, timeout=10)

    assert list(result.answers) == list(requests_)


def test_a_request_that_could_not_be_sent_is_a_failure_and_the_others_still_answer(
    google: FakeGoogle,
) -> None:
    requests_ = {str(uuid.uuid4()): "canonic-0", str(uuid.uuid4()): "no-such-tracker"}

    started = time.monotonic()
    result = locate_all(google, requests_, timeout=10)

    [(failed, error)] = result.failures.items()
    assert requests_[failed] == "no-such-tracker" and isinstance(error, NovaError)
    assert [requests_[u] for u in result.answers] == ["canonic-0"]
    # It did not wait for an answer that cannot come.
    assert time.monotonic() - started < 5


def test_refused_gcm_credentials_end_in_a_clear_error_within_the_timeout(
    google: FakeGoogle,
) -> None:
    credentials, endpoint, _, _ = session_parts(google)
    stale = credentials.library_credentials()
    stale["gcm"]["security_token"] = "1"

    started = time.monotonic()
    with pytest.raises(McsLoginFailed, match="did not confirm the login"):
        run_session(stale, endpoint, ["r1"], lambda _: None, timeout=1.5, checkin=checkin(google))

    assert time.monotonic() - started < 5
    assert google.nova.locates == []  # nothing sent without a session
    assert google.mcs.refused_logins >= 1


def test_an_unreachable_mcs_fails_fast_with_a_clear_error(google: FakeGoogle) -> None:
    credentials, _, _, _ = session_parts(google)
    google.mcs.stop()

    started = time.monotonic()
    with pytest.raises(FcmError, match="could not log in to FCM"):
        run_session(
            credentials.library_credentials(),
            McsEndpoint(HOST, google.mcs.port),
            ["r1"],
            lambda _: None,
            timeout=10,
            checkin=checkin(google),
        )

    assert time.monotonic() - started < 3


def test_locate_requests_are_sent_side_by_side(google: FakeGoogle) -> None:
    credentials, endpoint, _, _ = session_parts(google)
    requests_ = {str(uuid.uuid4()): f"canonic-{index}" for index in range(2)}
    real_send = locate_sender(google, requests_)
    # Each send goes on only once the other is in flight too: sent one after another, the
    # first would wait at the barrier until it breaks.
    both_in_flight = threading.Barrier(2, timeout=5)

    def send(request_uuid: str) -> None:
        both_in_flight.wait()
        real_send(request_uuid)

    result = run_session(
        credentials.library_credentials(), endpoint, list(requests_), send, timeout=10,
        checkin=checkin(google),
    )  # fmt: skip

    assert not both_in_flight.broken
    assert set(result.answers) == set(requests_) and not result.failures


def test_requests_left_when_the_time_is_up_are_failures_not_sent(
    google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials, endpoint, _, _ = session_parts(google)
    requests_ = {str(uuid.uuid4()): "canonic-0", str(uuid.uuid4()): "canonic-1"}
    real_send = locate_sender(google, requests_)

    def slow_send(request_uuid: str) -> None:  # Nova retrying for longer than the session lasts
        time.sleep(1.2)
        real_send(request_uuid)

    result = run_session(
        credentials.library_credentials(), endpoint, list(requests_), slow_send, timeout=1,
        checkin=checkin(google), concurrency=1,  # the second waits for the first
    )  # fmt: skip

    [(late, error)] = result.failures.items()
    assert requests_[late] == "canonic-1" and "not sent in time" in error.message
    assert [locate.canonic_id for locate in google.nova.locates] == ["canonic-0"]


def test_the_session_checks_in_with_the_stored_ids_before_it_logs_in(google: FakeGoogle) -> None:
    locate_all(google, {str(uuid.uuid4()): "canonic-0"}, timeout=10)

    [(checked_in, android_id)] = google.auth.checkins
    [(logged_in, _)] = google.mcs.logins
    assert android_id == google.identity.android_id and checked_in <= logged_in
    assert google.auth.new_registrations == 0


def test_a_login_without_a_check_in_is_refused_by_mcs(google: FakeGoogle) -> None:
    credentials, endpoint, _, _ = session_parts(google)

    with pytest.raises(McsLoginFailed):
        run_session(
            credentials.library_credentials(), endpoint, ["r1"], lambda _: None, timeout=1.5,
            checkin=lambda: None,
        )  # fmt: skip
    assert google.mcs.refused_logins >= 1


def test_a_refused_check_in_fails_as_such_and_never_registers_anew(google: FakeGoogle) -> None:
    credentials, endpoint, _, _ = session_parts(google)
    google.auth.refuse_checkins()

    with pytest.raises(CheckinFailed, match="check-in failed"):
        run_session(
            credentials.library_credentials(), endpoint, ["r1"], lambda _: None, timeout=5,
            checkin=checkin(google),
        )  # fmt: skip
    stale = credentials.library_credentials()
    stale["gcm"]["security_token"] = "1"
    google.auth.refuse_checkins(False)
    with pytest.raises(CheckinFailed, match="refused"):
        checkin(google, stale)()
    assert google.auth.new_registrations == 0
    assert google.mcs.logins == [] and google.nova.locates == []
