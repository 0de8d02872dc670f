"""Every registered model family exports to ExecuTorch, LiteRT and ONNX int8 and runs there.

Parametrised over the registry's tiny presets, so a new family is covered by its
registration alone (issue: "a new model must be covered by adding nothing but its
registration"). Calibration is on random inputs drawn like the test inputs, so the int8
logits must track the eager ones; the full-size, trained check with real windows and the
fidelity floor is `edgehar export` (tests/test_export.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgehar.app.backends import ExecuTorchBackend, LiteRTBackend, OnnxRuntimeBackend
from edgehar.models import create_model, list_models
from edgehar.quantize.executorch_export import export_executorch
from edgehar.quantize.litert_export import export_litert
from edgehar.quantize.onnx_export import export_onnx

RUNTIMES = {"executorch": (export_executorch, ExecuTorchBackend, "model.pte"),
            "litert": (export_litert, LiteRTBackend, "model.tflite"),
            "onnx": (export_onnx, OnnxRuntimeBackend, "model.onnx")}


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum((reference - test) ** 2), 1e-20)))


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_int8_export_runs_and_tracks_eager(tmp_path: Path, name: str, runtime: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    model(*model.example_inputs(batch=16))  # move BN running stats off their init, like a trained model
    model.eval()
    example = model.example_inputs(batch=1)
    calibration = [model.example_inputs(batch=1) for _ in range(16)]
    export, backend_cls, filename = RUNTIMES[runtime]
    info = export(model, example, "int8", lambda: calibration, tmp_path / filename)
    if runtime == "executorch":
        assert info["delegates"] >= 1, "nothing was delegated to XNNPACK"
    backend = backend_cls(tmp_path / filename, num_threads=1)
    refs, outs = [], []
    with torch.no_grad():
        for inputs in calibration[:8]:
            refs.append(model(*inputs).numpy())
            outs.append(backend.run(tuple(x.numpy() for x in inputs)))
    ref, out = np.concatenate(refs), np.concatenate(outs)
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert sqnr_db(ref, out) > 15.0, f"{name} {runtime} int8: SQNR {sqnr_db(ref, out):.1f} dB against eager"
