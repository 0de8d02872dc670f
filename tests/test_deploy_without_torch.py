"""The deploy-only installs: numpy, OpenCV, pyserial, bleak and one runtime (ai-edge-litert
or onnxruntime) — no torch.

A subprocess makes torch (and everything built on it, and the ONNX exporter's packages)
unimportable, then runs the live demo on a LiteRT or ONNX int8 bundle: it must predict,
and none of them must ever have been imported.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from export_helpers import tiny_export

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, json, sys
    from pathlib import Path

    BLOCKED = ("torch", "torchao", "executorch", "litert_torch", "jax", "tensorflow", "onnx", "onnxscript")

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (deploy-only test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())

    from edgehar.cli.demo import run_demo

    log = io.StringIO()
    summary = run_demo(Path(sys.argv[1]), seconds=4, json_path=Path(sys.argv[2]), out=log)
    print(json.dumps({
        "predictions": summary.predictions,
        "log": log.getvalue(),
        "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED)),
    }))
    """
)


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
def test_demo_runs_an_int8_bundle_without_torch(tmp_path_factory, tmp_path, fmt):
    bundle = tiny_export(tmp_path_factory, fmt, "int8").out_dir
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle), str(tmp_path / "p.jsonl")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []  # "torch" not in sys.modules, nor anything built on it
    # window 3 s, hop 0.25 s, 4 s of demo: predictions at 3.0 .. 4.0 s
    assert report["predictions"] >= 4
    assert f"({fmt}, int8)" in report["log"]
    lines = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == report["predictions"] and all(l["latency_ms"]["inference"] > 0 for l in lines)
