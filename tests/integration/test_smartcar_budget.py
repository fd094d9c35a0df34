"""Smartcar's call budget (issue 16, PROTOCOLS.md §3): a pull schedule that would spend more than
SMARTCAR_MONTHLY_CALLS of a vehicle's calls a month is refused, naming the most frequent one
that fits; auto-registered Smartcar services are given one that fits."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import firestore

from shared.errors import BadRequest
from shared.models import Device, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec, calls_a_month
from tests.conftest import make_settings

CAR = "9af13248-7a5b-4b0c-9d3e-1f2a3b4c5d6e"


@pytest.fixture
def runtime(firestore_client: firestore.Client, tmp_path: Path) -> Runtime:
    runtime = Runtime(make_settings(tmp_path), firestore_client=firestore_client)
    runtime.store.devices.put(
        Device(id=CAR, source=Source.SMARTCAR, traccar_unique_id=f"smartcar-{CAR}")
    )
    return runtime


def test_a_pull_schedule_over_the_budget_is_refused_naming_the_shortest_timer_that_fits(
    runtime: Runtime,
) -> None:
    with pytest.raises(BadRequest) as refused:
        runtime.services.upsert(CAR, ServiceSpec(timer=600, delta=5))

    message = refused.value.message
    assert refused.value.status == 400 and message.startswith("timer:")
    assert "SMARTCAR_MONTHLY_CALLS (500)" in message
    # 90 minutes would run hourly on Cloud Scheduler's cron: the first that fits is above it.
    assert "the shortest timer that fits is 5401 s" in message
    assert runtime.store.services.get(CAR) is None


def test_the_timer_the_refusal_names_is_accepted(runtime: Runtime) -> None:
    service, created = runtime.services.upsert(CAR, ServiceSpec(timer=5401, delta=5))

    assert created and service.timer == 5401
    assert calls_a_month(5401, 5) <= 500


def test_the_budget_follows_smartcar_monthly_calls(
    firestore_client: firestore.Client, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, smartcar_monthly_calls=5_000)
    runtime = Runtime(settings, firestore_client=firestore_client)
    runtime.store.devices.put(
        Device(id=CAR, source=Source.SMARTCAR, traccar_unique_id=f"smartcar-{CAR}")
    )

    service, _ = runtime.services.upsert(CAR, ServiceSpec(timer=600, delta=5))

    assert service.timer == 600


def test_auto_registered_smartcar_services_get_a_timer_that_fits(runtime: Runtime) -> None:
    registered = runtime.services.auto_register(Source.SMARTCAR, ServiceSpec(timer=600, delta=5))

    assert registered == [CAR]
    service = runtime.store.services.get(CAR)
    assert service is not None and calls_a_month(service.timer, service.delta) <= 500
    assert service.timer == 5401
