"""Exceptions of the Smartcar source, part of the bridge's hierarchy (`shared.errors`).

    BridgeError (shared.errors)
    ├── SmartcarError               502, the base: Smartcar answered something it should not
    │   ├── SmartcarAuthError       502, Smartcar refused our client or the vehicle's tokens
    │   │                                (revoked, expired refresh token): connect it again
    │   ├── SmartcarConnectionError 503, Smartcar was not reached, or answered 5xx
    │   └── SmartcarResponseError   502, any other refusal, or a body that is not Smartcar's
    ├── NotConnected                409, no tokens for the vehicle: connect it first
    └── RetryLater (shared.errors)
        └── SmartcarRateLimited     429, Smartcar's rate limit, with its Retry-After

Messages name the vehicle and Smartcar's error type/code, never a token.
"""

from __future__ import annotations

from shared.errors import BridgeError, RetryLater


class SmartcarError(BridgeError):
    status = 502


class SmartcarAuthError(SmartcarError):
    status = 502


class SmartcarConnectionError(SmartcarError):
    status = 503


class SmartcarResponseError(SmartcarError):
    status = 502


class NotConnected(BridgeError):
    status = 409


class SmartcarRateLimited(RetryLater):
    pass
