"""Owner key renewal over Google's Spot API (PROTOCOLS.md §5, "Owner key renewal", "Spot token").

The owner key wraps every tracker's identity key. An end-to-end-encryption reset on the
user's phone moves it on (its version, `encryptedUserSecrets.ownerKeyVersion`, grows), and
the one in the uploaded secrets.json stops decrypting. `GoogleSource` then asks
`OwnerKeyRenewal.renew` for the current one, which:

1. gets a Spot token (`TokenProvider.spot_token`: the OAuth call of the Find My Device token
   with the Spot scope and app);
2. calls `GetEidInfoForE2eeDevices` (`SpotClient`) for the latest owner key, encrypted;
3. decrypts it with the secrets.json `shared_key` (AES-256-GCM, `crypto.decrypt_owner_key`);
4. stores it with its version in the account's credentials (a new version of the credentials
   secret, `GoogleAccount.store_owner_key`), where every later run and every instance reads it.

Without a `shared_key`, or with one that does not decrypt Google's answer, the key cannot be
renewed: `OwnerKeyNotRenewable` (503) says what to upload. A failure of the call itself
(network, a gRPC status, an answer without a key) is `SpotError` (502), that run's failure.

The call is gRPC over HTTP/2: `grpcio`'s generic unary call (no generated stub; the messages
are our own `proto/spot.proto`). grpcio comes with the Google Cloud clients every function
deploys with, so it adds no dependency; an `https` URL gets TLS, an `http` one (the tests'
local fake) plain HTTP/2 with prior knowledge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.logs import register_secret
from shared.sources.google.errors import DecryptionError, OwnerKeyNotRenewable, SpotError

if TYPE_CHECKING:
    import grpc

    from shared.sources.google.account import GoogleAccount
    from shared.sources.google.credentials import GoogleSecrets

logger = logging.getLogger(__name__)

GET_EID_INFO = "/google.internal.spot.v1.SpotService/GetEidInfoForE2eeDevices"
LATEST_OWNER_KEY = -1
DEFAULT_SPOT_TIMEOUT = 30.0  # seconds for the whole call
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
                raise SpotError(
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
    token, its secret holds the result.
    """

    def __init__(self, *, account: GoogleAccount, spot: SpotClient) -> None:
        self._account = account
        self._spot = spot

    def renew(self, credentials: GoogleSecrets) -> GoogleSecrets:
        """The credentials with Google's current owner key and its version, stored."""
        # Cold start: the crypto stack (pycryptodome) loads when a Google update is decrypted,
        # not when the stack is built (the hourly refresh never needs it).
        from shared.sources.google import crypto

        if credentials.shared_key is None:
            raise OwnerKeyNotRenewable(NO_SHARED_KEY)
        token = self._account.tokens.spot_token(credentials)
        answer = self._spot.encrypted_owner_key(token)
        try:
            owner_key = crypto.decrypt_owner_key(
                answer.encrypted_owner_key, bytes.fromhex(credentials.shared_key)
            )
        except DecryptionError as exc:
            raise OwnerKeyNotRenewable(
                f"{exc.message}: the stored shared_key is not this account's; make new "
                "credentials with GoogleFindMyTools and upload them (PUT /auth/secrets)"
            ) from None
        register_secret(owner_key.hex())
        renewed = self._account.store_owner_key(owner_key.hex(), answer.version)
        logger.warning(
            "the owner key changed (an end-to-end-encryption reset); the current one was "
            "fetched from the Spot API and stored",
            extra={"owner_key_version": answer.version},
        )
        return renewed


__all__ = ["EncryptedOwnerKey", "OwnerKeyRenewal", "SpotClient"]
