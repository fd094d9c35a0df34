"""`cron_for` (timer seconds → Cloud Scheduler cron) and `job_id_for` (device id → job id)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.scheduler import cron_for, job_id_for
from tests.fakes.cloud_scheduler import valid_cron

MINUTE, HOUR, DAY = 60, 3600, 86_400
CLOUD_SCHEDULER_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")


def period_of(schedule: str) -> int:
    """Seconds between runs of the schedules `cron_for` writes (steps from :00 / midnight)."""
    minute, hour, day, month, weekday = schedule.split()
    assert (month, weekday) == ("*", "*")
    if hour == "*" and day == "*":
        return MINUTE if minute == "*" else HOUR if minute == "0" else int(minute[2:]) * MINUTE
    assert minute == "0"
    if day == "*":
        return DAY if hour == "0" else HOUR if hour == "*" else int(hour[2:]) * HOUR
    raise AssertionError(f"unexpected schedule {schedule}")


@pytest.mark.parametrize(
    ("timer", "schedule"),
    [
        (0, "* * * * *"),
        (10, "* * * * *"),
        (60, "* * * * *"),
        (89, "* * * * *"),
        (91, "*/2 * * * *"),
        (300, "*/5 * * * *"),
        (600, "*/10 * * * *"),
        (1_800, "*/30 * * * *"),
        (7 * MINUTE, "*/6 * * * *"),
        (8 * MINUTE, "*/6 * * * *"),
        (9 * MINUTE, "*/10 * * * *"),
        (45 * MINUTE, "*/30 * * * *"),
        (50 * MINUTE, "0 * * * *"),
        (59 * MINUTE, "0 * * * *"),
    ],
)
def test_timers_under_an_hour_run_every_n_minutes(timer: int, schedule: str) -> None:
    assert cron_for(timer) == schedule


@pytest.mark.parametrize(
    ("timer", "schedule"),
    [
        (HOUR - 20, "0 * * * *"),
        (HOUR, "0 * * * *"),
        (HOUR + 25 * MINUTE, "0 * * * *"),
        (2 * HOUR, "0 */2 * * *"),
        (5 * HOUR, "0 */4 * * *"),
        (6 * HOUR, "0 */6 * * *"),
        (7 * HOUR, "0 */6 * * *"),
        (18 * HOUR, "0 */12 * * *"),
        (19 * HOUR, "0 0 * * *"),
    ],
)
def test_timers_under_a_day_run_every_n_hours_on_the_hour(timer: int, schedule: str) -> None:
    assert cron_for(timer) == schedule


@pytest.mark.parametrize(
    ("timer", "schedule"),
    [
        (DAY - 20 * MINUTE, "0 0 * * *"),
        (DAY, "0 0 * * *"),
        (2 * DAY, "0 0 * * *"),
        (7 * DAY, "0 0 * * *"),
    ],
)
def test_timers_of_a_day_or_more_run_daily_at_midnight(timer: int, schedule: str) -> None:
    assert cron_for(timer) == schedule


@given(st.integers(min_value=MINUTE, max_value=DAY))
def test_every_schedule_is_valid_evenly_spaced_cron_close_to_the_timer(timer: int) -> None:
    schedule = cron_for(timer)

    assert valid_cron(schedule)
    period = period_of(schedule)
    # Evenly spaced: the step divides the hour or the day, so it never restarts early.
    assert HOUR % period == 0 if period < HOUR else DAY % period == 0
    # The nearest such step is at most a third away from the timer (45 min → 30 min).
    assert abs(period - timer) <= timer / 3 + 30


@pytest.mark.parametrize(
    "schedule", ["* * * *", "*/0 * * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "5-2 * * * *"]
)
def test_the_cron_check_used_above_refuses_what_cloud_scheduler_refuses(schedule: str) -> None:
    assert not valid_cron(schedule)


def test_plain_device_id_is_kept_as_is() -> None:
    assert job_id_for("tracker_01-AbC") == "sync-tracker_01-AbC"


def test_odd_characters_are_replaced_and_a_hash_keeps_ids_apart() -> None:
    ids = ["Pixel 7/Anna", "Pixel 7:Anna", "Pixel-7-Anna", "Pixel 7 Anna", "Pixel7Anna"]

    job_ids = [job_id_for(device_id) for device_id in ids]

    assert job_ids[0].startswith("sync-Pixel-7-Anna-")
    assert len(set(job_ids)) == len(ids)
    assert all(CLOUD_SCHEDULER_JOB_ID.fullmatch(job_id) for job_id in job_ids)


def test_long_ids_are_cut_to_cloud_schedulers_limit_yet_stay_unique() -> None:
    prefix = "x" * 450

    first, second = job_id_for(prefix + "a"), job_id_for(prefix + "b")

    assert first != second
    assert len(first) <= 500
    assert CLOUD_SCHEDULER_JOB_ID.fullmatch(first)


def test_job_id_is_stable_across_calls() -> None:
    # The job is found again by recomputing its id: it must never depend on the run.
    assert job_id_for("Pixel 7/Anna") == job_id_for("Pixel 7/Anna")


@given(st.text(min_size=1, max_size=600))
def test_any_device_id_gives_a_valid_job_id(device_id: str) -> None:
    job_id = job_id_for(device_id)

    assert job_id.startswith("sync-")
    assert CLOUD_SCHEDULER_JOB_ID.fullmatch(job_id)


@given(st.text(max_size=40), st.text(max_size=40))
def test_different_device_ids_get_different_job_ids(first: str, second: str) -> None:
    assume(first != second)

    assert job_id_for(first) != job_id_for(second)
