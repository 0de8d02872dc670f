"""The pieces of benchmarks/deploy_footprint.py (the whole run builds a venv: a benchmark,
not a test): disk usage, per-package sizes, the demo's first prediction and peak RSS, and a
table that says which of issue 14's figures were not met."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edgehar.benchmarks import deploy_footprint as fp


def test_disk_bytes_counts_blocks_once_and_follows_no_link(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "a", tmp_path / "hard")
    big = tmp_path.parent / f"{tmp_path.name}-outside"
    big.write_bytes(b"y" * 1_000_000)
    (tmp_path / "soft").symlink_to(big)
    assert 100_000 <= fp.disk_bytes(tmp_path) < 100_000 + 64 * 1024


def test_package_sizes_lists_what_this_interpreter_has():
    rows = fp.package_sizes(sys.executable)
    sizes = [r["mb"] for r in rows]
    assert sizes == sorted(sizes, reverse=True)
    numpy = next(r for r in rows if r["name"].lower() == "numpy")
    import numpy as np

    assert numpy["version"] == np.__version__ and numpy["mb"] > 5  # its shared libraries count with it


def test_the_copied_tree_is_what_a_clone_holds(tmp_path):
    dest = fp.copy_tree(tmp_path / "src")
    assert (dest / "pyproject.toml").read_bytes() == (fp.ROOT / "pyproject.toml").read_bytes()
    assert (dest / "edgehar" / "bundles" / "default-mmtsa-v1" / "litert-int8" / "model.tflite").is_file()
    assert not (dest / ".venv").exists() and not (dest / ".git").exists()


def test_the_demo_is_measured_from_its_start(tmp_path):
    demo = fp.run_demo(Path(sys.executable).parent / "edgehar", 4.0, tmp_path)
    # the first window (3 s of every stream) fills before the first prediction can be made
    assert demo["first_prediction_s"] is not None and demo["first_prediction_s"] > 3.0
    assert demo["predictions"] >= 3 and demo["agreement_pct"] is not None
    assert demo["peak_rss_mb"] > 20  # numpy, OpenCV and the runtime are in it


def test_the_table_says_which_figure_is_not_met():
    result = {"machine": "m", "command": "c", "extras": "litert,headless", "seconds": 20, "install_s": 30,
              "install_mb": 373.0, "packages": [{"name": f"p{i}", "version": "1", "mb": 10.0 - i} for i in range(10)],
              "demo": {"peak_rss_mb": 97.0, "first_prediction_s": 3.7, "predictions": 69, "agreement_pct": 97.1}}
    result["verdicts"] = fp.verdicts(result)
    assert result["verdicts"] == {"install_mb": False, "peak_rss_mb": True, "first_prediction_s": True}
    md = fp.to_markdown(result)
    assert "| install on disk (venv: litert,headless) | 373 MB | ≤ 250 MB | **not met** |" in md
    assert "| demo peak RSS | 97 MB | ≤ 200 MB | met |" in md
    assert "| p0 | 1 | 10.0 MB |" in md and "| 2 others | | 3.0 MB |" in md  # 2.0 + 1.0
    result["demo"]["first_prediction_s"] = None  # never predicted: not met, whatever the limit
    assert fp.verdicts(result)["first_prediction_s"] is False
