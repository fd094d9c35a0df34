"""The latest value per signal code survives out-of-order deliveries and failed signals."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.sources.smartcar.payloads import Signal, SignalStatus
from shared.sources.smartcar.webhook import merge_signals
from shared.store.smartcar import SignalEntry

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SOC = "tractionbattery-stateofcharge"


def reading(value: int, at_ms: int) -> Signal:
    return Signal(code=SOC, body={"unit": "percent", "value": value}, meta={"oemUpdatedAt": at_ms})


def failure(at_ms: int) -> Signal:
    return Signal(
        code=SOC,
        status=SignalStatus.model_validate({"error": {"type": "VEHICLE_STATE", "code": "ASLEEP"}}),
        meta={"oemUpdatedAt": at_ms},
    )


def merge(latest: dict[str, SignalEntry], *signals: Signal, event: str) -> dict[str, SignalEntry]:
    return merge_signals(latest, list(signals), event_id=event, now=NOW, fallback_time=0)


def test_an_older_delivery_arriving_late_does_not_replace_a_newer_value() -> None:
    latest = merge({}, reading(80, 2_000_000_000_000), event="new")
    latest = merge(latest, reading(60, 1_000_000_000_000), event="old")

    assert latest[SOC].body == {"unit": "percent", "value": 80}
    assert (latest[SOC].event_id, latest[SOC].measured_at) == ("new", 2_000_000_000)


def test_a_failed_signal_is_recorded_and_keeps_the_last_good_value() -> None:
    latest = merge({}, reading(80, 1_000_000_000_000), event="good")
    latest = merge(latest, failure(1_100_000_000_000), event="failed")

    entry = latest[SOC]
    assert entry.body == {"unit": "percent", "value": 80}
    assert (entry.error, entry.error_at) == ("VEHICLE_STATE:ASLEEP", 1_100_000_000)


def test_a_newer_good_value_clears_the_failure() -> None:
    latest = merge({}, failure(1_000_000_000_000), event="failed")
    assert latest[SOC].body is None and latest[SOC].error == "VEHICLE_STATE:ASLEEP"

    latest = merge(latest, reading(55, 1_100_000_000_000), event="good")

    assert latest[SOC].body == {"unit": "percent", "value": 55} and latest[SOC].error is None


def test_an_older_failure_arriving_late_changes_nothing() -> None:
    latest = merge({}, reading(80, 2_000_000_000_000), event="good")

    assert merge(latest, failure(1_000_000_000_000), event="late") == latest
