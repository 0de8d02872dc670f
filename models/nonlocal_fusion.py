"""Heterogeneous non-local fusion (Byvshev, Mettes & Xiao, ICMR 2020, sec. 3).

Each modality keeps the spatio-temporal shape that fits it; only the channel size c is
shared. Data flow for M modalities sampled at the same N segment times:

    image  (B, N, C, H, W) --2-D CNN per frame, no pooling-->  (B, N*h*w, c)   video branch
    series (B, N, C, K)    --N windows joined along time: (B, C, N*K)
                           --3 x [conv(1x5) -> BN -> ReLU -> max-pool(1x2)]   glove sub-network
                           --bidirectional LSTM, c/2 per direction-->  (B, T', c), T' = N*K / 2^3
    eq. 2-4  z_i = sum_j softmax_j(theta(x_i)^T phi(y_j)) g(y_j)              (B, P_x, K)
    eq. 5    x^ = h(z(x, y)) + x                                                (B, P_x, c)
    eq. 6    x^ = x + sum_r h^r(z^r(x, y^r))        (every other modality y^r enforces x)
             asymmetric (`lead` = i): mean_positions(x^_i)           -> FC -> logits
             symmetric  (`lead` = None): concat_m mean_positions(x^_m) -> FC -> logits

`NonLocalPair` is one (theta, phi, g, h) of eq. 2-5 between a query set x (P positions)
and a key set y (Q positions); the sets may differ in length and meaning (video
positions vs glove time steps), which is the paper's point. theta, phi, g, h are the
paper's 1x1(x1) convolutions over positions, i.e. `nn.Linear` on (B, P, c). The
softmax of eq. 3-4 runs over j, the last axis of (B, P, Q): the only softmax axis
XNNPACK delegates.

Choices where the paper is silent or where we differ:
- Inputs. The paper fuses I3D 'Mixed_5b' features (10x7x7x832) with the glove LSTM's
  outputs (28x64). Here the video branch is a small MobileNetV2-class 2-D CNN per sampled
  frame (`backbone.MobileNetV2Backbone` without its global pool, ending in a 1x1 conv to
  c channels): N frames of 64x64 give N*4*4 positions, the time axis kept. Its stages
  are the encoders' default minus the block at the stem's 32x32 resolution (the first
  stage strides instead, and the fourth goes so the map stays 4x4): about 1/3 of the
  default's MACs and 1/4 of its training time, which this branch dominates. Every series
  modality (glove, IMU, or any other) gets its own glove sub-network (Fig. 5). Series
  arrive as N windows of K samples at the segment times ("series" recipe, N=8, K=32,
  calibrated ranges: the paper's network reads raw sensor readings, not GAF images);
  the windows are joined along time into one N*K-sample series (they nearly tile the
  3-s window: 8 x 0.32 s), so 3 max-pools give T' = 32 steps, close to the paper's 28.
- One channel size c for every modality (`channels`); the LSTM has c/2 units per
  direction so its [forward, backward] output is c wide. The block itself (theta: cx->K,
  phi, g: cy->K, h: K->cx) accepts different channel sizes, as the paper's own 832 vs
  64 does.
- Embedding size K (`embed_dim`) defaults to c/2, the usual non-local choice (sec. 5.2).
  f = exp(theta^T phi) with no 1/sqrt(K) scaling, as eq. 3 writes it. h is a plain
  Linear (no BN) and is not zero-initialised, so every parameter trains from step one;
  the residual makes the block the identity when h is zero (tested).
- Eq. 6 for M > 2: each (leading x, other y^r) pair has its own theta, phi, g and h.
  Symmetric fusion with M modalities runs eq. 6 once per modality as lead (M(M-1)
  pairs), then concatenates the M pooled outputs and applies one FC (sec. 3.2).
- One modality: the block becomes Wang et al.'s self non-local block (eq. 1, y = x,
  embedded Gaussian), so the single-modality ablation row is branch + self non-local
  block + FC, the same architecture with nothing to fuse.
- Pooling before the FC: mean over the positions (I3D's global pool; the glove net's FC
  reads pooled LSTM outputs here rather than their 28x64 flattening, so one head
  form serves every modality). Dropout (`dropout`) before the FC.
- Variant default: symmetric (`lead=None`). The paper found video-led best by 0.6
  points (Table 1) and all three within 0.7; symmetric needs no knowledge of which
  manifest index is the strongest modality (rgb on the sim data, but index 0 is the
  accelerometer on BasicMotions), and every modality reaches the head directly. Set
  `lead=0` for the paper's video-led choice on data whose first modality is the camera.
  With one modality `lead` makes no difference.
- Training: the project's trainer (AdamW, one-cycle) rather than the paper's RMSProp.
- Missing modalities. A modality whose input is all zero (`modality.presence`, per
  sample: a stream drops out as a whole) gets an all-zero feature set and its terms h^r(z^r(x, y^r)) are dropped from
  eq. 6 (a zero y would otherwise still add h(g(0)) = a constant through the biases).
  A missing *leading* modality still gets the others' terms: with x = 0 the query is
  theta's bias, so z is a learned attention pooling of each y^r and the prediction
  degrades to the other modalities instead of failing. Training zeroes whole modalities
  per sample with `modality_keep_mask` through the same flags, so dropout is exactly
  the run-time "missing" condition.

Component ablation (`components` below): the paper's three fusion setups of Table 1 --
video-led (`lead=0` on data whose first modality is the camera, as the simulated data's
rgb), glove-led (`lead=1`, the sim data's glove) and symmetric (`lead=None`) -- and
`nonlocal_block=False`, the same branches with no eq. 6 at all: each leading modality's
own feature set is pooled, so the symmetric form becomes the late feature concatenation
of the paper's Table 2 (pooled, not flattened, as above) with these exact branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from .backbone import BackboneConfig, MobileNetV2Backbone, Stage
from .encoders import check_shapes
from .modality import modality_keep_mask, presence
from .recurrent import LSTM
from .registry import SERIES_RECIPE, ConfigMixin, register_model

Shape = tuple[int, ...]  # (N, C, H, W) or (N, C, K), no batch axis


@dataclass
class NonLocalFusionConfig(ConfigMixin):
    # raw series, as the paper's glove network reads (see module docstring)
    input_recipe = SERIES_RECIPE

    # per-modality (N, C, H, W) images or (N, C, K) series, in the manifest's modality order
    input_shapes: tuple[Shape, ...] = ((8, 3, 64, 64), (8, 12, 32), (8, 6, 32))
    num_classes: int = 10
    # index of the leading modality (asymmetric fusion, x of eq. 2; 0 = the first, e.g.
    # video-led on the sim data); None: symmetric fusion, every modality leads once
    lead: int | None = None
    channels: int = 64  # c: channel size shared by every modality's feature set
    embed_dim: int = 32  # K: channels of theta, phi, g
    width: float = 0.5  # image CNN width multiplier
    # image CNN stages (t, c, n, s): 64x64 frames -> 32 (stem) -> 16 -> 8 -> 4x4 positions per frame
    stages: tuple[Stage, ...] = ((1, 16, 1, 2), (4, 24, 1, 2), (4, 32, 1, 2))
    series_channels: tuple[int, ...] = (32, 48, 64)  # glove sub-network: one conv + max-pool each
    dropout: float = 0.3  # before the final FC
    modality_dropout: float = 0.3  # train-time P(zero one modality of a sample)
    nonlocal_block: bool = True  # False: no eq. 6, the leads' own features reach the head (ablation)

    components: ClassVar[dict[str, tuple[str, ...]]] = {
        "symmetric (default)": (),
        "modality 0 leads (video-led on sim)": ("lead=0",),  # Table 1
        "modality 1 leads (glove-led on sim)": ("lead=1",),
        "no non-local block (late concatenation)": ("nonlocal_block=false",),  # Table 2's baseline
    }

    def __post_init__(self) -> None:
        check_shapes(self.input_shapes)
        M = len(self.input_shapes)
        assert self.lead is None or 0 <= self.lead < M, f"lead must be None (symmetric) or in [0, {M}), got {self.lead}"
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        assert self.channels >= 2 and self.channels % 2 == 0, f"channels must be even (BiLSTM), got {self.channels}"
        assert self.embed_dim >= 1, f"embed_dim must be >= 1, got {self.embed_dim}"
        assert len(self.series_channels) >= 1, "the glove sub-network needs at least one conv"
        for s in self.input_shapes:
            if len(s) == 3:
                assert s[0] * s[2] >= 2 ** len(self.series_channels), (
                    f"series {s}: N*K = {s[0] * s[2]} samples cannot take {len(self.series_channels)} max-pools of 2"
                )
        self.check_dropouts()

    @classmethod
    def tiny(cls, **overrides: Any) -> "NonLocalFusionConfig":
        """Test preset: an image and a series modality, N=2, small sizes."""
        cfg: dict[str, Any] = dict(
            input_shapes=((2, 3, 16, 16), (2, 4, 8)),
            num_classes=4,
            channels=16,
            embed_dim=8,
            width=0.25,
            stages=((1, 8, 1, 1), (2, 16, 1, 2)),
            series_channels=(8, 16),
        )
        cfg.update(overrides)
        return cls.from_dict(cfg)

    @property
    def leads(self) -> tuple[int, ...]:
        """The modalities whose fused feature sets reach the head."""
        return tuple(range(self.num_modalities)) if self.lead is None else (self.lead,)


class ImageBranch(nn.Module):
    """Video branch: (B, N, C, H, W) -> (B, N*h*w, c), a 2-D CNN per frame with no global pool."""

    def __init__(self, shape: Shape, channels: int, width: float, stages: tuple[Stage, ...]):
        super().__init__()
        cfg = BackboneConfig(in_chans=shape[1], width=width, stages=stages, feature_dim=channels)
        self.cnn = MobileNetV2Backbone(cfg).features  # the feature map before the backbone's pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N = x.shape[:2]
        f = self.cnn(x.flatten(0, 1))  # (B*N, c, h, w): frames share the CNN
        f = f.reshape(B, N, f.shape[1], -1).transpose(2, 3)  # (B, N, h*w, c)
        return f.flatten(1, 2)  # (B, N*h*w, c): positions in (time, row, column) order


class SeriesBranch(nn.Module):
    """Glove sub-network (Fig. 5): (B, N, C, K) -> (B, T', c), 1-D conv + max-pool stages then a BiLSTM.

    1-D ops are Conv2d / MaxPool2d with (1, k) kernels over (B, C, 1, T), the form
    XNNPACK and the int8 quantizers take (models/encoders.py).
    """

    def __init__(self, shape: Shape, channels: int, conv_channels: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = shape[1]
        for cout in conv_channels:
            layers += [
                nn.Conv2d(cin, cout, (1, 5), padding=(0, 2), bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d((1, 2)),
            ]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.lstm = LSTM(cin, channels // 2, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C, K = x.shape
        x = x.permute(0, 2, 1, 3).reshape(B, C, 1, N * K)  # the N windows joined along time
        f = self.convs(x).flatten(2).transpose(1, 2)  # (B, T', c_conv)
        return self.lstm(f)  # (B, T', c): [forward, backward] per step


class NonLocalPair(nn.Module):
    """theta, phi, g, h of eq. 2-5 for one (x, y) pair: y enforces x.

    x: (B, P, cx) and y: (B, Q, cy) may differ in P, Q and channels; the result has x's shape.
    """

    def __init__(self, x_channels: int, y_channels: int, embed_dim: int):
        super().__init__()
        self.theta = nn.Linear(x_channels, embed_dim)
        self.phi = nn.Linear(y_channels, embed_dim)
        self.g = nn.Linear(y_channels, embed_dim)
        self.h = nn.Linear(embed_dim, x_channels)

    def attention(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f(x_i, y_j) / C(x_i, y) of eq. 3-4: (B, P, Q), each row a distribution over y's positions."""
        # torch.bmm, not @: a 3-D @ exports as expand + bmm and the expand stays outside XNNPACK
        return torch.softmax(torch.bmm(self.theta(x), self.phi(y).transpose(1, 2)), dim=-1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """h(z(x, y)) of eq. 5, without the residual: (B, P, cx)."""
        return self.h(torch.bmm(self.attention(x, y), self.g(y)))  # z of eq. 2, then h


class NonLocalFusion(nn.Module):
    """Eq. 6: x^ = x + sum_r p_r * h^r(z^r(x, y^r)), one `NonLocalPair` per other modality.

    p_r (B,) is 1 where y^r is present, 0 where it is missing. With no other modality the
    single pair is a self non-local block (y = x, eq. 1).
    """

    def __init__(self, x_channels: int, y_channels: Sequence[int], embed_dim: int):
        super().__init__()
        self.pairs = nn.ModuleList(NonLocalPair(x_channels, c, embed_dim) for c in (y_channels or [x_channels]))

    def forward(self, x: torch.Tensor, ys: Sequence[torch.Tensor], present: Sequence[torch.Tensor]) -> torch.Tensor:
        assert len(ys) == len(present) == len(self.pairs), f"expected {len(self.pairs)} (y, present) pairs"
        out = x
        for pair, y, p in zip(self.pairs, ys, present):
            out = out + pair(x, y) * p[:, None, None]
        return out


class NonLocalFusionNet(nn.Module):
    """Heterogeneous non-local fusion: one branch per modality, eq. 6 for each leading modality, mean-pool, FC."""

    def __init__(self, config: NonLocalFusionConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.branches = nn.ModuleList(
            ImageBranch(s, c, config.width, config.stages) if len(s) == 4
            else SeriesBranch(s, c, config.series_channels)
            for s in config.input_shapes
        )
        M = config.num_modalities
        blocks = config.leads if config.nonlocal_block else ()
        self.fusions = nn.ModuleList(NonLocalFusion(c, [c] * (M - 1), config.embed_dim) for _ in blocks)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(len(config.leads) * c, config.num_classes))

    def branch_features(self, *inputs: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each modality's feature set (B, P_m, c), zero where missing or dropped, and its
        presence flag (B,) that eq. 6 uses to drop a missing modality's terms."""
        cfg = self.config
        assert len(inputs) == cfg.num_modalities, f"expected {cfg.num_modalities} inputs, got {len(inputs)}"
        for j, x in enumerate(inputs):
            assert tuple(x.shape[1:]) == cfg.input_shapes[j], (
                f"input {j}: expected (B, {', '.join(map(str, cfg.input_shapes[j]))}), got {tuple(x.shape)}"
            )
        present = [presence(x) for x in inputs]  # a list, not a (B, M) stack: no select ops left outside XNNPACK
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(inputs[0].shape[0], cfg.num_modalities, cfg.modality_dropout,
                                      inputs[0].device, inputs[0].dtype)
            present = [p * keep[:, j] for j, p in enumerate(present)]
        feats = [branch(x) * p[:, None, None] for branch, x, p in zip(self.branches, inputs, present)]
        return feats, present

    def fused(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """x^ of eq. 6 for every leading modality (one for asymmetric, M for symmetric), each (B, P_lead, c)."""
        feats, present = self.branch_features(*inputs)
        if not self.config.nonlocal_block:  # the ablation: the leads' own feature sets, unfused
            return [feats[lead] for lead in self.config.leads]
        out = []
        for lead, fusion in zip(self.config.leads, self.fusions):
            others = [m for m in range(len(feats)) if m != lead] or [lead]  # one modality: y = x
            out.append(fusion(feats[lead], [feats[m] for m in others], [present[m] for m in others]))
        return out

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """M tensors (B, N, C, H, W) or (B, N, C, K), in config order -> logits (B, num_classes)."""
        # mean over positions as a 4-D (B, c, P, 1) keepdim global pool: the mean form XNNPACK delegates
        pooled = [z.transpose(1, 2)[..., None].mean(dim=(2, 3), keepdim=True).flatten(1) for z in self.fused(*inputs)]
        # (B, len(leads) * c); no cat of a single tensor: XNNPACK leaves a one-input cat outside
        return self.head(pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1))

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs with the config's shapes: the same ones export, tests and benchmarks use."""
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


@register_model("nonlocal_fusion", NonLocalFusionConfig)
def nonlocal_fusion(**cfg: Any) -> NonLocalFusionNet:
    return NonLocalFusionNet(NonLocalFusionConfig.from_dict(cfg))


@register_model("nonlocal_fusion_tiny", NonLocalFusionConfig)
def nonlocal_fusion_tiny(**cfg: Any) -> NonLocalFusionNet:
    return NonLocalFusionNet(NonLocalFusionConfig.tiny(**cfg))
