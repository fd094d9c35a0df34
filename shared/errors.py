"""The bridge's exception hierarchy, translated to HTTP statuses at the edge (`shared.web`).

    BridgeError                 500, the base; its message is safe to show
    ├── ConfigError             503, a bad or missing configuration value or secret (names it)
    │   └── NotConfigured       503, a required setting or secret is missing (names it)
    ├── BadRequest              400, malformed input (names the field)
    ├── Unauthorized            401, missing or wrong bearer token / signature
    ├── Forbidden               403, e.g. a service for an excluded device
    ├── NotFound                404
    ├── Conflict                409
    ├── PayloadTooLarge         413
    ├── RetryLater              429, with `retry_after` seconds (a Retry-After header)
    │   └── Unavailable         503, a transient failure the caller retries (Retry-After too)

Messages never carry secret values: they are shown to callers and written to logs.
"""

from __future__ import annotations


class BridgeError(Exception):
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BridgeError):
    """The configuration, not the request, is at fault: 503 naming what to set (the operator's
    to fix), never a 500 that reads like a bug in the bridge."""

    status = 503


class BadRequest(BridgeError):
    status = 400


class Unauthorized(BridgeError):
    status = 401


class Forbidden(BridgeError):
    status = 403


class NotFound(BridgeError):
    status = 404


class Conflict(BridgeError):
    status = 409


class PayloadTooLarge(BridgeError):
    status = 413


class RetryLater(BridgeError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(RetryLater):
    """A transient failure (Firestore, the pipeline): 503 with Retry-After, nothing recorded."""

    status = 503


class NotConfigured(ConfigError):
    """A setting or secret the request needs is missing: 503 until an operator sets it (the
    message names what to set), not a 500 that looks like a bug, nor a retry that cannot help."""

    status = 503
