"""A small MobileNetV2-class CNN: the per-modality ConvNet F(X; W^j) of MMTSA (eq. 7).

Why our own and not torchvision's: torchvision does not import beside torch 2.13 and
no pretrained weights are fetched at run time (docs/platform-notes.md, "Installing"), so the
backbone is trained from scratch and can be sized for a 2-core CPU. MobileNetV2 is the
shape that exports and lowers best here: it is nothing but Conv2d, BatchNorm2d (folded
into the conv at export), ReLU6, residual adds, a global mean and a Linear, all of which
XNNPACK delegates and PT2E quantizes to int8 (MobileNetV2 at 112^2 measured 1.8 ms fp32 /
0.6 ms int8 under ExecuTorch: docs/platform-notes.md, "ExecuTorch (XNNPACK)").

Blocks follow Sandler et al. 2018: expand 1x1 -> depthwise 3x3 -> project 1x1 (linear
bottleneck, no activation after the projection), a residual add when stride is 1 and
channels match. Each stage is `(t, c, n, s)` as in the paper's Table 2: expansion
ratio, output channels (before the width multiplier), repeats, stride of the first block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Stage = tuple[int, int, int, int]  # (expansion t, out channels c, repeats n, first stride s)


@dataclass
class BackboneConfig:
    in_chans: int = 3  # 3 for RGB frames, C for a GAF image of C sensor channels
    width: float = 0.5  # width multiplier applied to every channel count below
    stem: int = 16  # stem conv output channels (before width); the stem has stride 2
    # short MobileNetV2 stage list: 64x64 -> 32 (stem) -> 32 -> 16 -> 8 -> 4
    stages: tuple[Stage, ...] = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 1, 2))
    feature_dim: int = 128  # d: channels of the final 1x1 conv = length of the feature vector

    def __post_init__(self) -> None:
        assert self.in_chans >= 1, f"in_chans must be >= 1, got {self.in_chans}"
        assert self.width > 0, f"width must be > 0, got {self.width}"
        assert len(self.stages) >= 1, "need at least one stage"
        for st in self.stages:
            assert len(st) == 4 and all(v >= 1 for v in st), f"stage {st} is not (t, c, n, s) of positive ints"
        assert self.feature_dim >= 1, f"feature_dim must be >= 1, got {self.feature_dim}"


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor` (MobileNetV2's rule:
    SIMD-friendly widths, never more than 10% below the unrounded value)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias: BN follows) -> BatchNorm2d -> optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 -> depthwise 3x3 -> linear project 1x1 (+ skip)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        assert stride in (1, 2), f"stride must be 1 or 2, got {stride}"
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:  # t = 1 skips the expansion conv, as in the paper's first stage
            layers.append(ConvBNAct(cin, hidden, kernel=1))
        layers += [
            ConvBNAct(hidden, hidden, kernel=3, stride=stride, groups=hidden),  # depthwise
            ConvBNAct(hidden, cout, kernel=1, act=False),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, H, W) -> (B, cout, H/s, W/s)
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetV2Backbone(nn.Module):
    """Images -> one feature vector per image: (B, C, H, W) -> (B, feature_dim)."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        cin = make_divisible(config.stem * config.width)
        layers: list[nn.Module] = [ConvBNAct(config.in_chans, cin, kernel=3, stride=2)]
        for t, c, n, s in config.stages:
            cout = make_divisible(c * config.width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride=s if i == 0 else 1, expand=t))
                cin = cout
        layers.append(ConvBNAct(cin, config.feature_dim, kernel=1))  # head: features at every pixel
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pool; lowers to one mean op
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4 and x.shape[1] == self.config.in_chans, (
            f"expected (B, {self.config.in_chans}, H, W), got {tuple(x.shape)}"
        )
        x = self.features(x)  # (B, feature_dim, H', W')
        return self.pool(x).flatten(1)  # (B, feature_dim)
