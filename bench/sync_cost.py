"""Sync cost: Firestore reads and writes, and wall time, per sync run as the history grows.

    .venv/bin/python -m bench.sync_cost [--runs 5] [--histories 10,1000,100000]

For each history size N, the emulator is wiped and the device's history is stored as the
bridge would hold it after N delivered positions: `device_state/<device>` with the
fingerprints of the dedup window (at most `DELIVERED_CAP`, the rest below `floor`) and N
`push_log` documents, one accepted attempt each (written in parallel batches of 500). Then
`--runs` sync runs each fetch `NEW_PER_RUN` new positions plus `REPEATED_PER_RUN` already
delivered ones (sources report recent positions again) and push them to the OsmAnd test
server. Reads and writes are counted on the wire (`tests/fakes/firestore_counter.py`, billed
the way Firestore bills); the wall time covers the whole run (lease, pushes, final batch).

The baseline, timed in the same run: the seed's bookkeeping, `locations.json` holding every
fingerprint of every device, loaded, searched and rewritten whole for each delivered location
(SPEC.md: 0.24 ms at 10 fingerprints, 31 ms at 100 000 on the reference machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench.common import DEVICE_ID, PROJECT, Section, Services, median, services, timed
from shared.models import Device, DeviceState, Location, PushLogEntry, Source
from shared.pipeline import DEDUP_WINDOW, DELIVERED_CAP, Pipeline, prune_delivered
from shared.store import DeliveryRepository, Store
from shared.traccar import OsmAndClient
from tests.fakes.firestore_counter import CountingClient, Counts

NEW_PER_RUN = 3
REPEATED_PER_RUN = 2
HISTORIES = (10, 1_000, 100_000)
SEED_BATCH = 500  # Firestore's limit of writes per batch
SEED_THREADS = 8
RUN_INTERVAL = timedelta(minutes=10)
START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEVICE = Device(id=DEVICE_ID, source=Source.GOOGLE, name="Bench", traccar_unique_id=DEVICE_ID)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _position(timestamp: int, index: int) -> Location:
    return Location(id=DEVICE_ID, lat=48.0 + index % 1000 / 1e4, lon=2.35, timestamp=timestamp)


def _history(count: int, now: datetime) -> list[Location]:
    """`count` delivered positions, one a minute up to `now`."""
    newest = int(now.timestamp()) - 60
    return [_position(newest - 60 * age, age) for age in range(count)]


def _log_entry(location: Location, now: datetime) -> dict:
    entry = PushLogEntry(
        id=location.id,
        lat=location.lat,
        lon=location.lon,
        timestamp=location.timestamp,
        name=DEVICE.name,
        date=datetime.fromtimestamp(location.timestamp, UTC).isoformat(),
        maps_url=f"https://maps.google.com/?q={location.lat},{location.lon}",
        traccar_status=200,
        synced_at=now.isoformat(),
        source=Source.GOOGLE,
        outcome="accepted",
        device_id=DEVICE_ID,
        attempted_at=now,
        expire_at=now + timedelta(days=90),
    )
    return entry.model_dump(mode="python")


def store_history(client, count: int, now: datetime) -> float:  # client: firestore.Client
    """Store `count` delivered positions as the bridge holds them; seconds it took."""
    started = time.perf_counter()
    history = _history(count, now)
    delivered, floor = prune_delivered(
        {location.fingerprint(): location.timestamp for location in history}, 0, now
    )
    state = DeviceState(id=DEVICE_ID, delivered=delivered, floor=floor, last_location=history[0])
    client.collection("device_state").document(DEVICE_ID).set(state.model_dump(mode="python"))
    Store(client).devices.put(DEVICE)
    log = client.collection("push_log")

    def write(start: int) -> None:
        batch = client.batch()
        for location in history[start : start + SEED_BATCH]:
            batch.set(log.document(), _log_entry(location, now))
        batch.commit()

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, range(0, count, SEED_BATCH)))
    return time.perf_counter() - started


def seed_bookkeeping(path: Path, count: int, runs: int) -> float:
    """The seed's way: median ms per delivered location with `count` stored fingerprints."""
    stored = [
        hashlib.md5(f"{DEVICE_ID}{i}".encode(), usedforsecurity=False).hexdigest()
        for i in range(count)
    ]
    path.write_text(json.dumps({DEVICE_ID: stored}))
    times = []
    for run in range(runs):
        fingerprint = hashlib.md5(f"new{run}".encode(), usedforsecurity=False).hexdigest()

        def deliver(fingerprint: str = fingerprint) -> None:
            hashes = json.loads(path.read_text())
            known = hashes.setdefault(DEVICE_ID, [])
            if fingerprint not in known:  # the seed's check: a list scan
                known.append(fingerprint)
                path.write_text(json.dumps(hashes))

        times.append(timed(deliver) * 1000)
    return median(times)


def measure_runs(
    pipeline: Pipeline, delivery: DeliveryRepository, counts: Counts, clock: Clock, runs: int
) -> tuple[list[tuple[int, int]], list[float]]:
    """Run the pipeline `runs` times; (reads, writes) and seconds of each run."""
    costs, seconds = [], []
    for _ in range(runs):
        clock.now += RUN_INTERVAL
        now = int(clock.now.timestamp())
        fresh = [_position(now - 10 * i, 500 + i) for i in range(NEW_PER_RUN)]
        newest = delivery.state(DEVICE_ID).last_location  # read before counting starts
        repeated = [newest] * REPEATED_PER_RUN if newest else []
        fetched = fresh + repeated
        counts.reset()
        started = time.perf_counter()
        pipeline.run(DEVICE, lambda fetched=fetched: fetched)
        seconds.append(time.perf_counter() - started)
        costs.append((counts.reads, counts.writes))
    return costs, seconds


def run(local: Services, runs: int = 5, histories: tuple[int, ...] = HISTORIES) -> Section:
    counts = Counts()
    client = CountingClient(counts, project=PROJECT)
    section = Section(
        title="Sync cost per run as the stored history grows",
        method=(
            f"A run fetches {NEW_PER_RUN} new and {REPEATED_PER_RUN} already delivered "
            f"positions and pushes the new ones to the OsmAnd test server; median of {runs} "
            "runs per history size. Reads and writes counted on the wire as Firestore bills "
            f"them. History: the dedup window's fingerprints (≤ {DELIVERED_CAP}) in "
            "`device_state` plus one `push_log` document per delivered position. Baseline: "
            "the seed's `locations.json` loaded, searched and rewritten per delivered "
            "location. Target (SPEC.md): ≤ 3 reads and k + 2 writes per run, flat."
        ),
        header=[
            "stored fingerprints",
            "reads / run",
            "writes / run (k = 3)",
            "ms / run",
            "ms / delivered location (run / k)",
            "seed baseline: ms / delivered location (bookkeeping only)",
            "history stored in",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        for count in histories:
            local.emulator.wipe(PROJECT)
            clock = Clock(START)
            seeded = store_history(client, count, clock.now)
            delivery = DeliveryRepository(client)
            pipeline = Pipeline(
                delivery=delivery,
                osmand=OsmAndClient(requests.Session(), local.osmand.url),
                traccar_api=lambda: None,
                retention=timedelta(days=90),
                clock=clock,
            )
            measure_runs(pipeline, delivery, counts, clock, 1)  # warm-up: connections, JIT
            costs, seconds = measure_runs(pipeline, delivery, counts, clock, runs)
            reads = median([float(r) for r, _ in costs])
            writes = median([float(w) for _, w in costs])
            per_run = median(seconds) * 1000
            baseline = seed_bookkeeping(Path(folder) / "locations.json", count, runs)
            print(
                f"{count:>7} fingerprints: {reads:.0f} reads, {writes:.0f} writes, "
                f"{per_run:6.1f} ms/run, {per_run / NEW_PER_RUN:5.1f} ms/location; "
                f"seed {baseline:6.2f} ms/location (history stored in {seeded:.1f} s)"
            )
            section.rows.append(
                [
                    f"{count:,}".replace(",", " "),
                    f"{reads:.0f}",
                    f"{writes:.0f}",
                    f"{per_run:.1f}",
                    f"{per_run / NEW_PER_RUN:.1f}",
                    f"{baseline:.2f}",
                    f"{seeded:.1f} s",
                ]
            )
    section.notes.append(
        f"Fingerprints older than the {DEDUP_WINDOW.days}-day window or beyond the newest "
        f"{DELIVERED_CAP} fall below `floor` and count as delivered: the state document stops "
        "growing at the cap, the push log grows but no run reads it. What still grows up to "
        "the cap is reading the state (decoding up to 5000 fingerprints); the writes send only "
        "what changed."
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per history size")
    parser.add_argument(
        "--histories",
        default=",".join(str(h) for h in HISTORIES),
        help="comma-separated stored fingerprint counts",
    )
    arguments = parser.parse_args()
    histories = tuple(int(value) for value in arguments.histories.split(","))
    with services() as local:
        run(local, arguments.runs, histories)


if __name__ == "__main__":
    main()
