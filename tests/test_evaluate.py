"""`edgehar evaluate` (models/evaluate.py): the per-model ablation table."""

from __future__ import annotations

import json
from dataclasses import replace

from edgehar.models.evaluate import evaluate_models
from edgehar.models.train import TrainConfig


def test_one_row_per_model_with_fused_single_and_missing_modality_figures(sessions, tmp_path):
    cfg = TrainConfig(data=str(sessions), epochs=1, windows_per_bout=1, threads=2, out=str(tmp_path))
    rows = evaluate_models(cfg, models=("late_concat_tiny", "mmtsa_tiny"), progress=False)
    assert [r["model"] for r in rows] == ["late_concat_tiny", "mmtsa_tiny"]
    for r in rows:
        assert r["fused"]["modalities"] == "rgb+glove+imu"
        assert sorted(r["single"]) == ["glove", "imu", "rgb"]
        # each figure is the one its own training run wrote
        run = json.loads((tmp_path / r["model"] / "rgb_glove_imu" / "metrics.json").read_text())
        assert r["fused"]["accuracy"] == run["accuracy"] and r["fused"]["accuracy_without"] == run["accuracy_without"]
        alone = json.loads((tmp_path / r["model"] / "imu" / "metrics.json").read_text())
        assert r["single"]["imu"]["accuracy"] == alone["accuracy"] and alone["modalities"] == ["imu"]
    # the series family's manifests read raw windows, MMTSA's GAF images
    manifest = json.loads((tmp_path / "late_concat_tiny" / "imu" / "bundle" / "manifest.json").read_text())
    assert [m["type"] for m in manifest["modalities"]] == ["series"] and manifest["gaf_scaling"] == "range"
    manifest = json.loads((tmp_path / "mmtsa_tiny" / "imu" / "bundle" / "manifest.json").read_text())
    assert [m["type"] for m in manifest["modalities"]] == ["gaf"]

    table = (tmp_path / "evaluation.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| late_concat_tiny")]
    assert len(lines) == 2  # one row in each table
    fused = rows[0]["fused"]
    gain = fused["accuracy"] - max(s["accuracy"] for s in rows[0]["single"].values())
    assert f"| {100 * fused['accuracy']:.1f} |" in lines[0] and f"{100 * gain:+.1f}" in lines[0]
    drop = max(fused["accuracy"] - v for v in fused["accuracy_without"].values())
    assert lines[1].endswith(f"| {100 * drop:.1f} |")
    assert json.loads((tmp_path / "evaluation.json").read_text())["rows"] == rows


def test_jobs_train_the_models_in_parallel_processes_with_the_same_figures(sessions, tmp_path):
    """Independent runs in a process pool give what one process gives (train time aside)."""

    def figures(rows):
        return [{k: v for k, v in run.items() if k != "train_seconds"}
                for r in rows for run in (r["fused"], *r["single"].values())]

    cfg = TrainConfig(data=str(sessions), epochs=1, windows_per_bout=1, threads=1)
    models = ("late_concat_tiny", "mmtsa_tiny")
    one = evaluate_models(replace(cfg, out=str(tmp_path / "one")), models=models, progress=False)
    two = evaluate_models(replace(cfg, out=str(tmp_path / "two")), models=models, progress=False, jobs=2)
    assert [r["model"] for r in two] == list(models)
    assert figures(two) == figures(one)
    assert (tmp_path / "two" / "mmtsa_tiny" / "imu" / "bundle" / "manifest.json").is_file()
