"""Count multiply-accumulates of Conv2d and Linear layers with forward hooks.

Why hooks and not a profiler: the figure we need (compute per inference, to size a
model for a CPU or an MCU) is dominated by convs and linears, and a hook sees the real
output shape of each call, so a module called on N folded segments is counted N times.
Everything else (BN, activations, pooling, softmax) is ignored: BN folds into the conv
at export and the rest is a few percent. FLOPs ~= 2 x MACs.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call of a Conv2d or Linear that produced `output`."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        # every output element is a dot product over (cin / groups) * kh * kw inputs
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    raise TypeError(f"not a Conv2d or Linear: {type(module).__name__}")


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Total Conv2d + Linear MACs of `model(*inputs)` for the batch given.

    `inputs` is a tuple, as for `torch.export.export`, so `model.example_inputs()` passes
    straight in.
    """
    total = 0

    def hook(module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += conv_linear_macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
