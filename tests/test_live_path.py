"""benchmarks/live_path.py's pieces, and one short real run of `edgehar live` through it;
the full table (4 camera sizes x 3 runtimes x 40 s) is a documented command (benchmarks/RESULTS.md)."""

import sys
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from live_path import STAGES, int8_formats, parse_sizes, run_live, scaled_video, summarise, to_markdown  # noqa: E402

from live_helpers import tiny_bundle  # noqa: E402


def test_sizes_are_width_by_height_and_a_bad_one_is_named():
    assert parse_sizes("640x480,1920X1080") == ((640, 480), (1920, 1080))
    with pytest.raises(SystemExit, match="'640by480' is not WIDTHxHEIGHT"):
        parse_sizes("640by480")


def test_onnx_runtime_rows_when_onnxruntime_is_installed(monkeypatch):
    assert int8_formats() == ["litert", "executorch", "onnx"]  # the dev install has every runtime
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert int8_formats() == ["litert", "executorch"]


def _line(total, age=30.0):
    return {"latency_ms": {"late": 0.1, "inference": total - 0.2, "unattributed": 0.1, "total": total},
            "age_ms": {"camera": age}}


def test_summary_counts_the_hops_that_fell_due_and_the_missed_ones():
    lines = [_line(float(t)) for t in range(1, 11)]  # 10 predictions
    s = summarise(lines, seconds=5.0, window_s=2.0, hop_s=0.25)  # due at 2.0, 2.25, ..., 5.0: 13
    assert (s["predictions"], s["due"], s["missed"]) == (10, 13, 3)
    assert s["latency_ms"]["total"]["p50"] == 5.5 and s["latency_ms"]["total"]["p99"] == pytest.approx(9.91)
    assert set(s["latency_ms"]) == {"late", "inference", "unattributed", "total"} <= set(STAGES)
    assert s["age_ms"] == {"camera": {"p50": 30.0, "p99": 30.0}}


def test_a_short_real_run_at_a_camera_size_the_session_was_not_recorded_at(sessions, tmp_path):
    """`edgehar live` as a user runs it: replayed glove and IMU, a 320x240 MJPG file."""
    bundle = tiny_bundle(tmp_path / "bundles")
    session = sorted(p for p in sessions.iterdir() if (p / "meta.json").is_file())[0]
    video = scaled_video(session / "camera.mp4", (320, 240), 6.0, tmp_path)
    cap = cv2.VideoCapture(str(video))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240)
    cap.release()
    assert scaled_video(session / "camera.mp4", (320, 240), 6.0, tmp_path) == video  # written once

    measured = run_live(bundle, session, video, 4.0, tmp_path / "live.jsonl")
    s = summarise(measured["lines"], 4.0, window_s=1.0, hop_s=0.25)
    assert s["due"] == 13 and 1 <= s["predictions"] <= 13
    assert set(s["latency_ms"]) == set(STAGES) and set(s["age_ms"]) == {"camera", "glove", "imu"}
    assert measured["peak_rss_mb"] > 50 and (measured["cpu_share"] is None or measured["cpu_share"] > 0)
    row = {"format": "eager", "precision": "fp32", "camera": "320x240", "pixels": 320 * 240, **measured, **s}
    table = to_markdown({"runs": [row], "seconds": 4.0, "machine": "test", "command": "python benchmarks/live_path.py"})
    assert "| eager fp32 | 320x240 |" in table
