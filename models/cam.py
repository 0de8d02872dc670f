"""CAM: collaborative attention mechanism with the Mutual-Aid RNN (Bai et al., sec. 2).

Data flow for M modalities, each sampled into the same N segments (the paper's T steps):

  stage 1, modality-specific attention (sec. 2.2), one branch per modality v:
    x^v (B, N, C, H, W) or (B, N, C, K) --SegmentEncoder--> X^v (B, N, d)   per-step input
    eq. 2.2, 2.4   H^v = LSTM^v(X^v)                                          (B, N, H)
    eq. 2.3        u_t = tanh(W_w h_t + b_w); z_t = softmax_t(u_t^T u_w); r = sum_t z_t h_t
    eq. 2.4, 2.5   Y_a^v = C^v(r^v), trained with L_a^v = CE(Y, Y_a^v)
  stage 2, multi-modal collaboration (sec. 2.3), all modalities stepped together:
    eq. 2.6        c_t^v, h_t^v = LSTM step of E_M^v on (x_t^v, h_{t-1}^v, c''_{t-1}^v)
    eq. 2.7        G_{u->v} = sigmoid(W_uv x_t^u + W_v^u h_{t-1}^v)   for each u != v
    eq. 2.8        c'_{u->v} = G_{u->v} * c_t^v                         (mutual filtering)
    eq. 2.9        z'_t^v = z_t^v / sum_u z_t^u                         (Z^v from stage 1)
    eq. 2.10       c''_t^v = z'_t^v c_t^v + sum_{u != v} z'_t^u c'_{u->v}  -> cell state of t+1
    eq. 2.11       r_M^v = Q_M^v(H_M^v), Y_M^v = C_M^v(r_M^v), trained with L_M^v (eq. 2.12)
  correlative late fusion (sec. 2.4):
    eq. 2.13       D_uv = p^u p^v^T, p^v = softmax(Y_M^v)               (B, K, K)
    eq. 2.14       logits = C^f(flatten D), trained with L_f

Two-stage training as in the paper (sec. 3.3), through the trainer's hooks:
`training_stages(epochs)` gives ("stage1", e1), ("stage2", e2); `set_training_stage`
freezes the other stage's parameters; `training_loss` is the mean of the L_a^v in
stage 1 and mean_v L_M^v + L_f in stage 2. Stage 2 reads X^v and Z^v from the frozen
stage 1, as the paper's stage 2 takes the same input features and Z^v as given.
Before any stage is set (a freshly built model) every parameter trains and
`training_loss` is the sum of both stages' losses: one-stage training.

More than two modalities (the paper defines MAR for two, r and d):
- eq. 2.9 normalises each step's attention over all M modalities, so the z'_t^v sum to 1.
- eq. 2.10 sums one collaborator G_{u->v} (eq. 2.7, its own W_uv, W_v^u) per other
  modality u, weighted by u's normalised attention. For M = 2 this is the paper's cell.
  Since the weights sum to 1, c'' = c * (z'^v + sum_u z'^u G_{u->v}): the own cell state,
  filtered by a convex mix of "keep" and the other modalities' collaborators.
- eq. 2.13: one correlative matrix per unordered pair u < v, concatenated, so C^f is
  linear on P K^2 features (P = M(M-1)/2); for M = 2 this is the paper's single D.
- One modality: no collaborators and z' = 1, so MAR is a plain LSTM; CAM degenerates to
  a stage-1 attention-LSTM that only trains the encoder, a stage-2 attention-LSTM
  classifier and C^f on its prediction's self-correlation D = p p^T.

Choices where the paper is silent or where we differ:
- Per-step input X^v: the paper feeds pre-extracted TSN features (1024-d per frame). Here
  each modality's `SegmentEncoder` (its own CNN, segments folded into the batch) makes a
  d-dim feature per segment; it is trained in stage 1 with its branch's LSTM, attention
  and classifier, and frozen in stage 2, which reads the same X^v as the paper does.
  Sensors are raw windows ("series", N = 8 segments of K = 32 samples, calibrated ranges):
  a recurrent model wants a sequence of steps, and N = 8 gives the attention more steps
  to distribute than MMTSA's 3, at the cost of the small 1-D CNN per step.
- h_t = o_t * tanh(c_t) is taken from the LSTM's own c_t (eq. 2.6 as written); c''_t
  (eq. 2.10) is the state carried to step t + 1, the role the paper gives it.
- W_uv x_t^u has a bias (the LSTM gates have one too); W_v^u h has none, as only their
  sum enters the sigmoid.
- H = hidden (paper 128 for LSTMs and attention); dropout before each linear classifier.
- The fusion C^f trains in stage 2 together with the L_M^v (the paper fits it on the MAR
  outputs afterwards); its gradient also reaches the MAR. The trainer uses one learning
  rate for both stages (the paper: 5e-4 for stage 1, 1e-3 for stage 2).
- Stage 2 keeps stage 1 in eval mode (frozen BatchNorm statistics, no dropout).
- Missing modalities. An all-zero input gives zero features (the encoders' gate) and,
  per segment, zero attention mass: z_t^v is multiplied by that segment's presence before
  eq. 2.9, so a missing modality's collaborators get weight 0 and the others' MAR cells
  fall back to their own LSTM (c'' = c when only one modality is left). In the fusion a
  missing modality's p^v is the uniform 1/K, so each D_uv with a present u carries p^u.
  Modality dropout (stage 2 and one-stage training, train mode only) zeroes X^v of
  whole modalities per sample (`modality_keep_mask`, keeps >= 1) and treats them exactly
  as missing; their L_M^v is left out for those samples. Stage 1 has no modality dropout:
  each branch classifies its own modality, there is nothing to fuse.

Component ablation (the paper's Table 2, `components` below):
- `mar="none"` is "CAM w/o MAR": stage 2 trains the modalities together with plain LSTM
  cells (c'' = c, no collaborators) and keeps the late fusion.
- `mar="one_way"` is "CAM w/o RGB" / "w/o Depth": collaboration updates the cell state of
  one modality only (`mar_target`, its index in the manifest); the others run plain LSTMs.
  For M > 2 the target gets a collaborator from every other modality, as in "mutual".
- `fusion="average"` replaces the correlative fusion C^f (eq. 2.13-2.14) by averaging the
  present modalities' logits Y_M^v, the "straightforward fusion" of the paper's sec. 1.
  Logits, not probabilities, for the reason `baselines.score_avg` gives (LiteRT int8).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from .backbone import Stage
from .encoders import SegmentEncoder, check_shapes
from .modality import modality_keep_mask, presence
from .recurrent import LSTM, LSTMCell
from .registry import SERIES_RECIPE, ConfigMixin, register_model

Shape = tuple[int, ...]  # (N, C, H, W) or (N, C, K), no batch axis
STAGES = ("stage1", "stage2")


@dataclass
class CAMConfig(ConfigMixin):
    input_recipe = SERIES_RECIPE

    # per-modality (N, C, H, W) images or (N, C, K) series, in the manifest's modality order
    input_shapes: tuple[Shape, ...] = ((8, 3, 64, 64), (8, 12, 32), (8, 6, 32))
    num_classes: int = 10
    feature_dim: int = 64  # d: per-segment feature, the LSTMs' input x_t^v
    width: float = 0.5  # image encoder width multiplier
    image_stages: tuple[Stage, ...] = ((1, 16, 1, 1), (4, 24, 1, 2), (4, 32, 1, 2), (4, 64, 1, 2))
    series_channels: tuple[int, ...] = (32, 64)  # series encoder conv widths
    hidden: int = 64  # H: hidden size of the stage-1 LSTMs and the MAR cells
    attention_dim: int = 64  # size of u_t and u_w (eq. 2.3)
    dropout: float = 0.3  # before each linear classifier C^v, C_M^v
    modality_dropout: float = 0.2  # train-time P(zero one modality of a sample), stage 2
    stage1_fraction: float = 0.5  # share of the training epochs given to stage 1
    # stage 2's cells: every modality aided by the others (the paper), only `mar_target`
    # aided ("one_way", Table 2's "w/o RGB"/"w/o Depth") or plain LSTMs ("none", "w/o MAR")
    mar: Literal["mutual", "one_way", "none"] = "mutual"
    mar_target: int = 0  # the modality (manifest index) whose cell is aided when mar="one_way"
    fusion: Literal["correlative", "average"] = "correlative"  # eq. 2.13-2.14, or mean of the Y_M^v

    components: ClassVar[dict[str, tuple[str, ...]]] = {
        "mutual MAR + correlative fusion (paper)": (),
        "without MAR": ("mar=none",),  # Table 2 "CAM w/o MAR"
        "one-directional MAR, modality 0 aided": ("mar=one_way", "mar_target=0"),
        "one-directional MAR, modality 1 aided": ("mar=one_way", "mar_target=1"),
        "averaged instead of correlative fusion": ("fusion=average",),
    }

    def __post_init__(self) -> None:
        check_shapes(self.input_shapes)
        M = len(self.input_shapes)
        assert 0 <= self.mar_target < M, f"mar_target must be a modality index in [0, {M}), got {self.mar_target}"
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        assert self.feature_dim >= 1 and self.hidden >= 1 and self.attention_dim >= 1, (
            f"feature_dim, hidden, attention_dim must be >= 1, got {self.feature_dim}, {self.hidden}, {self.attention_dim}"
        )
        self.check_dropouts()
        assert 0.0 < self.stage1_fraction < 1.0, f"stage1_fraction must be in (0, 1), got {self.stage1_fraction}"

    @classmethod
    def tiny(cls, **overrides: Any) -> "CAMConfig":
        """Test preset: an image and a series modality, N=3, small sizes."""
        cfg: dict[str, Any] = dict(
            input_shapes=((3, 3, 16, 16), (3, 4, 8)),
            num_classes=4,
            feature_dim=16,
            width=0.25,
            image_stages=((1, 8, 1, 1), (2, 16, 1, 2)),
            series_channels=(8, 16),
            hidden=16,
            attention_dim=8,
        )
        cfg.update(overrides)
        return cls.from_dict(cfg)

    def fusion_pairs(self) -> list[tuple[int, int]]:
        """The (u, v) of eq. 2.13's correlative matrices: every u < v; (0, 0) for one modality."""
        return list(itertools.combinations(range(self.num_modalities), 2)) or [(0, 0)]


class TemporalAttention(nn.Module):
    """Eq. 2.3: (B, T, H) -> r (B, H) and the attention distribution z (B, T)."""

    def __init__(self, hidden: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(hidden, attention_dim)  # W_w, b_w
        self.context = nn.Linear(attention_dim, 1, bias=False)  # u_w

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = h.shape
        z = torch.softmax(self.context(torch.tanh(self.proj(h))).flatten(1), dim=-1)  # (B, T), last axis
        return torch.bmm(z.reshape(B, 1, T), h).flatten(1), z  # bmm: a matmul would add an expand


def normalise_attention(z: torch.Tensor) -> torch.Tensor:
    """Eq. 2.9 over M modalities: (B, M, T) -> z_t^v / sum_u z_t^u. A step where every
    modality is missing (all z = 0) gets all-zero weights instead of 0/0."""
    return z / z.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _step(x: torch.Tensor, t: int) -> torch.Tensor:
    """(B, T, F) -> step t, (B, F); a slice and a reshape, which XNNPACK delegates (a select it does not)."""
    return x[:, t : t + 1].flatten(1)


class Collaborator(nn.Module):
    """G_{u->v} of eq. 2.7: sigmoid(W_uv x_t^u + W_v^u h_{t-1}^v). Like `LSTMCell`, the input
    projection is applied to the whole sequence x^u by the caller, before the loop."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.input_proj = nn.Linear(input_size, hidden)  # W_uv (and a bias)
        self.hidden_proj = nn.Linear(hidden, hidden, bias=False)  # W_v^u

    def gate(self, xp: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """xp: W_uv x_t^u + b, (B, H); h: h_{t-1}^v, None for the zero initial state."""
        return torch.sigmoid(xp if h is None else xp + self.hidden_proj(h))


class MutualAidRNN(nn.Module):
    """M LSTMs whose cell states collaborate (eqs. 2.6-2.10), unrolled over the T steps.
    `collaborators[i]` is G_{u->v} for (u, v) = `pairs[i]`, every ordered pair u != v with
    v among `aided` (default: all, the paper's mutual aid); a cell not aided is a plain
    LSTM (c'' = c)."""

    def __init__(self, input_sizes: list[int], hidden: int, aided: tuple[int, ...] | None = None):
        super().__init__()
        M = len(input_sizes)
        self.aided = tuple(range(M)) if aided is None else aided
        self.cells = nn.ModuleList(LSTMCell(d, hidden) for d in input_sizes)  # E_M^v, eq. 2.6
        self.pairs = [(u, v) for v in self.aided for u in range(M) if u != v]
        self.collaborators = nn.ModuleList(Collaborator(input_sizes[u], hidden) for u, _ in self.pairs)

    def forward(self, xs: list[torch.Tensor], z: torch.Tensor) -> list[torch.Tensor]:
        """xs: M sequences (B, T, d_v); z: attention (B, M, T), zero where a modality is
        missing. Returns the hidden sequences H_M^v, each (B, T, H)."""
        M, T = len(xs), z.shape[2]
        w = normalise_attention(z).transpose(1, 2)  # (B, T, M), eq. 2.9
        xp = [cell.input_proj(x) for cell, x in zip(self.cells, xs)]  # (B, T, 4H), all steps at once
        gx = [g.input_proj(xs[u]) for g, (u, _) in zip(self.collaborators, self.pairs)]  # (B, T, H)
        h: list[torch.Tensor | None] = [None] * M  # None: the zero initial state
        c: list[torch.Tensor | None] = [None] * M
        outs: list[list[torch.Tensor]] = [[] for _ in range(M)]
        for t in range(T):
            wt = _step(w, t)  # (B, M)
            new_h, new_c = [], []
            for v in range(M):
                hv, cv = self.cells[v].step(_step(xp[v], t), h[v], c[v])  # eq. 2.6
                if v not in self.aided:  # a plain LSTM cell (the ablations without mutual aid)
                    new_h.append(hv)
                    new_c.append(cv)
                    outs[v].append(hv)
                    continue
                # eqs. 2.8, 2.10: c'' = z'^v c + sum_u z'^u (G_{u->v} * c) = c * (z'^v + sum_u z'^u G_{u->v})
                mix = wt[:, v : v + 1]
                for i, (u, target) in enumerate(self.pairs):
                    if target == v:
                        mix = mix + wt[:, u : u + 1] * self.collaborators[i].gate(_step(gx[i], t), h[v])  # eq. 2.7
                new_h.append(hv)
                new_c.append(cv * mix)  # c''_t^v: the state step t + 1 continues from
                outs[v].append(hv)
            h, c = new_h, new_c
        return [torch.stack(o, dim=1) for o in outs]


def _classifier(config: CAMConfig) -> nn.Module:
    return nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden, config.num_classes))


class ModalitySpecificAttention(nn.Module):
    """Stage 1 (eq. 2.4): per modality an encoder E^v (segment CNN + LSTM), attention Q^v, classifier C^v."""

    def __init__(self, config: CAMConfig):
        super().__init__()
        cfg = config
        self.encoders = nn.ModuleList(
            SegmentEncoder(s, cfg.feature_dim, width=cfg.width, stages=cfg.image_stages, series_channels=cfg.series_channels)
            for s in cfg.input_shapes
        )
        self.lstms = nn.ModuleList(LSTM(cfg.feature_dim, cfg.hidden) for _ in cfg.input_shapes)
        self.attention = nn.ModuleList(TemporalAttention(cfg.hidden, cfg.attention_dim) for _ in cfg.input_shapes)
        self.classifiers = nn.ModuleList(_classifier(cfg) for _ in cfg.input_shapes)

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Per-step features X^v (M x (B, N, d)), attention Z (B, M, N), representations r (B, M, H)."""
        feats = [enc(x) for enc, x in zip(self.encoders, inputs)]
        rz = [att(lstm(f)) for lstm, att, f in zip(self.lstms, self.attention, feats)]
        return feats, torch.stack([z for _, z in rz], dim=1), torch.stack([r for r, _ in rz], dim=1)

    def logits(self, r: torch.Tensor) -> torch.Tensor:
        """Y_a^v for every modality: (B, M, H) -> (B, M, K)."""
        return torch.stack([clf(r[:, v]) for v, clf in enumerate(self.classifiers)], dim=1)


class Collaboration(nn.Module):
    """Stage 2: MAR (eqs. 2.6-2.10), attention Q_M^v and classifier C_M^v (eq. 2.11), fusion C^f (eq. 2.13-2.14)."""

    def __init__(self, config: CAMConfig):
        super().__init__()
        cfg = config
        aided = {"mutual": None, "one_way": (cfg.mar_target,), "none": ()}[cfg.mar]
        self.mar = MutualAidRNN([cfg.feature_dim] * cfg.num_modalities, cfg.hidden, aided)
        self.attention = nn.ModuleList(TemporalAttention(cfg.hidden, cfg.attention_dim) for _ in cfg.input_shapes)
        self.classifiers = nn.ModuleList(_classifier(cfg) for _ in cfg.input_shapes)
        self.pairs = cfg.fusion_pairs()
        # C^f; None for the averaged-logits ablation
        self.fusion = nn.Linear(len(self.pairs) * cfg.num_classes**2, cfg.num_classes) if cfg.fusion == "correlative" else None

    def forward(self, feats: list[torch.Tensor], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality logits Y_M^v (B, M, K) and attention Z_M (B, M, N)."""
        hs = self.mar(feats, z)
        rz = [att(h) for att, h in zip(self.attention, hs)]
        logits = torch.stack([clf(r) for clf, (r, _) in zip(self.classifiers, rz)], dim=1)
        return logits, torch.stack([zm for _, zm in rz], dim=1)

    def fuse(self, logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Eqs. 2.13-2.14: (B, M, K) logits, (B, M) presence -> fused logits (B, K).
        A missing modality's prediction is the uniform distribution. With fusion="average":
        the mean of the present modalities' logits (zeros if none is present)."""
        if self.fusion is None:
            return (logits * present[:, :, None]).sum(dim=1) / present.sum(dim=1, keepdim=True).clamp(min=1.0)
        p = torch.softmax(logits * present[:, :, None], dim=-1)  # zeroed logits: uniform p for a missing modality
        # outer products as matmuls: LiteRT's int8 softmax needs its fixed output scale, which
        # a consuming int8 multiply would override (the converter then rejects the model)
        d = [torch.bmm(p[:, u : u + 1].transpose(1, 2), p[:, v : v + 1]).flatten(1) for u, v in self.pairs]  # D_uv, (B, K*K)
        return self.fusion(torch.cat(d, dim=1))


class CAM(nn.Module):
    """CAM: attention LSTMs per modality (stage 1), Mutual-Aid RNN + correlative late fusion (stage 2)."""

    def __init__(self, config: CAMConfig):
        super().__init__()
        self.config = config
        self.stage1 = ModalitySpecificAttention(config)
        self.stage2 = Collaboration(config)
        self.stage: str | None = None  # None: one-stage training, nothing frozen

    # -- training stages ---------------------------------------------------------------
    def training_stages(self, epochs: int) -> list[tuple[str, int]]:
        """Stage 1 gets `stage1_fraction` of the epochs; each stage gets at least one."""
        e1 = min(max(1, round(epochs * self.config.stage1_fraction)), max(1, epochs - 1))
        return [("stage1", e1), ("stage2", max(1, epochs - e1))]

    def set_training_stage(self, name: str) -> None:
        """Train only that stage's parameters (the paper's two-stage schedule)."""
        assert name in STAGES, f"unknown training stage {name!r} (known: {', '.join(STAGES)})"
        self.stage = name
        self.stage1.requires_grad_(name == "stage1")
        self.stage2.requires_grad_(name == "stage2")
        self.train(self.training)

    def train(self, mode: bool = True) -> "CAM":
        super().train(mode)
        if self.stage == "stage2":
            self.stage1.eval()  # frozen: BatchNorm statistics and dropout stay as stage 1 left them
        return self

    # -- forward -----------------------------------------------------------------------
    def collaborate(self, inputs: tuple[torch.Tensor, ...], feats: list[torch.Tensor], z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 2 from stage 1's X^v and Z: per-modality logits (B, M, K), fused logits
        (B, K) and which modalities were present (B, M), after modality dropout."""
        cfg = self.config
        seg_present = torch.stack([presence(x, keep_dims=2) for x in inputs], dim=1)  # (B, M, N)
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(z.shape[0], cfg.num_modalities, cfg.modality_dropout, z.device, z.dtype)  # (B, M)
            feats = [f * keep[:, v, None, None] for v, f in enumerate(feats)]
            seg_present = seg_present * keep[:, :, None]
        # zero attention where absent; a select rather than z * presence so that no int8 op
        # consumes the softmax output (see `Collaboration.fuse`)
        logits, _ = self.stage2(feats, torch.where(seg_present > 0, z, 0.0))
        present = seg_present.amax(dim=2)  # (B, M): any segment of the modality there
        return logits, self.stage2.fuse(logits, present), present

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """M tensors (B, N, C, H, W) or (B, N, C, K), in config order -> logits (B, num_classes)."""
        assert len(inputs) == self.config.num_modalities, f"expected {self.config.num_modalities} inputs, got {len(inputs)}"
        feats, z, _ = self.stage1(inputs)
        return self.collaborate(inputs, feats, z)[1]

    def training_loss(self, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor, ctx: Any) -> torch.Tensor:
        """Stage 1: mean_v L_a^v (eq. 2.5). Stage 2: mean_v L_M^v (eq. 2.12, over the samples
        where v was present) + L_f (eq. 2.14). No stage set: both."""
        feats, z, r = self.stage1(inputs)
        losses = []
        if self.stage != "stage2":
            logits_a = self.stage1.logits(r)
            losses.append(torch.stack([ctx.loss_fn(logits_a[:, v], labels) for v in range(logits_a.shape[1])]).mean())
        if self.stage != "stage1":
            logits_m, fused, present = self.collaborate(inputs, feats, z)
            smoothing = getattr(ctx.loss_fn, "label_smoothing", 0.0)
            ce = torch.stack([F.cross_entropy(logits_m[:, v], labels, reduction="none", label_smoothing=smoothing)
                              for v in range(logits_m.shape[1])], dim=1)  # (B, M)
            loss_m = ((ce * present).sum(dim=0) / present.sum(dim=0).clamp(min=1.0)).mean()
            losses += [loss_m, ctx.loss_fn(fused, labels)]
        return torch.stack(losses).sum()

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs with the config's shapes: the same ones export, tests and benchmarks use."""
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


@register_model("cam", CAMConfig)
def cam(**cfg: Any) -> CAM:
    return CAM(CAMConfig.from_dict(cfg))


@register_model("cam_tiny", CAMConfig)
def cam_tiny(**cfg: Any) -> CAM:
    return CAM(CAMConfig.tiny(**cfg))
