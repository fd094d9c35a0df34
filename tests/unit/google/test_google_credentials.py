"""The secrets.json model: what an upload must hold, what is kept, what an error may say."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.secrets import LocalSecretStore
from shared.sources.google.credentials import (
    GoogleSecrets,
    GoogleSecretsUpload,
    fcm_installation_expiry,
    read_secrets,
    write_secrets,
)
from shared.sources.google.errors import CredentialsMissing
from shared.web import describe_validation_error
from tests.fakes.nova import FcmIdentity

OWNER_KEY = "11" * 32
SHARED_KEY = "22" * 32


def secrets_json(**overrides: Any) -> dict[str, Any]:
    document = {
        "aas_token": "aas_et/AKppINb-secret-token-value",
        "username": "owner@example.com",
        "fcm_credentials": FcmIdentity().fcm_credentials(),
        "owner_key": OWNER_KEY,
        "shared_key": SHARED_KEY,
    }
    document.update(overrides)
    return document


def without(document: dict[str, Any], *path: str) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    node = copied
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copied


def error_for(document: object) -> str:
    with pytest.raises(ValidationError) as caught:
        GoogleSecretsUpload.model_validate(document)
    return describe_validation_error(caught.value)


@pytest.mark.parametrize(
    "path",
    [
        ("aas_token",),
        ("username",),
        ("owner_key",),
        ("fcm_credentials", "keys", "private"),
        ("fcm_credentials", "keys", "public"),
        ("fcm_credentials", "keys", "secret"),
        ("fcm_credentials", "gcm", "android_id"),
        ("fcm_credentials", "gcm", "security_token"),
        ("fcm_credentials", "fcm", "registration", "token"),
        ("fcm_credentials", "fcm", "installation", "token"),
        ("fcm_credentials", "fcm", "installation", "expires_in"),
    ],
)
def test_a_missing_key_is_named_in_the_error(path: tuple[str, ...]) -> None:
    message = error_for(without(secrets_json(), *path))
    assert message.startswith(".".join(path) + ": Field required")


def test_credentials_without_a_shared_key_are_taken_it_only_renews_the_owner_key() -> None:
    # GoogleFindMyTools writes it only once it fetched the owner key itself; the bridge needs
    # it when the owner key changes (PROTOCOLS.md §5, "Owner key renewal"), not before.
    uploaded = GoogleSecretsUpload.model_validate(without(secrets_json(), "shared_key"))
    assert uploaded.shared_key is None
    assert uploaded.owner_key_version is None
    assert "shared_key" not in uploaded.to_json()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"owner_key": "zz" * 32}, "owner_key"),
        ({"owner_key": "ab" * 16}, "owner_key"),
        ({"shared_key": 1234}, "shared_key"),
        ({"aas_token": "   "}, "aas_token"),
        ({"username": ""}, "username"),
    ],
)
def test_a_malformed_key_is_named_and_its_value_is_not_echoed(
    override: dict[str, Any], field: str
) -> None:
    message = error_for(secrets_json(**override))
    assert message.startswith(field + ": ")
    value = str(next(iter(override.values())))
    if value.strip():
        assert value not in message


def test_a_non_numeric_android_id_is_refused_and_a_numeric_one_accepted_as_number() -> None:
    document = secrets_json()
    document["fcm_credentials"]["gcm"]["android_id"] = "not-a-number"
    assert error_for(document).startswith("fcm_credentials.gcm.android_id: ")

    document["fcm_credentials"]["gcm"]["android_id"] = 4123456789012345678
    parsed = GoogleSecretsUpload.model_validate(document)
    assert parsed.android_id == "4123456789012345678"


def test_the_stored_form_keeps_every_uploaded_key_as_uploaded(tmp_path: Path) -> None:
    document = secrets_json(extra_from_a_newer_tool={"kept": True})
    store = LocalSecretStore(tmp_path)

    write_secrets(store, "google-secrets", GoogleSecretsUpload.model_validate(document))

    stored = json.loads(store.read("google-secrets"))
    assert stored == document
    assert (
        read_secrets(store, "google-secrets").fcm_token
        == document["fcm_credentials"]["fcm"]["registration"]["token"]
    )


def test_a_version_without_aas_token_is_read_and_written_without_it(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path)
    credentials = GoogleSecrets.model_validate(secrets_json())

    write_secrets(store, "google", credentials.model_copy(update={"aas_token": None}))

    assert "aas_token" not in json.loads(store.read("google"))
    assert read_secrets(store, "google").aas_token is None
    # Older versions are disabled: only the stripped one can be read.
    assert [p.name for p in (tmp_path / "google").iterdir()] == ["1"]


def test_reading_without_a_stored_secret_says_how_to_upload(tmp_path: Path) -> None:
    with pytest.raises(CredentialsMissing, match="PUT /auth/secrets"):
        read_secrets(LocalSecretStore(tmp_path), "google-secrets")


def test_library_credentials_always_carry_an_app_id() -> None:
    document = secrets_json()
    del document["fcm_credentials"]["gcm"]["app_id"]

    credentials = GoogleSecrets.model_validate(document).library_credentials()

    assert credentials["gcm"]["app_id"] == ""
    assert credentials["keys"] == document["fcm_credentials"]["keys"]


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_fcm_expiry_comes_from_the_installation_jwt_when_there_is_one() -> None:
    expiry = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    document = secrets_json()
    document["fcm_credentials"]["fcm"]["installation"]["token"] = _jwt(
        {"appId": "x", "exp": int(expiry.timestamp())}
    )
    credentials = GoogleSecrets.model_validate(document)

    assert fcm_installation_expiry(credentials, datetime(2026, 11, 1, tzinfo=UTC)) == expiry


def test_fcm_expiry_otherwise_counts_expires_in_from_the_upload() -> None:
    credentials = GoogleSecrets.model_validate(secrets_json())
    uploaded = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    assert fcm_installation_expiry(credentials, uploaded) == uploaded + timedelta(days=7)
    assert fcm_installation_expiry(credentials, None) is None
