"""Export to ONNX (`.onnx`), run by ONNX Runtime; int8 by ONNX Runtime's own static quantization.

fp32: `torch.onnx.export(torch.export.export(model, example_inputs), dynamo=True)`, the
exporter built on `torch.export` (it needs `onnxscript`). It is the one that works on
what we export: the source bundle's model is the module `torch.export.load(...).module()`
gives back, which the older TorchScript exporter (`dynamo=False`, deprecated) cannot
trace ("Calling train() is not supported yet"), and it captures the same graph the
ExecuTorch and LiteRT rows start from. Static batch-1 shapes, as those rows have.

int8: `onnxruntime.quantization.quantize_static` on the fp32 file, not PT2E: ONNX
Runtime's quantizer writes the QDQ pattern its own CPU kernels and the TensorRT /
CUDA providers fuse, and no PT2E-to-ONNX path does that as well. Steps: `quant_pre_process`
(ONNX shape inference and ONNX Runtime's graph optimisations, as its docs advise before
quantizing; its symbolic shape inference is skipped: our shapes are static and it fails
on `cam`'s Unsqueeze), then QDQ quantization calibrated by a `CalibrationDataReader`
over the SAME calibration windows the other int8 rows use (MinMax ranges), int8
weights symmetric per output channel, int8 activations per tensor (S8S8, ONNX Runtime's
recommended first choice on CPUs). Inputs and output stay float32 (the QDQ pairs sit
inside the graph), so `OnnxRuntimeBackend` passes them through unchanged.

The exporter's per-node debug notes (source file paths, FX nodes: two thirds of a small
model's file) are dropped; the graph is unchanged.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader
from torch import nn

from .executorch_export import LoweringError
from .pt2e import Calibrate, Inputs, first_line

OPSET = 18  # the lowest the dynamo exporter writes (asked for 17, torch 2.13 still writes 18)
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], precision: str,
                calibrate: Calibrate | None, path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"exporter": f"torch.onnx.export(dynamo=True), opset {OPSET}"}
    if precision != "int8":
        _export_fp32(model, example_inputs, path)
        return info
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgehar-onnx-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        _export_fp32(model, example_inputs, fp32)
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(path), _WindowReader(str(prepared), calibrate()),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:
            raise LoweringError(f"ONNX Runtime static quantization failed: {first_line(exc)}") from exc
    info["quantizer"] = ("onnxruntime quantize_static, QDQ, int8 weights symmetric per-channel, "
                         "int8 activations per-tensor (MinMax calibration)")
    return info


# warns that torchvision's ops are not registered: they are not used, and torchvision is not installed on purpose
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"


def _export_fp32(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    registration = logging.getLogger(_REGISTRATION_LOGGER)
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        program = torch.export.export(model, example_inputs)
        onnx_program = torch.onnx.export(program, example_inputs, dynamo=True, opset_version=OPSET,
                                         output_names=[OUTPUT_NAME], verbose=False)
    except Exception as exc:
        raise LoweringError(f"ONNX export (torch.onnx, dynamo) failed: {first_line(exc)}") from exc
    finally:
        registration.setLevel(level)
    proto = onnx_program.model_proto
    for node in proto.graph.node:  # the exporter's debug notes: source paths and FX nodes, 2/3 of the file
        del node.metadata_props[:]
    path.write_bytes(proto.SerializeToString())


class _WindowReader(CalibrationDataReader):
    """`onnxruntime.quantization.CalibrationDataReader` over batch-1 calibration windows:
    one feed dict per window, matched to the graph's inputs by position (the model's
    argument order, which the exporter keeps)."""

    def __init__(self, model_path: str, windows: Iterator[Inputs]):
        import onnx

        graph = onnx.load(model_path, load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        self._names = [i.name for i in graph.input if i.name not in initializers]
        self._windows = iter(windows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        window = next(self._windows, None)
        if window is None:
            return None
        return {name: np.ascontiguousarray(x, np.float32) for name, x in zip(self._names, window)}
