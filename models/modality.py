"""Missing-modality handling shared by every fusion model.

A stream that drops out at run time reaches the model as an all-zero input (see
`contract.preprocess.inputs.build_inputs`). Every model therefore (a) maps an all-zero
input to an all-zero feature with `presence`, the same gate in training and in the
exported program, and (b) trains with modality dropout: `modality_keep_mask` zeroes
whole modalities of random samples, so the zero features it learns to cope with are
exactly the ones a dropped stream produces. Real inputs are never all-zero (GAF images,
rescaled sensor windows and normalised frames all have non-zero values).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def presence(x: torch.Tensor, keep_dims: int = 1) -> torch.Tensor:
    """1.0 where the input holds any non-zero value, else 0.0, over all but the first `keep_dims` axes.

    (B, ...) -> (B,) with keep_dims=1; (B, N, ...) -> (B, N) with keep_dims=2 (per segment).

    Written as ops XNNPACK delegates, so the gate does not split an exported model into
    several delegate calls with portable kernels between them: max |x| as a max-pool over
    one (1, L) row per kept index, then ceil(clamp(m, 0, 1)), which is exactly 1 for any
    m > 0 and 0 for m = 0 (the obvious `amax(...) > 0` leaves amax, gt and a dtype copy
    to portable kernels, once per modality).
    """
    lead = x.shape[:keep_dims]
    rows = x.abs().reshape(-1, 1, 1, math.prod(x.shape[keep_dims:]))  # (prod(lead), 1, 1, L)
    peak = nn.functional.max_pool2d(rows, kernel_size=(1, rows.shape[-1]))  # (prod(lead), 1, 1, 1)
    return torch.ceil(torch.clamp(peak, 0.0, 1.0)).reshape(lead)


def modality_keep_mask(batch: int, num_modalities: int, p: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, M) of 0/1: drop each modality of each sample w.p. `p`, but keep at least one per sample.

    The rescued modality is chosen at random, so the label always matches some evidence.
    No inverted-dropout rescaling: the goal is robustness to a stream that is missing at
    run time, where nothing is rescaled either.
    """
    keep = torch.rand(batch, num_modalities, device=device) >= p  # (B, M)
    rescue = nn.functional.one_hot(torch.randint(num_modalities, (batch,), device=device), num_modalities).bool()
    keep = keep | (rescue & ~keep.any(dim=1, keepdim=True))
    return keep.to(dtype)
