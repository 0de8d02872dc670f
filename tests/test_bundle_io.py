"""Issue 14, item 6: a bundle any runtime can consume.

Every bundle train and export write lists its model file's tensors in argument order
(name, shape, dtype, int8 scale and zero point) and the file's sha256; `edgehar info`
prints them. The listing must describe the file as its runtime sees it, so the proof is
a consumer that knows nothing but the manifest: the LiteRT interpreter driven by hand
from the listing gives the backend's logits.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from edgehar.app.backends import load_bundle
from edgehar.contract.manifest import Manifest
from edgehar.models.datasets import WindowSampler, load_data

from export_helpers import tiny_bundle, tiny_export

BUNDLES = [("eager", "fp32"), ("executorch", "int8"), ("litert", "fp32"), ("litert", "int8"), ("onnx", "int8")]


def _bundle(tmp_path_factory, fmt: str, precision: str):
    return tiny_bundle(tmp_path_factory)[1] if fmt == "eager" else tiny_export(tmp_path_factory, fmt, precision).out_dir


@pytest.mark.parametrize("fmt, precision", BUNDLES)
def test_the_manifest_lists_the_model_file_as_its_runtime_loads_it(tmp_path_factory, fmt, precision):
    folder = _bundle(tmp_path_factory, fmt, precision)
    manifest, backend = load_bundle(folder)
    assert manifest.model_sha256 == hashlib.sha256((folder / manifest.model_file).read_bytes()).hexdigest()
    assert [t.role for t in manifest.inputs] == list(manifest.modality_names())
    assert [t.shape for t in manifest.inputs] == [(1, *s) for s in manifest.input_shapes()]
    assert [t.role for t in manifest.outputs] == ["logits"] and manifest.outputs[0].shape == (1, len(manifest.labels))
    inputs, outputs = backend.io()
    assert [(t.name, t.shape, t.dtype, t.scale, t.zero_point) for t in manifest.inputs + manifest.outputs] == \
        [tuple(t) for t in inputs + outputs]
    int8 = {t.dtype for t in manifest.inputs + manifest.outputs} == {"int8"}
    assert int8 == (fmt == "litert" and precision == "int8")  # the one file here with int8 I/O
    assert all(t.scale > 0 for t in manifest.inputs) == int8


def test_a_runtime_wired_from_the_manifest_alone_gives_the_backends_logits(tmp_path_factory):
    """What a C++ or Android user does: find each input by its listed name, quantize with
    the listed scale and zero point, invoke, dequantize the listed output."""
    from ai_edge_litert.interpreter import Interpreter

    sessions, _ = tiny_bundle(tmp_path_factory)
    folder = tiny_export(tmp_path_factory, "litert", "int8").out_dir
    manifest, backend = load_bundle(folder)
    data = load_data(str(sessions), frame_resize=manifest.frame_resize, progress=False)
    sampler = WindowSampler(manifest, data.split("test"), train=False)
    listing = json.loads((folder / "manifest.json").read_text())  # the JSON, not our dataclasses

    interp = Interpreter(model_path=str(folder / listing["model_file"]))
    interp.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in interp.get_input_details() + interp.get_output_details()}
    for item in sampler.eval_windows[:4]:
        window = sampler.inputs([item])[0]
        for spec, x in zip(listing["inputs"], window):
            q = np.clip(np.round(x / spec["scale"]) + spec["zero_point"], -128, 127).astype(spec["dtype"])
            interp.set_tensor(by_name[spec["name"]], q.reshape(spec["shape"]))
        interp.invoke()
        out = listing["outputs"][0]
        logits = (interp.get_tensor(by_name[out["name"]]).astype(np.float32) - out["zero_point"]) * out["scale"]
        np.testing.assert_allclose(logits, backend.run(tuple(window)), rtol=0, atol=1e-6)


def _edgehar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgehar", *args], capture_output=True, text=True, timeout=120)


def test_info_prints_the_contract_and_checks_the_file(tmp_path_factory, tmp_path):
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_export(tmp_path_factory, "litert", "int8").out_dir, folder)
    manifest = Manifest.load(folder)
    shown = _edgehar("info", str(folder))
    assert shown.returncode == 0, shown.stderr
    assert f"sha256 {manifest.model_sha256} [ok]" in shown.stdout
    for t in manifest.inputs + manifest.outputs:  # every tensor's row: name, role, shape, layout, dtype, quantization
        row = next(line.split() for line in shown.stdout.splitlines() if line.split()[:1] == [t.name])
        assert row[:5] == [t.name, t.role, "x".join(map(str, t.shape)), t.layout, t.dtype]
        assert row[5:] == [f"{t.scale:.6g},", str(t.zero_point)]
    assert ", ".join(manifest.labels) in shown.stdout

    as_json = _edgehar("info", str(folder), "--json")
    assert Manifest.from_dict(json.loads(as_json.stdout)["manifest"]) == manifest

    model = folder / manifest.model_file
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # one changed byte
    model.write_bytes(bytes(data))
    broken = _edgehar("info", str(folder))
    assert broken.returncode == 1 and "[FAILED]" in broken.stdout
    assert broken.stderr.strip().startswith(f"edgehar info: model file {str(model)!r} does not match its manifest")
    assert len(broken.stderr.strip().splitlines()) == 1

    missing = _edgehar("info", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"edgehar info: error: bundle {str(tmp_path / 'nope')!r} is not a folder"
