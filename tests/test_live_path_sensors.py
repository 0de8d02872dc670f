"""benchmarks/live_path.py's sensor-count mode: how its bundles are made, its growth and
verdict arithmetic, its table and chart; the timed table itself is a documented command
(benchmarks/RESULTS.md), and the live run it makes is test_live_path's."""

import json
import sys
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import live_path  # noqa: E402
from live_path import growth, parse_numbers, plot_sensors, replayed_devices, sensor_bundle, sensor_verdict, sensors_markdown  # noqa: E402

from live_helpers import tiny_bundle  # noqa: E402


def test_counts_and_rates_parse_and_a_bad_list_is_named():
    assert parse_numbers("1,2,4", int) == (1, 2, 4) and parse_numbers("100,1000") == (100.0, 1000.0)
    with pytest.raises(SystemExit, match="'1,two' is not a comma-separated list"):
        parse_numbers("1,two", int)
    with pytest.raises(SystemExit, match="must be > 0"):
        parse_numbers("0,100")


def test_each_sensor_stream_of_the_bundle_is_replayed_from_the_session_by_name(tmp_path):
    bundle = tiny_bundle(tmp_path, streams=("camera", "glove", "imu", "imu2"))
    assert replayed_devices(bundle, Path("/s")) == ["--device", "glove=replay:///s?stream=glove", "--device", "imu=replay:///s?stream=imu",
                                                   "--device", "imu2=replay:///s?stream=imu2"]


def test_bundles_are_made_by_edgehar_once_per_rate_and_count_from_one_four_imu_data_set(tmp_path, monkeypatch):
    calls = []

    def fake_edgehar(*args):  # what the real commands leave behind, so the cache sees it
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        (out / "bundle" if args[0] == "train" else out).mkdir(parents=True)
        if args[0] != "simulate":
            (out / "bundle" / "manifest.json" if args[0] == "train" else out / "manifest.json").write_text("{}")

    monkeypatch.setattr(live_path, "_edgehar", fake_edgehar)
    for _ in range(2):  # the second time everything is cached
        made = [sensor_bundle(tmp_path, n, 1000.0, 3) for n in (1, 2)]
    assert [c[0] for c in calls] == ["simulate", "train", "export", "train", "export"]
    assert calls[0][calls[0].index("--imus") + 1] == "wrist,forearm,chest,ankle" and calls[0][calls[0].index("--rate") + 1] == "1000"
    assert [c[c.index("--modalities") + 1] for c in calls if c[0] == "train"] == ["rgb,glove,imu", "rgb,glove,imu,imu2"]
    assert all(c[c.index("--format") + 1:c.index("--format") + 4:2] == ("litert", "int8") for c in calls if c[0] == "export")
    assert all(c[c.index("--min-agreement") + 1] == "0.9" for c in calls if c[0] == "export")
    assert made[1] == (tmp_path / "mmtsa-2imu-1000hz-3ep-litert-int8", tmp_path / "sim-4imu-1000hz")


def _row(imus, rate, cpu, p50, p99):
    return {"imus": imus, "rate_hz": rate, "streams": ["glove"] + ["imu"] * imus, "samples_per_s": (imus + 1) * rate,
            "accuracy": 0.9, "predictions": 149, "due": 149, "missed": 0, "cpu_share": cpu, "peak_rss_mb": 120.0,
            "latency_ms": {"total": {"p50": p50, "p90": p99, "p99": p99}, "inference": {"p50": 1.0}},
            "age_ms": {"glove": {"p50": 20.0}, "imu": {"p50": 30.0}}}


def test_growth_is_measured_against_the_fewest_samples_and_the_verdict_says_which_figure_fails():
    runs = [_row(1, 100.0, 0.10, 2.0, 3.0), _row(4, 100.0, 0.12, 2.6, 4.0), _row(4, 1000.0, 0.30, 2.8, 25.0)]
    g = growth(runs)
    assert [x["samples"] for x in g] == [1.0, 2.5, 25.0] and g[2]["cpu"] == pytest.approx(3.0)
    assert all(x["linear"] for x in g)
    verdict = sensor_verdict(runs)
    assert "4 IMUs + glove at 1000 Hz: total p99 25.0 ms, OVER the 20 ms budget" in verdict[0]
    assert verdict[1].endswith("yes")
    runs[1] = _row(4, 100.0, 0.30, 2.6, 4.0)  # 3x the CPU for 2.5x the samples: more than linear
    assert not growth(runs)[1]["linear"] and sensor_verdict(runs)[1].endswith("NO")
    assert sensor_verdict(runs[2:])[1].endswith("not assessed (one row)")  # one row shows no growth


def test_table_and_chart_of_the_sensor_rows(tmp_path):
    result = {"runs": [_row(n, r, 0.1 * n, 2.0 + n, 3.0 + n) for r in (100.0, 1000.0) for n in (1, 2, 4)], "seconds": 40.0,
              "camera": "640x480", "runtime": "litert int8", "machine": "test", "command": "python benchmarks/live_path.py --sensors 1,2,4",
              "epochs": 8, "floor": ["0.9", "0.05"]}
    result["runs"][-1]["agreement"] = 0.95
    table = sensors_markdown(result)
    assert "| 4 + glove | 1000 Hz | 5000 | 90.0 % / 95.0 % | 149 / 149 | 6.0 / 7.0 / 7.0 |" in table
    assert "trained 8 epochs, exported under a floor of 90 % top-1 agreement and 5 points of accuracy" in table
    assert "| 25.0 / 4.00 / 2.00 |" in table and "python benchmarks/live_path.py --sensors 1,2,4" in table
    img = cv2.imread(str(plot_sensors(result, tmp_path / "s.png")))
    assert img.shape == (520, 1100, 3) and (img < 250).any(axis=2).mean() > 0.005
    json.dumps(result)  # what _save writes
