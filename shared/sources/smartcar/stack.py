"""The Smartcar parts one function instance holds, as the composition root builds them.

`SmartcarStack` holds the parts for the callers: the sync layer's pull (`source`), the webhook
receiver (`webhook`), Connect (`connect`), the API's vehicle views (`views`), the hourly token
renewal (`renewal`), the token secret (`tokens`) and a client with the application's
credentials (`client()`).

The first four are given as factories and built, their modules imported, on first use: the
hourly refresh (`renewal`) of an instance with nobody connected loads neither the webhook's
payload models nor the Firestore documents (`tests/integration/test_cold_start.py`; the
payload models alone are 13 ms of `python -X importtime`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.sources.smartcar.client import SmartcarClient
    from shared.sources.smartcar.connect import SmartcarConnect
    from shared.sources.smartcar.source import SmartcarSource
    from shared.sources.smartcar.tokens import TokenRenewal, TokenStore
    from shared.sources.smartcar.views import SmartcarViews
    from shared.sources.smartcar.webhook import SmartcarWebhook


class SmartcarStack:
    def __init__(
        self,
        *,
        source: Callable[[], SmartcarSource],
        webhook: Callable[[], SmartcarWebhook],
        connect: Callable[[], SmartcarConnect],
        views: Callable[[], SmartcarViews],
        renewal: TokenRenewal,
        tokens: TokenStore,
        client: Callable[[], SmartcarClient],
    ) -> None:
        self._source = source
        self._webhook = webhook
        self._connect = connect
        self._views = views
        self.renewal = renewal
        self.tokens = tokens
        self.client = client

    @functools.cached_property
    def source(self) -> SmartcarSource:
        return self._source()

    @functools.cached_property
    def webhook(self) -> SmartcarWebhook:
        return self._webhook()

    @functools.cached_property
    def connect(self) -> SmartcarConnect:
        return self._connect()

    @functools.cached_property
    def views(self) -> SmartcarViews:
        return self._views()


__all__ = ["SmartcarStack"]
