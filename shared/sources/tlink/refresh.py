"""TLINK's part of the hourly refresh (`shared.device_refresh`): the account's devices.

`discover` pulls every device of the credentials' user (`TlinkSource.discover`) and records
them (`devices/tlink-<id>`); a device is fed by webhooks once it pushed (`last_push`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.sources.tlink.ingest import tlink_device_id

if TYPE_CHECKING:
    from shared.models import Device
    from shared.sources.tlink.source import TlinkSource


class TlinkDiscovery:
    def __init__(self, *, source: TlinkSource) -> None:
        self._source = source

    def discover(self) -> None:
        self._source.discover()

    def webhook_fed(self, device: Device) -> bool:
        stored = self._source.repository.device(tlink_device_id(device))
        return stored is not None and stored.last_push is not None


__all__ = ["TlinkDiscovery"]
