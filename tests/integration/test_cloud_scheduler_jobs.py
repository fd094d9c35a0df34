"""`CloudSchedulerJobs` through the official Cloud Scheduler client, against the gRPC fake.

The fake (`tests.fakes.cloud_scheduler`) validates jobs as the service does (job id charset,
unix-cron schedule, tz time zone, body only with POST) and answers with the real status codes,
so a job these tests see stored is one Cloud Scheduler would have accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from google.api_core.exceptions import NotFound as GoogleNotFound
from google.cloud import scheduler_v1

from shared.errors import ConfigError, Conflict, NotFound
from shared.scheduler import CloudSchedulerJobs, cron_for, job_id_for, once_job_id
from tests.fakes.cloud_scheduler import FakeCloudScheduler

PROJECT = "traccar-bridge-test"
REGION = "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
SYNC_URL = f"https://{REGION}-{PROJECT}.cloudfunctions.net/sync_device"
SERVICE_ACCOUNT = f"scheduler@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def cloud_scheduler() -> Iterator[FakeCloudScheduler]:
    with FakeCloudScheduler() as fake:
        yield fake


@pytest.fixture
def client(cloud_scheduler: FakeCloudScheduler) -> scheduler_v1.CloudSchedulerClient:
    return cloud_scheduler.client()


@pytest.fixture
def jobs(client: scheduler_v1.CloudSchedulerClient) -> CloudSchedulerJobs:
    return CloudSchedulerJobs(
        client,
        project=PROJECT,
        region=REGION,
        sync_device_url=SYNC_URL,
        service_account_email=SERVICE_ACCOUNT,
        time_zone="Europe/Paris",
    )


def stored(client: scheduler_v1.CloudSchedulerClient, device_id: str) -> scheduler_v1.Job:
    return client.get_job(name=f"{PARENT}/jobs/{job_id_for(device_id)}")


def test_upsert_creates_an_oidc_authenticated_post_to_sync_device(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    name = jobs.upsert("tracker-1", timer=600, delta=5)

    assert name == f"{PARENT}/jobs/sync-tracker-1"
    job = client.get_job(name=name)
    assert job.schedule == "*/10 * * * *" == cron_for(600)
    assert job.time_zone == "Europe/Paris"
    assert job.state == scheduler_v1.Job.State.ENABLED
    target = job.http_target
    assert target.uri == SYNC_URL
    assert target.http_method == scheduler_v1.HttpMethod.POST
    # Without it Cloud Scheduler sends application/octet-stream and sync_device sees no JSON.
    assert target.headers["Content-Type"] == "application/json"
    assert json.loads(target.body) == {"device_id": "tracker-1", "jitter_seconds": 5}
    assert target.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert target.oidc_token.audience == SYNC_URL
    # A run turned away (429: another run holds the lease) is retried by Cloud Scheduler.
    assert job.retry_config.retry_count == 3
    assert job.retry_config.min_backoff_duration == timedelta(seconds=30)
    assert job.attempt_deadline == timedelta(seconds=180)


def test_upsert_of_existing_job_updates_schedule_and_body(
    jobs: CloudSchedulerJobs,
    client: scheduler_v1.CloudSchedulerClient,
    cloud_scheduler: FakeCloudScheduler,
) -> None:
    first = jobs.upsert("tracker-1", timer=600, delta=5)

    second = jobs.upsert("tracker-1", timer=3600, delta=30)

    assert second == first
    assert ("CreateJob", "ALREADY_EXISTS") in cloud_scheduler.calls
    assert ("UpdateJob", "OK") in cloud_scheduler.calls
    assert cloud_scheduler.job_names() == [first]
    job = client.get_job(name=first)
    assert job.schedule == "0 * * * *"
    assert json.loads(job.http_target.body) == {"device_id": "tracker-1", "jitter_seconds": 30}
    assert job.http_target.oidc_token.audience == SYNC_URL


def test_upsert_keeps_a_paused_job_paused(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    # As LocalJobs does: changing the timer of a paused service must not restart its syncs.
    jobs.upsert("tracker-1", timer=600, delta=5)
    jobs.pause("tracker-1")

    jobs.upsert("tracker-1", timer=120, delta=5)

    job = stored(client, "tracker-1")
    assert job.state == scheduler_v1.Job.State.PAUSED
    assert job.schedule == "*/2 * * * *"


def test_pause_then_resume_switches_job_state(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    jobs.upsert("tracker-1", timer=600, delta=5)

    jobs.pause("tracker-1")
    assert stored(client, "tracker-1").state == scheduler_v1.Job.State.PAUSED

    jobs.resume("tracker-1")
    assert stored(client, "tracker-1").state == scheduler_v1.Job.State.ENABLED


def test_repeated_pause_and_resume_succeed_like_local_jobs(
    jobs: CloudSchedulerJobs,
    client: scheduler_v1.CloudSchedulerClient,
    cloud_scheduler: FakeCloudScheduler,
) -> None:
    # The service pauses only an ENABLED job and resumes only a PAUSED one; a retried request
    # must still succeed, as it does with LocalJobs.
    jobs.upsert("tracker-1", timer=600, delta=5)

    jobs.pause("tracker-1")
    jobs.pause("tracker-1")
    assert ("PauseJob", "FAILED_PRECONDITION") in cloud_scheduler.calls
    assert stored(client, "tracker-1").state == scheduler_v1.Job.State.PAUSED

    jobs.resume("tracker-1")
    jobs.resume("tracker-1")
    assert ("ResumeJob", "FAILED_PRECONDITION") in cloud_scheduler.calls
    assert stored(client, "tracker-1").state == scheduler_v1.Job.State.ENABLED


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_or_resume_of_a_job_the_system_disabled_raises_conflict(
    jobs: CloudSchedulerJobs, cloud_scheduler: FakeCloudScheduler, action: str
) -> None:
    name = jobs.upsert("tracker-1", timer=600, delta=5)
    cloud_scheduler.set_state_as_the_system(name, scheduler_v1.Job.State.UPDATE_FAILED)

    with pytest.raises(Conflict, match="UPDATE_FAILED"):
        getattr(jobs, action)("tracker-1")


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_or_resume_of_missing_job_raises_not_found(
    jobs: CloudSchedulerJobs, action: str
) -> None:
    with pytest.raises(NotFound, match="no-such-tracker"):
        getattr(jobs, action)("no-such-tracker")


def test_delete_removes_the_job_and_reports_whether_it_existed(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    jobs.upsert("tracker-1", timer=600, delta=5)

    assert jobs.delete("tracker-1") is True
    assert jobs.delete("tracker-1") is False
    with pytest.raises(GoogleNotFound):
        stored(client, "tracker-1")


def test_jobs_of_odd_device_ids_are_accepted_and_kept_apart(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    # Google device ids are opaque; the fake rejects a job id outside [A-Za-z0-9_-]{1,500}.
    odd = ["Pixel 7/Anna's", "Pixel 7:Anna's", "é" * 600]

    names = [jobs.upsert(device_id, timer=600, delta=5) for device_id in odd]

    assert len(set(names)) == len(odd)
    for device_id in odd:
        body = json.loads(stored(client, device_id).http_target.body)
        assert body["device_id"] == device_id


def test_without_a_target_url_jobs_can_be_paused_but_not_created(
    client: scheduler_v1.CloudSchedulerClient, jobs: CloudSchedulerJobs
) -> None:
    jobs.upsert("tracker-1", timer=600, delta=5)
    pauser = CloudSchedulerJobs(
        client, project=PROJECT, region=REGION, sync_device_url=None, service_account_email=""
    )

    pauser.pause("tracker-1")

    assert stored(client, "tracker-1").state == scheduler_v1.Job.State.PAUSED
    with pytest.raises(ConfigError, match="SYNC_DEVICE_URL"):
        pauser.upsert("tracker-2", timer=600, delta=5)


def test_run_once_makes_a_yearly_one_shot_job_beside_the_service_and_runs_it_now(
    jobs: CloudSchedulerJobs,
    client: scheduler_v1.CloudSchedulerClient,
    cloud_scheduler: FakeCloudScheduler,
) -> None:
    jobs.upsert("tracker-1", timer=600, delta=5)
    once = f"{PARENT}/jobs/{once_job_id('tracker-1')}"

    jobs.run_once("tracker-1")
    jobs.run_once("tracker-1")  # a second "locate now" before the run remakes the same job

    job = client.get_job(name=once)
    assert job.schedule == "0 0 1 1 *" and job.state == scheduler_v1.Job.State.ENABLED
    assert json.loads(job.http_target.body) == {"device_id": "tracker-1", "once": True}
    assert job.http_target.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert cloud_scheduler.runs == [once, once]
    assert stored(client, "tracker-1").schedule == cron_for(600)  # the service's job as it was


def test_delete_once_deletes_only_the_one_shot_job(
    jobs: CloudSchedulerJobs, client: scheduler_v1.CloudSchedulerClient
) -> None:
    jobs.upsert("tracker-1", timer=600, delta=5)
    jobs.run_once("tracker-1")

    assert jobs.delete_once("tracker-1") is True
    assert jobs.delete_once("tracker-1") is False
    with pytest.raises(GoogleNotFound):
        client.get_job(name=f"{PARENT}/jobs/{once_job_id('tracker-1')}")
    assert stored(client, "tracker-1").name.endswith(job_id_for("tracker-1"))
