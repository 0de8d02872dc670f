"""benchmarks/soak.py's pieces, and a short real soak of the demo; the 30-minute run is a
documented command (docs/results.md)."""

import json
import os
import sys
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from soak import LogTail, Sample, plot, proc_sample, ring_capacities, soak, verdict  # noqa: E402

from live_helpers import tiny_bundle  # noqa: E402


def test_proc_sample_reads_this_process():
    rss, fds, threads = proc_sample(os.getpid())
    assert rss > 10 and fds >= 3 and threads >= 1


def test_log_tail_reads_only_complete_lines(tmp_path):
    log = tmp_path / "p.jsonl"
    tail = LogTail(log)
    tail.read()  # not there yet
    line = {"t": 1.0, "streams": {"imu": {"lost_blocks": 2, "outages": 1}}}
    log.write_bytes((json.dumps(line) + "\n").encode() + b'{"t": 1.25, "str')
    tail.read()
    assert tail.predictions == 1 and tail.totals("lost_blocks") == {"imu": 2}
    with open(log, "ab") as fh:
        fh.write(b'eams": {"imu": {"lost_blocks": 3}}}\n')
    tail.read()
    assert tail.predictions == 2 and tail.totals("lost_blocks") == {"imu": 3} and tail.totals("crc_errors") == {"imu": 0}


def _samples(rss_growth=0.0, fd_jump=0, lost=0, rate=4.0):
    return [Sample(t, 300.0 + rss_growth * t / 600, 20 + (fd_jump if t > 300 else 0), 12, int(rate * t),
                   {"imu": lost if t > 300 else 0}) for t in range(0, 601, 10)]


@pytest.mark.parametrize("kwargs, failing", [
    ({}, None),
    ({"rss_growth": 12.0}, "rss_growth_mb"),
    ({"fd_jump": 1}, "fds_range"),
    ({"lost": 1}, "lost_blocks"),
    ({"rate": 3.7}, "prediction_rate_hz"),
])
def test_verdict_holds_the_issue_bar(kwargs, failing):
    v = verdict(_samples(**kwargs), hop_s=0.25)
    assert v["ok"] is (failing is None), v
    assert verdict(_samples()[:5], hop_s=0.25)["ok"] is False  # nothing after the warm-up


def test_a_short_real_soak_of_the_demo(tmp_path):
    """The demo as a user runs it, sampled from outside: memory, fds, threads and the log."""
    bundle = tiny_bundle(tmp_path / "bundles")
    samples, status = soak(0.25, 1.0, str(bundle), tmp_path / "soak.jsonl")
    assert status == 0 and len(samples) >= 5
    assert all(s.rss_mb > 50 and s.fds > 3 and s.threads > 2 for s in samples)
    assert samples[-1].predictions > samples[0].predictions and set(samples[-1].lost_blocks) >= {"glove", "imu"}
    png = plot(samples, tmp_path / "soak.png", "test")
    assert cv2.imread(str(png)).shape == (800, 900, 3)


def test_ring_capacities_are_the_live_apps(tmp_path):
    capacities, hop_s = ring_capacities(tiny_bundle(tmp_path / "bundles"))
    assert capacities == {"camera": 60, "glove": 200, "imu": 200} and hop_s == 0.25  # two 1 s windows at 30 and 100 Hz
