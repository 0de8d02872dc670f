"""Count multiply-accumulates (MACs) of one forward pass with torch's own flop counter.

Why `torch.utils.flop_counter.FlopCounterMode` and not module hooks: it sits at the
dispatcher, below every module and functional, so it sees each matmul the model really
runs -- `nn.Linear`, convolutions, and also the `torch.bmm` / `@` / `einsum` of the
attention blocks (non-local fusion, MMTSA's segment attention, CAM's correlations,
residual attention), which Conv2d/Linear hooks never saw: non-local fusion read 13.2 M
MACs with hooks and is 14.4 M. It counts `mm`, `addmm`, `bmm`, `baddbmm`, every
convolution and the GPU attention kernels, with the real shape of each call, so a
backbone run on N folded segments counts N times.

Its formulas give FLOPs = 2 x MACs for every op it counts (a multiply and an add per
MAC), so MACs = FLOPs / 2 exactly. Elementwise work (batch norm, activations, pooling,
softmax, the gates of a recurrent cell) is not counted, as in the papers' figures: BN
folds into the conv at export and the rest is a few percent.

Three fused CPU kernels have no formula in torch's counter (2.13) and would read 0:
oneDNN's `mkldnn_rnn_layer` (what `nn.LSTM` runs on CPU), the CPU flash-attention
kernel (`F.scaled_dot_product_attention`) and the `nn.MultiheadAttention` /
`nn.TransformerEncoderLayer` fast path. Rather than write formulas for them by hand,
`count_macs` switches those three off while it counts, so the same arithmetic runs
through torch's reference paths (plain `addmm` cells, the math attention's `bmm`s,
`linear` + attention), which the counter covers. A kernel choice does not change the
number of multiply-accumulates, only how fast they run. Our own recurrent cells
(`recurrent.py`) are unrolled `nn.Linear`s and never needed it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def reference_kernels() -> Iterator[None]:
    """Route RNNs, attention and MHA through the unfused paths torch's counter sees."""
    # the two setters, not `mkldnn.flags()`, which also resets TF32 and warns on every call
    fastpath, onednn = torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled
    torch.backends.mha.set_fastpath_enabled(False)
    torch.backends.mkldnn.enabled = False
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        torch.backends.mkldnn.enabled = onednn


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """MACs of `model(*inputs)` in eval mode for the batch given (train mode restored).

    `inputs` is a tuple, as for `torch.export.export`, so `model.example_inputs()` passes
    straight in.
    """
    counter = FlopCounterMode(display=False)
    was_training = model.training
    try:
        model.eval()
        with reference_kernels(), counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
