"""The local scheduler backend: jobs in Firestore (emulator), run over real HTTP by the loop."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from google.cloud import firestore
from test_utils.retry import RetryResult

from devtools.emulator import free_port
from devtools.scheduler import REFRESH_INTERVAL, SWEEP_INTERVAL, LocalLoop, next_delay
from shared.errors import NotFound
from shared.models import LocalJob
from shared.scheduler import LocalJobs, job_id_for, once_job_id
from shared.store import Repository, Store

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)
HTTP_TIMEOUT = 5.0  # seconds for the loop's calls to the recording server


class Recorder:
    """A local HTTP server that records every POST (path, headers, JSON body) and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                recorder.calls.append((self.path, self.headers.get("Content-Type", ""), body))
                payload = b'{"ok": true}'
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def bodies(self, path: str) -> list[object]:
        return [body for call_path, _, body in self.calls if call_path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def jobs_repository(firestore_client: firestore.Client) -> Repository[LocalJob]:
    return Store(firestore_client).local_jobs


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def make_loop(
    jobs: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    *,
    sync_url: str,
    refresh_url: str | None = None,
    seed: int = 1,
) -> LocalLoop:
    return LocalLoop(
        jobs,
        session,
        sync_device_url=sync_url,
        refresh_devices_url=refresh_url,
        clock=clock,
        rng=random.Random(seed),
        timeout=HTTP_TIMEOUT,
    )


def put_job(jobs: Repository[LocalJob], device_id: str, **fields: object) -> LocalJob:
    values: dict[str, object] = {
        "id": job_id_for(device_id),
        "device_id": device_id,
        "timer": 600,
        "delta": 30,
        "next_run": T0,
    }
    values.update(fields)
    job = LocalJob.model_validate(values)
    jobs.put(job)
    return job


def stored(jobs: Repository[LocalJob], device_id: str) -> LocalJob:
    job = jobs.get(job_id_for(device_id))
    assert job is not None
    return job


# --- LocalJobs -----------------------------------------------------------------------------


def test_upsert_creates_a_running_job_due_within_timer_plus_or_minus_delta(
    jobs_repository: Repository[LocalJob], clock: Clock
) -> None:
    jobs = LocalJobs(jobs_repository, clock=clock)

    job_id = jobs.upsert("tracker-1", timer=600, delta=30)

    job = stored(jobs_repository, "tracker-1")
    assert job.id == job_id
    assert (job.device_id, job.timer, job.delta, job.paused) == ("tracker-1", 600, 30, False)
    assert T0 + timedelta(seconds=570) <= job.next_run <= T0 + timedelta(seconds=630)


def test_upsert_of_an_existing_job_updates_it_and_keeps_it_paused(
    jobs_repository: Repository[LocalJob], clock: Clock
) -> None:
    jobs = LocalJobs(jobs_repository, clock=clock)
    jobs.upsert("tracker-1", timer=600, delta=30)
    jobs.pause("tracker-1")

    jobs.upsert("tracker-1", timer=120, delta=0)

    job = stored(jobs_repository, "tracker-1")
    assert (job.timer, job.delta, job.paused) == (120, 0, True)
    assert job.next_run == T0 + timedelta(seconds=120)
    assert jobs_repository.count() == 1


def test_pause_and_resume_flip_the_job(jobs_repository: Repository[LocalJob], clock: Clock) -> None:
    jobs = LocalJobs(jobs_repository, clock=clock)
    jobs.upsert("tracker-1", timer=600, delta=30)

    jobs.pause("tracker-1")
    assert stored(jobs_repository, "tracker-1").paused is True

    jobs.resume("tracker-1")
    assert stored(jobs_repository, "tracker-1").paused is False


def test_pause_or_resume_of_a_missing_job_is_not_found(
    jobs_repository: Repository[LocalJob],
) -> None:
    jobs = LocalJobs(jobs_repository)

    with pytest.raises(NotFound, match="ghost"):
        jobs.pause("ghost")
    with pytest.raises(NotFound, match="ghost"):
        jobs.resume("ghost")
    assert jobs_repository.count() == 0  # pausing a missing job does not invent one


def test_delete_reports_whether_there_was_a_job(jobs_repository: Repository[LocalJob]) -> None:
    jobs = LocalJobs(jobs_repository)
    jobs.upsert("tracker-1", timer=600, delta=30)

    assert jobs.delete("tracker-1") is True
    assert jobs_repository.get(job_id_for("tracker-1")) is None
    assert jobs.delete("tracker-1") is False


def test_device_ids_unfit_for_document_ids_still_get_distinct_jobs(
    jobs_repository: Repository[LocalJob],
) -> None:
    jobs = LocalJobs(jobs_repository)

    jobs.upsert("vin/1 A", timer=600, delta=0)
    jobs.upsert("vin-1-A", timer=900, delta=0)

    assert jobs_repository.count() == 2
    assert stored(jobs_repository, "vin/1 A").device_id == "vin/1 A"
    assert stored(jobs_repository, "vin-1-A").timer == 900


# --- next_delay ----------------------------------------------------------------------------


def test_next_delay_stays_within_timer_plus_or_minus_delta() -> None:
    rng = random.Random(42)

    delays = [next_delay(600, 30, rng) for _ in range(1_000)]

    assert all(570 <= delay <= 630 for delay in delays)
    assert min(delays) < 580 and max(delays) > 620  # the jitter spreads over the whole range


def test_next_delay_without_delta_is_the_timer_and_never_below_one_second() -> None:
    assert next_delay(600, 0) == 600
    rng = random.Random(3)
    assert all(next_delay(2, 10, rng) >= 1.0 for _ in range(200))


# --- LocalLoop -----------------------------------------------------------------------------


def test_tick_runs_due_jobs_only_and_skips_paused_ones(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    put_job(jobs_repository, "due", next_run=T0 - timedelta(seconds=5))
    put_job(jobs_repository, "due-now", next_run=T0)
    later = put_job(jobs_repository, "later", next_run=T0 + timedelta(seconds=1))
    paused = put_job(jobs_repository, "paused", next_run=T0 - timedelta(hours=1), paused=True)
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync")

    ran = loop.tick()

    assert sorted(ran) == ["due", "due-now"]
    assert sorted(recorder.bodies("/sync"), key=str) == [
        {"device_id": "due"},
        {"device_id": "due-now"},
    ]
    assert all(content_type == "application/json" for _, content_type, _ in recorder.calls)
    assert stored(jobs_repository, "later") == later
    assert stored(jobs_repository, "paused") == paused


def test_a_one_shot_job_runs_at_once_saying_so_beside_the_service_and_is_deleted_by_its_run(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    service = put_job(jobs_repository, "keys", next_run=T0 + timedelta(minutes=5))
    jobs = LocalJobs(jobs_repository, clock=clock)
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync")

    jobs.run_once("keys")
    ran = loop.tick()

    assert ran == ["keys"]
    assert recorder.bodies("/sync") == [{"device_id": "keys", "once": True}]
    assert stored(jobs_repository, "keys") == service  # the service's job is left as it was
    assert jobs.delete_once("keys") is True  # what sync_device does with that run
    assert jobs.delete_once("keys") is False
    assert jobs_repository.get(once_job_id("keys")) is None


def test_tick_reschedules_a_run_job_at_timer_plus_or_minus_delta(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    put_job(jobs_repository, "tracker-1", timer=600, delta=30)
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync", seed=7)

    loop.tick()

    expected = T0 + timedelta(seconds=next_delay(600, 30, random.Random(7)))
    next_run = stored(jobs_repository, "tracker-1").next_run
    assert abs((next_run - expected).total_seconds()) < 0.001  # Firestore keeps microseconds
    assert loop.tick() == []  # not due again at the same instant
    assert len(recorder.bodies("/sync")) == 1


def test_successive_runs_follow_the_jittered_timer(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    put_job(jobs_repository, "tracker-1", timer=120, delta=20)
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync", seed=11)
    gaps = []

    for _ in range(8):
        assert loop.tick() == ["tracker-1"]
        next_run = stored(jobs_repository, "tracker-1").next_run
        gaps.append((next_run - clock.now).total_seconds())
        clock.now = next_run

    assert all(100 <= gap <= 140 for gap in gaps)
    assert len({round(gap, 3) for gap in gaps}) > 1  # jittered, not a fixed period
    assert recorder.bodies("/sync") == [{"device_id": "tracker-1"}] * 8


def test_refresh_is_called_on_the_first_tick_then_hourly(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    loop = make_loop(
        jobs_repository,
        session,
        clock,
        sync_url=recorder.url + "/sync",
        refresh_url=recorder.url + "/refresh",
    )

    loop.tick()
    clock.now = T0 + timedelta(seconds=REFRESH_INTERVAL - 1)
    loop.tick()
    assert recorder.bodies("/refresh") == [{}]

    clock.now = T0 + timedelta(seconds=REFRESH_INTERVAL)
    loop.tick()
    assert recorder.bodies("/refresh") == [{}, {}]
    assert recorder.bodies("/sync") == []  # no job, no sync call


def test_the_sweep_is_called_every_minute_between_hourly_refreshes(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    """Issue 16: due outboxes wait at most a sweep interval locally too, as in the cloud
    (the `<prefix>-sweep-handoffs` job); a refresh sweeps as well, so no sweep call joins it."""
    loop = make_loop(
        jobs_repository, session, clock, sync_url=recorder.url + "/sync",
        refresh_url=recorder.url + "/refresh",
    )  # fmt: skip

    for second in range(0, REFRESH_INTERVAL + 1, 30):
        clock.now = T0 + timedelta(seconds=second)
        loop.tick()

    assert SWEEP_INTERVAL == 60  # as `sweep_schedule`'s default: issue 16 wants at most 5 minutes
    sweeps = recorder.bodies("/refresh?sweep=only")
    assert len(sweeps) == REFRESH_INTERVAL // SWEEP_INTERVAL - 1  # not with the refreshes
    assert sweeps == [{}] * len(sweeps)
    assert recorder.bodies("/refresh") == [{}, {}]  # at T0 and an hour later


def test_no_refresh_url_means_no_refresh_call(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync")

    loop.tick()

    assert recorder.calls == []


def test_unreachable_sync_url_does_not_break_the_tick(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/sync"  # nothing listens there
    put_job(jobs_repository, "tracker-1")
    put_job(jobs_repository, "tracker-2")
    loop = make_loop(
        jobs_repository, session, clock, sync_url=refused, refresh_url=recorder.url + "/refresh"
    )

    with caplog.at_level(logging.WARNING, logger="devtools.scheduler"):
        ran = loop.tick()

    assert sorted(ran) == ["tracker-1", "tracker-2"]
    assert recorder.bodies("/refresh") == [{}]  # the later call still went out
    assert all(stored(jobs_repository, d).next_run > T0 for d in ("tracker-1", "tracker-2"))
    failures = [r for r in caplog.records if r.getMessage() == "scheduled call failed"]
    assert len(failures) == 2


def test_sync_answering_an_error_status_does_not_break_the_tick(
    jobs_repository: Repository[LocalJob],
    session: requests.Session,
    clock: Clock,
    recorder: Recorder,
) -> None:
    recorder.status = 500
    put_job(jobs_repository, "tracker-1")
    loop = make_loop(jobs_repository, session, clock, sync_url=recorder.url + "/sync")

    assert loop.tick() == ["tracker-1"]
    clock.now = stored(jobs_repository, "tracker-1").next_run
    assert loop.tick() == ["tracker-1"]


def test_run_keeps_ticking_until_stopped_despite_failing_calls(
    jobs_repository: Repository[LocalJob], session: requests.Session, recorder: Recorder
) -> None:
    put_job(jobs_repository, "tracker-1", timer=1, delta=0)
    refused = f"http://127.0.0.1:{free_port()}/sync"
    loop = LocalLoop(
        jobs_repository,
        session,
        sync_device_url=refused,
        refresh_devices_url=recorder.url + "/refresh",
        timeout=HTTP_TIMEOUT,
    )
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), kwargs={"interval": 0.05})

    started = datetime.now(UTC)

    # Run at started (+ up to one interval), then 1 s later: the second run puts the next
    # one at least 2 s after the start. Only a loop that survived the failed calls gets there.
    @RetryResult(
        lambda job: job.next_run >= started + timedelta(seconds=2),
        max_tries=40,
        delay=0.2,
        backoff=1,
    )
    def job_after_two_runs() -> LocalJob:
        return stored(jobs_repository, "tracker-1")

    runner.start()
    try:
        job_after_two_runs()
    finally:
        stop.set()
        runner.join(timeout=HTTP_TIMEOUT + 2)

    assert not runner.is_alive()
    assert recorder.bodies("/refresh") == [{}]
