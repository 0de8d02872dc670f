"""Runtime backends: chosen by the manifest's format, parity with eager, and a missing
runtime is one line that names the pip extra."""

import importlib.abc
import sys
from dataclasses import replace

import numpy as np
import pytest

from edgehar.app.backends import ExecuTorchBackend, LiteRTBackend, OnnxRuntimeBackend, load_bundle
from edgehar.contract.bundle import BundleError, read_manifest
from edgehar.models.datasets import WindowSampler, load_data

from export_helpers import tiny_bundle, tiny_export


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """A handful of real held-out windows (batch 1) from the tiny bundle's data."""
    sessions, source = tiny_bundle(tmp_path_factory)
    manifest, eager = load_bundle(source)
    data = load_data(str(sessions), frame_resize=manifest.frame_resize, progress=False)
    sampler = WindowSampler(manifest, data.split("test"), train=False)
    inputs = [tuple(sampler.inputs([item])[0]) for item in sampler.eval_windows[:8]]
    return inputs, np.stack([eager.run(x)[0] for x in inputs])


@pytest.mark.parametrize("fmt, backend_cls", [("executorch", ExecuTorchBackend), ("litert", LiteRTBackend),
                                             ("onnx", OnnxRuntimeBackend)])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_backend_parity_with_eager(tmp_path_factory, windows, fmt, backend_cls, precision):
    inputs, reference = windows
    manifest, backend = load_bundle(tiny_export(tmp_path_factory, fmt, precision).out_dir, num_threads=1)
    assert isinstance(backend, backend_cls) and backend.name == fmt
    logits = np.stack([backend.run(x)[0] for x in inputs])
    assert logits.dtype == np.float32 and logits.shape == reference.shape == (len(inputs), len(manifest.labels))
    if precision == "fp32":
        np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    else:
        assert np.mean(logits.argmax(1) == reference.argmax(1)) >= 0.75
        assert np.abs(logits - reference).max() < 0.25 * np.abs(reference).max() + 1e-3
    # all-zero inputs (every stream missing) still run; the gate zeroes every feature block
    zeros = tuple(np.zeros_like(x) for x in inputs[0])
    assert np.isfinite(backend.run(zeros)).all()


def test_litert_int8_model_has_int8_io_and_the_backend_hides_it(tmp_path_factory, windows):
    """litert-torch's PT2E int8 model takes and gives int8 tensors and holds int8 weights
    (a float32 model passed off as int8 fails here); callers pass and get float32."""
    manifest, backend = load_bundle(tiny_export(tmp_path_factory, "litert", "int8").out_dir)
    for detail in [*backend._inputs, backend._output]:
        scale, _ = detail["quantization"]
        assert np.dtype(detail["dtype"]) == np.int8 and scale > 0, detail
    kinds = [np.dtype(d["dtype"]) for d in backend._interp.get_tensor_details()]
    assert kinds.count(np.dtype(np.int8)) > kinds.count(np.dtype(np.float32)), "most tensors are int8"
    _, fp32 = load_bundle(tiny_export(tmp_path_factory, "litert", "fp32").out_dir)
    assert np.dtype(np.int8) not in {np.dtype(d["dtype"]) for d in fp32._interp.get_tensor_details()}
    assert backend.input_shapes() == [(1, *s) for s in manifest.input_shapes()]
    inputs, _ = windows
    logits = backend.run(inputs[0])
    assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_litert_inputs_follow_the_argument_order(tmp_path_factory, windows):
    """Tensors are matched to modalities by litert-torch's argument names, not by position
    in the interpreter's list (args_10 comes after args_2)."""
    from edgehar.app.backends import _arg_index

    details = [{"name": f"serving_default_args_{i}:0", "index": 100 - i} for i in (10, 2, 0, 1)]
    assert [_arg_index(d) for d in sorted(details, key=_arg_index)] == [0, 1, 2, 10]
    inputs, _ = windows
    _, backend = load_bundle(tiny_export(tmp_path_factory, "litert", "fp32").out_dir)
    with pytest.raises(BundleError, match="takes 3 inputs, got 2"):
        backend.run(inputs[0][:2])


class _Block(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.names:
            raise ImportError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


@pytest.fixture
def block_imports(monkeypatch):
    """Make packages unimportable for one test, as on a machine that lacks them."""

    def block(*names):
        for mod in list(sys.modules):
            if mod.split(".")[0] in names:
                monkeypatch.delitem(sys.modules, mod)
        monkeypatch.setattr(sys, "meta_path", [_Block(names), *sys.meta_path])

    return block


@pytest.mark.parametrize(
    "fmt, blocked, extra",
    [
        ("litert", ("ai_edge_litert", "tflite_runtime"), "litert"),
        ("executorch", ("executorch",), "executorch"),
        ("onnx", ("onnxruntime",), "onnx"),
    ],
)
def test_missing_runtime_names_the_pip_extra(tmp_path_factory, block_imports, fmt, blocked, extra):
    folder = tiny_export(tmp_path_factory, fmt, "fp32").out_dir
    block_imports(*blocked)
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    msg = str(info.value)
    assert "\n" not in msg and f"pip install 'edgehar[{extra}]'" in msg and "runtime is not installed" in msg


def test_litert_falls_back_to_tflite_runtime(tmp_path_factory, windows, block_imports, monkeypatch):
    """Without ai_edge_litert, a `tflite_runtime` Interpreter is used, and gives what
    ai_edge_litert gives on the same windows (int8: quantised inputs and outputs too).

    tflite_runtime itself does not install beside numpy 2 (docs/platform-notes.md), so
    its module is stood in by one whose Interpreter is LiteRT's, counting its uses: what
    is checked is that the backend finds it there and drives it the same way."""
    import types

    from ai_edge_litert.interpreter import Interpreter

    inputs, _ = windows
    folder = tiny_export(tmp_path_factory, "litert", "int8").out_dir
    _, litert = load_bundle(folder)
    reference = np.stack([litert.run(x) for x in inputs])
    made = []

    class TfliteRuntimeInterpreter(Interpreter):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    block_imports("ai_edge_litert")
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = TfliteRuntimeInterpreter
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    _, fallback = load_bundle(folder, num_threads=1)
    assert len(made) == 1 and made[0]["num_threads"] == 1, made
    np.testing.assert_array_equal(np.stack([fallback.run(x) for x in inputs]), reference)


def test_a_corrupt_model_file_is_a_bundle_error(tmp_path_factory, tmp_path):
    import shutil

    for fmt in ("executorch", "litert", "onnx"):
        folder = tmp_path / fmt
        shutil.copytree(tiny_export(tmp_path_factory, fmt, "fp32").out_dir, folder)
        model = next(folder.glob("model.*"))
        model.write_bytes(b"not a model" * 10)
        with pytest.raises(BundleError, match=f"{model.name}' does not match its manifest"):
            load_bundle(folder)  # the manifest's sha256 catches it first ...
        manifest = read_manifest(folder)
        replace(manifest, model_sha256="").save(folder)
        with pytest.raises(BundleError, match=f"cannot load .*{model.name}"):
            load_bundle(folder)  # ... and without one, the backend's own check
