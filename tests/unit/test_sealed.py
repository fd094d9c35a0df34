"""Sealing the cached access tokens: AES-GCM under the state key, and the key's secret."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.secrets import CachedSecrets, KeyInSecret, LocalSecretStore, SecretNotFound
from shared.store.sealed import FORMAT, NONCE_BYTES, TAG_BYTES, Sealer

PURPOSE = "state/google_token"
TOKEN = b"ya29.a-bearer-token-nobody-else-may-read"


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def sealer(key: bytes) -> Sealer:
    return Sealer(key=lambda: key)


def raw(sealed: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(sealed.removeprefix(FORMAT)))


def rebuilt(data: bytes) -> str:
    return FORMAT + base64.urlsafe_b64encode(bytes(data)).decode()


def test_a_sealed_value_opens_with_its_key_and_purpose(sealer: Sealer) -> None:
    sealed = sealer.seal(TOKEN, purpose=PURPOSE)

    assert sealer.open(sealed, purpose=PURPOSE) == TOKEN
    assert TOKEN.decode() not in sealed and sealed.startswith(FORMAT)
    assert len(raw(sealed)) == NONCE_BYTES + len(TOKEN) + TAG_BYTES


def test_every_seal_takes_a_new_nonce(sealer: Sealer) -> None:
    first, second = (sealer.seal(TOKEN, purpose=PURPOSE) for _ in range(2))

    assert first != second
    assert raw(first)[:NONCE_BYTES] != raw(second)[:NONCE_BYTES]


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_an_altered_value_is_absent(sealer: Sealer, where: str) -> None:
    data = raw(sealer.seal(TOKEN, purpose=PURPOSE))
    index = {"nonce": 0, "ciphertext": NONCE_BYTES + 3, "tag": len(data) - 1}[where]
    data[index] ^= 0x01

    assert sealer.open(rebuilt(data), purpose=PURPOSE) is None


def test_a_value_under_another_key_is_absent(sealer: Sealer) -> None:
    sealed = sealer.seal(TOKEN, purpose=PURPOSE)
    rotated = Sealer(key=lambda: os.urandom(32))

    assert rotated.open(sealed, purpose=PURPOSE) is None


def test_a_value_sealed_for_another_document_is_absent(sealer: Sealer) -> None:
    # The document's path is the associated data: a copy into another document does not open.
    sealed = sealer.seal(TOKEN, purpose="state/tlink_token")

    assert sealer.open(sealed, purpose=PURPOSE) is None


@pytest.mark.parametrize(
    "text",
    ["", "v1.", "v1.%%%not-base64", "v1." + base64.urlsafe_b64encode(b"short").decode(), "v2.AAAA"],
)
def test_what_is_not_a_sealed_value_is_absent(sealer: Sealer, text: str) -> None:
    assert sealer.open(text, purpose=PURPOSE) is None


# --- The key's secret ----------------------------------------------------------------------


def key_reader(tmp_path: Path, *, create_missing: bool) -> tuple[KeyInSecret, LocalSecretStore]:
    store = LocalSecretStore(tmp_path / "secrets")
    reader = KeyInSecret(
        secrets=CachedSecrets(store),
        store=store,
        name="state-encryption-key",
        create_missing=create_missing,
    )
    return reader, store


def test_the_local_backend_makes_the_key_on_first_use_and_keeps_it(tmp_path: Path) -> None:
    reader, store = key_reader(tmp_path, create_missing=True)

    key = reader()

    assert len(key) == 32
    assert base64.b64decode(store.read("state-encryption-key")) == key
    again, _ = key_reader(tmp_path, create_missing=True)  # another process, same folder
    assert again() == key


def test_a_missing_key_in_the_cloud_is_a_config_error_naming_the_secret(tmp_path: Path) -> None:
    reader, store = key_reader(tmp_path, create_missing=False)

    with pytest.raises(ConfigError, match="state-encryption-key"):
        reader()
    with pytest.raises(SecretNotFound):  # nothing was made
        store.read("state-encryption-key")


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"16 bytes only!!!").decode()])
def test_a_key_that_is_not_32_bytes_is_a_config_error(tmp_path: Path, value: str) -> None:
    reader, store = key_reader(tmp_path, create_missing=True)
    store.add_version("state-encryption-key", value)

    with pytest.raises(ConfigError, match="state-encryption-key") as caught:
        reader()
    assert value not in str(caught.value)


def test_the_key_as_gcloud_adds_it_trailing_newline_included(tmp_path: Path) -> None:
    reader, store = key_reader(tmp_path, create_missing=False)
    key = os.urandom(32)
    store.add_version("state-encryption-key", base64.b64encode(key).decode() + "\n")

    assert reader() == key
