"""Exceptions of the Google Find My Device source, part of the bridge's hierarchy (`shared.errors`).

    BridgeError (shared.errors)
    └── GoogleSourceError       500, the base of everything the Google source raises
        ├── MalformedUpdate     502, a DeviceUpdate that does not parse or lacks what decoding needs
        └── DecryptionError     500, a key or report that does not decrypt: wrong or stale owner
                                key, key blob of an unknown form, corrupt report

A DecryptionError names the device (canonic id when known) and never carries key material:
its message is shown to callers and written to logs.
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
