"""The benchmark harness on a tiny trained bundle: table structure and files, no timings."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest

from edgehar.benchmarks.bench import compare_rows, dense_segments, run_bench
from edgehar.benchmarks.report import JSON_NAME, MARKDOWN_NAME, PLOT_NAME, plot_points, read_json, to_markdown
from edgehar.benchmarks.table import STAGES, BenchTable, BundleResult
from edgehar.contract.manifest import Manifest

RUNS = 12  # a few queries: the tests check structure, not speed


@pytest.fixture(scope="module")
def bundle(trained):
    out, metrics = trained  # conftest: mmtsa_tiny on the tiny simulated sessions
    return out / "bundle", metrics


@pytest.fixture(scope="module")
def no_meter_run(bundle, sessions, tmp_path_factory):
    """Two bundles: the trained one and one in a format no backend knows; an empty sysfs."""
    folder, _ = bundle
    broken = tmp_path_factory.mktemp("broken")
    shutil.copytree(folder, broken, dirs_exist_ok=True)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "format": "tensorrt"}))
    empty_root = tmp_path_factory.mktemp("sysfs")
    out = tmp_path_factory.mktemp("bench")
    table = run_bench([folder, broken], runs=RUNS, warmup=2, threads=1, meter="auto", out_dir=out,
                      data=str(sessions), max_runs=RUNS, gaf_reps=1, sysfs_root=empty_root)
    return table, out, folder, broken


def test_one_row_per_bundle_with_every_stage_and_the_training_accuracy(no_meter_run, bundle):
    table, _, folder, broken = no_meter_run
    _, metrics = bundle
    ok, bad = table.rows
    assert ok.status == "ok" and ok.bundle == str(folder)
    assert (ok.model, ok.format, ok.precision, ok.threads) == ("mmtsa_tiny", "eager", "fp32", 1)
    assert ok.size_bytes == sum(p.stat().st_size for p in folder.iterdir())
    # the harness runs the live path on the test subjects: the same accuracy training reported
    assert ok.accuracy == pytest.approx(metrics["accuracy"], abs=1e-4) and ok.test_windows == metrics["test_windows"]
    assert ok.runs >= max(RUNS, ok.test_windows)
    assert set(ok.latency_ms) == set(STAGES)
    for stage in STAGES:
        p = ok.latency_ms[stage]
        assert p["p50"] <= p["p90"] <= p["p99"]
    assert ok.latency_ms["total"]["p50"] >= ok.latency_ms["inference"]["p50"] > 0
    assert ok.throughput_per_s > 0 and ok.peak_rss_with_data_mb >= ok.peak_rss_mb > 0
    # a bundle that cannot be loaded is a row with its reason, and does not stop the others
    assert bad.bundle == str(broken) and "format 'tensorrt' is not supported" in bad.status
    assert bad.accuracy is None and bad.latency_ms == {}


def test_no_meter_means_no_joules(no_meter_run):
    table, out, _, _ = no_meter_run
    ok = table.rows[0]
    assert ok.energy_j_per_inference is None and ok.energy_label == "no meter"
    assert table.meter["name"] == "no meter" and not table.meter["estimate"]
    md = (out / MARKDOWN_NAME).read_text()
    row = next(l for l in md.splitlines() if l.startswith("| mmtsa_tiny | eager"))
    assert row.rstrip(" |").endswith("no meter")
    assert "## Why no energy meter" in md and "no /sys/class/powercap" in md
    assert " J" not in md and "mJ" not in md


def test_markdown_json_and_plot_agree(no_meter_run):
    table, out, _, _ = no_meter_run
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKDOWN_NAME, JSON_NAME, PLOT_NAME])
    again = read_json(out / JSON_NAME)
    assert again == table
    assert (out / MARKDOWN_NAME).read_text() == to_markdown(again)
    ok = table.rows[0]
    md = (out / MARKDOWN_NAME).read_text()
    assert f"{100 * ok.accuracy:.1f}%" in md and f"{ok.latency_ms['total']['p50']:.2f}" in md
    assert table.machine["cpu"] in md and table.machine["python"] in md
    image = cv2.imread(str(out / PLOT_NAME))
    assert image is not None and image.shape == (600, 900, 3)
    assert [p["label"] for p in plot_points(table)] == ["mmtsa_tiny eager fp32"]  # one point per measured bundle


def test_sparse_vs_dense_and_gaf_sections(no_meter_run, bundle):
    table, out, folder, _ = no_meter_run
    manifest = Manifest.load(folder)
    [d] = table.sparse_vs_dense
    sparse, dense = d["variants"]
    assert (sparse["kind"], sparse["segments"]) == ("sparse", manifest.num_segments)
    camera = next(s for s in manifest.streams if s.kind == "camera")
    assert dense["segments"] == dense_segments(manifest) == round(manifest.window_s * camera.rate_hz)
    assert dense["macs"] > sparse["macs"] > 0
    # same weights, N as trained: the accuracy of the bundle
    assert sparse["accuracy"] == pytest.approx(table.rows[0].accuracy, abs=1e-4)
    assert 0 <= dense["accuracy"] <= 1
    rows = table.gaf_vs_official["rows"]
    assert rows[0]["pipeline"].startswith("official") and all(r["max_abs_diff"] <= 1 for r in rows)
    md = (out / MARKDOWN_NAME).read_text()
    assert "## Sparse N-segment sampling vs dense" in md and "## Our GAF vs the official-style pyts pipeline" in md


def test_estimate_mode_is_labelled_estimate(bundle, sessions, tmp_path):
    folder, _ = bundle
    table = run_bench([folder], runs=RUNS, warmup=1, threads=1, meter="estimate:5", out_dir=tmp_path,
                      data=str(sessions), max_runs=RUNS, dense=False, gaf_reps=0, sysfs_root=tmp_path / "empty")
    [row] = table.rows
    assert row.energy_label == "estimate" and row.energy_j_per_inference > 0
    assert table.meter["estimate"] and "not a measurement" in table.meter["description"]
    md = (tmp_path / MARKDOWN_NAME).read_text()
    assert "energy / inference (ESTIMATE)" in md
    assert f"{row.energy_j_per_inference * 1e3:.3f} mJ (estimate)" in md
    assert json.loads((tmp_path / JSON_NAME).read_text())["rows"][0]["energy_label"] == "estimate"
    assert "Skipped: not asked" in md


def test_a_data_source_that_cannot_be_found_is_a_row_status(bundle, tmp_path):
    folder, _ = bundle
    moved = tmp_path / "bundle"
    shutil.copytree(folder, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["metrics"]["data"] = str(tmp_path / "sessions-gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    table = run_bench([moved], runs=1, warmup=0, meter="none", dense=False, gaf_reps=0)
    [row] = table.rows
    assert row.status.startswith("data ") and "is not 'sim', 'sim-hard', 'basicmotions', a public data set" in row.status
    assert row.peak_rss_mb > 0 and row.accuracy is None


def _row(fmt, precision, p50, acc, size, model="m"):
    lat = {s: {"p50": p50, "p90": p50, "p99": p50, "mean": p50} for s in STAGES}
    return BundleResult(bundle=f"{model}-{fmt}-{precision}", status="ok", model=model, format=fmt, precision=precision,
                        size_bytes=size, data="sim", accuracy=acc, latency_ms=lat)


def test_ratios_against_eager_fp32_and_fp32_of_the_same_runtime():
    rows = [
        _row("eager", "fp32", 10.0, 0.90, 4000),
        _row("litert", "fp32", 5.0, 0.90, 4000),
        _row("litert", "int8", 2.0, 0.88, 1000),
        _row("executorch", "int8", 4.0, 0.89, 1100),  # no executorch fp32: only vs eager
        _row("eager", "fp32", 1.0, 0.50, 10, model="other"),  # another model: never compared across
        BundleResult(bundle="broken", status="cannot load", model="m", format="executorch", precision="fp32"),
    ]
    got = {(c["kind"], c["what"]): c for c in compare_rows(rows)}
    assert set(got) == {
        ("vs eager fp32", "litert fp32 vs eager fp32"),
        ("vs eager fp32", "litert int8 vs eager fp32"),
        ("vs eager fp32", "executorch int8 vs eager fp32"),
        ("precision vs fp32", "litert int8 vs litert fp32"),
    }
    c = got[("precision vs fp32", "litert int8 vs litert fp32")]
    assert c["speedup_total"] == 2.5 and c["accuracy_delta"] == -0.02 and c["size_ratio"] == 0.25
    assert got[("vs eager fp32", "litert int8 vs eager fp32")]["speedup_inference"] == 5.0
    md = to_markdown(BenchTable(rows, compare_rows(rows), [], {"skipped": "x"}, {
        "cpu": "cpu", "board": None, "cores": 1, "usable_cores": 1, "memory_gb": 1, "os": "os", "python": "3", "versions": {}},
        {"name": "no meter", "description": "no meter", "estimate": False, "reasons": []},
        {"runs": 1, "max_runs": 1, "warmup": 0, "threads": None, "data": None, "idle_s": 0, "scenario": "s"}))
    assert "| m | litert int8 vs litert fp32 | 2.50× | 2.50× | -2.0 pts | 0.25× |" in md


def test_export_all_names_each_sources_exports_after_its_model(bundle, tmp_path):
    """Sources are usually all called `bundle`: exports named after the folder would overwrite
    one another; they are named after the model, numbered where a model comes twice."""
    from edgehar.cli import _export_stems

    folder, _ = bundle
    sources = []
    for name, model in (("a", None), ("b", "late_concat"), ("c", None)):
        copy = tmp_path / name / "bundle"
        shutil.copytree(folder, copy)
        if model:
            manifest = json.loads((copy / "manifest.json").read_text())
            (copy / "manifest.json").write_text(json.dumps({**manifest, "model": model}))
        sources.append(copy)
    assert _export_stems(sources) == ["mmtsa_tiny-1", "late_concat", "mmtsa_tiny-2"]
