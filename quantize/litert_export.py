"""Export to a LiteRT (TFLite) flatbuffer (`.tflite`) with litert-torch.

fp32: `litert_torch.convert(model, example_inputs)`. int8: PT2E static quantization
with litert-torch's `PT2EQuantizer` (per-channel symmetric weights), passed to the
converter as `QuantConfig(pt2e_quantizer=...)`. The converter makes the model's inputs
and output int8 with their scale / zero point; `LiteRTBackend` quantizes and
dequantizes at that boundary, so callers always pass and get float32.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .executorch_export import LoweringError
from .pt2e import Calibrate, first_line, quantize_pt2e


def export_litert(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], precision: str,
                  calibrate: Calibrate | None, path: Path, progress: bool = False) -> dict[str, Any]:
    import litert_torch

    litert_torch.config.show_progress = progress
    info: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    if precision == "int8":
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        try:
            model = quantize_pt2e(model, example_inputs, quantizer, calibrate(), fold_quantize=False)
        except Exception as exc:
            raise LoweringError(f"PT2E quantization with litert-torch's PT2EQuantizer failed: {first_line(exc)}") from exc
        kwargs["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
        info["quantizer"] = "litert_torch PT2EQuantizer, symmetric int8, per-channel weights, per-tensor activations"
    try:
        converted = litert_torch.convert(model, example_inputs, **kwargs)
    except Exception as exc:
        raise LoweringError(f"LiteRT conversion failed{_op_hint(exc)}: {first_line(exc)}") from exc
    converted.export(str(path))
    return info


def _op_hint(exc: BaseException) -> str:
    """Name the operator a conversion error is about, when the message says."""
    text = str(exc)
    m = re.search(r"failed to legalize operation '([\w.]+)'", text) or re.search(r"(aten\.[\w.]+)", text)
    return f" at operator {m.group(1)}" if m else ""
