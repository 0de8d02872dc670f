"""Per-segment encoders: one modality's sampled input -> one feature vector per segment.

Every fusion model needs the same first step: turn the N sampled segments of a modality
into a sequence of N feature vectors (B, N, d), then fuse. Images (GAF or camera
frames, (N, C, H, W)) go through the MobileNetV2-class backbone; raw sensor windows
("series", (N, C, K)) through a small 1-D CNN. Segments share the encoder by folding N
into the batch; modalities never share one (an int8 XNNPACK conv used at two call sites
fails to load: docs/platform-notes.md, "ExecuTorch (XNNPACK)").

1-D convolutions are written as Conv2d with (1, k) kernels over (B, C, 1, K): the 2-D
conv is the path XNNPACK delegates and PT2E / LiteRT quantize per channel that this
project has measured; the arithmetic is identical to Conv1d.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbone import BackboneConfig, MobileNetV2Backbone, Stage
from .modality import presence


class SeriesEncoder(nn.Module):
    """(B, C, K) -> (B, d): [conv(1x5) -> BN -> ReLU] x len(channels), stride 2 after the first,
    then a global mean over time and a Linear to d. `channels` are the conv widths."""

    def __init__(self, in_chans: int, feature_dim: int, channels: Sequence[int] = (32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for i, cout in enumerate(channels):
            layers += [
                nn.Conv2d(cin, cout, (1, 5), stride=(1, 1 if i == 0 else 2), padding=(0, 2), bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape, not unsqueeze, and a keepdim mean: the forms XNNPACK delegates (measured)
        x = self.features(x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]))  # (B, C', 1, K')
        return self.proj(x.mean(dim=(2, 3), keepdim=True).flatten(1))  # (B, d)


class SegmentEncoder(nn.Module):
    """One modality: (B, N, C, H, W) or (B, N, C, K) -> (B, N, d).

    A segment whose input is all zero (the stream was missing) gets an all-zero feature
    (`modality.presence`), in training and in the exported program alike.
    """

    def __init__(
        self,
        shape: Sequence[int],  # (N, C, H, W) or (N, C, K), no batch axis
        feature_dim: int,
        width: float = 0.5,
        stages: tuple[Stage, ...] = ((1, 16, 1, 1), (4, 24, 1, 2), (4, 32, 1, 2), (4, 64, 1, 2)),
        series_channels: Sequence[int] = (32, 64),
    ):
        super().__init__()
        assert len(shape) in (3, 4), f"input shape {tuple(shape)} is neither (N, C, H, W) nor (N, C, K)"
        self.shape = tuple(shape)
        self.feature_dim = feature_dim
        if len(shape) == 4:
            cfg = BackboneConfig(in_chans=shape[1], width=width, stages=stages, feature_dim=feature_dim)
            self.net: nn.Module = MobileNetV2Backbone(cfg)
        else:
            self.net = SeriesEncoder(shape[1], feature_dim, series_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[1:]) == self.shape, f"expected (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}"
        B, N = x.shape[:2]
        x = x.reshape(B * N, *x.shape[2:])  # segments share the encoder
        f = self.net(x) * presence(x)[:, None]  # (B*N, d), zero for a missing segment
        return f.reshape(B, N, self.feature_dim)


def check_shapes(input_shapes: Sequence[Sequence[int]]) -> None:
    """Config validation shared by the families: >= 1 modality, each (N, C, H, W) or (N, C, K), one N."""
    assert len(input_shapes) >= 1, "need at least one modality"
    for s in input_shapes:
        assert len(s) in (3, 4) and all(isinstance(v, int) and v >= 1 for v in s), (
            f"input shape {s} is not (N, C, H, W) or (N, C, K)"
        )
    n = {s[0] for s in input_shapes}
    assert len(n) == 1, f"all modalities need the same number of segments N, got {sorted(n)}"
