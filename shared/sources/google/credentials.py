"""The Google credentials: GoogleFindMyTools' `secrets.json`, validated, stored and read back.

The object is made once, interactively, on a machine with Chrome (PROTOCOLS.md §5) and uploaded
with `PUT /auth/secrets`; it lives in the secrets adapter as one secret (`GOOGLE_SECRET_NAME`),
a new version per change, older versions disabled. Unknown keys are kept as uploaded: the
`firebase-messaging` library may need them, and a later version of the tool may add some.

When Google refuses the AAS token, the expiry handling stores a version without `aas_token`:
`GoogleSecrets.aas_token` is therefore optional in the stored form and required in an upload
(`GoogleSecretsUpload`). Reading credentials without one raises `CredentialsMissing`.

The FCM installation token's expiry is not in the file in an absolute form (`created_at` is a
monotonic clock reading of the machine that made it): `fcm_installation_expiry` reads it from
the token itself (a JWT with an `exp` claim), or from the upload time plus `expires_in`.

Validation messages name the key (`fcm_credentials.keys.private: Field required`) and never
echo a value.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from shared.models import Model, utc_now
from shared.secrets import SecretNotFound, SecretStore
from shared.sources.google.errors import CredentialsMissing

KEY_BYTES = 32

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _digits(value: Any) -> Any:
    # firebase-messaging writes android_id and security_token as decimal strings (protobuf's
    # JSON form of an int64); a hand-edited file may hold them as numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Digits = Annotated[str, BeforeValidator(_digits), StringConstraints(pattern=r"^[0-9]+$")]


def _hex_key(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string of hexadecimal digits")
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise ValueError("must be hexadecimal") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} bytes ({2 * KEY_BYTES} hexadecimal digits)")
    return value.strip().lower()


HexKey = Annotated[str, BeforeValidator(_hex_key)]


class _Open(Model):
    """Keeps the keys it does not declare, so a stored file is the uploaded file."""

    model_config = ConfigDict(extra="allow")


class FcmKeys(_Open):
    """The Web-Push keys FCM payloads are encrypted for (base64url)."""

    private: NonEmpty
    public: NonEmpty
    secret: NonEmpty


class GcmCredentials(_Open):
    """The GCM check-in: the MCS login, and the `android_id` of the OAuth exchange."""

    android_id: Digits
    security_token: Digits
    # firebase-messaging compares every push's subtype with it; absent in hand-made files.
    app_id: str = ""


class FcmRegistration(_Open):
    token: NonEmpty


class FcmInstallation(_Open):
    token: NonEmpty
    expires_in: int = Field(ge=0, description="seconds the installation token lives")


class FcmSection(_Open):
    registration: FcmRegistration
    installation: FcmInstallation


class FcmCredentials(_Open):
    keys: FcmKeys
    gcm: GcmCredentials
    fcm: FcmSection


class GoogleSecrets(_Open):
    """The stored `secrets.json`; `aas_token` is gone once Google refused it."""

    aas_token: NonEmpty | None = None
    username: NonEmpty
    fcm_credentials: FcmCredentials
    owner_key: HexKey
    # Decrypts the current owner key from the Spot API when the stored one goes stale
    # (`spot`); without it the bridge works until the owner key changes.
    shared_key: HexKey | None = None
    # The owner key's version once the bridge renewed it (secrets.json does not say it).
    owner_key_version: int | None = None

    @property
    def android_id(self) -> str:
        return self.fcm_credentials.gcm.android_id

    @property
    def security_token(self) -> str:
        return self.fcm_credentials.gcm.security_token

    @property
    def fcm_token(self) -> str:
        return self.fcm_credentials.fcm.registration.token

    def library_credentials(self) -> dict[str, Any]:
        """`fcm_credentials` as the firebase-messaging client takes them (a plain dict)."""
        return self.fcm_credentials.model_dump(mode="json")

    def to_json(self) -> str:
        data = self.model_dump(mode="json", exclude_unset=True)
        if self.aas_token is None:
            data.pop("aas_token", None)
        return json.dumps(data, separators=(",", ":"))


class GoogleSecretsUpload(GoogleSecrets):
    """The body of `PUT /auth/secrets`: the whole file, `aas_token` included."""

    aas_token: NonEmpty


class AasTokenUpload(Model):
    """The body of `PUT /auth/aas-token`."""

    model_config = ConfigDict(extra="forbid")

    aas_token: NonEmpty


def read_secrets(store: SecretStore, name: str) -> GoogleSecrets:
    """The stored credentials; `CredentialsMissing` when none are stored or they are broken."""
    try:
        text = store.read(name)
    except SecretNotFound:
        raise CredentialsMissing(
            "no Google credentials stored: upload secrets.json with PUT /auth/secrets"
        ) from None
    try:
        return GoogleSecrets.model_validate_json(text)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in error["loc"]) for error in exc.errors())
        raise CredentialsMissing(
            f"the stored Google credentials are malformed ({fields}): upload secrets.json "
            "again with PUT /auth/secrets"
        ) from None


def require_aas_token(credentials: GoogleSecrets) -> str:
    if credentials.aas_token is None:
        raise CredentialsMissing(
            "Google refused the stored AAS token and it was removed: upload a new one with "
            "PUT /auth/aas-token (or the whole secrets.json with PUT /auth/secrets)"
        )
    return credentials.aas_token


def write_secrets(store: SecretStore, name: str, credentials: GoogleSecrets) -> str:
    """Store `credentials` as the new version and disable the older ones; returns the version."""
    version = store.add_version(name, credentials.to_json())
    store.disable_versions(name, keep=version)
    return version


def _jwt_expiry(token: str) -> datetime | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        expiry = claims["exp"]
        return datetime.fromtimestamp(int(expiry), utc_now().tzinfo)
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError):
        return None


def fcm_installation_expiry(
    credentials: GoogleSecrets, uploaded_at: datetime | None
) -> datetime | None:
    """When the FCM installation token expires: its JWT `exp`, else upload time + `expires_in`.

    None when neither is known (credentials stored by hand, with a token that is no JWT).
    """
    installation = credentials.fcm_credentials.fcm.installation
    expiry = _jwt_expiry(installation.token)
    if expiry is None and uploaded_at is not None:
        expiry = uploaded_at + timedelta(seconds=installation.expires_in)
    return expiry
