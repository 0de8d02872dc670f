"""MMTSA: multimodal temporal segment attention network (Gao et al., sec. 3.3).

Data flow, for M modalities each sampled into the same N segments (sec. 3.2):

    x^j: (B, N, C_j, H_j, W_j)  --F(.; W^j), segments folded into the batch-->  (B, N, d)
    eq. 7   Y_Si   = concat_j F(X^j_Si; W^j)                     (B, N, M*d)
    eq. 8   alpha_i = softmax_i(w_att^T Y_Si)                     (B, N)
    eq. 9   Y~     = sum_i alpha_i Y_Si                           (B, M*d)
            logits = FC2(ReLU(FC1(Y~)))                           (B, num_classes)

Each modality has its own backbone (W^j); the N segments of one modality share it by
folding N into the batch. Never share a conv between modalities: an int8 XNNPACK conv
used at two call sites fails to load (docs/platform-notes.md, "ExecuTorch (XNNPACK)").

The model returns logits; softmax (eq. 8's "probabilities for each class") is left to
the loss (`F.cross_entropy`) and to the runtime, so training gets the fused, stable
log-softmax and the exported program has one op less.

Choices where the paper is silent:
- Activation between the two FC layers: ReLU (fuses with Linear in XNNPACK, quantizes
  cleanly). Hidden width is `config.hidden`.
- Dropout: `nn.Dropout(config.dropout)` on the input of each FC layer (on Y~ and on the
  hidden activations), the usual MLP-head placement; TSN also drops out before its
  classifier.
- w_att is `Linear(M*d, 1, bias=False)`: a bias adds the same number to every segment's
  score and cancels in the softmax.
- Missing modalities. Modality dropout (training only) zeroes, per sample and per
  modality with probability `config.modality_dropout`, that modality's d-dim feature
  block F(X^j_Si; W^j) in Y_Si for all N segments of the sample, i.e. before attention
  (eq. 8 sees the zeros too) and without rescaling the kept blocks. If every modality
  of a sample would be dropped, one of them, chosen at random, is kept, so the
  label still matches some evidence. At inference a stream that drops out is fed as an
  all-zero input; the model maps any all-zero segment image to an all-zero feature block
  (the same gate runs in training and export), so a missing stream at run time is
  exactly the condition modality dropout trained for. No rescaling because the goal is
  robustness to a missing stream, not regularisation: inverted-dropout scaling would
  make "kept during training" differ from "present at run time". Real inputs are never
  all-zero (GASF images of a window, normalised camera frames).

Component ablation (`segment_fusion`, the paper's Table 5 and `components` below). The
paper compares its inter-segment attention with "direct feature concatenation" without
saying what is concatenated; the per-segment features Y_Si of eq. 7 already concatenate
the modalities, so "concat" here concatenates the N segments' Y_Si into one (N*M*d)
vector before the same two FC layers (the head's input grows N-fold; nothing is
weighted). "mean" averages the Y_Si over the segments, TSN's segmental consensus, i.e.
eq. 9 with alpha fixed at 1/N. Both report alpha = 1/N from `forward_with_attention`:
what each segment contributes before the head. The other rows (N, GASF/GADF, sparse vs
dense sampling) are input-pipeline settings in the manifest, not model fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .backbone import BackboneConfig, MobileNetV2Backbone, Stage
from .modality import modality_keep_mask, presence
from .registry import ConfigMixin, register_model

Shape = tuple[int, int, int, int]  # (N, C, H, W) of one modality, without the batch axis


@dataclass
class MMTSAConfig(ConfigMixin):
    # per-modality (N, C, H, W), in the manifest's modality order (Manifest.input_shapes())
    input_shapes: tuple[Shape, ...] = ((3, 3, 64, 64), (3, 12, 32, 32), (3, 6, 32, 32))
    num_classes: int = 10  # set from the manifest's labels
    width: float = 0.5  # backbone width multiplier
    feature_dim: int = 64  # d: feature length per modality per segment
    # backbone stages (t, c, n, s), shared layout for every modality (weights are not shared)
    stages: tuple[Stage, ...] = ((1, 16, 1, 1), (4, 24, 1, 2), (4, 32, 1, 2), (4, 64, 1, 2))
    hidden: int = 128  # width of the first FC layer
    dropout: float = 0.3  # dropout on the input of each FC layer
    modality_dropout: float = 0.2  # train-time P(zero one modality's features for a sample)
    # how the N segments' features are fused: eq. 8-9 "attention" (the paper), "concat" or
    # "mean" (its Table 5 ablation; module doc)
    segment_fusion: Literal["attention", "concat", "mean"] = "attention"

    components: ClassVar[dict[str, tuple[str, ...]]] = {
        "segment attention (paper)": (),
        "segment concatenation": ("segment_fusion=concat",),  # Table 5
        "segment mean (TSN consensus)": ("segment_fusion=mean",),
        "N = 1 segment": ("num_segments=1",),
        "N = 5 segments": ("num_segments=5",),  # N = 3 is the full model's recipe
        "GADF images": ("gaf_kind=difference",),  # GASF is the full model's
        "dense sampling": ("sampling=dense",),  # one clip instead of one snippet per segment
    }

    def __post_init__(self) -> None:
        assert len(self.input_shapes) >= 1, "need at least one modality"
        for s in self.input_shapes:
            assert len(s) == 4 and all(isinstance(v, int) and v >= 1 for v in s), f"input shape {s} is not (N, C, H, W)"
        n = {s[0] for s in self.input_shapes}
        assert len(n) == 1, f"all modalities need the same number of segments N, got {sorted(n)}"
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        assert self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}"
        self.check_dropouts()

    @classmethod
    def tiny(cls, **overrides: Any) -> "MMTSAConfig":
        """A few-thousand-parameter preset for tests: 2 modalities, N=2, small images."""
        cfg: dict[str, Any] = dict(
            input_shapes=((2, 3, 16, 16), (2, 4, 8, 8)),
            num_classes=4,
            width=0.25,
            feature_dim=16,
            stages=((1, 8, 1, 1), (2, 16, 1, 2)),
            hidden=16,
        )
        cfg.update(overrides)
        return cls.from_dict(cfg)

    def backbone_config(self, j: int) -> BackboneConfig:
        return BackboneConfig(
            in_chans=self.input_shapes[j][1], width=self.width, stages=self.stages, feature_dim=self.feature_dim
        )


class MMTSA(nn.Module):
    """MMTSA: GAF images + frames per segment, per-modality CNNs, segment attention fusion (sec. 3.3)."""

    def __init__(self, config: MMTSAConfig):
        super().__init__()
        self.config = config
        M, d = config.num_modalities, config.feature_dim
        self.backbones = nn.ModuleList(MobileNetV2Backbone(config.backbone_config(j)) for j in range(M))  # W^j
        # w_att in R^{M*d}, eq. 8; only the paper's attention fusion has it
        self.attention = nn.Linear(M * d, 1, bias=False) if config.segment_fusion == "attention" else None
        fused = M * d * (config.num_segments if config.segment_fusion == "concat" else 1)
        self.head = nn.Sequential(  # the two FC layers after eq. 9
            nn.Dropout(config.dropout),
            nn.Linear(fused, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    def segment_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Y_Si of eq. 7 for every segment: M tensors (B, N, C_j, H_j, W_j) -> (B, N, M*d)."""
        cfg = self.config
        assert len(inputs) == cfg.num_modalities, f"expected {cfg.num_modalities} inputs, got {len(inputs)}"
        feats = []
        for j, (x, backbone) in enumerate(zip(inputs, self.backbones)):
            assert tuple(x.shape[1:]) == cfg.input_shapes[j], (
                f"input {j}: expected (B, {', '.join(map(str, cfg.input_shapes[j]))}), got {tuple(x.shape)}"
            )
            B, N, C, H, W = x.shape
            x = x.reshape(B * N, C, H, W)  # segments share F(.; W^j): fold N into the batch
            present = presence(x)  # (B*N,) 0 for an all-zero image
            f = backbone(x) * present[:, None]  # (B*N, d), zero block for a missing input
            feats.append(f.reshape(B, N, -1))  # (B, N, d)
        y = torch.stack(feats, dim=2)  # (B, N, M, d)
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(y.shape[0], cfg.num_modalities, cfg.modality_dropout, y.device, y.dtype)
            y = y * keep[:, None, :, None]  # (B, 1, M, 1): whole modality blocks, all segments
        return y.flatten(2)  # (B, N, M*d)

    def forward_with_attention(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, num_classes) and the segment attention weights alpha (B, N) of eq. 8
        (1/N each for the "concat" and "mean" fusions, which weigh nothing)."""
        y = self.segment_features(*inputs)  # (B, N, M*d)
        if self.attention is None:
            B, N = y.shape[:2]
            g = y.flatten(1) if self.config.segment_fusion == "concat" else y.mean(dim=1)  # (B, N*M*d) | (B, M*d)
            return self.head(g), torch.full((B, N), 1.0 / N, dtype=y.dtype, device=y.device)
        # scores laid out (B, 1, N) so the softmax runs over the last axis: XNNPACK only
        # delegates a last-axis softmax (over dim=1 of (B, N, 1) it falls to portable kernels)
        alpha = torch.softmax(self.attention(y).transpose(1, 2), dim=-1)  # (B, 1, N), eq. 8
        # bmm + flatten, not `@` + squeeze: matmul adds an expand and squeeze a copy, two
        # ops XNNPACK does not take, which would split the exported program in three
        g = torch.bmm(alpha, y).flatten(1)  # (B, M*d), eq. 9: sum_i alpha_i Y_Si
        return self.head(g), alpha.flatten(1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """M tensors (B, N, C_j, H_j, W_j), in config order -> logits (B, num_classes)."""
        return self.forward_with_attention(*inputs)[0]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs with the config's shapes: the same ones export, tests and benchmarks use."""
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


@register_model("mmtsa", MMTSAConfig)
def mmtsa(**cfg: Any) -> MMTSA:
    return MMTSA(MMTSAConfig.from_dict(cfg))


@register_model("mmtsa_tiny", MMTSAConfig)
def mmtsa_tiny(**cfg: Any) -> MMTSA:
    return MMTSA(MMTSAConfig.tiny(**cfg))
