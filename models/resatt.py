"""Residual Attention-based Fusion (RAF; "Residual Attention-based Fusion for Video
Classification", docs/papers.md): residual attention BiLSTM blocks per modality, fused
by a class-weighted linear SVM.

Data flow, for M modalities each sampled into the same N segments (time steps):

    x^j: (B, N, C_j, ...)  --SegmentEncoder, segments folded into the batch-->  (B, N, 2H)
    per modality, a stack of L BiLSTM layers (`recurrent.LSTM(bidirectional=True)`,
    unrolled over the N steps) with attention and residuals placed by `variant` (Fig. 1):
      "late_attention"  (a): x <- x + BiLSTM(x) for each layer, then y = Att(x)
      "fully_residual"  (b): c = BiLSTM(x); x <- c + Att(c) for each layer
      "late_residual"   (c): x <- BiLSTM(x) for each layer, then y = c_L + Att(c_L)
    Att (eqs. 1-3), over the N BiLSTM outputs c^(i), one context h_t per output step t:
      eq. 2   s^(i)   = tanh(W c^(i) + b)                                (B, N, A)
      eq. 3   a_t^(i) = softmax_i(w_t . s^(i))                           (B, N_t, N_i)
      eq. 1   h_t     = sum_i a_t^(i) c^(i)                              (B, N, 2H)
    eq. 4   Y = F(x) + x is the residual: F = BiLSTM in (a), F = Att in (b) and (c)
    eq. 5   joint representation v_{c,t} = [W_{v,t} c_{v,t}, W_{a,t} c_{a,t}, ...], one vector per window:
            z_j = sum_t W_{j,t} y_{j,t} + b_j  = Linear(flatten(y_j))               (B, E)
            v   = [z_1, ..., z_M]                                                   (B, M*E)
    weighted SVM: logits f_k(v) = w_k . v + b_k, a multi-class linear SVM trained end to end
    with the class-weighted hinge loss `class_weighted_hinge` (the model's `training_loss`).

The classifier: a class-weighted soft-margin (hinge) head trained end to end, not a
separate WSVM fitted on frozen features. A linear soft-margin SVM is the minimiser of
L2-regularised hinge loss, so hinge + weight decay on the head is the WSVM primal; with
per-sample costs C_{y_n} (here the trainer's `ctx.class_weights`, inverse class
frequency of the training bouts, mean 1, proportional to sklearn's `class_weight="balanced"`)
it is the weighted SVM of Veropoulos et al. / Huang & Du that penalises errors on
minority classes more. End to end because (i) the exported program must be one graph
that outputs class scores, which a linear head is and an external libsvm model is not;
(ii) the trainer runs one optimiser per stage and has no "fit an SVM on features" step;
(iii) the margin then shapes the BiLSTM features too. The logits are the SVM decision
values: argmax is the prediction, they are not probabilities.

Multi-class form: Weston & Watkins' all-in-one SVM, per sample
sum_{k != y} max(0, 1 - (f_y - f_k)): the true class must beat every other by a margin.
Not one-vs-rest (C binary SVMs, max(0, 1 -+ f_k)): its absolute margins broke down when a
modality was missing. Measured on the simulated data (15-25 epochs, 3 modalities), with
the glove removed at test time every score went negative and most windows fell to
"neutral": 58-71% vs 78-82% with the relative margins here (cross-entropy: 80%; 80% is
the ceiling there, as two class pairs differ only in the glove).

Choices where the paper is silent or where we differ:
- Inputs. The paper feeds per-frame static features (InceptionV3, SoundNet, GloVe) to
  its BiLSTMs; here each modality's N segments go through its own `SegmentEncoder`
  (MobileNetV2-class CNN for frames, 1-D CNN for raw series), trained end to end. The
  input recipe is raw "series", N=8, K=32, "range" scaling: the paper reads sequences of
  features, N=8 gives the BiLSTM and the temporal attention a sequence worth attending
  over (3 s window: 8 segments of 32 samples at 100 Hz nearly tile it), and range
  scaling keeps the signal amplitude that a per-window min-max would remove.
- Eqs. 1-3 as printed are circular (h_t uses a_t, s_t uses h_t). We read them as the
  standard additive attention: i runs over the N BiLSTM outputs, t over output steps,
  W and b shared, one learned query w_t per output step t (the paper's w_t^(i) shared
  across i, so the weights follow content rather than a fixed (t, i) table; a per-t bias
  would cancel in the softmax over i and is left out). Attention keeps the sequence, so
  blocks stack and the residual Y = F(x) + x is defined in every variant.
- Residual placement per variant as in the list above; widths are equal everywhere
  (encoder feature = BiLSTM output = 2H), so every shortcut is the identity.
- Sizes: H = `hidden` per direction, L = `layers`, A = `attention_dim`, E = `embed_dim`.
  The FC per modality uses step-specific weights W_{j,t} as the paper writes, summed over
  t (one Linear over the flattened sequence) to give one vector per window. No activation
  after it: the paper names none, and a ReLU there left whole modality blocks dead at
  initialisation (BiLSTM outputs barely vary across samples then, so each unit had the
  same sign for every sample and no gradient reached that modality).
  Dropout `dropout` on the joint vector before the SVM.
- Class weights and margin: sample cost = class_weights[y]; the per-sample hinge sum is
  averaged over the batch (not normalised by the summed weights, which would cancel the
  weights in a one-class batch). The SVM's 1/2 |w|^2 term is the
  trainer's AdamW weight decay. `ctx.loss_fn` (cross-entropy) is not used.
- Any number of modalities M >= 1: one encoder + RABL stack + FC per modality, joint
  vector of length M*E. With M = 1 the model is a single-stream residual attention
  BiLSTM with a weighted linear SVM on top.
- Missing modalities. A modality whose whole input is zero (a dropped stream) gets
  z_j = 0 (`modality.presence` on the input), so it adds nothing to the SVM score; the
  encoder also zeroes single all-zero segments. Modality dropout (training only,
  `modality_keep_mask`, no rescaling) zeroes z_j of random samples, exactly what a
  missing stream produces at run time. Gating z_j rather than the encoder output is
  needed because a BiLSTM maps a zero sequence to a non-zero one (its biases).

Component ablation (`components` below; the paper's Table 1 rows and its WSVM):
- `variant`: the three RAF forms of Fig. 1.
- `fusion="early"`: the paper's early fusion model, "static features from all data
  modalities combined, then BiLSTM layers, then a dense layer": the modalities' per-step
  encoder features are concatenated, projected to 2H by one Linear (the BiLSTM width, so
  the stack's shortcuts stay identities), and go through ONE stack of the configured
  `variant` and one FC to E. The paper's early model has plain BiLSTMs; keeping the same
  temporal module makes the row differ from the full model only in where fusion happens.
  Modality dropout zeroes a modality's encoder features before the concatenation; z is
  gated by "any modality present".
- `loss`: "weighted_hinge" (the WSVM, default), "hinge" (the same SVM, every class cost 1)
  or "cross_entropy" (the trainer's `ctx.loss_fn` on the scores). The paper motivates the
  weighting by class imbalance, so those rows train on a class-imbalanced split
  (`minority_keep`, models/train.py `imbalanced`): with balanced classes the weights are
  all 1 and the two hinges coincide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .backbone import Stage
from .encoders import SegmentEncoder, check_shapes
from .modality import modality_keep_mask, presence
from .recurrent import LSTM
from .registry import SERIES_RECIPE, ConfigMixin, InputRecipe, register_model

VARIANTS = ("late_attention", "fully_residual", "late_residual")


@dataclass
class ResAttConfig(ConfigMixin):
    input_recipe: ClassVar[InputRecipe] = SERIES_RECIPE

    # per-modality (N, C, H, W) or (N, C, K), in the manifest's modality order
    input_shapes: tuple[tuple[int, ...], ...] = ((8, 3, 64, 64), (8, 12, 32), (8, 6, 32))
    num_classes: int = 10  # set from the manifest's labels
    variant: Literal[VARIANTS] = "late_residual"  # Fig. 1: "late_attention" | "fully_residual" | "late_residual"
    fusion: Literal["late", "early"] = "late"  # joint vector of per-modality stacks, or one stack on fused steps
    loss: Literal["weighted_hinge", "hinge", "cross_entropy"] = "weighted_hinge"  # the WSVM, or its ablations
    hidden: int = 32  # H: LSTM state per direction; encoder features and BiLSTM outputs are 2H
    layers: int = 2  # L: BiLSTM layers per modality
    attention_dim: int = 32  # A: length of the relevance score s^(i), eq. 2
    embed_dim: int = 32  # E: per-modality FC output, one block of the joint vector
    dropout: float = 0.2  # on the joint vector, before the SVM
    # train-time P(zero one modality's representation for a sample); 0.4 kept the simulated
    # data at its missing-modality ceiling (0.25 fell 2 points short there)
    modality_dropout: float = 0.4
    width: float = 0.5  # image encoder width multiplier
    # image encoder (t, c, n, s): MobileNetV2's short layout with the stride moved to the first
    # stage, 64x64 -> 32 (stem) -> 16 -> 8 -> 4 -> 4: 0.55 M MACs a frame instead of 1.3 M, as N=8
    # frames per window cost what MMTSA's 3 do (and train 6x faster per frame here)
    stages: tuple[Stage, ...] = ((1, 16, 1, 2), (4, 24, 1, 2), (4, 32, 1, 2), (4, 64, 1, 1))
    series_channels: tuple[int, ...] = (32, 64)  # series encoder conv widths

    components: ClassVar[dict[str, tuple[str, ...]]] = {
        "late residual attention (default)": (),
        "late attention": ("variant=late_attention",),  # Table 1 / Fig. 1
        "fully residual attention": ("variant=fully_residual",),
        "early fusion": ("fusion=early",),
        # the WSVM's point: class imbalance; a seeded half of the classes keep 1/4 of their training bouts
        "weighted hinge, imbalanced training split": ("minority_keep=0.25",),
        "unweighted hinge, imbalanced training split": ("loss=hinge", "minority_keep=0.25"),
        "cross-entropy, imbalanced training split": ("loss=cross_entropy", "minority_keep=0.25"),
    }

    def __post_init__(self) -> None:
        check_shapes(self.input_shapes)
        assert self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}"
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        for name in ("hidden", "layers", "attention_dim", "embed_dim"):
            assert getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}"
        self.check_dropouts()

    @classmethod
    def tiny(cls, **overrides: Any) -> "ResAttConfig":
        """A few-thousand-parameter preset for tests: an image and a series modality, N=4."""
        cfg: dict[str, Any] = dict(
            input_shapes=((4, 3, 16, 16), (4, 4, 8)),
            num_classes=4,
            hidden=8,
            attention_dim=8,
            embed_dim=8,
            width=0.25,
            stages=((1, 8, 1, 1), (2, 16, 1, 2)),
            series_channels=(8, 16),
        )
        cfg.update(overrides)
        return cls.from_dict(cfg)


class TemporalAttention(nn.Module):
    """Eqs. 1-3: (B, N, D) BiLSTM outputs -> contexts (B, N, D) and weights (B, N_t, N_i)."""

    def __init__(self, dim: int, attention_dim: int, steps: int):
        super().__init__()
        self.score = nn.Linear(dim, attention_dim)  # W, b of eq. 2
        self.query = nn.Linear(attention_dim, steps, bias=False)  # row t is w_t of eq. 3

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.tanh(self.score(c))  # (B, N_i, A), eq. 2
        # scores laid out (B, N_t, N_i) so the softmax over i runs over the last axis (XNNPACK)
        a = torch.softmax(self.query(s).transpose(1, 2), dim=-1)  # eq. 3
        return torch.bmm(a, c), a  # eq. 1: h_t = sum_i a_t^(i) c^(i); bmm, as `@` exports with expand ops


class RABLStack(nn.Module):
    """One modality's temporal module: L BiLSTM layers with attention and residuals placed by
    `variant` (module doc, Fig. 1). (B, N, 2H) -> output (B, N, 2H) and the attention
    weights (B, number of attention layers, N_t, N_i)."""

    def __init__(self, variant: str, hidden: int, layers: int, attention_dim: int, steps: int):
        super().__init__()
        assert variant in VARIANTS, f"variant must be one of {VARIANTS}, got {variant!r}"
        self.variant = variant
        self.lstms = nn.ModuleList(LSTM(2 * hidden, hidden, bidirectional=True) for _ in range(layers))
        n_att = layers if variant == "fully_residual" else 1
        self.attentions = nn.ModuleList(TemporalAttention(2 * hidden, attention_dim, steps) for _ in range(n_att))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = []
        last = len(self.lstms) - 1
        for k, lstm in enumerate(self.lstms):
            c = lstm(x)  # (B, N, 2H)
            if self.variant == "late_attention":
                x = x + c  # residual BiLSTM, eq. 4 with F = BiLSTM
            elif self.variant == "fully_residual" or k == last:
                h, a = self.attentions[len(weights)](c)
                x = c + h  # residual attention, eq. 4 with F = Att
                weights.append(a)
            else:
                x = c  # plain BiLSTM below the late residual attention
        if self.variant == "late_attention":
            x, a = self.attentions[0](x)  # attention on top, no shortcut around it
            weights.append(a)
        return x, torch.stack(weights, dim=1)


class ResidualAttentionFusion(nn.Module):
    """Residual attention BiLSTM blocks per modality, concatenated, class-weighted linear SVM head."""

    def __init__(self, config: ResAttConfig):
        super().__init__()
        self.config = config
        cfg = config
        N, D = cfg.num_segments, 2 * cfg.hidden
        self.encoders = nn.ModuleList(
            SegmentEncoder(s, D, cfg.width, cfg.stages, cfg.series_channels) for s in cfg.input_shapes
        )
        stacks = 1 if cfg.fusion == "early" else cfg.num_modalities  # early: one stack on the fused steps
        # early fusion: the concatenated per-step features projected to the BiLSTM width
        self.project = nn.Linear(cfg.num_modalities * D, D) if cfg.fusion == "early" else None
        self.temporal = nn.ModuleList(
            RABLStack(cfg.variant, cfg.hidden, cfg.layers, cfg.attention_dim, N) for _ in range(stacks)
        )
        self.embed = nn.ModuleList(  # sum_t W_{j,t} y_{j,t} + b_j
            nn.Sequential(nn.Flatten(1), nn.Linear(N * D, cfg.embed_dim)) for _ in range(stacks)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.svm = nn.Linear(stacks * cfg.embed_dim, cfg.num_classes)  # (w_k, b_k), one-vs-rest

    def modality_representations(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality z_j (B, M, E), zero for a missing or dropped modality, and the
        attention weights (B, M, attention layers, N_t, N_i); with fusion="early" M is 1 (one fused stack)."""
        cfg = self.config
        assert len(inputs) == cfg.num_modalities, f"expected {cfg.num_modalities} inputs, got {len(inputs)}"
        if self.project is not None:
            return self._early_representation(*inputs)
        zs, weights = [], []
        for x, encoder, temporal, embed in zip(inputs, self.encoders, self.temporal, self.embed):
            y, a = temporal(encoder(x))  # (B, N, 2H), (B, layers', N, N)
            zs.append(embed(y) * presence(x)[:, None])  # (B, E), zero for an all-zero stream
            weights.append(a)
        z = torch.stack(zs, dim=1)  # (B, M, E)
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(z.shape[0], cfg.num_modalities, cfg.modality_dropout, z.device, z.dtype)
            z = z * keep[:, :, None]
        return z, torch.stack(weights, dim=1)

    def _early_representation(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Early fusion (module doc): z (B, 1, E) of the fused sequence and its attention (B, 1, ...)."""
        cfg = self.config
        feats = [encoder(x) for encoder, x in zip(self.encoders, inputs)]  # M x (B, N, 2H)
        present = torch.stack([presence(x) for x in inputs], dim=1)  # (B, M)
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(present.shape[0], cfg.num_modalities, cfg.modality_dropout,
                                      present.device, present.dtype)
            feats = [f * keep[:, j, None, None] for j, f in enumerate(feats)]
            present = present * keep
        y, a = self.temporal[0](self.project(torch.cat(feats, dim=-1)))  # (B, N, 2H)
        z = self.embed[0](y) * present.amax(dim=1, keepdim=True)  # (B, E), zero when nothing is there
        return z[:, None], a[:, None]

    def forward_with_attention(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SVM scores (B, num_classes) and attention weights (B, M, layers', N_t, N_i);
        the last axis is a distribution over the BiLSTM steps."""
        z, weights = self.modality_representations(*inputs)
        joint = z.flatten(1)  # (B, M*E): [z_1, ..., z_M]
        return self.svm(self.dropout(joint)), weights

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """M tensors (B, N, C_j, ...), in config order -> SVM decision values (B, num_classes)."""
        return self.forward_with_attention(*inputs)[0]

    def training_loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, ctx: Any) -> torch.Tensor:
        """The weighted SVM's loss (trainer hook): class-weighted multi-class hinge; with
        loss="hinge" every class weighs 1, with loss="cross_entropy" the trainer's `ctx.loss_fn`."""
        scores = self(*inputs)
        if self.config.loss == "cross_entropy":
            return ctx.loss_fn(scores, labels)
        weights = ctx.class_weights.to(labels.device)
        return class_weighted_hinge(scores, labels, weights if self.config.loss == "weighted_hinge" else torch.ones_like(weights))

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs with the config's shapes: the same ones export, tests and benchmarks use."""
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


def class_weighted_hinge(scores: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Weighted soft-margin loss of a multi-class (Weston-Watkins) linear SVM, batch mean:

        mean_n  class_weights[y_n] * sum_{k != y_n} max(0, 1 - (f_{y_n}(x_n) - f_k(x_n)))

    scores (B, C), labels (B,) int, class_weights (C,) -> scalar.
    """
    others = 1.0 - nn.functional.one_hot(labels, scores.shape[1]).to(scores.dtype)  # (B, C), 0 at y_n
    margins = torch.relu(1.0 - scores.gather(1, labels[:, None]) + scores) * others  # (B, C)
    return (class_weights[labels] * margins.sum(dim=1)).mean()


@register_model("resatt", ResAttConfig)
def resatt(**cfg: Any) -> ResidualAttentionFusion:
    return ResidualAttentionFusion(ResAttConfig.from_dict(cfg))


@register_model("resatt_tiny", ResAttConfig)
def resatt_tiny(**cfg: Any) -> ResidualAttentionFusion:
    return ResidualAttentionFusion(ResAttConfig.tiny(**cfg))
