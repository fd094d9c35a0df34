"""The local scheduler loop: plays Cloud Scheduler's part on a workstation (`make run`).

Jobs are the `local_jobs` documents that `shared.scheduler.LocalJobs` writes; `LocalLoop` POSTs
`{"device_id"}` to `sync_device` at `timer ± delta` seconds (the jitter applied to the schedule
itself), calls `refresh_devices` hourly and `refresh_devices?sweep=only` every minute in
between (handed-off deliveries, issue 16; outboxes whose backoff ended), as the Terraform-made
Cloud Scheduler jobs do in the cloud. `python -m devtools.scheduler` runs it until SIGINT or
SIGTERM. Dev-only: no function imports it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import requests

from shared.models import LocalJob, utc_now
from shared.scheduler import next_delay

if TYPE_CHECKING:
    from shared.store import Repository

logger = logging.getLogger(__name__)

DEFAULT_SYNC_TIMEOUT = 300.0  # seconds; a Google locate may wait a minute for its answer
REFRESH_INTERVAL = 3600  # seconds between two refresh_devices runs, as in the cloud
# Seconds between two sweeps of due outboxes (`sweep_schedule`'s default in the cloud).
SWEEP_INTERVAL = 60


class LocalLoop:
    """Plays Cloud Scheduler's part on a workstation: runs due jobs over HTTP."""

    def __init__(
        self,
        jobs: Repository[LocalJob],
        session: requests.Session,
        *,
        sync_device_url: str,
        refresh_devices_url: str | None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        timeout: float = DEFAULT_SYNC_TIMEOUT,
    ) -> None:
        self._jobs = jobs
        self._session = session
        self._sync_url = sync_device_url
        self._refresh_url = refresh_devices_url
        self._sweep_url = sweep_url_of(refresh_devices_url) if refresh_devices_url else None
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._timeout = timeout
        self._next_refresh: datetime | None = None
        self._next_sweep: datetime | None = None

    def tick(self) -> list[str]:
        """Run every due job once and reschedule it; returns the device ids that ran."""
        now = self._clock()
        ran = []
        for job in self._jobs.list():
            if job.paused or job.next_run > now:
                continue
            # Reschedule first: a slow run must not be started again by the next tick.
            delay = next_delay(job.timer, job.delta, self._rng)
            self._jobs.put(job.model_copy(update={"next_run": now + timedelta(seconds=delay)}))
            # A one-shot job's run deletes it (`LocalJobs.run_once`), as in the cloud.
            once: dict[str, object] = {"once": True} if job.once else {}
            self._post(self._sync_url, {"device_id": job.device_id, **once})
            ran.append(job.device_id)
        if self._refresh_url and (self._next_refresh is None or self._next_refresh <= now):
            self._next_refresh = now + timedelta(seconds=REFRESH_INTERVAL)
            self._next_sweep = now + timedelta(seconds=SWEEP_INTERVAL)  # a refresh sweeps too
            self._post(self._refresh_url, {})
        elif self._sweep_url and self._next_sweep is not None and self._next_sweep <= now:
            self._next_sweep = now + timedelta(seconds=SWEEP_INTERVAL)
            self._post(self._sweep_url, {})
        return ran

    def _post(self, url: str, body: dict[str, object]) -> None:
        try:
            response = self._session.post(url, json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            logger.warning("scheduled call failed", extra={"url": url, "error": str(exc)})
            return
        logger.info(
            "scheduled call",
            extra={"url": url, "status": response.status_code, **body},
        )

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                # The loop must outlive a transient emulator hiccup; the next tick retries.
                logger.exception("local scheduler tick failed")
            stop.wait(interval)


def sweep_url_of(refresh_devices_url: str) -> str:
    """`refresh_devices`' URL asking for the sweep only (`?sweep=only`)."""
    parts = urlsplit(refresh_devices_url)
    query = "&".join(part for part in (parts.query, "sweep=only") if part)
    return urlunsplit(parts._replace(query=query))


def main() -> None:
    """`python -m devtools.scheduler`: the local loop, until SIGINT or SIGTERM."""
    import signal

    from shared.config import get_settings
    from shared.logs import configure_logging
    from shared.runtime import get_runtime

    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.sync_device_url is None:
        raise SystemExit("SYNC_DEVICE_URL must be set for the local scheduler loop")
    runtime = get_runtime()
    loop = LocalLoop(
        runtime.store.local_jobs,
        runtime.http_session,
        sync_device_url=str(settings.sync_device_url),
        refresh_devices_url=str(settings.refresh_devices_url)
        if settings.refresh_devices_url
        else None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logger.info(
        "local scheduler loop started", extra={"sync_device_url": str(settings.sync_device_url)}
    )
    loop.run(stop)


if __name__ == "__main__":
    main()
