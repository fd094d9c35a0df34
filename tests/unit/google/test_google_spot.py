"""The Spot API client and the owner key's decryption (PROTOCOLS.md §5, "Owner key renewal").

The client is the bridge's real gRPC call over a real socket to the local HTTP/2 fake
(`tests/fakes/spot.py`), which checks the headers and the framing the section lists; the
message bytes are checked against the test encryptor's hand-made wire encoder.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from Crypto.Cipher import AES

from shared.sources.google import auth, crypto
from shared.sources.google.credentials import GoogleSecrets
from shared.sources.google.errors import DecryptionError, SpotError
from shared.sources.google.proto import spot_pb2
from shared.sources.google.spot import LATEST_OWNER_KEY, SpotClient
from tests.fakes.google_auth import FIND_MY_DEVICE_SCOPE, SPOT_SCOPE
from tests.fakes.nova import FakeGoogle
from tests.unit.google.encryptor import bytes_field, varint_field


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    with FakeGoogle(tmp_path, trackers=1) as fake:
        yield fake


def token(google: FakeGoogle, **scope: str) -> str:
    """A token from the OAuth fake, asked as the bridge asks (`auth._oauth_call`)."""
    credentials = GoogleSecrets.model_validate(google.secrets())
    answer = auth._oauth_call(
        google.auth.auth_url,
        credentials.username,
        google.aas_token,
        credentials.android_id,
        **scope,
    )
    return answer["Auth"]


def spot_token(google: FakeGoogle) -> str:
    return token(google, service=auth.SPOT_SERVICE, app=auth.SPOT_APP)


def encrypt_owner_key(owner_key: bytes, shared_key: bytes) -> bytes:
    iv = os.urandom(12)
    ciphertext, tag = AES.new(shared_key, AES.MODE_GCM, nonce=iv).encrypt_and_digest(owner_key)
    return iv + ciphertext + tag


def test_the_request_and_the_answer_have_the_field_numbers_of_the_protocol() -> None:
    request = spot_pb2.GetEidInfoForE2eeDevicesRequest(
        owner_key_version=LATEST_OWNER_KEY, has_owner_key_version=True
    )
    assert request.SerializeToString() == varint_field(1, -1) + varint_field(2, 1)
    answer = bytes_field(
        4, bytes_field(1, b"k" * 60) + varint_field(2, 7) + bytes_field(3, b"finder_hw")
    )
    parsed = spot_pb2.GetEidInfoForE2eeDevicesResponse.FromString(answer)
    found = parsed.encrypted_owner_key_and_metadata
    assert (found.encrypted_owner_key, found.owner_key_version, found.security_domain) == (
        b"k" * 60,
        7,
        "finder_hw",
    )


def test_the_owner_key_decrypts_under_the_shared_key_and_not_under_another() -> None:
    owner_key, shared_key = os.urandom(32), os.urandom(32)
    encrypted = encrypt_owner_key(owner_key, shared_key)
    assert crypto.decrypt_owner_key(encrypted, shared_key) == owner_key
    with pytest.raises(DecryptionError, match="authentication tag"):
        crypto.decrypt_owner_key(encrypted, os.urandom(32))
    with pytest.raises(DecryptionError, match="expected 60"):
        crypto.decrypt_owner_key(encrypted[:-1], shared_key)


def test_the_client_gets_the_latest_owner_key_over_http2_grpc(google: FakeGoogle) -> None:
    google.rotate_owner_key()  # versions 1 and 2 published: the latest is asked for
    client = SpotClient(url=google.spot.url, timeout=10)

    answer = client.encrypted_owner_key(spot_token(google))

    assert answer.version == 2
    assert crypto.decrypt_owner_key(answer.encrypted_owner_key, google.shared_key) == (
        google.owner_key
    )
    (request,) = google.spot.requests
    assert request.version == -1
    headers = request.headers
    assert (headers[":method"], headers["content-type"], headers["te"]) == (
        "POST",
        "application/grpc",
        "trailers",
    )
    assert headers[":path"] == "/google.internal.spot.v1.SpotService/GetEidInfoForE2eeDevices"
    assert headers["authorization"].startswith("Bearer ya29.")
    assert google.auth.is_valid(headers["authorization"].split()[1], SPOT_SCOPE)
    assert not google.auth.is_valid(headers["authorization"].split()[1], FIND_MY_DEVICE_SCOPE)


def test_a_find_my_device_token_is_refused_as_a_spot_error(google: FakeGoogle) -> None:
    adm_token = token(google)

    with pytest.raises(SpotError, match="UNAUTHENTICATED") as caught:
        SpotClient(url=google.spot.url, timeout=10).encrypted_owner_key(adm_token)
    assert caught.value.status == 502
    assert adm_token not in caught.value.message


def test_an_unreachable_spot_api_is_a_spot_error_within_the_timeout() -> None:
    with socket.socket() as listener:  # a port nobody serves once closed
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    with pytest.raises(SpotError, match=r"UNAVAILABLE|DEADLINE_EXCEEDED"):
        SpotClient(url=f"http://127.0.0.1:{port}", timeout=3).encrypted_owner_key("token")
