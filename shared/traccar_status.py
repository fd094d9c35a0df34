"""A refused Traccar REST credential is said once per incident (issue 15, PROTOCOLS.md §2).

A token from Traccar's UI expires after 7 days; every run after that meets 401. The first run
to meet it records `traccar_api: unauthorized` in `state/auth` (which `/health` shows to a
caller with the token), logs an error and sends one notification; the runs after it find the
mark and stay quiet. The first REST call that works again clears it. Positions wait in the
outbox meanwhile (the pipeline's own rule): nothing is lost, nothing loops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.store.traccar import TraccarApiMark

logger = logging.getLogger(__name__)


class TraccarApiWatch:
    """Told of each REST call's outcome by the pipeline (`Pipeline(api_status=...)`)."""

    def __init__(self, *, mark: TraccarApiMark, notifier: Callable[[], Notifier]) -> None:
        self._mark = mark
        # A callable: the notifier's module loads when a mail is due.
        self._notifier = notifier

    def unauthorized(self, reason: str) -> None:
        if not self._mark.mark("unauthorized", reason):
            return  # reported already (this incident)
        logger.error("Traccar's REST API refused the credentials", extra={"reason": reason})
        self._notifier().traccar_api_unauthorized(reason)

    def working(self) -> None:
        if self._mark.mark("ok"):
            logger.info("Traccar's REST API takes the credentials again")
