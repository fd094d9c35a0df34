"""A refused Traccar REST credential is said once per incident (issue 15, PROTOCOLS.md §2).

A token from Traccar's UI expires after 7 days; every run after that meets 401. The first run
to meet it records `traccar_api: unauthorized` in `state/auth` (which `/health` shows to a
caller with the token), logs an error and sends one notification; the runs after it find the
mark and stay quiet. The first REST call that works again clears it. Positions wait in the
outbox meanwhile (the pipeline's own rule): nothing is lost, nothing loops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from google.api_core.exceptions import GoogleAPICallError, RetryError

from shared.models import utc_now
from shared.store.google import GoogleAlert

if TYPE_CHECKING:
    from shared.notify import Notifier
    from shared.store.alerts import OperationsDocument
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


TRACCAR_DOWN = "traccar_down"


class OsmAndWatch:
    """Traccar's OsmAnd endpoint refusing or unreachable (issue 20, `ALERT_TRACCAR_DOWN_MINUTES`).

    Told of each push's outcome by the pipeline. The first failure an instance meets records
    when the incident began (`state/auth` `alert_watch.traccar_down`, kept if another instance
    recorded it first); a failure past `down_after` since then opens the alert (once: the
    alert document's conditional write) and mails it. The instance that sees Traccar accept
    again ends it and mails that. An instance that never saw a failure costs nothing: a
    working push reads and writes no Firestore. The hourly evaluation (`shared.alerts`) ends
    what such instances cannot see (positions accepted again by another instance)."""

    def __init__(
        self,
        *,
        document: OperationsDocument,
        notifier: Callable[[], Notifier],
        down_after: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._document = document
        self._notifier = notifier
        self._down_after = down_after
        self._clock = clock
        self._lock = threading.Lock()
        self._since: datetime | None = None  # this instance saw failures since (None: none)
        self._alerted = False
        # What the current run's pushes said, until `settle`: a refusal's reason, or worked.
        self._pending: str | None = None
        self._worked = False

    def failing(self, reason: str) -> None:
        """Noted only: `settle` records it once the run let go of its device (a run holding
        the lease longer would make concurrent webhook copies queue instead of repeat)."""
        with self._lock:
            self._pending = reason

    def working(self) -> None:
        with self._lock:
            self._pending = None
            self._worked = True

    def settle(self) -> None:
        """What the run's pushes said, recorded (after its final commit). Best effort: the
        positions' own outcome (waiting in the outbox) must stand."""
        with self._lock:
            reason, worked = self._pending, self._worked
            self._pending, self._worked = None, False
        try:
            if reason is not None:
                self._failing(reason)
            elif worked:
                self._working()
        except (GoogleAPICallError, RetryError) as exc:
            logger.warning("Traccar's state not recorded (the hourly run will): %s", exc)

    def _failing(self, reason: str) -> None:
        now = self._clock()
        with self._lock:
            since, alerted = self._since, self._alerted
        if since is None:
            state = self._document.read()
            since = state.watch.get(TRACCAR_DOWN)
            if since is None:
                since = now
                self._document.set_watch(TRACCAR_DOWN, since)
            alerted = TRACCAR_DOWN in state.alerts
        if not alerted and now - since >= self._down_after:
            alerted = True
            if self._document.alerts.open(TRACCAR_DOWN, GoogleAlert(reason=reason, since=since)):
                logger.error(
                    "alert opened: Traccar's OsmAnd endpoint refuses positions",
                    extra={"alert": TRACCAR_DOWN, "reason": reason},
                )
                self._notifier().incident_opened(
                    "Traccar does not accept positions", reason, TRACCAR_DOWN_ADVICE
                )
        with self._lock:
            self._since, self._alerted = since, alerted

    def _working(self) -> None:
        with self._lock:
            since, self._since, self._alerted = self._since, None, False
        if since is not None:
            end_traccar_down(self._document, self._notifier)


TRACCAR_DOWN_ADVICE = (
    "Positions wait in the outbox and go, oldest first, once Traccar accepts them again.\n"
    "Check that Traccar runs and that TRACCAR_SERVER_URL (its OsmAnd port, 5055 by default)\n"
    "is reachable from Google Cloud; the push log (GET /push-log) shows each answer."
)


def end_traccar_down(document: OperationsDocument, notifier: Callable[[], Notifier]) -> bool:
    """Clear the incident's start and, when an alert was open, close it and mail its end."""
    state = document.read()
    if TRACCAR_DOWN in state.watch:
        document.clear_watch(TRACCAR_DOWN)
    if TRACCAR_DOWN not in state.alerts:
        return False
    # Conditional: of instances seeing Traccar accept at once, one ends it and mails.
    alert = document.resolve(TRACCAR_DOWN)
    if alert is None:
        return False
    logger.info("alert ended: Traccar accepts positions again", extra={"alert": TRACCAR_DOWN})
    notifier().incident_resolved("Traccar does not accept positions", alert.since)
    return True
