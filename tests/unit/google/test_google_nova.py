"""The Nova client against a local Nova that reads our protobuf with its own wire reader."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from shared.sources.google.client import (
    NovaClient,
    NovaError,
    NovaThrottled,
    NovaUnauthorized,
    NovaUnavailable,
    default_retry,
)
from tests.fakes.nova import FakeGoogle

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
# Fast backoff: the tests prove the retry, not its pace.
QUICK_RETRY = default_retry().with_delay(initial=0.01, maximum=0.05).with_timeout(0.6)


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=2) as fake:
        yield fake


def access_token(google: FakeGoogle) -> str:
    answer = requests.post(
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
    return answer.text.split("Auth=")[1].strip()


def client(google: FakeGoogle) -> NovaClient:
    return NovaClient(requests.Session(), google.nova.nova_url, retry=QUICK_RETRY)


def test_the_device_list_names_canonic_ids_names_and_models(google: FakeGoogle) -> None:
    google.add_tracker("canonic-x", "Bike", model="Chipolo ONE Point")

    devices = client(google).list_devices(access_token(google))

    assert [(d.id, d.name, d.model) for d in devices] == [
        ("canonic-0", "Tracker 0", "Acme Tag"),
        ("canonic-1", "Tracker 1", "Acme Tag"),
        ("canonic-x", "Bike", "Chipolo ONE Point"),
    ]


def test_phones_are_listed_from_their_phone_information_with_their_kind(
    google: FakeGoogle,
) -> None:
    google.add_phone("phone-canonic", "Anna's Pixel")

    devices = client(google).list_devices(access_token(google))

    assert [(d.id, d.name, d.kind, d.model) for d in devices] == [
        ("canonic-0", "Tracker 0", "tracker", "Acme Tag"),
        ("canonic-1", "Tracker 1", "tracker", "Acme Tag"),
        ("phone-canonic", "Anna's Pixel", "phone", "Pixel 8"),
    ]


@pytest.mark.parametrize("bad_id", ["__main__", "a/b", "..", "x" * 1_501])
def test_a_listed_device_whose_id_firestore_refuses_is_skipped_alone(
    google: FakeGoogle, bad_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Its id names its documents and keys the FCM lease's `located` map: Firestore refusing
    # it would fail every commit of the run (issue 12). The others are listed as ever.
    google.add_tracker(bad_id, "Odd")

    devices = client(google).list_devices(access_token(google))

    assert [d.id for d in devices] == ["canonic-0", "canonic-1"]
    assert "canonic id is an id" in caplog.text


def test_a_locate_names_the_device_the_request_and_the_fcm_token(google: FakeGoogle) -> None:
    client(google).locate(
        access_token(google), "canonic-1", request_uuid="req-1", fcm_token="fcm-token", now=NOW
    )

    [locate] = google.nova.locates
    assert (locate.canonic_id, locate.request_uuid, locate.fcm_token) == (
        "canonic-1",
        "req-1",
        "fcm-token",
    )
    assert locate.contributor_type == 2  # FMDN_ALL_LOCATIONS


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_answers_are_retried_until_one_succeeds(google: FakeGoogle, status: int) -> None:
    token = access_token(google)
    google.nova.respond_with(status, times=2)

    devices = client(google).list_devices(token)

    assert len(devices) == 2
    assert len(google.nova.requests) == 3


def test_a_nova_that_stays_unavailable_ends_in_a_clear_error(google: FakeGoogle) -> None:
    token = access_token(google)
    google.nova.respond_with(503)

    with pytest.raises(NovaUnavailable, match="nbe_list_devices: Google answered 503"):
        client(google).list_devices(token)

    assert len(google.nova.requests) >= 3


def test_an_unreachable_nova_is_retried_then_reported(google: FakeGoogle) -> None:
    token = access_token(google)
    google.nova.stop()

    with pytest.raises(NovaUnavailable, match="cannot reach Google"):
        client(google).list_devices(token)


def test_a_refused_token_is_a_401_and_not_retried(google: FakeGoogle) -> None:
    with pytest.raises(NovaUnauthorized, match="401"):
        client(google).list_devices("ya29.not-issued")

    assert len(google.nova.requests) == 1


def test_a_refused_request_is_not_retried(google: FakeGoogle) -> None:
    with pytest.raises(NovaError, match=r"refused the request \(404\)") as caught:
        client(google).locate(
            access_token(google), "unknown", request_uuid="r", fcm_token="t", now=NOW
        )

    assert not isinstance(caught.value, NovaUnavailable | NovaUnauthorized)
    assert len(google.nova.requests) == 1


def test_a_429_with_retry_after_is_waited_for_before_the_retry(google: FakeGoogle) -> None:
    google.nova.throttle(1, retry_after=1)
    nova = NovaClient(requests.Session(), google.nova.nova_url, retry=QUICK_RETRY.with_timeout(5))

    devices = nova.list_devices(access_token(google))

    assert [d.id for d in devices] == ["canonic-0", "canonic-1"]
    (throttled, _), (answered, status) = google.nova.answered_at
    assert status == 200 and answered - throttled >= 1.0


def test_a_429_asking_for_longer_than_the_run_may_wait_ends_the_run_at_once(
    google: FakeGoogle,
) -> None:
    google.nova.throttle(1, retry_after=3600)

    with pytest.raises(NovaThrottled, match="3600 s") as caught:
        client(google).list_devices(access_token(google))

    assert caught.value.status == 503 and caught.value.retry_after == 3600
    assert len(google.nova.answered_at) == 1
