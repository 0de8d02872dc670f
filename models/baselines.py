"""The baselines the papers compare their fusion models against.

- `late_concat`: late feature concatenation. Each modality's segments are encoded
  (`SegmentEncoder`), averaged over the N segments (TSN-style consensus), the modality
  vectors concatenated and classified by an MLP. With one modality this is the
  single-modality baseline of every paper's table (encoder + classifier).
- `score_avg`: average score fusion. Each modality has its own encoder and classifier;
  the fused prediction is the mean of the per-modality class scores. Every branch
  is trained as a classifier on its own (the loss is the mean of the per-modality
  cross-entropies, `training_loss`), which is what "train each modality, average the
  scores" means, in one run.

Choices the papers leave open:
- Both read raw sensor windows ("series", N = 8 segments of K = 32 samples, calibrated
  ranges): the same inputs as the recurrent fusion models, so a table row compares
  fusion schemes, not input pipelines.
- Missing modalities: `late_concat` sees a zero feature block (the encoders' gate) and is
  trained with modality dropout on those blocks; `score_avg` averages only over the
  modalities present, so a missing stream simply leaves the vote.
- `score_avg` averages the class scores before the softmax (logits), as TSN's consensus
  does, not the probabilities after it: LiteRT's int8 softmax kernel only accepts an
  output scale of 1/256, which a softmax feeding further arithmetic does not get from
  PT2E calibration, so averaged probabilities failed to load as int8 (measured). Each
  branch is trained as its own classifier either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .encoders import SegmentEncoder, check_shapes
from .modality import modality_keep_mask, presence
from .registry import SERIES_RECIPE, ConfigMixin, register_model

Shape = tuple[int, ...]  # (N, C, H, W) or (N, C, K), no batch axis


@dataclass
class BaselineConfig(ConfigMixin):
    input_recipe = SERIES_RECIPE

    # per-modality (N, C, H, W) images or (N, C, K) series, in the manifest's modality order
    input_shapes: tuple[Shape, ...] = ((8, 3, 64, 64), (8, 12, 32), (8, 6, 32))
    num_classes: int = 10
    feature_dim: int = 64  # d per modality
    width: float = 0.5  # image encoder width multiplier
    hidden: int = 128  # late_concat: hidden width of the MLP head
    dropout: float = 0.3
    modality_dropout: float = 0.2  # train-time P(zero one modality of a sample)

    def __post_init__(self) -> None:
        check_shapes(self.input_shapes)
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        self.check_dropouts()

    @classmethod
    def tiny(cls, **overrides: Any) -> "BaselineConfig":
        """Test preset: an image and a series modality, N=2, small sizes."""
        cfg: dict[str, Any] = dict(input_shapes=((2, 3, 16, 16), (2, 4, 8)), num_classes=4, feature_dim=16,
                                   width=0.25, hidden=16)
        cfg.update(overrides)
        return cls.from_dict(cfg)


class _Baseline(nn.Module):
    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleList(SegmentEncoder(s, config.feature_dim, width=config.width) for s in config.input_shapes)

    def modality_vectors(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(B, M, d): each modality's segment features averaged over the N segments."""
        assert len(inputs) == len(self.encoders), f"expected {len(self.encoders)} inputs, got {len(inputs)}"
        return torch.stack([enc(x).mean(dim=1) for enc, x in zip(self.encoders, inputs)], dim=1)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


class LateConcat(_Baseline):
    """Baseline: per-modality features concatenated, one linear classifier (late feature fusion)."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        M, d = len(config.input_shapes), config.feature_dim
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(M * d, config.hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, config.num_classes))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        v = self.modality_vectors(inputs)  # (B, M, d)
        cfg = self.config
        if self.training and cfg.modality_dropout > 0:
            v = v * modality_keep_mask(v.shape[0], v.shape[1], cfg.modality_dropout, v.device, v.dtype)[:, :, None]
        return self.head(v.flatten(1))


class ScoreAverage(_Baseline):
    """Baseline: a classifier per modality, their scores averaged over the modalities present."""

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))
            for _ in config.input_shapes
        )

    def branch_logits(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(B, M, num_classes): each modality's own classifier."""
        v = self.modality_vectors(inputs)
        return torch.stack([head(v[:, j]) for j, head in enumerate(self.heads)], dim=1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        scores = self.branch_logits(inputs)  # (B, M, K)
        present = torch.stack([presence(x) for x in inputs], dim=1)  # (B, M)
        # mean over the modalities present; the clamp keeps a sample with none present finite
        return (scores * present[:, :, None]).sum(dim=1) / present.sum(dim=1, keepdim=True).clamp(min=1.0)

    def training_loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, ctx) -> torch.Tensor:
        """Mean of the per-modality cross-entropies: every branch learns to classify alone."""
        logits = self.branch_logits(inputs)  # (B, M, K)
        return torch.stack([ctx.loss_fn(logits[:, j], labels) for j in range(logits.shape[1])]).mean()


@register_model("late_concat", BaselineConfig)
def late_concat(**cfg: Any) -> LateConcat:
    return LateConcat(BaselineConfig.from_dict(cfg))


@register_model("late_concat_tiny", BaselineConfig)
def late_concat_tiny(**cfg: Any) -> LateConcat:
    return LateConcat(BaselineConfig.tiny(**cfg))


@register_model("score_avg", BaselineConfig)
def score_avg(**cfg: Any) -> ScoreAverage:
    return ScoreAverage(BaselineConfig.from_dict(cfg))


@register_model("score_avg_tiny", BaselineConfig)
def score_avg_tiny(**cfg: Any) -> ScoreAverage:
    return ScoreAverage(BaselineConfig.tiny(**cfg))
