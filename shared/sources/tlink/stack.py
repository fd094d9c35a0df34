"""The TLINK parts one function instance holds, as the composition root builds them.

`TlinkStack` takes every part made (keyword-only) and holds them for the callers: the sync
layer's pull (`source`), the push receiver (`webhook`) and the API's history views (`views`).
"""

from __future__ import annotations

from shared.sources.tlink.source import TlinkSource
from shared.sources.tlink.views import TlinkViews
from shared.sources.tlink.webhook import TlinkWebhook


class TlinkStack:
    def __init__(self, *, source: TlinkSource, webhook: TlinkWebhook, views: TlinkViews) -> None:
        self.source = source
        self.webhook = webhook
        self.views = views


__all__ = ["TlinkStack"]
