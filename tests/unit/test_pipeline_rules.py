"""The pipeline's pure rules: the seed-compatible fingerprint, backoff, the dedup window."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from shared.models import DeviceState, Location
from shared.pipeline import (
    BACKOFF_MAX,
    DEDUP_WINDOW,
    DELIVERED_CAP,
    backoff,
    horizon_of,
    is_delivered,
    newest_of,
    prune_delivered,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_fingerprint_matches_the_seed_example() -> None:
    location = Location(id="abc123", lat=48.8566, lon=2.3522, timestamp=1700000000)
    expected = hashlib.md5(b"abc12348.85662.35221700000000", usedforsecurity=False).hexdigest()
    assert location.fingerprint() == expected


def test_fingerprint_ignores_fields_the_seed_did_not_hash() -> None:
    plain = Location(id="abc123", lat=48.8566, lon=2.3522, timestamp=1700000000)
    rich = plain.model_copy(update={"accuracy": 12.0, "attributes": {"odometer": 5}})
    moved = plain.model_copy(update={"lat": 48.8567})
    assert rich.fingerprint() == plain.fingerprint()
    assert moved.fingerprint() != plain.fingerprint()


def test_backoff_doubles_from_a_minute_up_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
    ]
    assert backoff(30) == BACKOFF_MAX


def test_prune_keeps_the_window_and_raises_the_floor_to_what_it_dropped() -> None:
    recent = int((NOW - timedelta(hours=1)).timestamp())
    old = int((NOW - DEDUP_WINDOW - timedelta(hours=1)).timestamp())
    kept, floor = prune_delivered({"recent": recent, "old": old}, 0, NOW)
    assert kept == {"recent": recent}
    assert floor == old


def test_prune_caps_the_number_of_fingerprints_keeping_the_newest() -> None:
    base = int(NOW.timestamp()) - 10_000
    delivered = {f"fp{i}": base + i for i in range(DELIVERED_CAP + 10)}
    kept, floor = prune_delivered(delivered, 0, NOW)
    assert len(kept) == DELIVERED_CAP
    assert min(kept.values()) == base + 10
    # What the cap dropped lies inside the window: the floor stops at the window's start.
    assert floor == horizon_of(NOW) < base + 9


# 2037-01-01: the date of issue 13's flood.
FLOOD = int(datetime(2037, 1, 1, tzinfo=UTC).timestamp())


def test_a_flood_dated_2037_never_lifts_the_floor_into_the_window() -> None:
    genuine = int((NOW - timedelta(hours=1)).timestamp())
    delivered = {f"flood{i}": FLOOD + i for i in range(DELIVERED_CAP + 50)} | {"real": genuine}
    kept, floor = prune_delivered(delivered, FLOOD, NOW)
    assert floor == horizon_of(NOW) == int((NOW - DEDUP_WINDOW).timestamp())
    # The cap drops the future-dated fingerprints first: the genuine one stays known.
    assert kept["real"] == genuine and len(kept) == DELIVERED_CAP
    later = Location(id="d", lat=1, lon=2, timestamp=genuine + 60)
    state = DeviceState(id="d", delivered=kept, floor=floor)
    assert not is_delivered(state, later, now=NOW)


def test_a_floor_stored_above_the_window_reads_as_the_windows_start() -> None:
    state = DeviceState(id="d", delivered={}, floor=FLOOD)  # recorded before the bound
    recent = Location(id="d", lat=1, lon=2, timestamp=int(NOW.timestamp()) - 60)
    ancient = recent.model_copy(update={"timestamp": horizon_of(NOW)})
    assert not is_delivered(state, recent, now=NOW)
    assert is_delivered(state, ancient, now=NOW)


def test_a_newest_position_dated_in_the_future_gives_way_to_a_genuine_one() -> None:
    forged = Location(id="d", lat=1, lon=2, timestamp=FLOOD)
    genuine = forged.model_copy(update={"timestamp": int(NOW.timestamp()) - 60})
    older = genuine.model_copy(update={"timestamp": genuine.timestamp - 60})
    assert newest_of(forged, genuine, NOW) == genuine
    assert newest_of(genuine, older, NOW) == genuine


def test_a_position_at_or_below_the_floor_counts_as_delivered() -> None:
    state = DeviceState(id="d", delivered={}, floor=1_700_000_000)
    at_floor = Location(id="d", lat=1, lon=2, timestamp=1_700_000_000)
    after = at_floor.model_copy(update={"timestamp": 1_700_000_001})
    assert is_delivered(state, at_floor, now=NOW)
    assert not is_delivered(state, after, now=NOW)
