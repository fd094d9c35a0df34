"""An in-memory Cloud Scheduler served over real gRPC, for the official client in tests.

Google ships no Cloud Scheduler emulator. This fake serves the job RPCs `CloudSchedulerJobs`
uses (CreateJob, UpdateJob, GetJob, PauseJob, ResumeJob, DeleteJob, RunJob) with the
`google-cloud-scheduler` package's own types; other RPCs answer UNIMPLEMENTED. It follows the
service's documented contract:

- a job is `projects/P/locations/L/jobs/ID` under the request's parent, ID made of letters,
  digits, `-` and `_` (500 at most); a job created without a name gets a generated id;
- CreateJob on an existing name is ALREADY_EXISTS; UpdateJob, GetJob, PauseJob, ResumeJob and
  DeleteJob and RunJob of a missing job are NOT_FOUND; RunJob ("force a job to run now")
  dispatches the job whatever its schedule, recorded in `runs`;
- a new job is ENABLED; only an ENABLED job can be paused and only a PAUSED one resumed
  (FAILED_PRECONDITION otherwise); UpdateJob keeps the state, so a paused job stays paused;
- UpdateJob replaces the fields named in `update_mask` (top-level paths), or every populated
  mutable field when the mask is empty; output-only fields of the request are ignored;
- the job is validated as the service does: a unix-cron schedule (five fields, values in
  range, names for months and weekdays), a tz database time zone, an `http(s)://` target URI,
  a body only with POST, PUT or PATCH, and a service account on an OIDC token;
- a caller lacking a method's IAM permission (`deny("cloudscheduler.jobs.delete")`: a
  deployment whose Terraform grants it is not applied yet) gets PERMISSION_DENIED, checked
  before the job is looked up (https://cloud.google.com/scheduler/docs/reference/rpc/
  google.cloud.scheduler.v1 lists each method's permission; https://cloud.google.com/iam/docs/
  troubleshooting-access: a missing permission is 403 PERMISSION_DENIED).

Serving, hooks and the call log come from `tests.fakes.GrpcFake`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
from google.cloud import scheduler_v1
from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
    CloudSchedulerGrpcTransport,
)
from google.protobuf import empty_pb2

from tests.fakes import Abort, GrpcFake

State = scheduler_v1.Job.State
HttpMethod = scheduler_v1.HttpMethod

_PARENT = re.compile(r"^projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_MUTABLE_FIELDS = (
    "description",
    "schedule",
    "time_zone",
    "retry_config",
    "attempt_deadline",
    "http_target",
    "pubsub_target",
    "app_engine_http_target",
)
_TARGETS = ("http_target", "pubsub_target", "app_engine_http_target")
_BODY_METHODS = (HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH)

# (lowest, highest, names) of the five unix-cron fields; weekday 7 is Sunday as well as 0.
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {name: number for number, name in enumerate(_MONTHS, start=1)}),
    (0, 7, {name: number for number, name in enumerate(_DAYS)}),
)


def valid_cron(schedule: str) -> bool:
    """Whether `schedule` is a unix-cron expression Cloud Scheduler accepts."""
    fields = schedule.split()
    return len(fields) == len(_CRON_FIELDS) and all(
        _valid_cron_field(text, *bounds) for text, bounds in zip(fields, _CRON_FIELDS, strict=True)
    )


def _valid_cron_field(text: str, lowest: int, highest: int, names: dict[str, int]) -> bool:
    def value(token: str) -> int | None:
        number = names.get(token.upper()) if not token.isdigit() else int(token)
        return number if number is not None and lowest <= number <= highest else None

    for item in text.split(","):
        span, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) >= 1):
            return False
        if span == "*":
            continue
        first, dash, last = span.partition("-")
        start = value(first)
        if start is None:
            return False
        if dash:
            end = value(last)
            if end is None or end < start:
                return False
    return True


class FakeCloudScheduler(GrpcFake):
    """Jobs kept in memory, served on `127.0.0.1:<free port>` while started."""

    service = "google.cloud.scheduler.v1.CloudScheduler"

    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, scheduler_v1.Job] = {}
        # Jobs forced to run by RunJob ("Force a job to run now", Cloud Scheduler's reference),
        # in order: the dispatch itself is Cloud Scheduler's, not the caller's.
        self.runs: list[str] = []
        # IAM permissions the caller lacks (`deny`).
        self._denied: set[str] = set()

    def deny(self, permission: str) -> None:
        """The caller's role lacks `permission` (only `cloudscheduler.jobs.delete` is checked)."""
        with self.lock:
            self._denied.add(permission)

    def rpcs(self) -> dict[str, tuple[Callable[[Any], Any], Any, Any]]:
        cs = scheduler_v1
        return {
            "CreateJob": (self._create_job, cs.CreateJobRequest, cs.Job),
            "UpdateJob": (self._update_job, cs.UpdateJobRequest, cs.Job),
            "GetJob": (self._get_job, cs.GetJobRequest, cs.Job),
            "PauseJob": (self._pause_job, cs.PauseJobRequest, cs.Job),
            "ResumeJob": (self._resume_job, cs.ResumeJobRequest, cs.Job),
            "DeleteJob": (self._delete_job, cs.DeleteJobRequest, empty_pb2.Empty),
            "RunJob": (self._run_job, cs.RunJobRequest, cs.Job),
        }

    def client(self) -> scheduler_v1.CloudSchedulerClient:
        """The official client, over a plain channel to this fake (no credentials involved)."""
        return scheduler_v1.CloudSchedulerClient(
            transport=CloudSchedulerGrpcTransport(channel=self.channel())
        )

    def job_names(self) -> list[str]:
        with self.lock:
            return sorted(self._jobs)

    def set_state_as_the_system(self, name: str, state: State) -> None:
        """What no client can do: the service disables a failing job, or a failed update
        leaves it UPDATE_FAILED."""
        with self.lock:
            self._jobs[name].state = state

    # -- helpers -------------------------------------------------------------------------

    def _existing(self, name: str) -> scheduler_v1.Job:
        job = self._jobs.get(name)
        if job is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, "Job not found.")
        return job

    @staticmethod
    def _copy(job: scheduler_v1.Job) -> scheduler_v1.Job:
        return scheduler_v1.Job.deserialize(scheduler_v1.Job.serialize(job))

    @staticmethod
    def _validate(job: scheduler_v1.Job) -> None:
        def invalid(message: str) -> Abort:
            return Abort(grpc.StatusCode.INVALID_ARGUMENT, message)

        if not valid_cron(job.schedule):
            raise invalid(f"Schedule or time zone is invalid: {job.schedule!r}")
        try:
            ZoneInfo(job.time_zone or "Etc/UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise invalid(f"Schedule or time zone is invalid: {job.time_zone!r}") from None
        if not any(target in job for target in _TARGETS):
            raise invalid("Job must have a target.")
        if "http_target" in job:
            http = job.http_target
            if not http.uri.startswith(("http://", "https://")):
                raise invalid("HttpTarget.uri must begin with http:// or https://.")
            if http.body and http.http_method not in _BODY_METHODS:
                raise invalid("A request body is allowed only with POST, PUT or PATCH.")
            if "oidc_token" in http and "@" not in http.oidc_token.service_account_email:
                raise invalid("OidcToken.service_account_email is invalid.")

    def _set_state(self, name: str, required: State, new: State) -> scheduler_v1.Job:
        job = self._existing(name)
        if job.state != required:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Job.state must be {required.name}, not {job.state.name}.",
            )
        job.state = new
        job.user_update_time = datetime.now(UTC)
        return self._copy(job)

    # -- RPCs ----------------------------------------------------------------------------

    def _create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job:
        if not _PARENT.match(request.parent):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent!r}")
        job = scheduler_v1.Job()
        for name in _MUTABLE_FIELDS:
            if name in request.job:
                setattr(job, name, getattr(request.job, name))
        job.name = request.job.name or f"{request.parent}/jobs/{uuid.uuid4().hex}"
        prefix, _, job_id = job.name.rpartition("/jobs/")
        if prefix != request.parent or not _JOB_ID.match(job_id):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid job name: {job.name!r}")
        self._validate(job)
        if job.name in self._jobs:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, "Job already exists.")
        job.time_zone = job.time_zone or "Etc/UTC"
        if (
            "http_target" in job
            and job.http_target.http_method == HttpMethod.HTTP_METHOD_UNSPECIFIED
        ):
            job.http_target.http_method = HttpMethod.POST
        job.state = State.ENABLED
        job.user_update_time = datetime.now(UTC)
        self._jobs[job.name] = job
        return self._copy(job)

    def _update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job:
        existing = self._existing(request.job.name)
        paths = list(request.update_mask.paths) or [
            name for name in _MUTABLE_FIELDS if name in request.job
        ]
        updated = self._copy(existing)
        for path in paths:
            if path not in _MUTABLE_FIELDS:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"update_mask path not supported by this fake: {path!r}",
                )
            setattr(updated, path, getattr(request.job, path))
        self._validate(updated)
        updated.user_update_time = datetime.now(UTC)
        self._jobs[updated.name] = updated
        return self._copy(updated)

    def _get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
        return self._copy(self._existing(request.name))

    def _pause_job(self, request: scheduler_v1.PauseJobRequest) -> scheduler_v1.Job:
        return self._set_state(request.name, State.ENABLED, State.PAUSED)

    def _resume_job(self, request: scheduler_v1.ResumeJobRequest) -> scheduler_v1.Job:
        return self._set_state(request.name, State.PAUSED, State.ENABLED)

    def _run_job(self, request: scheduler_v1.RunJobRequest) -> scheduler_v1.Job:
        job = self._existing(request.name)
        self.runs.append(request.name)
        return self._copy(job)

    def _delete_job(self, request: scheduler_v1.DeleteJobRequest) -> empty_pb2.Empty:
        if "cloudscheduler.jobs.delete" in self._denied:
            raise Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'cloudscheduler.jobs.delete' denied on resource '{request.name}' "
                "(or it may not exist).",
            )
        self._existing(request.name)
        del self._jobs[request.name]
        return empty_pb2.Empty()
