"""PT2E post-training static quantization, shared by the ExecuTorch and LiteRT exporters.

`torch.export` the fp32 model at its static batch-1 shapes, `prepare_pt2e` with the
format's quantizer (per-channel symmetric int8 weights, per-tensor int8 activations),
run the calibration windows through the observed graph, `convert_pt2e`. The result is a
GraphModule with quantize/dequantize pairs that each format lowers to its int8 kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

Inputs = tuple[np.ndarray, ...]


def quantize_pt2e(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], quantizer,
                  calibration: Iterable[Inputs], fold_quantize: bool = True) -> torch.fx.GraphModule:
    """fp32 module -> int8 (q/dq) GraphModule calibrated on `calibration` (batch-1 numpy inputs)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(model, example_inputs).module()
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for inputs in calibration:
            observed(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    return convert_pt2e(observed, fold_quantize=fold_quantize)


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first non-empty line of its message."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


Calibrate = Callable[[], Iterable[Inputs]]
