"""Owner key renewal over Google's Spot API (PROTOCOLS.md §5, "Owner key renewal", "Spot token").

The owner key wraps every tracker's identity key. An end-to-end-encryption reset on the
user's phone moves it on (its version, `encryptedUserSecrets.ownerKeyVersion`, grows), and
the one in the uploaded secrets.json stops decrypting. `GoogleSource` then asks
`OwnerKeyRenewal.renew` for the current one, which:

1. gets a Spot token (`GoogleAccount.spot_token`: the OAuth call of the Find My Device token
   with the Spot scope and app, kept in memory, Google's refusals handled as for the Find My
   Device token: twice `BadAuthentication` runs the expiry handling, `NeedsBrowser` the
   sign-in alert and its backoff);
2. calls `GetEidInfoForE2eeDevices` (`SpotClient`) for the latest owner key, encrypted (once
   more with a fresh token when the Spot API refuses the kept one);
3. decrypts it with the secrets.json `shared_key` (AES-256-GCM, `crypto.decrypt_owner_key`);
4. stores it with its version in the account's credentials (a new version of the credentials
   secret, `GoogleAccount.store_owner_key`), where every later run and every instance reads it,
   unless the credentials changed since the renewal read them: then the user's upload stays,
   and the run fails with `CredentialsReplaced` (409; the next run decrypts with the upload).

Without a `shared_key`, or with one that does not decrypt Google's answer, the key cannot be
renewed: `OwnerKeyNotRenewable` (503) says what to upload. A `shared_key` that did not decrypt
is remembered with the owner key version Google served (`state/google_credentials`, the
account's own): the Spot API is not asked again for that version (an update naming it, or none)
before `RENEWAL_RETRY`, unless new credentials are uploaded (the upload clears it) or an update
names a newer version. A failure of the call itself (network, a gRPC status, an answer without
a key) is `SpotError` (502), that run's failure.

The call is gRPC over HTTP/2: `grpcio`'s generic unary call (no generated stub; the messages
are our own `proto/spot.proto`). grpcio comes with the Google Cloud clients every function
deploys with, so it adds no dependency; an `https` URL gets TLS, an `http` one (the tests'
local fake) plain HTTP/2 with prior knowledge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.logs import register_secret
from shared.models import utc_now
from shared.sources.google.errors import (
    CredentialsReplaced,
    DecryptionError,
    OwnerKeyNotRenewable,
    SpotError,
    SpotUnauthorized,
)
from shared.store.google import OwnerKeyRenewalFailure

if TYPE_CHECKING:
    import grpc

    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.credentials import GoogleSecrets
    from shared.store.google import CredentialsStateDocument

logger = logging.getLogger(__name__)

GET_EID_INFO = "/google.internal.spot.v1.SpotService/GetEidInfoForE2eeDevices"
LATEST_OWNER_KEY = -1
DEFAULT_SPOT_TIMEOUT = 30.0  # seconds for the whole call
# A shared_key that did not decrypt Google's owner key will not decrypt it on the next run
# either: only new credentials (or a newer owner key version) change that. Asked again now
# and then all the same, in case Google's answer was the odd one.
RENEWAL_RETRY = timedelta(hours=6)
UPLOAD_ANEW = "make new credentials with GoogleFindMyTools and upload them (PUT /auth/secrets)"
NO_SHARED_KEY = (
    "the stored credentials have no shared_key to decrypt the current owner key with: upload "
    "secrets.json with its shared_key (PUT /auth/secrets)"
)


@dataclass(frozen=True)
class EncryptedOwnerKey:
    """The Spot API's answer: the owner key under the shared key, and its version."""

    encrypted_owner_key: bytes
    version: int
    security_domain: str


class SpotClient:
    """`GetEidInfoForE2eeDevices` at `url` (https://spot-pa.googleapis.com by default)."""

    def __init__(self, *, url: str, timeout: float = DEFAULT_SPOT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._secure = parts.scheme == "https"
        self._target = f"{parts.hostname}:{parts.port or (443 if self._secure else 80)}"
        self._timeout = timeout

    def _channel(self) -> grpc.Channel:
        # Cold start: grpc is loaded with the Firestore client anyway; the Spot call itself
        # happens only when an owner key is renewed, so its module is imported here.
        import grpc

        if self._secure:
            return grpc.secure_channel(self._target, grpc.ssl_channel_credentials())
        return grpc.insecure_channel(self._target)

    def encrypted_owner_key(
        self, spot_token: str, *, version: int = LATEST_OWNER_KEY
    ) -> EncryptedOwnerKey:
        """The owner key of `version` (the latest by default), as Google holds it."""
        import grpc  # cold start: as in `_channel`

        from shared.sources.google.proto import spot_pb2

        request = spot_pb2.GetEidInfoForE2eeDevicesRequest(
            owner_key_version=version, has_owner_key_version=True
        )
        with self._channel() as channel:
            call = channel.unary_unary(
                GET_EID_INFO,
                request_serializer=spot_pb2.GetEidInfoForE2eeDevicesRequest.SerializeToString,
                response_deserializer=spot_pb2.GetEidInfoForE2eeDevicesResponse.FromString,
            )
            try:
                answer = call(
                    request,
                    timeout=self._timeout,
                    metadata=(("authorization", f"Bearer {spot_token}"),),
                )
            except grpc.RpcError as exc:
                code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                failure = SpotUnauthorized if code == "UNAUTHENTICATED" else SpotError
                raise failure(
                    f"the Spot API failed the owner key request: {code} ({details})"
                ) from None
        found = answer.encrypted_owner_key_and_metadata
        if not found.encrypted_owner_key:
            raise SpotError("the Spot API answered without an encrypted owner key")
        return EncryptedOwnerKey(
            encrypted_owner_key=found.encrypted_owner_key,
            version=found.owner_key_version,
            security_domain=found.security_domain,
        )


class OwnerKeyRenewal:
    """Fetches, decrypts and stores the account's current owner key (module docstring).

    `account` is the one whose credentials are renewed: its token provider asks for the Spot
    token, its secret holds the result; `failures` is its `state/google_credentials`.
    """

    def __init__(
        self,
        *,
        account: GoogleAccount,
        spot: SpotClient,
        failures: CredentialsStateDocument,
        retry_after: timedelta = RENEWAL_RETRY,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._account = account
        self._spot = spot
        self._failures = failures
        self._retry_after = retry_after
        self._clock = clock

    def renew(self, credentials: GoogleSecrets, *, named_version: int = 0) -> GoogleSecrets:
        """The credentials with Google's current owner key and its version, stored.

        `named_version` is the owner key version the update being decrypted names (0: none).
        """
        # Cold start: the crypto stack (pycryptodome) loads when a Google update is decrypted,
        # not when the stack is built (the hourly refresh never needs it).
        from shared.sources.google import crypto

        if credentials.shared_key is None:
            raise OwnerKeyNotRenewable(NO_SHARED_KEY)
        self._not_failed_lately(named_version)
        answer = self._encrypted_owner_key(credentials)
        try:
            owner_key = crypto.decrypt_owner_key(
                answer.encrypted_owner_key, bytes.fromhex(credentials.shared_key)
            )
        except DecryptionError as exc:
            self._failures.record_owner_key_failure(
                OwnerKeyRenewalFailure(version=answer.version, at=self._clock())
            )
            raise OwnerKeyNotRenewable(
                f"{exc.message}: the stored shared_key is not this account's; {UPLOAD_ANEW}"
            ) from None
        register_secret(owner_key.hex())
        renewed = self._account.store_owner_key(
            owner_key.hex(), answer.version, renewed_from=credentials
        )
        if renewed is None:
            raise CredentialsReplaced(
                "new Google credentials were stored while the owner key was renewed: they are "
                "kept as uploaded, and the next run decrypts with them"
            )
        logger.warning(
            "the owner key changed (an end-to-end-encryption reset); the current one was "
            "fetched from the Spot API and stored",
            extra={"owner_key_version": answer.version},
        )
        return renewed

    def _not_failed_lately(self, named_version: int) -> None:
        """`OwnerKeyNotRenewable` while a failed renewal's backoff runs for the owner key
        version the update names (module docstring): Google would serve the same key."""
        failed = self._failures.get().owner_key_renewal_failed
        if failed is None or named_version > failed.version:
            return
        retry_at = failed.at + self._retry_after
        if self._clock() < retry_at:
            raise OwnerKeyNotRenewable(
                f"the stored shared_key did not decrypt Google's owner key (version "
                f"{failed.version}) at {failed.at.isoformat()}; asked again after "
                f"{retry_at.isoformat()} or once new credentials are uploaded: {UPLOAD_ANEW}"
            )

    def _encrypted_owner_key(self, credentials: GoogleSecrets) -> EncryptedOwnerKey:
        """The Spot API's answer; once more with a fresh token when it refuses the kept one."""
        try:
            return self._spot.encrypted_owner_key(self._account.spot_token(credentials))
        except SpotUnauthorized:
            logger.info("the Spot API refused the kept Spot token; getting a new one")
            self._account.tokens.forget_spot_token()
            return self._spot.encrypted_owner_key(self._account.spot_token(credentials))


__all__ = ["EncryptedOwnerKey", "OwnerKeyRenewal", "SpotClient"]
