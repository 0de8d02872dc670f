"""Training on PyTorch's distributed engine: two real worker processes on loopback (gloo),
through torchrun and through `train --nproc`; the sharding each rank trains on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgehar.app.backends import load_bundle
from edgehar.models.datasets import WindowSampler, load_data
from edgehar.models.distributed import Workers, launch
from edgehar.models.train import TrainConfig, build_manifest

ROOT = Path(__file__).resolve().parents[1]


def test_every_rank_trains_on_its_own_shard_of_the_same_epoch(sessions) -> None:
    data = load_data(str(sessions), progress=False)
    manifest = build_manifest(data, TrainConfig(data=str(sessions), model="mmtsa_tiny"))
    samplers = [WindowSampler(manifest, data.split("train"), train=True, seed=5, rank=r) for r in range(3)]
    for epoch in range(2):  # a fresh draw and order each epoch, the same on every rank
        epochs = [s.epoch(3) for s in samplers]
        assert epochs[0] == epochs[1] == epochs[2]
        if epoch == 0:
            first = epochs[0]
    assert epochs[0] != first
    items = list(range(12))
    shards = [Workers(rank=r, world_size=3).shard(items) for r in range(3)]
    assert sorted(sum(shards, [])) == items  # disjoint, and together the whole epoch
    shards = [Workers(rank=r, world_size=3).shard(items[:10]) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded: every rank the same number of steps
    assert sorted(sum(shards, [])) == sorted(list(range(10)) + [0, 1])  # by the epoch's first windows
    items = items[:10]
    parts = [Workers(rank=r, world_size=3).part(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items  # evaluation: each window exactly once
    assert Workers(rank=1, world_size=3).per_rank_batch(32) == 11


def _assert_bundle_predicts(out: Path, sessions: Path) -> dict:
    """One bundle, its metrics on every test window, and the runtime reproduces them."""
    assert sorted(p.name for p in out.iterdir()) == ["bundle", "confusion.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    manifest, backend = load_bundle(out / "bundle")
    data = load_data(str(sessions), frame_resize=manifest.frame_resize, progress=False)
    windows = WindowSampler(manifest, data.split("test"), train=False)
    assert metrics["test_windows"] == len(windows.eval_windows)  # rank 0 tested them all
    preds = [int(np.argmax(backend.run(tuple(windows.inputs([w])[0])))) for w in windows.eval_windows]
    labels = [c for _, _, c in windows.eval_windows]
    assert np.mean(np.array(preds) == labels) == pytest.approx(metrics["accuracy"], abs=1e-4)
    return metrics


def test_torchrun_two_processes_write_one_bundle(sessions, tmp_path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
           "--nproc-per-node", "2", "-m", "edgehar", "train", "--data", str(sessions), "--model", "mmtsa_tiny",
           "--epochs", "1", "--windows-per-bout", "2", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test accuracy") == 1, proc.stdout  # rank 0 alone reports
    _assert_bundle_predicts(out, sessions)


def _train_logging_writes(cfg: TrainConfig, log: str) -> dict:
    """`train` in a launched worker, appending this rank to `log` each time it writes a bundle."""
    import edgehar.models.train as training

    write = training.write_bundle

    def logged(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.environ['RANK']}\n")
        return write(*args, **kwargs)

    training.write_bundle = logged
    return training.train(cfg, progress=False)


def test_nproc_launch_trains_two_workers_and_rank_0_alone_writes(sessions, tmp_path) -> None:
    log = tmp_path / "writes.log"
    cfg = TrainConfig(data=str(sessions), model="cam_tiny", epochs=2, windows_per_bout=2, threads=1,
                      out=str(tmp_path / "run"))  # CAM: two training stages, a fresh DDP each
    metrics = launch(_train_logging_writes, (cfg, str(log)), nproc=2)
    assert log.read_text() == "0\n"  # one bundle, written by rank 0
    assert metrics["accuracy"] == _assert_bundle_predicts(tmp_path / "run", sessions)["accuracy"]


def test_torchrun_evaluate_trains_each_run_on_both_ranks_and_rank_0_writes(sessions, tmp_path) -> None:
    """`torchrun -m edgehar evaluate --components`: the ranks train every run together (one
    bundle each, rank 0's), rank 0 alone prints and writes the table; run again, it
    trains nothing (rank 0 reads each run's recipe and tells the others). (`--jobs` under
    torchrun is refused: tests/test_settings.py.)"""
    out = tmp_path / "components"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
           "--nproc-per-node", "2", "-m", "edgehar", "evaluate", "--components", "--data", str(sessions),
           "--models", "nonlocal_fusion_tiny", "--seeds", "1", "--epochs", "1", "--windows-per-bout", "1",
           "--threads", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("### nonlocal_fusion_tiny") == 1, proc.stdout  # rank 0 alone prints the table
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert len(rows) == 4 and all(len(r["accuracy"]["values"]) == 1 for r in rows)
    bundles = sorted(out.glob("nonlocal_fusion_tiny/*/seed-0/bundle/manifest.json"))
    assert len(bundles) == 4
    written = [b.stat().st_mtime_ns for b in bundles]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [b.stat().st_mtime_ns for b in bundles] == written  # nothing trained again
    assert json.loads((out / "evaluation.json").read_text())["rows"] == rows
