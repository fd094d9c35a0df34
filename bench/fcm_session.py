"""FCM session: one scheduled Google sync that locates 1 device against one that locates N.

    .venv/bin/python -m bench.fcm_session [--runs 5] [--devices 5,10]
        [--answer-delay 3.0] [--nova-latency 0.3]

What is timed: `shared.sync.sync_device(runtime, "canonic-0")`, the call a scheduler job
makes, from the call to its return, in this process, through the real code: the device's
pipeline lease, the FCM lease, choosing the due companions, the access token (cached in memory
after the warm-up run, as in a warm instance), the MCS login over TLS, one Nova locate per
device, the wait for every answer, the decryption, every companion's own pipeline run (lease,
push to the OsmAnd test server, final write) and the device's own push. With N registered
Google devices whose services are all due, that one call locates all N in one FCM session.

Against the local fakes of `tests/fakes/nova.py` (`FakeGoogle`: OAuth, Nova, MCS over TLS)
with two delays that stand for Google's, both stated in the output:
- `--answer-delay`: each locate's FCM answer is pushed this many seconds after Nova took the
  request (`FakeTracker.delay`). Google answers from the reports it holds; a few seconds.
- `--nova-latency`: Nova answers each request this late (`FakeHttpServer.stall`), standing for
  the round trip and Google's processing of `nbe_execute_action` from a Cloud Function.
Firestore is the emulator, Traccar the OsmAnd test server: both faster than the real ones.

Each round wipes the emulator and registers the devices again (not timed), so every run finds
all of them due and their positions new; the sizes are interleaved round by round and the
figure is the median of `--runs` rounds after one warm-up round. Each answer carries one own
report and `REPORTS_PER_ANSWER` - 1 crowd-sourced ones. The split of a run's time comes from
the fakes' own records (when MCS accepted the login, when Nova received each locate).
Target (SPEC.md): ten due devices in one session, paced, take ≤ 1.5 x the time of one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import PROJECT, Section, Services, median, services
from shared.config import load_settings
from shared.models import Device, Source
from shared.runtime import Runtime
from shared.services import ServiceSpec
from tests.fakes.nova import FakeGoogle
from tests.fakes.osmand import OsmAndServer
from tests.unit.google.encryptor import LAST_KNOWN, Report

DEVICE_COUNTS = (5, 10)
ANSWER_DELAY = 3.0  # seconds from Nova taking a locate to its FCM answer (stands for Google's)
NOVA_LATENCY = 0.3  # seconds Nova takes to answer one request (round trip and processing)
REPORTS_PER_ANSWER = 5
FCM_TIMEOUT = 60  # the deployed default (Settings.fcm_timeout)
TIMER = 600  # every device's sync timer, as auto-registered
TARGET = 1.5  # SPEC.md: ten due devices, paced (at most 2 locates in flight)
T0 = 1_790_000_000
LOCATED = "canonic-0"  # the device whose scheduled run is timed


@dataclass
class RunTimes:
    """One timed run and its split, in seconds from the call."""

    total: float
    login: float  # MCS accepted the login
    last_locate: float  # Nova received the last locate request
    located: int


def _answer(tracker_index: int) -> tuple[list[Report], Report]:
    network = [
        Report("crowdsourced", timestamp=T0 - 60 * (age + 1), latitude=48.85 + tracker_index,
               longitude=2.35 + age / 1e4, accuracy=12.0, time_offset=0x0ABC_DE00 + age)
        for age in range(REPORTS_PER_ANSWER - 1)
    ]  # fmt: skip
    own = Report("own", timestamp=T0, latitude=48.86 + tracker_index, longitude=2.35,
                 status=LAST_KNOWN, is_own_report=True)  # fmt: skip
    return network, own


@contextmanager
def google_account(count: int, answer_delay: float, nova_latency: float) -> Iterator[FakeGoogle]:
    """The fake Google account with `count` trackers, its delays set, its CA trusted."""
    with tempfile.TemporaryDirectory() as folder, FakeGoogle(Path(folder), count) as google:
        for index, tracker in enumerate(google.trackers):
            tracker.network, tracker.recent = _answer(index)
            tracker.delay = answer_delay
        if nova_latency > 0:
            google.nova.stall(nova_latency)  # every request, until reset
        # firebase-messaging's TLS context trusts the system CAs, which SSL_CERT_FILE replaces.
        saved = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(google.ca_file)
        try:
            yield google
        finally:
            if saved is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = saved


def register(runtime: Runtime, google: FakeGoogle, count: int) -> None:
    """The first `count` trackers as Google devices with an active 10-minute service."""
    for fake in google.trackers[:count]:
        canonic = fake.tracker.canonic_id
        runtime.store.devices.put(
            Device(id=canonic, source=Source.GOOGLE, name=fake.tracker.name,
                   traccar_unique_id=canonic)
        )  # fmt: skip
        runtime.services.upsert(canonic, ServiceSpec(timer=TIMER, delta=5))


def timed_run(local: Services, runtime: Runtime, google: FakeGoogle, count: int) -> RunTimes:
    local.emulator.wipe(PROJECT)
    register(runtime, google, count)
    logins, locates = len(google.mcs.logins), len(google.nova.locates)
    started = time.monotonic()
    report = runtime.sync.sync_device(LOCATED)
    total = time.monotonic() - started
    new_locates = google.nova.locates[locates:]
    if len(new_locates) != count or len(google.mcs.logins) != logins + 1:
        raise RuntimeError(
            f"expected one session locating {count} devices, saw {len(new_locates)} locates "
            f"and {len(google.mcs.logins) - logins} logins"
        )
    if report.result.pushed != REPORTS_PER_ANSWER:
        raise RuntimeError(f"the timed device pushed {report.result.pushed} positions")
    return RunTimes(
        total=total,
        login=google.mcs.logins[-1][0] - started,
        last_locate=new_locates[-1].at - started,
        located=len(new_locates),
    )


def run(
    local: Services,
    runs: int = 5,
    counts: tuple[int, ...] = DEVICE_COUNTS,
    answer_delay: float = ANSWER_DELAY,
    nova_latency: float = NOVA_LATENCY,
) -> Section:
    sizes = (1, *counts)
    largest = max(sizes)
    section = Section(
        title="Google devices located in one FCM session",
        method=(
            f"`sync_device` for one Google device while 1 or N devices (all due, timer "
            f"{TIMER} s) are registered: one MCS login over TLS, one Nova locate per device, "
            "every answer decrypted and pushed through each device's pipeline to the OsmAnd "
            "test server. Fakes of Google's OAuth, Nova and MCS (`tests/fakes/nova.py`): each "
            f"answer is pushed {answer_delay:g} s after Nova took the locate, Nova answers each "
            f"request in {nova_latency:g} s; {REPORTS_PER_ANSWER} reports per answer. Median "
            f"of {runs} interleaved rounds after a warm-up round. Split from the fakes' records. "
            f"Target (SPEC.md): N devices ≤ {TARGET} x the time of one."
        ),
        header=[
            "devices located",
            "run (s)",
            "x one device",
            "MCS login at (s)",
            "last locate received at (s)",
            "after the last answer (s)",
            "per extra device (ms)",
        ],
    )
    with (
        google_account(largest, answer_delay, nova_latency) as google,
        OsmAndServer(known_ids=[t.tracker.canonic_id for t in google.trackers]) as traccar,
        tempfile.TemporaryDirectory() as folder,
    ):
        settings = load_settings(
            _env_file=None,
            gcp_project=PROJECT,
            secrets_backend="local",
            secrets_dir=Path(folder) / "secrets",
            scheduler_backend="local",
            traccar_server_url=traccar.url,
            fcm_timeout=FCM_TIMEOUT,
            **google.settings(),
        )
        runtime = Runtime(settings)
        google.store_secrets(runtime.secrets)
        for size in sizes:  # warm-up: connections, imports, the access token
            timed_run(local, runtime, google, size)
        samples: dict[int, list[RunTimes]] = {size: [] for size in sizes}
        for _ in range(runs):
            for size in sizes:
                samples[size].append(timed_run(local, runtime, google, size))
    one = median([s.total for s in samples[1]])
    for size in sizes:
        total = median([s.total for s in samples[size]])
        login = median([s.login for s in samples[size]])
        last_locate = median([s.last_locate for s in samples[size]])
        after_answer = median([s.total - s.last_locate - answer_delay for s in samples[size]])
        extra = (total - one) / (size - 1) * 1000 if size > 1 else 0.0
        print(
            f"{size:>3} device(s): {total:6.3f} s ({total / one:4.2f} x one), login at "
            f"{login:5.3f} s, last locate at {last_locate:5.3f} s, {after_answer:5.3f} s after "
            f"the last answer; {extra:5.0f} ms per extra device"
        )
        section.rows.append(
            [
                str(size),
                f"{total:.3f}",
                f"{total / one:.2f}",
                f"{login:.3f}",
                f"{last_locate:.3f}",
                f"{after_answer:.3f}",
                f"{extra:.0f}" if size > 1 else "",
            ]
        )
    section.notes.append(
        "The run ends about `answer delay` after the last locate reaches Nova, plus the work "
        "after the last answer. What grows with N: the locates go out paced, at most "
        "`GOOGLE_LOCATE_CONCURRENCY` (default 2) in flight (`shared/sources/google/fcm.py` "
        '`_send_all`: many at once risk Nova\'s 429, PROTOCOLS.md §5 "Pacing"), so the last '
        "one reaches Nova about (N / 2 - 1) x Nova's latency later; and after the session the "
        "companions' positions go through their pipelines one after another (`shared/sync.py` "
        "`_deliver_other`)."
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per device count")
    parser.add_argument(
        "--devices",
        default=",".join(str(count) for count in DEVICE_COUNTS),
        help="comma-separated numbers of due devices compared with one",
    )
    parser.add_argument(
        "--answer-delay", type=float, default=ANSWER_DELAY, help="seconds to each FCM answer"
    )
    parser.add_argument(
        "--nova-latency", type=float, default=NOVA_LATENCY, help="seconds per Nova request"
    )
    arguments = parser.parse_args()
    counts = tuple(int(value) for value in arguments.devices.split(","))
    with services() as local:
        run(local, arguments.runs, counts, arguments.answer_delay, arguments.nova_latency)


if __name__ == "__main__":
    main()
