"""The onnx format's runtime: ONNX Runtime's execution providers (from the manifest or
--providers, TensorRT -> CUDA -> CPU by default), its threads, and an int8 model that is
really int8. Parity with eager and the export round trip are in test_backends / test_export."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgehar.app.backends import OnnxRuntimeBackend, choose_providers, load_bundle
from edgehar.contract.bundle import BundleError
from edgehar.errors import EdgeharWarning

from export_helpers import tiny_export

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["AzureExecutionProvider", "CPUExecutionProvider"]  # what pip's onnxruntime has


@pytest.mark.parametrize("available, expect", [
    (GPU_BUILD, GPU_BUILD),
    (["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (CPU_BUILD, ["CPUExecutionProvider"]),
])
def test_default_prefers_tensorrt_then_cuda_then_cpu_among_the_available(available, expect):
    assert choose_providers(None, available) == choose_providers((), available) == expect


def test_asked_providers_keep_their_order_and_may_be_short_names():
    assert choose_providers(["cuda", "CPU", "CPUExecutionProvider"], GPU_BUILD) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["TensorrtExecutionProvider"], GPU_BUILD) == ["TensorrtExecutionProvider"]


@pytest.mark.parametrize("name, available, expect", [
    ("cuda", CPU_BUILD, "ONNX Runtime execution provider 'cuda' is not available here "
                        "(available: AzureExecutionProvider, CPUExecutionProvider)"),
    ("CUDAExecutionProvidr", GPU_BUILD, "'CUDAExecutionProvidr' is not available here; did you mean "
                                        "'CUDAExecutionProvider'? (available: TensorrtExecutionProvider, "
                                        "CUDAExecutionProvider, CPUExecutionProvider)"),
])
def test_a_provider_not_available_is_one_line_listing_the_available(name, available, expect):
    with pytest.raises(BundleError) as info:
        choose_providers([name], available)
    assert expect in str(info.value) and "\n" not in str(info.value)


def _copy(tmp_path_factory, tmp_path: Path, precision: str = "fp32", **manifest) -> Path:
    """A copy of the tiny onnx export with `manifest` keys set."""
    folder = tmp_path / f"onnx-{precision}"
    shutil.copytree(tiny_export(tmp_path_factory, "onnx", precision).out_dir, folder)
    data = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**data, **manifest}))
    return folder


def test_this_machine_runs_on_the_cpu_with_the_threads_asked(tmp_path_factory):
    _, backend = load_bundle(tiny_export(tmp_path_factory, "onnx", "int8").out_dir, num_threads=2)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.providers == ("CPUExecutionProvider",)
    options = backend._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_providers_come_from_the_manifest_unless_given(tmp_path_factory, tmp_path):
    folder = _copy(tmp_path_factory, tmp_path, providers=["cpu"])
    manifest, backend = load_bundle(folder)
    assert manifest.providers == ("cpu",) and backend.providers == ("CPUExecutionProvider",)

    pinned = _copy(tmp_path_factory, tmp_path / "gpu", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BundleError, match=r"'CUDAExecutionProvider' is not available here .*available: .*CPUExecution"):
        load_bundle(pinned)  # a bundle pinned to a GPU, on a machine without one
    _, backend = load_bundle(pinned, providers=["cpu"])  # --providers wins over the manifest
    assert backend.providers == ("CPUExecutionProvider",)

    bad = _copy(tmp_path_factory, tmp_path / "bad", providers="cpu")
    with pytest.raises(BundleError, match=r"providers: expected a list of strings, got \"cpu\""):
        load_bundle(bad)


def test_providers_for_a_runtime_without_them_are_refused(tmp_path_factory):
    with pytest.raises(BundleError, match="execution providers cpu given, but format 'litert' .* takes none"):
        load_bundle(tiny_export(tmp_path_factory, "litert", "fp32").out_dir, providers=["cpu"])


def test_a_provider_that_fails_to_start(tmp_path_factory, monkeypatch):
    """A build that lists CUDA whose CUDA does not start (onnxruntime-gpu without its
    libraries): ONNX Runtime falls back to the CPU. Asked for by name, that is an error;
    by default, a warning and the CPU. (Here the CPU build is told it has CUDA: ONNX
    Runtime then really fails to start it.)"""
    import onnxruntime

    folder = tiny_export(tmp_path_factory, "onnx", "fp32").out_dir
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BundleError, match="ONNX Runtime could not start CUDAExecutionProvider; running on CPUExecutionProvider"):
        load_bundle(folder, providers=["cuda", "cpu"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, backend = load_bundle(folder)
    assert backend.providers == ("CPUExecutionProvider",)
    assert [str(w.message) for w in caught if w.category is EdgeharWarning] == [
        "ONNX Runtime could not start CUDAExecutionProvider; running on CPUExecutionProvider"]


def test_int8_is_quantized_inside_a_float_interface(tmp_path_factory):
    """ONNX Runtime's QDQ model: int8 weights, per output channel, behind DequantizeLinear;
    float32 inputs and logits. A float32 model passed off as int8 fails here."""
    import onnx

    def weights(precision):
        out = tiny_export(tmp_path_factory, "onnx", precision).out_dir
        model = onnx.load(str(out / "model.onnx"))
        kinds = {i.name: i.data_type for i in model.graph.initializer}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        return model, kinds, convs

    model, kinds, convs = weights("int8")
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in [*model.graph.input, *model.graph.output])
    dequant = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for conv in convs:  # every convolution's weight is int8, dequantized per output channel (axis 0)
        source = dequant[conv.input[1]]
        assert kinds[source.input[0]] == onnx.TensorProto.INT8, conv.name
        assert onnx.helper.get_node_attr_value(source, "axis") == 0 and len(
            onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == source.input[1]))) > 1
    _, fp32_kinds, fp32_convs = weights("fp32")
    assert convs and len(fp32_convs) == len(convs) and onnx.TensorProto.INT8 not in set(fp32_kinds.values())


def test_a_wrong_number_of_inputs_is_named(tmp_path_factory):
    manifest, backend = load_bundle(tiny_export(tmp_path_factory, "onnx", "fp32").out_dir)
    zeros = tuple(np.zeros((1, *s), np.float32) for s in manifest.input_shapes())
    assert backend.run(zeros).shape == (1, len(manifest.labels))
    with pytest.raises(BundleError, match=f"takes {len(zeros)} inputs, got {len(zeros) - 1}"):
        backend.run(zeros[:-1])


def test_live_with_an_unavailable_provider_exits_2_with_one_line(tmp_path_factory):
    import onnxruntime

    bundle = tiny_export(tmp_path_factory, "onnx", "int8").out_dir
    result = subprocess.run([sys.executable, "-m", "edgehar", "live", "--model", str(bundle), "--providers", "tensorrt,cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("edgehar live: error: ONNX Runtime execution provider 'tensorrt' is not available "
                                     f"here (available: {', '.join(onnxruntime.get_available_providers())})")
