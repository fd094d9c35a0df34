"""Cold start: a fresh function process's time to its first answer, and its memory, vs the floor.

    .venv/bin/python -m bench.cold_start [--runs 5]

Each function is started as Cloud Functions runs it (`python -m functions_framework --source=
functions/<name>/main.py --target=<name>`: gunicorn, one worker) against the Firestore
emulator, and asked one real question as soon as its port takes connections; the clock runs
from spawning the process to the end of the answer. The floor is the same server around a
function that only imports functions-framework and google-cloud-firestore (`bench/floor`).
Rounds are interleaved (floor, api, sync_device, ...) so a busy moment hits them all; the first
round is discarded (it writes the bytecode caches). Memory is read from /proc just after the
answer: the peak RSS (VmHWM) of the largest process of the server (the worker, which holds
everything the master imported plus what the request touched), and the proportional set size
(PSS) summed over master and worker, what the instance really holds. Where the time goes, from
a second fresh process per round: importing the function's module beyond the floor's imports,
and its first request through functions-framework's app in-process (Firestore client, calls).
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, Section, Services, median, services
from devtools.emulator import free_port, stop_process_group

START_DEADLINE = 60.0  # seconds for a process to answer at all
REQUEST_TIMEOUT = 30.0  # seconds for one answer once connected
POLL_INTERVAL = 0.005  # seconds between connection attempts while the process starts
KIB_PER_MIB = 1024
# SPEC.md "Performance and cost targets"
COLD_START_RATIO_TARGET = 1.2
MEMORY_TARGETS_MIB = {"api": 200, "webhooks": 200, "sync_device": 400}


@dataclass(frozen=True)
class Probe:
    label: str
    source: Path
    target: str
    method: str
    path: str
    body: bytes | None
    status: int  # the answer a healthy function gives


PROBES = [
    Probe("floor", ROOT / "bench/floor/main.py", "floor", "GET", "/", None, 200),
    Probe("api", ROOT / "functions/api/main.py", "api", "GET", "/health", None, 200),
    Probe(
        "sync_device",
        ROOT / "functions/sync_device/main.py",
        "sync_device",
        "POST",
        "/",
        b'{"device_id": "bench-unknown-device"}',
        404,
    ),
    Probe(
        "refresh_devices",
        ROOT / "functions/refresh_devices/main.py",
        "refresh_devices",
        "POST",
        "/",
        None,
        200,
    ),
    Probe("webhooks", ROOT / "functions/webhooks/main.py", "webhooks", "GET", "/health", None, 200),
]


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_mib: float  # VmHWM of the largest process
    pss_mib: float  # PSS of every process of the server


def _session_pids(session: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == session:  # field 6 of stat, the session id
            pids.append(int(stat.parent.name))
    return pids


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def measure(probe: Probe, env: dict[str, str], workdir: Path) -> Sample:
    port = free_port()
    log = workdir / f"{probe.label}.log"
    headers = {"Content-Type": "application/json"} if probe.body else {}
    with log.open("wb") as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                f"--source={probe.source}",
                f"--target={probe.target}",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{probe.label} exited:\n{log.read_text()}")
            if time.perf_counter() - start > START_DEADLINE:
                raise RuntimeError(f"{probe.label} did not answer in {START_DEADLINE:.0f} s")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
            try:
                connection.request(probe.method, probe.path, body=probe.body, headers=headers)
                response = connection.getresponse()
                body = response.read()
                break
            except ConnectionRefusedError:
                time.sleep(POLL_INTERVAL)
            finally:
                connection.close()
        seconds = time.perf_counter() - start
        if response.status != probe.status:
            raise RuntimeError(
                f"{probe.label} answered {response.status}, not {probe.status}: {body[:300]!r}"
            )
        pids = _session_pids(process.pid)
        peak = max(_status_kib(pid, "VmHWM") for pid in pids)
        pss = sum(_pss_kib(pid) for pid in pids)
    finally:
        stop_process_group(process)
    return Sample(seconds, peak / KIB_PER_MIB, pss / KIB_PER_MIB)


# Run in a fresh child: the floor's imports, then the function's module, then its first request
# through functions-framework's app in-process; prints both times in ms.
BREAKDOWN = """
import sys, time
import functions_framework
from google.cloud import firestore
started = time.perf_counter()
app = functions_framework.create_app(sys.argv[2], sys.argv[1])
imported = time.perf_counter()
client = app.test_client()
body = sys.argv[5].encode() if sys.argv[5] else None
headers = {"Content-Type": "application/json"} if body else {}
client.open(sys.argv[4], method=sys.argv[3], data=body, headers=headers)
answered = time.perf_counter()
print((imported - started) * 1000, (answered - imported) * 1000)
"""


def breakdown(probe: Probe, env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """(ms importing the function beyond the floor, ms of its first request), in process."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BREAKDOWN,
            str(probe.source),
            probe.target,
            probe.method,
            probe.path,
            (probe.body or b"").decode(),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_DEADLINE,
        check=True,
    )
    imported, answered = result.stdout.split()[-2:]
    return float(imported), float(answered)


def run(local: Services, runs: int = 5) -> Section:
    env = local.env
    samples: dict[str, list[Sample]] = {probe.label: [] for probe in PROBES}
    parts: dict[str, list[tuple[float, float]]] = {probe.label: [] for probe in PROBES}
    for round_number in range(runs + 1):
        for probe in PROBES:
            sample = measure(probe, env, local.workdir)
            split = breakdown(probe, env, local.workdir)
            if round_number:  # round 0 writes the bytecode caches
                samples[probe.label].append(sample)
                parts[probe.label].append(split)
    floor = median([s.seconds for s in samples["floor"]])
    section = Section(
        title="Cold start (time to the first answer of a fresh process)",
        method=(
            f"`python -m functions_framework` per function against the emulator; median of "
            f"{runs} interleaved rounds after one warm-up round; memory from /proc after the "
            "answer. Targets (SPEC.md): ≤ 1.2 x the floor; peak memory api/webhooks ≤ 200 MiB, "
            "sync_device ≤ 400 MiB."
        ),
        header=[
            "function",
            "first request",
            "first answer (s)",
            "x floor",
            "peak RSS (MiB)",
            "PSS, master+worker (MiB)",
            "memory target",
            "import beyond the floor (ms)",
            "first request in-process (ms)",
        ],
    )
    for probe in PROBES:
        taken = samples[probe.label]
        seconds = median([s.seconds for s in taken])
        peak = median([s.peak_rss_mib for s in taken])
        pss = median([s.pss_mib for s in taken])
        ratio = seconds / floor
        imported = median([split[0] for split in parts[probe.label]])
        answered = median([split[1] for split in parts[probe.label]])
        target = MEMORY_TARGETS_MIB.get(probe.label)
        request = f"{probe.method} {probe.path}" + (" (unknown device → 404)" if probe.body else "")
        print(
            f"{probe.label:16} {request:40} {seconds:6.3f} s  {ratio:5.2f} x floor  "
            f"peak {peak:6.1f} MiB  pss {pss:6.1f} MiB  "
            f"import +{imported:4.0f} ms  first request {answered:4.0f} ms"
        )
        section.rows.append(
            [
                "floor (functions-framework + firestore import)"
                if probe.label == "floor"
                else f"`{probe.label}`",
                request,
                f"{seconds:.3f}",
                f"{ratio:.2f}",
                f"{peak:.1f}",
                f"{pss:.1f}",
                f"≤ {target}" if target else "",
                f"{imported:.0f}",
                f"{answered:.0f}",
            ]
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (the median is shown)")
    arguments = parser.parse_args()
    with services() as local:
        run(local, arguments.runs)


if __name__ == "__main__":
    main()
