"""`make bench`: every benchmark in turn, printed as it goes, then written to bench/RESULTS.md.

    .venv/bin/python -m bench [--quick]

One Firestore emulator and one OsmAnd test server serve all of them. Each benchmark measures its
baseline in the same run (see each module's docstring for how); `--quick` takes fewer samples
(a smoke run, noisier figures). Only the generated part of RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import sys

from bench import cold_start, fcm_session, free_tier, sync_cost, webhook_ingest
from bench.common import Section, run_module, services, write_results

DECRYPT_TIMEOUT = 600.0  # seconds
DECRYPT_TARGET = 900  # crowd-sourced reports per second on one core (SPEC.md)


def decryption(runs: int) -> Section:
    """bench/decrypt_bench.py's figures (it measures its own baseline in the same run)."""
    output = run_module("bench.decrypt_bench", "--runs", str(runs), timeout=DECRYPT_TIMEOUT)
    print(output, end="")
    section = Section(
        title="Decryption (Google reports, one core)",
        method=(
            "`python -m bench.decrypt_bench`: 200 reports per DeviceUpdate, median of "
            f"{runs} runs; the baseline decrypts the straightforward way (ecdsa + pycryptodome, "
            f"nothing cached). Target (SPEC.md): ≥ {DECRYPT_TARGET} crowd-sourced reports/s."
        ),
        header=["reports", "reports / s"],
    )
    for line in output.splitlines():
        label, _, figure = line.rpartition("  ")
        rate = figure.strip().split()[0] if figure.strip() else ""
        if label.strip() and rate.isdigit():
            section.rows.append([label.strip(), rate])
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    arguments = parser.parse_args()
    quick = arguments.quick
    sections = []
    with services() as local:
        for title, measure in (
            ("cold start", lambda: cold_start.run(local, runs=3 if quick else 7)),
            (
                "webhook ingest",
                lambda: webhook_ingest.run(
                    local, events=20 if quick else 60, runs=1 if quick else 3
                ),
            ),
            (
                "sync cost",
                lambda: sync_cost.run(
                    local,
                    runs=3 if quick else 9,
                    histories=(10, 1_000, 10_000) if quick else sync_cost.HISTORIES,
                ),
            ),
            (
                "FCM session",
                lambda: fcm_session.run(
                    local,
                    runs=2 if quick else 5,
                    counts=(10,) if quick else fcm_session.DEVICE_COUNTS,
                ),
            ),
            (
                "free tiers",
                # The silent tracker's run waits whole FCM timeouts: left out of a smoke run.
                lambda: free_tier.run(
                    local,
                    hours=1 if quick else free_tier.HOURS,
                    silent=0 if quick else free_tier.SILENT,
                ),
            ),
        ):
            print(f"\n== {title}")
            sections.append(measure().markdown())
    print("\n== decryption")
    sections.append(decryption(3 if quick else 7).markdown())
    command = "make bench" if not quick else "python -m bench --quick"
    write_results(sections, command)
    print(f"\nwritten: bench/RESULTS.md ({' '.join(sys.argv[1:]) or 'full run'})")


if __name__ == "__main__":
    main()
