"""Webhook ingest: Smartcar and TLINK deliveries per second into one `webhooks` process.

    .venv/bin/python -m bench.webhook_ingest [--events 60] [--runs 3]

One `webhooks` function runs as deployed (`python -m functions_framework`, gunicorn, one
worker) on the Firestore emulator, pushing to the OsmAnd test server. Each delivery is new (its
own event id, time and position) and valid (Smartcar's signed with the management token), so it
does the whole work: verify, claim (dedupe), store, push to Traccar, record. Measured:
- the median latency of one delivery, sent one after another by one client;
- deliveries per second with `CONCURRENCY` clients at once, each for its own vehicle/device;
and, as the same-run floor, one bare Firestore write plus one bare OsmAnd request made from
this process (SPEC.md: an event end to end ≤ 1.5 x that floor).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from bench.common import PROJECT, ROOT, Section, Services, median, services
from devtools.emulator import stop_process_group
from shared.secrets import LocalSecretStore
from tests.e2e.functions import Function, start, wait_until_answering

DATA = ROOT / "tests" / "data"
SMARTCAR_TOKEN = "bench-smartcar-management-token"  # noqa: S105 - a local test value
SMARTCAR_SAMPLE = json.loads((DATA / "smartcar_vehicle_state_v4.json").read_text())
TLINK_SAMPLE = json.loads((DATA / "tlink_push_location.json").read_text())
TLINK_ZONE = ZoneInfo("Asia/Shanghai")  # TLINK_TIME_ZONE's default: its naive times' zone
CONCURRENCY = 4
REQUEST_TIMEOUT = 30.0  # seconds for one delivery
FLOOR_SAMPLES = 30
TARGET_RATIO = 1.5


def _vehicle(index: int) -> str:
    return f"bench-vehicle-{index}"


def smartcar_event(vehicle: str, sequence: int) -> tuple[bytes, dict[str, str]]:
    event = copy.deepcopy(SMARTCAR_SAMPLE)
    event["eventId"] = str(uuid.uuid4())
    event["vehicleId"] = vehicle
    event["data"]["vehicle"]["id"] = vehicle
    measured = (int(time.time()) - 600 + sequence) * 1000
    for signal in event["data"]["signals"]:
        signal["meta"] = {"oemUpdatedAt": measured, "fetchedAt": measured + 1000}
        if signal["code"] == "location-preciselocation":
            signal["body"]["latitude"] = 37.4 + sequence / 1e5
    event["meta"]["deliveredAt"] = measured + 2000
    raw = json.dumps(event).encode()
    signature = hmac.new(SMARTCAR_TOKEN.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "SC-Signature": signature}


def tlink_push(device: int, sequence: int) -> tuple[bytes, dict[str, str]]:
    body = copy.deepcopy(TLINK_SAMPLE)
    body["deviceId"] = device
    moment = datetime.now(TLINK_ZONE) - timedelta(seconds=600 - sequence)
    body["time"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    for sensor in body["sensorsDates"]:
        sensor["times"] = moment.strftime("%H:%M:%S")
        if "," in sensor["value"]:
            sensor["value"] = sensor["reVal"] = f"{31.23 + sequence / 1e5:.6f},121.473701"
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


Delivery = tuple[bytes, dict[str, str]]
# source: (route, delivery number n for sender `who`, Traccar unique id of sender `who`)
KINDS: dict[str, tuple[str, Callable[[int, int], Delivery], Callable[[int], str]]] = {
    "Smartcar": (
        "/smartcar",
        lambda who, n: smartcar_event(_vehicle(who), n),
        lambda who: f"smartcar-{_vehicle(who)}",
    ),
    "TLINK": (
        "/tlink",
        lambda who, n: tlink_push(9000 + who, n),
        lambda who: f"tlink-{9000 + who}",
    ),
}


def deliver(session: requests.Session, function: Function, path: str, delivery: Delivery) -> float:
    body, headers = delivery
    started = time.perf_counter()
    answer = session.post(function.url + path, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200 or answer.json().get("status") not in ("processed", "ok"):
        raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
    return elapsed


def floor(local: Services) -> float:
    """Median seconds of one bare Firestore write plus one bare OsmAnd request."""
    from google.cloud import firestore

    client = firestore.Client(project=PROJECT)
    collection = client.collection("bench_floor")
    session = requests.Session()
    samples = []
    for index in range(FLOOR_SAMPLES + 1):
        started = time.perf_counter()
        collection.document().set({"n": index, "at": datetime.now(UTC)})
        params = {"id": "bench-device", "lat": "48.85", "lon": "2.35", "timestamp": str(index)}
        session.post(local.osmand.url, params=params, timeout=REQUEST_TIMEOUT).raise_for_status()
        if index:  # the first opens the connections
            samples.append(time.perf_counter() - started)
    return median(samples)


def start_webhooks(local: Services) -> Function:
    LocalSecretStore(local.workdir / "secrets").add_version(
        "smartcar-management-token", SMARTCAR_TOKEN
    )
    function = start("webhooks", env=local.env, workdir=local.workdir, label="webhooks-bench")
    wait_until_answering(function)
    return function


def run(local: Services, events: int = 60, runs: int = 3) -> Section:
    for kind in KINDS.values():
        for who in range(CONCURRENCY):
            if kind[2](who) not in local.osmand.devices:
                local.osmand.add_known_id(kind[2](who))
    function = start_webhooks(local)
    section = Section(
        title="Webhook ingest (one `webhooks` process)",
        method=(
            "Each delivery new and valid: verify, claim, store, push to the OsmAnd test server, "
            f"record. Latency: median over {events} deliveries sent one after another (median "
            f"of {runs} runs); throughput: {events} deliveries from {CONCURRENCY} "
            "clients at once (one vehicle/device each). Floor: one bare Firestore write plus one "
            "bare OsmAnd request from the bench process, same run. Target (SPEC.md): ≤ 1.5 x "
            "the floor."
        ),
        header=["source", "median latency (ms)", "x floor", "deliveries / s (4 clients)"],
    )
    try:
        base = floor(local)
        print(f"floor (Firestore write + OsmAnd request): {base * 1000:.1f} ms")
        sequence = 0
        for name, (path, make, _) in KINDS.items():
            latencies, rates = [], []
            session = requests.Session()
            deliver(session, function, path, make(0, sequence))  # warm-up
            for _ in range(runs):
                times = []
                for _ in range(events):
                    sequence += 1
                    times.append(deliver(session, function, path, make(0, sequence)))
                latencies.append(median(times))
                # Sender 0's deliveries went one after another; now every sender at once.
                senders = [requests.Session() for _ in range(CONCURRENCY)]
                work = []
                for index in range(events):
                    sequence += 1
                    who = index % CONCURRENCY
                    work.append((senders[who], make(who, sequence)))
                started = time.perf_counter()
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    list(
                        pool.map(lambda item, p=path: deliver(item[0], function, p, item[1]), work)
                    )
                rates.append(events / (time.perf_counter() - started))
            latency = median(latencies)
            rate = median(rates)
            print(
                f"{name:9} {latency * 1000:6.1f} ms/delivery ({latency / base:4.1f} x floor), "
                f"{rate:6.1f} deliveries/s with {CONCURRENCY} clients"
            )
            section.rows.append(
                [name, f"{latency * 1000:.1f}", f"{latency / base:.1f}", f"{rate:.1f}"]
            )
        section.notes.append(f"floor: {base * 1000:.1f} ms")
    finally:
        stop_process_group(function.process)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60, help="deliveries per measurement")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (the median is shown)")
    arguments = parser.parse_args()
    with services() as local:
        run(local, arguments.events, arguments.runs)


if __name__ == "__main__":
    main()
