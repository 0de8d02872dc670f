"""Export to an ExecuTorch program (`.pte`) with the XNNPACK delegate.

fp32: `torch.export` -> `to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`
-> `to_executorch()`. int8: PT2E with `XNNPACKQuantizer` (per-channel symmetric weights)
first, then the same lowering; XNNPACK fuses the q/dq pairs into int8 kernels.

Ops the partitioner does not take run on ExecuTorch's portable kernels; they are
listed (`undelegated_ops`) so a user sees what falls outside XNNPACK.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .pt2e import Calibrate, first_line, quantize_pt2e


class LoweringError(Exception):
    """The model cannot be expressed in this format; the message names the op or stage."""


def export_executorch(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], precision: str,
                      calibrate: Calibrate | None, path: Path) -> dict[str, Any]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    info: dict[str, Any] = {}
    if precision == "int8":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        try:
            model = quantize_pt2e(model, example_inputs, quantizer, calibrate())
        except Exception as exc:
            raise LoweringError(f"PT2E quantization with XNNPACKQuantizer failed: {first_line(exc)}") from exc
        info["quantizer"] = "XNNPACKQuantizer, symmetric int8, per-channel weights, per-tensor activations"
    try:
        program = torch.export.export(model, example_inputs)
    except Exception as exc:
        raise LoweringError(f"torch.export failed: {first_line(exc)}") from exc
    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    except Exception as exc:
        raise LoweringError(f"lowering to the XNNPACK delegate failed: {first_line(exc)}") from exc
    delegates, outside = delegation_report(edge.exported_program().graph_module)
    info.update(delegates=delegates, undelegated_ops=outside)
    try:
        buffer = edge.to_executorch().buffer
    except Exception as exc:
        ops = f" (ops outside XNNPACK: {', '.join(outside)})" if outside else ""
        raise LoweringError(f"to_executorch failed: {first_line(exc)}{ops}") from exc
    path.write_bytes(buffer)
    return info


def delegation_report(graph_module: torch.fx.GraphModule) -> tuple[int, dict[str, int]]:
    """(number of XNNPACK delegate calls, {op: count} left to portable kernels)."""
    delegates, outside = 0, Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            delegates += 1
        elif name != "getitem":
            outside[_short(name)] += 1
    return delegates, dict(sorted(outside.items()))


def _short(op: str) -> str:
    # "aten.amax.default" / "dim_order_ops._to_dim_order_copy.default" -> "amax" / "_to_dim_order_copy"
    parts = op.split(".")
    return parts[-2] if len(parts) >= 3 else op
