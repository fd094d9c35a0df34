"""Access tokens from gpsoauth against a local OAuth endpoint, cached in the Firestore emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpsoauth
import pytest

from shared.sources.google.auth import BrowserSignIn, TokenProvider, TokenRejected
from shared.sources.google.credentials import GoogleSecrets
from shared.sources.google.errors import AuthFailed, CredentialsMissing
from shared.store.google import TOKEN_STATE, CachedToken, TokenCache
from shared.store.sealed import Sealer
from tests.conftest import Clock
from tests.fakes.google_auth import FakeGoogleAuth

USERNAME = "owner@example.com"
AAS_TOKEN = "aas_et/AKppINb-the-master-token"
ANDROID_ID = "4123456789012345678"
KEY = os.urandom(32)
SEALER = Sealer(key=lambda: KEY)


def credentials(aas_token: str | None = AAS_TOKEN, android_id: str = ANDROID_ID) -> GoogleSecrets:
    return GoogleSecrets.model_validate(
        {
            "aas_token": aas_token,
            "username": USERNAME,
            "fcm_credentials": {
                "keys": {"private": "p", "public": "q", "secret": "s"},
                "gcm": {"android_id": android_id, "security_token": "42"},
                "fcm": {
                    "registration": {"token": "fcm-token"},
                    "installation": {"token": "fis", "expires_in": 604800},
                },
            },
            "owner_key": "11" * 32,
            "shared_key": "22" * 32,
        }
    )


@pytest.fixture
def auth() -> Iterator[FakeGoogleAuth]:
    with FakeGoogleAuth() as server:
        server.add_account(USERNAME, AAS_TOKEN, ANDROID_ID)
        yield server


def provider(
    firestore_client, auth: FakeGoogleAuth, clock: Clock | None = None, sealer: Sealer = SEALER
) -> TokenProvider:
    cache = TokenCache(firestore_client, sealer=sealer)
    if clock is None:
        return TokenProvider(cache=cache, auth_url=auth.auth_url)
    return TokenProvider(cache=cache, auth_url=auth.auth_url, clock=clock)


def test_a_token_is_fetched_once_and_reused_by_other_instances(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    first = provider(firestore_client, auth).token(credentials())
    again = provider(firestore_client, auth).token(credentials())  # another function instance

    assert first == again and auth.is_valid(first)
    assert len(auth.issued) == 1
    [request] = auth.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_token_is_renewed_shortly_before_it_expires(firestore_client, clock: Clock) -> None:
    auth = FakeGoogleAuth(clock=lambda: clock.now.timestamp()).start()
    auth.add_account(USERNAME, AAS_TOKEN, ANDROID_ID)
    tokens = provider(firestore_client, auth, clock)
    first = tokens.token(credentials())

    clock.advance(3599 - 6 * 60)
    assert tokens.token(credentials()) == first
    clock.advance(2 * 60)  # within five minutes of the expiry
    renewed = tokens.token(credentials())

    assert renewed != first and len(auth.issued) == 2
    assert provider(firestore_client, auth, clock).token(credentials()) == renewed
    auth.stop()


def test_new_credentials_never_reuse_the_token_of_the_old_ones(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    tokens = provider(firestore_client, auth)
    old = tokens.token(credentials())
    auth.add_account(USERNAME, "aas_et/the-new-one", ANDROID_ID)

    new = tokens.token(credentials("aas_et/the-new-one"))

    assert new != old and len(auth.issued) == 2


def test_invalidate_forgets_the_token_everywhere(firestore_client, auth: FakeGoogleAuth) -> None:
    tokens = provider(firestore_client, auth)
    old = tokens.token(credentials())

    tokens.invalidate()

    assert provider(firestore_client, auth).cached() is None
    assert tokens.token(credentials()) != old


def test_the_stored_token_is_sealed_and_no_plaintext_reaches_firestore(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    token = provider(firestore_client, auth).token(credentials())

    stored = firestore_client.collection("state").document(TOKEN_STATE).get().to_dict()

    # What the webhooks function (Firestore, no key) could read: one opaque field.
    assert set(stored) == {"sealed"} and stored["sealed"].startswith("v1.")
    assert token not in repr(stored) and AAS_TOKEN not in repr(stored)
    cached = provider(firestore_client, auth).cached()
    assert cached is not None and cached.token == token


def test_a_token_under_another_key_is_fetched_anew_not_a_crash(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    old = provider(firestore_client, auth).token(credentials())
    new_key = os.urandom(32)
    rotated = Sealer(key=lambda: new_key)

    new = provider(firestore_client, auth, sealer=rotated).token(credentials())

    assert new != old and len(auth.issued) == 2 and auth.is_valid(new)
    assert provider(firestore_client, auth, sealer=rotated).token(credentials()) == new


def test_a_tampered_token_document_is_fetched_anew(firestore_client, auth: FakeGoogleAuth) -> None:
    old = provider(firestore_client, auth).token(credentials())
    ref = firestore_client.collection("state").document(TOKEN_STATE)
    sealed = ref.get().to_dict()["sealed"]
    ref.set({"sealed": sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")})

    new = provider(firestore_client, auth).token(credentials())

    assert new != old and len(auth.issued) == 2
    assert "sealed" in ref.get().to_dict()


def test_a_plaintext_token_from_before_sealing_is_never_used_and_is_replaced(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    from shared.sources.google.auth import credentials_digest

    now = datetime.now(UTC)
    plaintext = CachedToken(
        token="ya29.left-in-the-clear",
        obtained_at=now,
        expires_at=now + timedelta(hours=1),
        credentials_digest=credentials_digest(credentials()),
    )
    ref = firestore_client.collection("state").document(TOKEN_STATE)
    ref.set(plaintext.model_dump(mode="python"))

    token = provider(firestore_client, auth).token(credentials())

    assert token != plaintext.token and len(auth.issued) == 1
    assert set(ref.get().to_dict()) == {"sealed"}


@pytest.mark.parametrize(
    ("aas_token", "android_id"),
    [("aas_et/revoked", ANDROID_ID), (AAS_TOKEN, "1111111111111111111")],
)
def test_a_refused_aas_token_or_another_android_id_is_a_token_rejection(
    firestore_client, auth: FakeGoogleAuth, aas_token: str, android_id: str
) -> None:
    with pytest.raises(TokenRejected) as caught:
        provider(firestore_client, auth).token(credentials(aas_token, android_id))

    assert caught.value.error == "BadAuthentication"
    assert provider(firestore_client, auth).cached() is None


def test_needs_browser_is_a_browser_sign_in_not_a_token_rejection(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    auth.needs_browser()
    with pytest.raises(BrowserSignIn):
        provider(firestore_client, auth).token(credentials())
    assert auth.oauth_requests == 1  # asking again does not clear it


def test_a_single_bad_authentication_is_asked_again_and_gives_a_token(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    auth.bad_authentication(times=1)
    token = provider(firestore_client, auth).token(credentials())
    assert auth.is_valid(token)
    assert auth.oauth_requests == 2


def test_bad_authentication_is_a_token_rejection_only_when_a_fresh_attempt_gets_it_too(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    auth.bad_authentication(times=2)
    with pytest.raises(TokenRejected):
        provider(firestore_client, auth).token(credentials())
    assert auth.oauth_requests == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_from_google_is_a_failure_of_that_run(
    firestore_client, auth: FakeGoogleAuth, status: int
) -> None:
    auth.fail_with(status)
    with pytest.raises(AuthFailed):
        provider(firestore_client, auth).token(credentials())
    assert auth.is_valid(provider(firestore_client, auth).token(credentials()))


def test_an_answer_without_token_or_known_error_is_an_auth_failure_not_a_key_error(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    auth.respond_with(500, times=1)
    with pytest.raises(AuthFailed, match="without a token"):
        provider(firestore_client, auth).token(credentials())


def test_an_unreachable_oauth_endpoint_is_an_auth_failure(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    auth.stop()
    with pytest.raises(AuthFailed, match="cannot reach"):
        provider(firestore_client, auth).token(credentials())


def test_credentials_without_aas_token_never_reach_google(
    firestore_client, auth: FakeGoogleAuth
) -> None:
    with pytest.raises(CredentialsMissing, match="PUT /auth/aas-token"):
        provider(firestore_client, auth).token(credentials(aas_token=None))
    assert auth.requests == []


def test_gpsoauth_is_left_as_it_was_found(firestore_client, auth: FakeGoogleAuth) -> None:
    url, adapter = gpsoauth.AUTH_URL, gpsoauth.AuthHTTPAdapter

    provider(firestore_client, auth).token(credentials())

    assert (gpsoauth.AUTH_URL, gpsoauth.AuthHTTPAdapter) == (url, adapter)
    assert url == "https://android.clients.google.com/auth"


def test_the_fake_answers_in_gpsoauths_own_format(auth: FakeGoogleAuth, tmp_path: Path) -> None:
    # The fake's answer parsed by gpsoauth's own parser: what perform_oauth returns.
    import requests

    body = requests.post(
        auth.auth_url,
        data={
            "Email": USERNAME,
            "EncryptedPasswd": AAS_TOKEN,
            "androidId": ANDROID_ID,
            "service": "oauth2:https://www.googleapis.com/auth/android_device_manager",
            "app": "com.google.android.apps.adm",
            "client_sig": "38918a453d07199354f8b19af05ec6562ced5788",
        },
        timeout=5,
    ).text
    parsed = gpsoauth.google.parse_auth_response(body)
    assert parsed["Auth"].startswith("ya29.") and int(parsed["ExpiresInDurationSec"]) > 0
