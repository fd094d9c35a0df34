"""Free tier: ten Google trackers synced every ten minutes, one day's use against the free tiers.

    .venv/bin/python -m bench.free_tier [--hours 2] [--trackers 10]
        [--answer-delay 3.0] [--nova-latency 0.3]

What runs: the bridge as deployed, in this process, through the real code and the wire
protocols of every service it calls. Firestore is the emulator behind `CountingClient`
(`tests/fakes/firestore_counter.py`: reads, writes and deletes counted on the wire, as
Firestore bills them); Secret Manager and Cloud Scheduler are their gRPC fakes under the
official clients (`SecretManagerStore`, `CloudSchedulerJobs`, as `SECRETS_BACKEND=secret_manager`
and `SCHEDULER_BACKEND=cloud_scheduler` make them); Google's OAuth, Nova and MCS are the fakes
of `tests/fakes/nova.py` with the delays of `bench.fcm_session` (each locate answered
`--answer-delay` s after Nova took it, Nova answering in `--nova-latency` s); Traccar is the
OsmAnd test server.

The day: credentials uploaded, then the first `refresh_devices` run finds the trackers and
auto-registers a sync service each (its Cloud Scheduler job, `AUTO_REGISTER_TIMER` and `_DELTA`
from infra/terraform/variables.tf) and one warm-up round runs; none of that is counted. Then
`--hours` of simulated time, counted: every ten minutes each job's call, one after another in a
shuffled order (`Sync.scheduled_sync`, what `sync_device` runs; `max_instance_count = 1` and a
concurrency of 1 serialise them in the cloud), and every hour the `refresh_devices` run (the
calls `functions/refresh_devices/main.py` makes). The Google source's clock advances ten
minutes per round, so its due-device choice, FCM lease memory and access-token expiry behave
as over real time. Each locate answers 2 new crowd-sourced reports and the 2 of the round
before (already delivered).

Scaled to a day: each job's calls per day from its cron schedule (the jobs stored in the Cloud
Scheduler fake) and the refresh job's from infra/terraform; the counted use per round and per
refresh times those. Billed function time: each call's measured time plus the jitter sleep
`Sync.scheduled_sync` chose (slept here through its `sleep` argument, not waited), rounded up to
100 ms as Cloud Run bills, plus `COLD_START_SECONDS` per hourly refresh (an instance idle for
an hour has stopped); vCPU and memory from the functions' `available_memory` in
infra/terraform/functions.tf and Cloud Run's default vCPU for it. Firestore storage at steady
state: the documents and index entries found after the run, sized by Firestore's storage-size
rules, with the push log kept `PUSH_LOG_RETENTION_DAYS` and each `delivered` map at its
steady size; TTL deletes per day = push log documents written per day.

A tracker that never answers (flat battery), measured: the same counted hours run again on a
fresh deployment where `--silent` trackers (default 1) stop answering after the warm-up round
(`FakeTracker.answers = False`). Each locate of such a tracker waits the whole FCM_TIMEOUT, the
run still ends well (Cloud Scheduler does not retry it) and the tracker backs off (10 min,
doubling up to GOOGLE_SILENT_BACKOFF_MAX): the note gives the billed time it added, the FCM
waits counted on the Nova fake, and the steady state the backoff cap leads to.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import firestore

from bench.common import PROJECT, Section, Services, services
from bench.fcm_session import ANSWER_DELAY, NOVA_LATENCY, google_account
from shared.config import Settings, load_settings
from shared.errors import BridgeError
from shared.models import Source, utc_now
from shared.pipeline import DEDUP_WINDOW, DELIVERED_CAP
from shared.runtime import Runtime
from shared.scheduler import CloudSchedulerJobs
from shared.secrets import SecretManagerStore
from tests.fakes.cloud_scheduler import FakeCloudScheduler
from tests.fakes.firestore_counter import CountingClient, Counts
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.fakes.secret_manager import FakeSecretManager
from tests.infra.hcl import TF_DIR, Terraform, load, service_config
from tests.unit.google.encryptor import Report

TRACKERS = 10
HOURS = 2
NEW_PER_LOCATE = 2  # new crowd-sourced reports in each answer (the round before's come again)
COLD_START_SECONDS = 2.0  # billed start of an instance at 0.333 vCPU (0.7 s on 2 cores here)
BILLING_STEP = 0.1  # Cloud Run rounds each request's time up to 100 ms
DAYS_PER_MONTH = 30
SEED = 20_261_122
SILENT = 1  # trackers that never answer in the second counted run
SCHEDULER_SERVICE_ACCOUNT = f"scheduler@{PROJECT}.iam.gserviceaccount.com"

# Free tiers, as the providers' pricing pages state them (read when this was written):
# Firestore (cloud.google.com/firestore/pricing, "Free quota"), per day except storage; TTL
# deletes and PITR data are listed there as operations that include no free usage.
FIRESTORE_READS, FIRESTORE_WRITES, FIRESTORE_DELETES = 50_000, 20_000, 20_000
FIRESTORE_STORED_BYTES = 2**30
# Cloud Run, which bills Cloud Functions 2nd gen (cloud.google.com/run/pricing, request-based
# billing, Tier 1 regions such as europe-west1), per month per billing account.
RUN_REQUESTS, RUN_VCPU_SECONDS, RUN_GIB_SECONDS = 2_000_000, 180_000, 360_000
# Cloud Functions 1st gen, for comparison (cloud.google.com/functions/pricing-1stgen), per month;
# 1 vCPU = 2.4 GHz (Cloud Run functions memory and vCPU page).
GEN1_GB_SECONDS, GEN1_GHZ_SECONDS, GHZ_PER_VCPU = 400_000, 200_000, 2.4
# Cloud Scheduler (cloud.google.com/scheduler/pricing): 3 jobs per billing account, then
# $0.10 per job per month. Secret Manager (cloud.google.com/secret-manager/pricing): 10 000
# access operations per month, then $0.03 per 10 000.
SCHEDULER_FREE_JOBS, SCHEDULER_JOB_PRICE = 3, 0.10
SECRET_ACCESSES = 10_000
# Cloud Run functions' default vCPU per memory size (the "memory and vCPU limits" table).
DEFAULT_VCPU = ((128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583), (2048, 1.0),
                (4096, 2.0), (8192, 2.0), (16384, 4.0), (32768, 8.0))  # fmt: skip
MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


# --- the deployment, read from infra/terraform ------------------------------------------------


@dataclass(frozen=True)
class FunctionSize:
    memory_bytes: int
    vcpu: float

    @property
    def gib(self) -> float:
        return self.memory_bytes / 2**30


def function_size(terraform: Terraform, function: str) -> FunctionSize:
    config = service_config(terraform, function)
    text = str(config.get("available_memory", "256M"))
    number = text.rstrip("kKMGi")
    memory = int(float(number) * MEMORY_UNITS[text[len(number) :]])
    if "available_cpu" in config:
        return FunctionSize(memory, float(config["available_cpu"]))
    mib = memory / 2**20
    vcpu = next(cpu for tier, cpu in DEFAULT_VCPU if mib <= tier)
    return FunctionSize(memory, vcpu)


def variable(terraform: Terraform, name: str) -> Any:
    return terraform.variables[name]["default"]


def runs_per_day(cron: str) -> int:
    """How often a `minute hour * * *` cron schedule fires in a day (the shapes we make)."""
    minute, hour, *rest = cron.split()
    if rest != ["*", "*", "*"]:
        raise ValueError(f"cannot count the runs of {cron!r}")

    def matches(field_text: str, size: int) -> int:
        if field_text == "*":
            return size
        if field_text.startswith("*/"):
            return len(range(0, size, int(field_text[2:])))
        if field_text.isdigit():
            return 1
        raise ValueError(f"cannot count the runs of {cron!r}")

    return matches(minute, 60) * matches(hour, 24)


def unindexed_fields(terraform: Terraform) -> frozenset[tuple[str, str]]:
    """(collection, field) pairs exempted from single-field indexes in firestore.tf: each TTL
    collection's `expire_at` and the `unindexed_fields` list."""
    ttl = {(collection, "expire_at") for collection in terraform.locals["ttl_collections"]}
    listed = {
        (collection, name)
        for collection, names in terraform.locals["unindexed_fields"].items()
        for name in names
    }
    return frozenset(ttl | listed)


def composite_indexes(terraform: Terraform) -> dict[str, list[list[str]]]:
    """Collection → the field paths of each of its composite indexes."""
    found: dict[str, list[list[str]]] = {}
    for index in terraform.locals["composite_indexes"].values():
        paths = [field_spec["field_path"] for field_spec in index["fields"]]
        found.setdefault(index["collection"], []).append(paths)
    return found


# --- Firestore storage sizes (firebase.google.com/docs/firestore/storage-size) ---------------


def string_size(text: str) -> int:
    return len(text.encode()) + 1


def value_size(value: object) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return string_size(value)
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, list):
        return sum(value_size(item) for item in value)
    if isinstance(value, dict):
        return sum(string_size(key) + value_size(item) for key, item in value.items())
    if isinstance(value, firestore.GeoPoint):
        return 16
    raise TypeError(f"no storage size for {type(value).__name__}")


def name_size(path: str) -> int:
    return sum(string_size(part) for part in path.split("/")) + 16


def leaves(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every indexed value: map fields are indexed by their subfields, arrays per element."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path, value


@dataclass
class StoredSize:
    documents: int = 0
    document_bytes: int = 0
    index_bytes: int = 0

    @property
    def total(self) -> int:
        return self.document_bytes + self.index_bytes


def document_storage(
    collection: str,
    path: str,
    data: dict[str, Any],
    unindexed: frozenset[tuple[str, str]],
    composites: list[list[str]],
) -> StoredSize:
    """One document and its index entries: automatic single-field ones (two per value, one
    per array element) except exempted fields, and the collection's composite indexes."""
    document = name_size(path) + sum(string_size(k) + value_size(v) for k, v in data.items()) + 32
    entry_base = name_size(path) + 16 + 32  # the document, its parent (the root), overhead
    index = 0
    for field_path, value in leaves(data):
        if (collection, field_path.split(".", 1)[0]) in unindexed:  # a map's keys go with it
            continue
        if isinstance(value, list):
            index += sum(entry_base + string_size(field_path) + value_size(v) for v in value)
        else:
            index += 2 * (entry_base + string_size(field_path) + value_size(value))
    for fields in composites:
        index += entry_base + sum(value_size(_value_at(data, path)) for path in fields)
    return StoredSize(1, document, index)


def _value_at(data: dict[str, Any], path: str) -> object:
    value: object = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# --- the counted day ----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Use:
    """What some calls cost: Firestore operations, Secret Manager accesses, billed time."""

    calls: int = 0
    reads: int = 0
    writes: int = 0  # deletes not included
    deletes: int = 0
    secret_accesses: int = 0
    seconds: float = 0.0  # measured, plus any jitter slept
    slept: float = 0.0  # the jitter sleeps among `seconds`
    billed_seconds: float = 0.0  # each call rounded up to BILLING_STEP
    failures: list[str] = field(default_factory=list)

    def add(self, other: Use) -> None:
        self.calls += other.calls
        self.reads += other.reads
        self.writes += other.writes
        self.deletes += other.deletes
        self.secret_accesses += other.secret_accesses
        self.seconds += other.seconds
        self.slept += other.slept
        self.billed_seconds += other.billed_seconds
        self.failures += other.failures


@dataclass
class Bridge:
    runtime: Runtime
    counts: Counts
    secret_manager: FakeSecretManager
    scheduler: FakeCloudScheduler
    google: FakeGoogle
    clock: Clock


def push_log_entries() -> int:
    """Push-log documents stored now (through an uncounted client)."""
    counted = firestore.Client(project=PROJECT).collection("push_log").count().get()
    return int(counted[0][0].value)


def _accesses(secret_manager: FakeSecretManager) -> int:
    return sum(1 for method, _ in secret_manager.calls if method == "AccessSecretVersion")


def measured(bridge: Bridge, call: Any, *, extra_billed: float = 0.0) -> Use:
    """Run `call()` (returns the seconds it slept) as one function invocation; its use."""
    bridge.counts.reset()
    accesses = _accesses(bridge.secret_manager)
    failures = []
    started = time.perf_counter()
    try:
        slept = call()
    except BridgeError as exc:
        failures.append(f"{type(exc).__name__}: {exc.message}")
        slept = 0.0
    seconds = time.perf_counter() - started + slept
    counts = bridge.counts
    billed = math.ceil(seconds / BILLING_STEP) * BILLING_STEP + extra_billed
    return Use(
        calls=1,
        reads=counts.reads,
        writes=counts.writes - counts.deletes,
        deletes=counts.deletes,
        secret_accesses=_accesses(bridge.secret_manager) - accesses,
        seconds=seconds,
        slept=slept,
        billed_seconds=billed,
        failures=failures,
    )


def refresh_run(bridge: Bridge) -> float:
    """What `functions/refresh_devices/main.py` does for one request."""
    runtime = bridge.runtime
    runtime.google.refresh.refresh()
    runtime.smartcar.renewal.renew_expiring()
    runtime.store.devices.count()
    return 0.0


def sync_run(bridge: Bridge, device_id: str, jitter_seconds: int) -> float:
    """One scheduled `sync_device` call; the jitter it chose is recorded, not waited."""
    slept: list[float] = []
    bridge.runtime.sync.scheduled_sync(device_id, jitter_seconds=jitter_seconds, sleep=slept.append)
    return sum(slept)


def feed_answers(google: FakeGoogle, round_number: int) -> None:
    """Each tracker's next answer: NEW_PER_LOCATE new reports and the round before's."""
    now = int(time.time())
    for index, fake in enumerate(google.trackers):
        fresh = [
            Report("crowdsourced", timestamp=now - 60 * (j + 1),
                   latitude=48.85 + index / 100 + round_number / 1e4, longitude=2.35 + j / 1e4,
                   accuracy=12.0, time_offset=0x0ABC_0000 + round_number * 16 + j)
            for j in range(NEW_PER_LOCATE)
        ]  # fmt: skip
        fake.network = [*fresh, *fake.network[:NEW_PER_LOCATE]]
        fake.recent = None


@dataclass(frozen=True)
class Job:
    device_id: str
    runs_per_day: int
    jitter_seconds: int


def sync_jobs(bridge: Bridge) -> list[Job]:
    """The sync jobs as Cloud Scheduler holds them (what the refresh registered)."""
    import json

    client = bridge.scheduler.client()
    jobs = []
    for name in bridge.scheduler.job_names():
        job = client.get_job(name=name)
        body = json.loads(job.http_target.body)
        jobs.append(Job(body["device_id"], runs_per_day(job.schedule), body["jitter_seconds"]))
    return jobs


@contextmanager
def deployed(
    local: Services, trackers: int, answer_delay: float, nova_latency: float, terraform: Terraform
) -> Iterator[Bridge]:
    with (
        google_account(trackers, answer_delay, nova_latency) as google,
        OsmAndServer(known_ids=[t.tracker.canonic_id for t in google.trackers]) as traccar,
        FakeSecretManager() as secret_manager,
        FakeCloudScheduler() as scheduler,
        tempfile.TemporaryDirectory() as folder,
    ):
        local.emulator.wipe(PROJECT)
        settings = load_settings(
            _env_file=None,
            gcp_project=PROJECT,
            secrets_backend="local",  # the adapters below are the cloud ones
            secrets_dir=Path(folder) / "secrets",
            scheduler_backend="local",
            traccar_server_url=traccar.url,
            fcm_timeout=int(variable(terraform, "fcm_timeout")),
            auto_register_timer=int(variable(terraform, "auto_register_timer")),
            auto_register_delta=int(variable(terraform, "auto_register_delta")),
            push_log_retention_days=int(variable(terraform, "push_log_retention_days")),
            **google.settings(),
        )
        counts = Counts()
        sources: dict[Source, Any] = {}
        runtime = Runtime(
            settings,
            firestore_client=CountingClient(counts, project=PROJECT),
            secrets=SecretManagerStore(secret_manager.client(), PROJECT),
            scheduler=CloudSchedulerJobs(
                scheduler.client(),
                project=PROJECT,
                region=str(variable(terraform, "region")),
                sync_device_url="https://sync-device.example.run.app/",
                service_account_email=SCHEDULER_SERVICE_ACCOUNT,
            ),
            sources=sources,
        )
        clock = Clock(utc_now())
        runtime.google = runtime.google_stack(clock=clock)
        sources[Source.GOOGLE] = runtime.google.source
        google.store_secrets(runtime.secrets)
        yield Bridge(runtime, counts, secret_manager, scheduler, google, clock)


def stored(
    unindexed: frozenset[tuple[str, str]], composites: dict[str, list[list[str]]]
) -> dict[str, StoredSize]:
    """Every collection's documents and index entries as they are now (not counted)."""
    client = firestore.Client(project=PROJECT)
    sizes: dict[str, StoredSize] = {}
    for collection in client.collections():
        total = sizes.setdefault(collection.id, StoredSize())
        for snapshot in collection.stream():
            size = document_storage(
                collection.id,
                snapshot.reference.path,
                snapshot.to_dict() or {},
                unindexed,
                composites.get(collection.id, []),
            )
            total.documents += 1
            total.document_bytes += size.document_bytes
            total.index_bytes += size.index_bytes
    return sizes


def steady_storage(
    sizes: dict[str, StoredSize], push_logs_per_day: float, retention_days: int, trackers: int
) -> tuple[float, str]:
    """Bytes stored once the push log holds `retention_days` and every `delivered` map its
    steady number of fingerprints; and how it splits."""
    client = firestore.Client(project=PROJECT)
    push_log = sizes.get("push_log", StoredSize())
    per_entry = push_log.total / push_log.documents if push_log.documents else 0.0
    log_bytes = per_entry * push_logs_per_day * retention_days
    fingerprints_per_day = push_logs_per_day / trackers
    steady_fingerprints = min(DELIVERED_CAP, fingerprints_per_day * DEDUP_WINDOW.days)
    state_bytes = 0.0
    for snapshot in client.collection("device_state").stream():
        delivered = (snapshot.to_dict() or {}).get("delivered", {})
        entry = sum(string_size(k) + 8 for k in delivered) / len(delivered) if delivered else 50.0
        now_bytes = sum(string_size(k) + 8 for k in delivered)
        state_bytes += steady_fingerprints * entry - now_bytes
    state = sizes.get("device_state", StoredSize())
    state_bytes += state.total
    others = sum(s.total for name, s in sizes.items() if name not in ("push_log", "device_state"))
    total = log_bytes + state_bytes + others
    split = (
        f"push log {log_bytes / 2**20:.0f} MiB ({per_entry:.0f} B per attempt, of which "
        f"{push_log.index_bytes / max(push_log.documents, 1):.0f} B index entries; "
        f"{retention_days} days), device_state {state_bytes / 2**20:.1f} MiB "
        f"({steady_fingerprints:.0f} fingerprints per device), the rest {others / 2**10:.0f} KiB"
    )
    return total, split


def _figure(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


@dataclass
class Counted:
    """What the counted rounds of one deployment used."""

    jobs: list[Job]
    sync_use: Use
    refresh_use: Use
    push_logs: int
    elapsed: float
    started_at: float  # time.monotonic() when counting began (the fakes' clock)


def count_rounds(
    bridge: Bridge,
    trackers: int,
    rounds: int,
    rounds_per_hour: int,
    timer_seconds: int,
    *,
    before: Callable[[], None] | None = None,
) -> Counted:
    """Register the trackers (the first refresh), one warm-up round, then `before()` and
    `rounds` counted rounds of every job's call, with the hourly refresh."""
    rng = random.Random(SEED)
    refresh_run(bridge)  # the first refresh registers every tracker (not counted)
    jobs = sync_jobs(bridge)
    if len(jobs) != trackers:
        raise RuntimeError(f"{len(jobs)} sync jobs registered for {trackers} trackers")

    def one_round(number: int, use: Use | None) -> None:
        bridge.clock.now += timedelta(seconds=timer_seconds)
        feed_answers(bridge.google, number)
        for job in rng.sample(jobs, len(jobs)):
            spent = measured(bridge, lambda j=job: sync_run(bridge, j.device_id, j.jitter_seconds))
            if use is not None:
                use.add(spent)

    one_round(0, None)  # warm-up: connections, the access token, every device's state
    if before is not None:
        before()
    logs_before = push_log_entries()
    sync_use, refresh_use = Use(), Use()
    started_at = time.monotonic()
    started = time.perf_counter()
    for number in range(1, rounds + 1):
        if (number - 1) % rounds_per_hour == 0:
            refresh_use.add(
                measured(bridge, lambda: refresh_run(bridge), extra_billed=COLD_START_SECONDS)
            )
        one_round(number, sync_use)
    elapsed = time.perf_counter() - started
    return Counted(
        jobs, sync_use, refresh_use, push_log_entries() - logs_before, elapsed, started_at
    )


def run(
    local: Services,
    hours: int = HOURS,
    trackers: int = TRACKERS,
    answer_delay: float = ANSWER_DELAY,
    nova_latency: float = NOVA_LATENCY,
    silent: int = SILENT,
) -> Section:
    terraform = load(TF_DIR)
    unindexed = unindexed_fields(terraform)
    composites = composite_indexes(terraform)
    sync_size = function_size(terraform, "sync_device")
    refresh_size = function_size(terraform, "refresh_devices")
    refresh_cron = str(variable(terraform, "refresh_schedule"))
    refreshes_per_day = runs_per_day(refresh_cron)
    timer_seconds = int(variable(terraform, "auto_register_timer"))
    rounds_per_hour = 3600 // timer_seconds
    rounds = hours * rounds_per_hour
    with deployed(local, trackers, answer_delay, nova_latency, terraform) as bridge:
        counted = count_rounds(bridge, trackers, rounds, rounds_per_hour, timer_seconds)
        sizes = stored(unindexed, composites)
        sizes_all_indexed = stored(frozenset(), composites)
    jobs, sync_use, refresh_use = counted.jobs, counted.sync_use, counted.refresh_use
    push_logs, elapsed = counted.push_logs, counted.elapsed
    quiet: Counted | None = None
    if silent:
        with deployed(local, trackers, answer_delay, nova_latency, terraform) as bridge:

            def go_silent() -> None:
                for fake in bridge.google.trackers[:silent]:
                    fake.answers = False

            quiet = count_rounds(
                bridge, trackers, rounds, rounds_per_hour, timer_seconds, before=go_silent
            )
            silent_ids = {fake.tracker.canonic_id for fake in bridge.google.trackers[:silent]}
            silent_locates = sum(
                1
                for locate in bridge.google.nova.locates
                if locate.canonic_id in silent_ids and locate.at >= quiet.started_at
            )
    sync_calls_per_day = sum(job.runs_per_day for job in jobs)
    sync_scale = sync_calls_per_day / sync_use.calls  # counted calls → a day's calls
    refresh_scale = refreshes_per_day / refresh_use.calls
    push_logs_per_day = push_logs * sync_scale
    retention = int(variable(terraform, "push_log_retention_days"))
    storage, storage_split = steady_storage(sizes, push_logs_per_day, retention, trackers)
    storage_all_indexed, _ = steady_storage(
        sizes_all_indexed, push_logs_per_day, retention, trackers
    )

    def per_day(attribute: str) -> float:
        return getattr(sync_use, attribute) * sync_scale + (
            getattr(refresh_use, attribute) * refresh_scale
        )

    sync_billed = sync_use.billed_seconds * sync_scale
    refresh_billed = refresh_use.billed_seconds * refresh_scale
    vcpu_seconds = sync_billed * sync_size.vcpu + refresh_billed * refresh_size.vcpu
    gib_seconds = sync_billed * sync_size.gib + refresh_billed * refresh_size.gib
    gb_seconds = (
        sync_billed * sync_size.memory_bytes + refresh_billed * refresh_size.memory_bytes
    ) / 1e9
    requests_per_day = sync_calls_per_day + refreshes_per_day
    fcm_timeout = int(variable(terraform, "fcm_timeout"))
    scheduler_jobs = len(jobs) + 1  # the sync jobs and Terraform's refresh job

    section = Section(
        title=f"Free tiers: {trackers} Google trackers synced every {timer_seconds // 60} minutes",
        method=(
            f"`python -m bench.free_tier`: {hours} h of simulated time counted ({rounds} rounds "
            f"of {len(jobs)} scheduled `sync_device` calls, and `refresh_devices` hourly: "
            f"{refresh_use.calls} run(s)) through the real code, against the Firestore emulator "
            "(operations counted on the wire), the Secret Manager and Cloud Scheduler fakes "
            "under the official clients, and the Google fakes (each locate answered "
            f"{answer_delay:g} s after Nova took it, Nova answering in {nova_latency:g} s); "
            "scaled to a day by the jobs' cron schedules. Billed time: measured time + the "
            f"jitter sleep, rounded up to 100 ms, + {COLD_START_SECONDS:g} s cold start per "
            f"hourly refresh; `sync_device` and `refresh_devices` at "
            f"{sync_size.memory_bytes // 10**6} MB / {sync_size.vcpu} vCPU "
            "(infra/terraform). Free tiers from Google's pricing pages (the docstring says which). "
            "Target (SPEC.md): inside Firestore's and Cloud Functions' free tiers."
        ),
        header=["resource", "used per day", "used per month", "free tier", "used", "headroom"],
    )

    reads, writes, deletes = per_day("reads"), per_day("writes"), per_day("deletes")
    ghz_seconds = vcpu_seconds * GHZ_PER_VCPU
    # (resource, use per day, free tier, the free tier's period)
    metered = [
        ("Firestore document reads", reads, FIRESTORE_READS, "day"),
        ("Firestore document writes", writes, FIRESTORE_WRITES, "day"),
        ("Firestore document deletes (requests)", deletes, FIRESTORE_DELETES, "day"),
        ("Function requests (the scheduler's calls)", requests_per_day, RUN_REQUESTS, "month"),
        ("Cloud Run vCPU-seconds", vcpu_seconds, RUN_VCPU_SECONDS, "month"),
        ("Cloud Run GiB-seconds", gib_seconds, RUN_GIB_SECONDS, "month"),
        ("1st gen terms: GB-seconds", gb_seconds, GEN1_GB_SECONDS, "month"),
        ("1st gen terms: GHz-seconds", ghz_seconds, GEN1_GHZ_SECONDS, "month"),
        ("Secret Manager access operations", per_day("secret_accesses"), SECRET_ACCESSES, "month"),
    ]
    for resource, day, free, period in metered:
        used = (day if period == "day" else day * DAYS_PER_MONTH) / free
        section.rows.append(
            [
                resource,
                _figure(day),
                _figure(day * DAYS_PER_MONTH),
                f"{_figure(free)} / {period}",
                f"{used:.1%}",
                f"{1 / used:.1f} x" if used else "",
            ]
        )
    section.rows += [
        [
            "Firestore TTL deletes (push log, once it holds its retention)",
            _figure(push_logs_per_day),
            _figure(push_logs_per_day * DAYS_PER_MONTH),
            "none: billed from the first",
            "",
            "",
        ],
        [
            "Firestore stored data (steady state)",
            f"{storage / 2**20:.0f} MiB",
            "",
            "1 GiB",
            f"{storage / FIRESTORE_STORED_BYTES:.1%}",
            f"{FIRESTORE_STORED_BYTES / storage:.1f} x",
        ],
        [
            "Cloud Scheduler jobs",
            str(scheduler_jobs),
            "",
            f"{SCHEDULER_FREE_JOBS} jobs per billing account",
            f"{scheduler_jobs / SCHEDULER_FREE_JOBS:.0%}",
            f"over: ${max(0, scheduler_jobs - SCHEDULER_FREE_JOBS) * SCHEDULER_JOB_PRICE:.2f}"
            " / month",
        ],
    ]

    sync_per_call = {
        k: getattr(sync_use, k) / sync_use.calls for k in ("reads", "writes", "deletes")
    }
    section.notes += [
        f"Per `sync_device` call on average: {sync_per_call['reads']:.1f} reads, "
        f"{sync_per_call['writes']:.1f} writes, {sync_per_call['deletes']:.2f} deletes, "
        f"{sync_use.secret_accesses / sync_use.calls:.1f} Secret Manager accesses, "
        f"{sync_use.seconds / sync_use.calls:.2f} s, of which "
        f"{sync_use.slept / sync_use.calls:.2f} s jitter sleep; per "
        f"`refresh_devices` run: {refresh_use.reads / refresh_use.calls:.0f} reads, "
        f"{refresh_use.writes / refresh_use.calls:.0f} writes, "
        f"{refresh_use.secret_accesses / refresh_use.calls:.0f} Secret Manager accesses, "
        f"{refresh_use.seconds / refresh_use.calls:.2f} s. {push_logs} push-log entries in "
        f"{rounds} rounds. Counted hours took {elapsed:.0f} s here.",
        f"Stored data at steady state: {storage_split}. Fields exempted from indexing "
        f"(firestore.tf): {len(unindexed)}; with every field indexed (Firestore's default) "
        f"the same data would take {storage_all_indexed / 2**20:.0f} MiB.",
        "Not free whatever the volume (Firestore's free quota excludes them): TTL deletes, "
        "billed as deletes (cents a month here), and point-in-time-recovery data "
        "(`point_in_time_recovery_enablement` in firestore.tf), billed as storage.",
    ]
    if quiet is not None:
        # The jitter sleeps are drawn anew in each run: compared without them.
        extra_seconds = (quiet.sync_use.seconds - quiet.sync_use.slept) - (
            sync_use.seconds - sync_use.slept
        )
        quiet_sync_billed = quiet.sync_use.billed_seconds * sync_scale * DAYS_PER_MONTH
        quiet_refresh_billed = refresh_billed * DAYS_PER_MONTH
        quiet_vcpu = quiet_sync_billed * sync_size.vcpu + quiet_refresh_billed * refresh_size.vcpu
        quiet_gib = quiet_sync_billed * sync_size.gib + quiet_refresh_billed * refresh_size.gib
        backoff_max = Settings.model_fields["google_silent_backoff_max"].default
        steady_waits = silent * 86_400 / backoff_max
        steady_vcpu = steady_waits * fcm_timeout * DAYS_PER_MONTH * sync_size.vcpu
        section.notes.append(
            f"Measured: {silent} of the {trackers} trackers never answering (a flat battery) "
            f"from the first counted round, on a fresh deployment: {silent_locates} locate(s) "
            f"of it in the {rounds} counted rounds, each waiting FCM_TIMEOUT ({fcm_timeout} s) "
            "inside a run that ends well (no Cloud Scheduler retry), the tracker backing off "
            f"between them (10 min, doubling up to GOOGLE_SILENT_BACKOFF_MAX, "
            f"{backoff_max // 3600} h). {extra_seconds:.0f} s more run time over the {hours} h "
            f"(jitter sleeps left out; {extra_seconds / rounds:.0f} s per round on average); "
            f"billed at that rate a whole month: {_figure(quiet_vcpu)} vCPU-s and "
            f"{_figure(quiet_gib)} GiB-s ({quiet_vcpu / RUN_VCPU_SECONDS:.0%} and "
            f"{quiet_gib / RUN_GIB_SECONDS:.0%} of the free tier). That rate is the backoff's "
            f"first hours: at its cap the tracker is located {steady_waits:.0f} times a day, "
            f"≈ {steady_waits * fcm_timeout:.0f} s billed a day, {_figure(steady_vcpu)} vCPU-s "
            f"a month on top of the figures above. {len(quiet.sync_use.failures)} calls failed "
            f"in that run; its counted hours took {quiet.elapsed:.0f} s."
        )
    failures = sync_use.failures + refresh_use.failures
    if failures:
        section.notes.append(f"{len(failures)} calls failed: {failures[0]}")
    for line in section.markdown().splitlines():
        if line.startswith("|") or line.startswith("- "):
            print(line)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=HOURS, help="simulated hours counted")
    parser.add_argument("--trackers", type=int, default=TRACKERS, help="Google trackers")
    parser.add_argument(
        "--answer-delay", type=float, default=ANSWER_DELAY, help="seconds to each FCM answer"
    )
    parser.add_argument(
        "--nova-latency", type=float, default=NOVA_LATENCY, help="seconds per Nova request"
    )
    parser.add_argument(
        "--silent", type=int, default=SILENT, help="trackers that never answer (0: not measured)"
    )
    arguments = parser.parse_args()
    with services() as local:
        run(local, arguments.hours, arguments.trackers, arguments.answer_delay,
            arguments.nova_latency, arguments.silent)  # fmt: skip


if __name__ == "__main__":
    main()
