"""Run the real-time tests many times while every core is busy, to show they do not flake.

    .venv/bin/python tools/under_load.py [--count 20] [--busy N] [--out docs/under-load.json] [NODEID ...]

Starts `--busy` processes (default: one per core) that spin on the CPU — a `stress`-like
load that needs nothing installed — then runs the given pytest node ids (default:
`REALTIME_TESTS`, the tests that watch threads, ptys and subprocesses in real time)
`--count` times each with pytest-repeat, and stops the load. Writes the pass/fail count
per test and the machine to `--out`. Not part of `make test`: 20 rounds take ~30 min.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The tests that depend on real time (threads, ptys, subprocesses), each synchronised on
# an event the code exposes rather than on a sleep.
REALTIME_TESTS = (
    "tests/test_serial.py::test_binary_end_to_end_values_order_count_and_clock",
    "tests/test_serial.py::test_csv_lines_over_the_pty",
    "tests/test_serial.py::test_device_disappears_and_comes_back",
    "tests/test_serial.py::test_loss_counts_lost_blocks_exactly",
    "tests/test_live.py::test_a_dropped_stream_is_degraded_and_recovered",
    "tests/test_record.py::test_a_cut_off_recording_is_repaired_with_a_warning",
    "tests/test_record.py::test_kill_9_loses_at_most_the_last_second",
    "tests/test_record.py::test_a_glove_unplugged_while_recording_leaves_its_gap_in_the_session",
    "tests/test_camera.py::test_a_video_file_streams_in_real_time_with_timestamps",
)


def _spin() -> None:
    while True:
        pass


def run_under_load(nodeids: list[str], count: int, busy: int) -> tuple[dict[str, dict[str, int]], float]:
    """({nodeid: {"passed": n, "failed": m}}, seconds); the load runs only while pytest does."""
    workers = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for w in workers:
        w.start()
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
                               f"--count={count}", *nodeids], cwd=ROOT, capture_output=True, text=True)
    finally:
        for w in workers:
            w.terminate()
    failures = proc.stdout.find("= FAILURES =")
    print(proc.stdout[failures if failures >= 0 else -3000:], proc.stderr[-2000:], sep="\n")
    return tally(proc.stdout, nodeids), time.monotonic() - t0


def tally(report: str, nodeids: list[str]) -> dict[str, dict[str, int]]:
    """Count PASSED/FAILED/ERROR lines of a `pytest -rA` summary per node id (pytest-repeat
    suffixes each id with [i-n], folded here)."""
    counts = {n: {"passed": 0, "failed": 0} for n in nodeids}
    for outcome, nodeid in re.findall(r"^(PASSED|FAILED|ERROR) (\S+?)(?:\[[^\]]*\])?(?: - .*)?$", report, re.M):
        if nodeid in counts:
            counts[nodeid]["passed" if outcome == "PASSED" else "failed"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("nodeids", nargs="*", default=list(REALTIME_TESTS))
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    ap.add_argument("--out", default="docs/under-load.json")
    args = ap.parse_args(argv)
    counts, seconds = run_under_load(args.nodeids, args.count, args.busy)
    result = {"count": args.count, "busy_processes": args.busy, "cores": os.cpu_count(), "seconds": round(seconds),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d"), "tests": counts}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    # a parametrised test counts every case: count x cases passes
    bad = {n: c for n, c in counts.items() if c["failed"] or c["passed"] < args.count}
    print(f"{len(counts) - len(bad)} of {len(counts)} tests passed {args.count}/{args.count} under {args.busy} busy processes"
          + (f"; not: {bad}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
