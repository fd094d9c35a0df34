"""Exceptions of the Google Find My Device source, part of the bridge's hierarchy (`shared.errors`).

    BridgeError (shared.errors)
    └── GoogleSourceError       500, the base of everything the Google source raises
        ├── MalformedUpdate     502, a DeviceUpdate that does not parse or lacks what decoding needs
        ├── DecryptionError     500, a key or report that does not decrypt: wrong or stale owner
        │   │                   key, key blob of an unknown form, corrupt report
        │   └── OwnerKeyRefused 500, the owner key does not decrypt a tracker's identity key
        │                       (stale: the bridge renews it over the Spot API)
        ├── OwnerKeyNotRenewable 503, the owner key changed and cannot be renewed (no shared_key
        │                       stored, or it does not decrypt Google's owner key): upload anew
        ├── SpotError           502, the Spot API refused or failed the owner key request
        │   └── SpotUnauthorized 502, it refused the Spot token (asked again once, fresh)
        ├── CredentialsReplaced 409, new credentials were stored while the owner key was
        │                       renewed: the renewed key is not written over them, the next
        │                       run decrypts with them
        ├── CredentialsMissing  503, no secrets.json stored, or its aas_token was removed after
        │                       Google refused it (upload new credentials)
        ├── AuthExpired         503, Google answered BadAuthentication twice: the AAS token is
        │                       dead (the expiry handling has run)
        ├── SignInRequired      503, Google answered NeedsBrowser: the user must sign in in a
        │                       browser; the token is kept and asked again after a backoff
        ├── AuthFailed          502, any other failure to get an access token (network, an
        │                       unexpected answer): worth retrying later
        ├── NovaError           502, the Nova API refused a request or stayed unavailable
        └── FcmError            504, no MCS session or no answer to a locate within the timeout
            ├── TrackerSilent   504, the tracker gave no answer (its backoff starts; a
            │                   scheduled run is not failed for it)
            ├── CheckinFailed   502, the GCM check-in before the MCS login was refused or failed
            └── McsLoginFailed  502, MCS refused the login or could not be reached

"Permanent" (credentials missing or expired: a human must upload new ones) is kept apart from
"retry later" (AuthFailed, NovaError, FcmError). A lease held by another run is
`shared.errors.RetryLater` (429). Messages name the device where one is concerned and never
carry key material or tokens: they are shown to callers and written to logs.
"""

from __future__ import annotations

from shared.errors import BridgeError


class GoogleSourceError(BridgeError):
    status = 500


class MalformedUpdate(GoogleSourceError):
    status = 502


class DecryptionError(GoogleSourceError):
    status = 500

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(message if device is None else f"device {device}: {message}")
        self.device = device


class OwnerKeyRefused(DecryptionError):
    status = 500


class OwnerKeyNotRenewable(GoogleSourceError):
    status = 503


class SpotError(GoogleSourceError):
    status = 502


class SpotUnauthorized(SpotError):
    status = 502


class CredentialsReplaced(GoogleSourceError):
    status = 409


class CredentialsMissing(GoogleSourceError):
    status = 503


class AuthExpired(GoogleSourceError):
    status = 503


class SignInRequired(GoogleSourceError):
    status = 503


class AuthFailed(GoogleSourceError):
    status = 502


class NovaError(GoogleSourceError):
    status = 502


class FcmError(GoogleSourceError):
    status = 504


class TrackerSilent(FcmError):
    status = 504


class CheckinFailed(FcmError):
    status = 502


class McsLoginFailed(FcmError):
    status = 502
