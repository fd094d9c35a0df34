"""The scheduler adapter: one job per sync service, in Cloud Scheduler or in a local loop.

A job runs `sync_device` for one device every `timer` seconds, give or take `delta`:

- `CloudSchedulerJobs`: a Cloud Scheduler job POSTs `{"device_id", "jitter_seconds"}` to the
  `sync_device` URL with an OIDC token. Cron has a one-minute granularity, so the timer is
  rounded to whole minutes and `sync_device` applies the jitter inside the run.
- `LocalJobs`: the jobs are Firestore documents (`local_jobs`); `LocalLoop` (in
  `devtools/scheduler.py`, run by `make run`) POSTs `{"device_id"}` to `sync_device`
  at `timer ± delta` seconds, the jitter applied to the schedule itself, and calls
  `refresh_devices` hourly as the Terraform-made Cloud Scheduler job does in the cloud.

Traccar's "locate now" of a device without a sync service (`shared.commands`) runs a one-shot
job (`run_once`): a job of its own (`once-…`, beside the device's `sync-…` one) made and run
at once, whose body says `"once": true`; the run it starts deletes it (`delete_once`, from
`Sync.scheduled_sync`) after syncing, unless that run is to be retried (429: the device's lease
held; 5xx), so Cloud Scheduler's retries still locate, if they apply to a forced run (the
RunJob reference, cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs/run,
does not say; RetryConfig's does for scheduled attempts). Should no run end, its yearly
schedule (Cloud Scheduler has no one-time jobs) or the next "locate now" runs it again, and
that run deletes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ConfigError, Conflict, NotFound
from shared.models import LocalJob, utc_now

if TYPE_CHECKING:
    from google.cloud import scheduler_v1

    from shared.store import Repository

logger = logging.getLogger(__name__)

DEFAULT_GOOGLE_TIMEOUT = 30.0  # seconds for each Cloud Scheduler call
# A run that meets another (429, lease held) or a transient failure is retried by Cloud
# Scheduler itself: three times, 30 s then doubling, within the next timer tick.
JOB_RETRY_COUNT = 3
JOB_MIN_BACKOFF = timedelta(seconds=30)
JOB_MAX_BACKOFF = timedelta(minutes=5)
# sync_device's own timeout (infra/terraform/functions.tf): Cloud Scheduler waits that long.
JOB_ATTEMPT_DEADLINE = timedelta(seconds=180)
_JOB_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
ONCE_PREFIX = "once"
# A one-shot job's own schedule: Cloud Scheduler has no one-time jobs, so yearly (1 January,
# 00:00), only in case the run `run_once` starts never reaches sync_device to delete it.
ONCE_SCHEDULE = "0 0 1 1 *"
ONCE_TIMER = 366 * 86_400  # the local loop's equivalent, in seconds


# Cron steps restart at the hour (minutes) and at midnight (hours): `*/45` runs at :00 and
# :45, every 30 minutes on average. Only steps that divide the hour or the day keep the runs
# evenly spaced, so a timer is rounded to the nearest of these.
MINUTE_STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
HOUR_STEPS = (1, 2, 3, 4, 6, 8, 12, 24)


def _nearest(steps: tuple[int, ...], value: float) -> int:
    # On a tie the shorter step wins: syncing a bit more often never loses a position.
    return min(steps, key=lambda step: (abs(step - value), step))


def cron_for(timer: int) -> str:
    """An evenly spaced cron schedule close to one run every `timer` seconds, daily at most.

    Cron counts whole minutes and its steps must divide the hour or the day; the jitter is
    added inside the run (`jitter_seconds`).
    """
    minutes = _nearest(MINUTE_STEPS, max(1.0, timer / 60))
    if minutes == 1:
        return "* * * * *"
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = _nearest(HOUR_STEPS, max(1.0, timer / 3600))
    if hours == 1:
        return "0 * * * *"
    if hours < 24:
        return f"0 */{hours} * * *"
    return "0 0 * * *"


def job_id_for(device_id: str, *, prefix: str = "sync") -> str:
    """A Cloud Scheduler job id (letters, digits, `-`, `_`; 500 at most) unique per device;
    `prefix` "once": the device's one-shot job."""
    cleaned = _JOB_ID_CHARS.sub("-", device_id)[:400]
    if cleaned != device_id:
        cleaned += "-" + hashlib.sha256(device_id.encode()).hexdigest()[:12]
    return f"{prefix}-{cleaned}"


def once_job_id(device_id: str) -> str:
    """The id of the device's one-shot job (a "locate now" without a sync service)."""
    return job_id_for(device_id, prefix=ONCE_PREFIX)


class JobScheduler(Protocol):
    def upsert(self, device_id: str, *, timer: int, delta: int) -> str: ...

    def pause(self, device_id: str) -> None: ...

    def resume(self, device_id: str) -> None: ...

    def delete(self, device_id: str) -> bool: ...

    def run(self, device_id: str) -> None: ...

    def run_once(self, device_id: str) -> None: ...

    def delete_once(self, device_id: str) -> bool: ...


class CloudSchedulerJobs:
    """Sync jobs in Google Cloud Scheduler, through the official client."""

    def __init__(
        self,
        client: scheduler_v1.CloudSchedulerClient,
        *,
        project: str,
        region: str,
        sync_device_url: str | None,
        service_account_email: str,
        time_zone: str = "Etc/UTC",
    ) -> None:
        self._client = client
        self._parent = f"projects/{project}/locations/{region}"
        self._url = sync_device_url
        self._service_account = service_account_email
        self._time_zone = time_zone

    def job_name(self, device_id: str) -> str:
        return f"{self._parent}/jobs/{job_id_for(device_id)}"

    def upsert(self, device_id: str, *, timer: int, delta: int) -> str:
        """Create the device's job, or update it when it exists already."""
        from google.api_core.exceptions import AlreadyExists

        job = self._http_job(
            self.job_name(device_id),
            cron_for(timer),
            {"device_id": device_id, "jitter_seconds": delta},
        )
        try:
            created = self._client.create_job(
                parent=self._parent, job=job, timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        except AlreadyExists:
            created = self._client.update_job(job=job, timeout=DEFAULT_GOOGLE_TIMEOUT)
        return created.name

    def _http_job(self, name: str, schedule: str, body: dict[str, object]) -> scheduler_v1.Job:
        """A job POSTing `body` to sync_device with the scheduler account's OIDC token."""
        from google.cloud import scheduler_v1

        if not self._url or not self._service_account:
            raise ConfigError(
                "creating sync jobs in Cloud Scheduler needs SYNC_DEVICE_URL and "
                "SCHEDULER_SERVICE_ACCOUNT"
            )
        return scheduler_v1.Job(
            name=name,
            schedule=schedule,
            time_zone=self._time_zone,
            http_target=scheduler_v1.HttpTarget(
                uri=self._url,
                http_method=scheduler_v1.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=json.dumps(body).encode(),
                oidc_token=scheduler_v1.OidcToken(
                    service_account_email=self._service_account, audience=self._url
                ),
            ),
            retry_config=scheduler_v1.RetryConfig(
                retry_count=JOB_RETRY_COUNT,
                min_backoff_duration=JOB_MIN_BACKOFF,
                max_backoff_duration=JOB_MAX_BACKOFF,
            ),
            attempt_deadline=JOB_ATTEMPT_DEADLINE,
        )

    def pause(self, device_id: str) -> None:
        from google.cloud import scheduler_v1

        self._set_state("pause_job", device_id, scheduler_v1.Job.State.PAUSED)

    def resume(self, device_id: str) -> None:
        from google.cloud import scheduler_v1

        self._set_state("resume_job", device_id, scheduler_v1.Job.State.ENABLED)

    def delete(self, device_id: str) -> bool:
        try:
            self._call("delete_job", device_id)
        except NotFound:
            return False
        return True

    def run(self, device_id: str) -> None:
        """Run the device's job now (Cloud Scheduler's RunJob): the sync outlives the caller's
        request, as Traccar's "locate now" needs (it waits 5 s, a Google locate up to 60)."""
        self._call("run_job", device_id)

    def run_once(self, device_id: str) -> None:
        """One run of the device's sync now, without a sync service: its one-shot job is made
        (or remade) and run (see the module docstring); sync_device deletes it."""
        from google.api_core.exceptions import AlreadyExists

        name = f"{self._parent}/jobs/{once_job_id(device_id)}"
        job = self._http_job(name, ONCE_SCHEDULE, {"device_id": device_id, "once": True})
        try:
            self._client.create_job(parent=self._parent, job=job, timeout=DEFAULT_GOOGLE_TIMEOUT)
        except AlreadyExists:
            self._client.update_job(job=job, timeout=DEFAULT_GOOGLE_TIMEOUT)
        self._client.run_job(name=name, timeout=DEFAULT_GOOGLE_TIMEOUT)

    def delete_once(self, device_id: str) -> bool:
        """Delete the device's one-shot job; False if there is none (deleted already)."""
        from google.api_core.exceptions import NotFound as GoogleNotFound

        name = f"{self._parent}/jobs/{once_job_id(device_id)}"
        try:
            self._client.delete_job(name=name, timeout=DEFAULT_GOOGLE_TIMEOUT)
        except GoogleNotFound:
            return False
        return True

    def _set_state(self, method: str, device_id: str, wanted: int) -> None:
        """`wanted`: a `scheduler_v1.Job.State` (an int enum, compared with the job's)."""
        from google.api_core.exceptions import FailedPrecondition

        try:
            self._call(method, device_id)
        except FailedPrecondition:
            # The service pauses only an ENABLED job and resumes only a PAUSED one. A repeated
            # request (a retried PUT) finds the job there already: success, as with LocalJobs.
            state = self._call("get_job", device_id).state
            if state != wanted:
                raise Conflict(f"sync job for device {device_id} is {state.name}") from None

    def _call(self, method: str, device_id: str) -> Any:
        """The client's `method` on the device's job: a `Job`, or None for `delete_job`."""
        from google.api_core.exceptions import NotFound as GoogleNotFound

        try:
            return getattr(self._client, method)(
                name=self.job_name(device_id), timeout=DEFAULT_GOOGLE_TIMEOUT
            )
        except GoogleNotFound:
            raise NotFound(f"no sync job for device {device_id}") from None


class LocalJobs:
    """Sync jobs as Firestore documents, for `LocalLoop` to run."""

    def __init__(self, jobs: Repository[LocalJob], clock: Callable[[], datetime] = utc_now) -> None:
        self._jobs = jobs
        self._clock = clock

    def upsert(self, device_id: str, *, timer: int, delta: int) -> str:
        job_id = job_id_for(device_id)
        existing = self._jobs.get(job_id)
        self._jobs.put(
            LocalJob(
                id=job_id,
                device_id=device_id,
                timer=timer,
                delta=delta,
                paused=existing.paused if existing else False,
                next_run=self._clock() + timedelta(seconds=next_delay(timer, delta)),
            )
        )
        return job_id

    def _set_paused(self, device_id: str, paused: bool) -> None:
        job = self._jobs.get(job_id_for(device_id))
        if job is None:
            raise NotFound(f"no sync job for device {device_id}")
        self._jobs.put(job.model_copy(update={"paused": paused}))

    def pause(self, device_id: str) -> None:
        self._set_paused(device_id, True)

    def resume(self, device_id: str) -> None:
        self._set_paused(device_id, False)

    def delete(self, device_id: str) -> bool:
        return self._jobs.delete(job_id_for(device_id))

    def run(self, device_id: str) -> None:
        """Due now: the local loop runs it on its next tick, then on its timer again."""
        job = self._jobs.get(job_id_for(device_id))
        if job is None:
            raise NotFound(f"no sync job for device {device_id}")
        self._jobs.put(job.model_copy(update={"next_run": self._clock()}))

    def run_once(self, device_id: str) -> None:
        """The device's one-shot job, due now: the local loop runs it on its next tick, and
        that run deletes it (`delete_once`)."""
        self._jobs.put(
            LocalJob(
                id=once_job_id(device_id),
                device_id=device_id,
                timer=ONCE_TIMER,
                delta=0,
                once=True,
                next_run=self._clock(),
            )
        )

    def delete_once(self, device_id: str) -> bool:
        return self._jobs.delete(once_job_id(device_id))


def next_delay(timer: int, delta: int, rng: random.Random | None = None) -> float:
    """Seconds until the next run: `timer ± delta`, never less than one second."""
    jitter = (rng or random).uniform(-delta, delta) if delta else 0.0
    return max(1.0, timer + jitter)
