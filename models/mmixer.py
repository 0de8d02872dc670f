"""M-Mixer: Modality Mixer network with the Multi-modal Contextualization Unit (Lee et al.).

Data flow, for M modalities each sampled into the same N segments (the paper's T steps):

    x^i: (B, N, C_i, H_i, W_i) or (B, N, C_i, K)
    eq. 1   f^i_{1:N} = E^i(x^i)                        SegmentEncoder      (B, N, d_f)
    eq. 2   c^i = ASO(f^i_{1:N}) = mean over N          average pooling     (B, d_f)
    eq. 3   g^i = ||_{j != i} c^j                       cross-modality content  (B, (M-1)*d_f)
    eq. 4   h^i_t = MCU^i(f^i_t, g^i), t = 1..N         `MCU`, unrolled     (B, d_h)
    eq. 5   logits = W_p (||_i h^i_N) + b_p             `classifier`        (B, num_classes)

MCU^i (sec. 3.2), one per modality, bias-free `nn.Linear`s each followed by LayerNorm:

    eq. 7   f_bar_t = tanh(LN(W_f f_t))                 `MCU.mix`, all N steps at once
    eq. 8   g_bar   = tanh(LN(W_g g))
    eq. 9   s_t     = sigmoid(LN(W_s [f_bar_t || g_bar]))
    eq. 10  f~_t    = s_t * f_bar_t + (1 - s_t) * g_bar
    eq. 11  r_t     = sigmoid(LN(W_r (f~_t + h_{t-1})))  `MCU.step`, the recurrence
    eq. 12  z_t     = sigmoid(LN(W_z (f~_t + h_{t-1})))
    eq. 14  h~_t    = tanh(LN(W_h (r_t * h_{t-1} + f~_t)))
    eq. 13  h_t     = z_t * h~_t + (1 - z_t) * h_{t-1},  h_0 = 0

Eq. 7-10 do not depend on h, so they run once over the whole (B, N, .) sequence; only
eq. 11-14 are unrolled over the N steps (static N, nn.Linear only: one XNNPACK piece,
quantizable; docs/platform-notes.md, "ExecuTorch (XNNPACK)"). The model returns logits:
eq. 5's softmax is left to the loss and the runtime, as in every family here.

Choices where the paper is silent or where we differ:
- Inputs. The paper's E^i is an ImageNet ResNet-18 per video frame. Here E^i is the
  project's `SegmentEncoder`, trained from scratch: camera frames through the small
  MobileNetV2, sensor windows as raw "series" (N = 8 segments of K = 32 samples,
  calibrated per-channel ranges) through the 1-D CNN. Series, not GAF: a recurrent unit
  wants a sequence of steps, so N is 8 rather than MMTSA's 3, and eight GAF images per
  sensor through an image CNN would cost eight times MMTSA's sensor encoders; "range"
  scaling keeps amplitude, which per-window rescaling throws away.
- Sizes: d_f = d_c = `feature_dim` (ASO is an average, it keeps the width),
  d_h = `hidden` (the paper: 512; 64 here for a 2-core CPU).
- "We exclude a bias term": every W in eq. 7-14 is `Linear(bias=False)`. LayerNorm keeps
  its elementwise affine (gain and bias), the usual LN; the paper does not say.
- Written for the export, same values as the equations: LayerNorm as mean / variance /
  rsqrt with 4-D means over the last axis (XNNPACK has no layer norm; `native_layer_norm`
  would run on portable kernels 4 times per step per modality), same parameters and
  state-dict keys as `nn.LayerNorm`; ASO as a 4-D mean too; eq. 9's W_s split by columns
  (W_sf f_bar + W_sg g_bar, so g_bar is projected once, not copied to every step); eq. 10
  and 13 as `b + w * (a - b)`, one op fewer than `w * a + (1 - w) * b`; h_0 a constant
  zero buffer; steps sliced t:t+1. With these the MCUs add no op outside XNNPACK.
- Image encoder: SegmentEncoder's MobileNetV2 with the first stage strided (`stages`),
  ~5x faster to train on 64x64 frames; the paper's per-frame ResNet is out of reach here.
- Dropout (`dropout`) on the concatenated h_N before W_p; the paper states none.
- Modalities. Any M >= 2 as the paper (eq. 3: g^i concatenates the others' contents in
  manifest order, W_g is ((M-1)*d_c, d_h)). With M = 1 there is no other modality: g^1 is
  the modality's own content c^1, i.e. the paper's "MCU-self" ablation (sec. 4.3.4), and
  the model is a single LayerNorm-gated recurrent unit over that modality's segments
  contextualised by its own average.
- Missing modalities. An all-zero input (a dropped stream) gets all-zero segment
  features from the encoder's zero gate, so its c^j is zero and its block of every g^i
  (i != j) is zero; its own MCU still runs (on LN's bias for f) and its h_N carries the
  other modalities' content. Modality dropout (training only, `modality_dropout`) zeroes
  whole f^j_{1:N} of random samples with `modality_keep_mask` before the ASO: exactly the
  features a dropped stream produces, so the model trains for the run-time condition.
  No rescaling of the kept modalities (the goal is robustness, not regularisation).

Component ablation (the paper's sec. 4.3, `components` below; defaults = the full model):
- `aso`: "mean" (eq. 2 as used), "max" (max over the segments) or "gru" (a GRU over
  f^i_{1:N}, hidden d_f so c^i keeps its width, last state), Table 1.
- `rnn`: "lstm" / "gru" replace each MCU by an LSTM / GRU over f^i_{1:N} with no action
  content at all, h_N concatenated as before (Table 2). No ASO runs then.
- `content="self"`: g^i = c^i, MCU-self (Table 4, experiment I of Table 3).
- `mix="concat"`: experiment II's "simple concatenation" instead of the cross-modality mix
  module: f~_t = W_c [f_t || g] = W_f f_t + W_g g, a linear map of the concatenation with
  no tanh, no integration score s_t (eq. 7-10 replaced). The paper gives no formula; this
  is the plainest reading, and W_c split by columns as eq. 9's W_s is.
- `layer_norm=False`: every LN of eq. 7-14 becomes the identity (experiment III).
Table 3's experiments I and II also turn LN off, so their rows set `layer_norm=false` too.
A dropped modality's features are zero; "max" keeps that zero, "gru" maps it to a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from torch import nn

from .backbone import Stage
from .encoders import SegmentEncoder, check_shapes
from .modality import modality_keep_mask
from .recurrent import GRU, LSTM
from .registry import SERIES_RECIPE, ConfigMixin, register_model

Shape = tuple[int, ...]  # (N, C, H, W) or (N, C, K), no batch axis


@dataclass
class MMixerConfig(ConfigMixin):
    input_recipe = SERIES_RECIPE

    # per-modality (N, C, H, W) images or (N, C, K) series, in the manifest's modality order
    input_shapes: tuple[Shape, ...] = ((8, 3, 64, 64), (8, 12, 32), (8, 6, 32))
    num_classes: int = 10  # K action classes, set from the manifest's labels
    feature_dim: int = 64  # d_f = d_c: per-segment feature length of each E^i
    hidden: int = 64  # d_h: MCU hidden state
    width: float = 0.5  # image encoder width multiplier
    # image encoder stages (t, c, n, s), same layout for every image modality (weights are not
    # shared). SegmentEncoder's default with the stride moved from the last stage to the first:
    # 64x64 frames are down to 16x16 after two stride-2 layers, ~2.4x fewer MACs, ~5x faster training
    stages: tuple[Stage, ...] = ((1, 16, 1, 2), (4, 24, 1, 2), (4, 32, 1, 2), (4, 64, 1, 1))
    dropout: float = 0.2  # on the concatenated h_N before the classifier
    modality_dropout: float = 0.2  # train-time P(zero one modality's features for a sample)
    # component switches (module doc, paper sec. 4.3); the defaults are the full M-Mixer
    aso: Literal["mean", "max", "gru"] = "mean"  # action summarizing operator, eq. 2 (Table 1)
    rnn: Literal["mcu", "lstm", "gru"] = "mcu"  # the recurrent unit per modality (Table 2)
    content: Literal["cross", "self"] = "cross"  # g^i: the others' contents, or its own (MCU-self)
    mix: Literal["gated", "concat"] = "gated"  # eq. 7-10's mix module, or a plain concatenation
    layer_norm: bool = True  # the LNs of eq. 7-14

    components: ClassVar[dict[str, tuple[str, ...]]] = {
        "MCU (paper, Table 3 IV)": (),
        "ASO max pooling": ("aso=max",),  # Table 1
        "ASO GRU": ("aso=gru",),
        "LSTM instead of MCU": ("rnn=lstm",),  # Table 2
        "GRU instead of MCU": ("rnn=gru",),
        "MCU-self": ("content=self",),  # Table 4
        "no layer norm (III)": ("layer_norm=false",),  # Table 3
        "concatenation instead of mix module, no LN (II)": ("mix=concat", "layer_norm=false"),
        "self content, no LN (I)": ("content=self", "layer_norm=false"),
    }

    def __post_init__(self) -> None:
        check_shapes(self.input_shapes)
        assert self.num_classes >= 2, f"num_classes must be >= 2, got {self.num_classes}"
        assert self.feature_dim >= 1, f"feature_dim must be >= 1, got {self.feature_dim}"
        assert self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}"
        self.check_dropouts()

    @classmethod
    def tiny(cls, **overrides: Any) -> "MMixerConfig":
        """Test preset: an image and a series modality, N=3, small sizes."""
        cfg: dict[str, Any] = dict(
            input_shapes=((3, 3, 16, 16), (3, 4, 8)),
            num_classes=4,
            feature_dim=16,
            hidden=16,
            width=0.25,
            stages=((1, 8, 1, 1), (2, 16, 1, 2)),
        )
        cfg.update(overrides)
        return cls.from_dict(cfg)

    @property
    def content_dim(self) -> int:
        """Length of g^i: (M-1) * d_c, or d_c for one modality or MCU-self."""
        others = 1 if self.content == "self" else max(self.num_modalities - 1, 1)
        return others * self.feature_dim


class LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` over the last axis, written with ops XNNPACK delegates: it has no layer
    norm and takes `mean` only over the last two axes of a 4-D tensor (keepdim), so rows are
    viewed as (rows, 1, 1, d). Same parameters, state dict and values as `nn.LayerNorm(d)`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, 1, 1, shape[-1])  # (rows, 1, 1, d)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt((x * x).mean(dim=(2, 3), keepdim=True) + self.eps)
        return (x * self.weight + self.bias).reshape(shape)


class MCUStep(NamedTuple):
    """One MCU time step, each (B, 1, d_h): the new hidden state h_t (eq. 13) and the reset
    and update gates r_t, z_t (eq. 11, 12). The integration scores s_t come from `MCU.mix`."""

    h: torch.Tensor
    r: torch.Tensor
    z: torch.Tensor


class MCU(nn.Module):
    """Multi-modal Contextualization Unit of one modality, eq. 7-14, unrolled over the steps."""

    def __init__(self, feature_dim: int, content_dim: int, hidden: int, mix: str = "gated", layer_norm: bool = True):
        super().__init__()
        self.hidden = hidden
        self.gated = mix == "gated"  # False: f~ = W_f f + W_g g, the concatenation ablation (module doc)

        def norm() -> nn.Module:
            return LayerNorm(hidden) if layer_norm else nn.Identity()

        self.w_f, self.ln_f = nn.Linear(feature_dim, hidden, bias=False), norm()  # eq. 7
        self.w_g, self.ln_g = nn.Linear(content_dim, hidden, bias=False), norm()  # eq. 8
        if self.gated:
            # eq. 9's W_s split by columns, W_s [f_bar || g_bar] = W_sf f_bar + W_sg g_bar: g_bar is
            # projected once per sequence instead of being copied to every step and concatenated
            self.w_sf, self.w_sg = nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden, bias=False)
            self.ln_s = norm()
        self.w_r, self.ln_r = nn.Linear(hidden, hidden, bias=False), norm()  # eq. 11
        self.w_z, self.ln_z = nn.Linear(hidden, hidden, bias=False), norm()  # eq. 12
        self.w_h, self.ln_h = nn.Linear(hidden, hidden, bias=False), norm()  # eq. 14
        # h_0 = 0 as a constant (broadcast over the batch): `zeros(B, ...)` would export as a
        # `full` op that XNNPACK does not take
        self.register_buffer("h0", torch.zeros(1, 1, hidden), persistent=False)

    def mix(self, f: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-modality mix module, eq. 7-10, for every step at once (none depends on h).

        f (B, T, d_f), g (B, d_g) -> supplemented features f~ (B, T, d_h), scores s (B, T, d_h).
        With mix="concat": f~ = W_f f + W_g g and s = 1/2 (nothing is scored).
        """
        if not self.gated:
            f_tilde = self.w_f(f) + self.w_g(g).reshape(-1, 1, self.hidden)  # W_c [f_t || g], (B, T, d_h)
            return f_tilde, torch.full_like(f_tilde, 0.5)
        f_bar = torch.tanh(self.ln_f(self.w_f(f)))  # (B, T, d_h), eq. 7
        g_bar = torch.tanh(self.ln_g(self.w_g(g))).reshape(-1, 1, self.hidden)  # (B, 1, d_h), eq. 8
        s = torch.sigmoid(self.ln_s(self.w_sf(f_bar) + self.w_sg(g_bar)))  # (B, T, d_h), eq. 9
        return g_bar + s * (f_bar - g_bar), s  # eq. 10

    def step(self, f_tilde: torch.Tensor, h: torch.Tensor) -> MCUStep:
        """Reset and update modules, eq. 11-14: f~_t, h_{t-1} (B, 1, d_h) -> h_t, r_t, z_t."""
        u = f_tilde + h
        r = torch.sigmoid(self.ln_r(self.w_r(u)))  # eq. 11
        z = torch.sigmoid(self.ln_z(self.w_z(u)))  # eq. 12
        h_tilde = torch.tanh(self.ln_h(self.w_h(r * h + f_tilde)))  # eq. 14
        return MCUStep(h + z * (h_tilde - h), r, z)  # eq. 13

    def unroll(self, f: torch.Tensor, g: torch.Tensor) -> list[MCUStep]:
        """Every step's state and gates: f (B, T, d_f), g (B, d_g) -> T `MCUStep`s."""
        f_tilde, _ = self.mix(f, g)
        h, steps = self.h0, []
        for t in range(f.shape[1]):  # a t:t+1 slice keeps (B, 1, d_h): a slice lowers, a select does not
            steps.append(self.step(f_tilde[:, t : t + 1], h))
            h = steps[-1].h
        return steps

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """h_T (B, d_h), eq. 4 at the last step."""
        return self.unroll(f, g)[-1].h.flatten(1)


def concat(xs: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat` over the last axis; one tensor passes through (a one-input cat exports as
    an op XNNPACK does not take)."""
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=-1)


class MMixer(nn.Module):
    """M-Mixer: one MCU per modality mixing in the other modalities' action content; classifier over h_T."""

    def __init__(self, config: MMixerConfig):
        super().__init__()
        self.config = config
        d_f, d_h = config.feature_dim, config.hidden
        self.encoders = nn.ModuleList(  # E^i, eq. 1
            SegmentEncoder(s, d_f, width=config.width, stages=config.stages) for s in config.input_shapes
        )
        M = config.num_modalities
        if config.rnn == "mcu":  # MCU^i
            self.mcus = nn.ModuleList(MCU(d_f, config.content_dim, d_h, config.mix, config.layer_norm) for _ in range(M))
        else:  # Table 2: a plain LSTM / GRU per modality, no action content
            rnn = LSTM if config.rnn == "lstm" else GRU
            self.mcus = nn.ModuleList(rnn(d_f, d_h) for _ in range(M))
        # ASO "gru": one GRU per modality summarising its segments into c^i (width d_f)
        self.aso = nn.ModuleList(GRU(d_f, d_f) for _ in range(M)) if config.aso == "gru" else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.num_modalities * d_h, config.num_classes)  # W_p, b_p, eq. 5

    def segment_features(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """f^i_{1:N} of eq. 1, one (B, N, d_f) per modality; modality dropout in training."""
        cfg = self.config
        assert len(inputs) == cfg.num_modalities, f"expected {cfg.num_modalities} inputs, got {len(inputs)}"
        f = [enc(x) for enc, x in zip(self.encoders, inputs)]
        if self.training and cfg.modality_dropout > 0:
            keep = modality_keep_mask(inputs[0].shape[0], cfg.num_modalities, cfg.modality_dropout,
                                      f[0].device, f[0].dtype)  # (B, M)
            f = [fi * keep[:, i, None, None] for i, fi in enumerate(f)]  # whole modalities, all segments
        return f

    def action_content(self, f: torch.Tensor, i: int = 0) -> torch.Tensor:
        """ASO, eq. 2, of modality i: (B, N, d_f) -> c (B, d_f); average pooling over the
        segments unless the config's `aso` says max pooling or a GRU."""
        if self.config.aso == "max":
            return f.amax(dim=1)
        if self.aso is not None:
            return self.aso[i](f)[:, -1]  # the GRU's last state
        # as a 4-D mean over the last two axes, (B, d_f, N, 1), the mean XNNPACK delegates
        return f.transpose(1, 2).unsqueeze(-1).mean(dim=(2, 3), keepdim=True).flatten(1)

    def cross_contents(self, c: list[torch.Tensor]) -> list[torch.Tensor]:
        """g^i of eq. 3 for each i: the other modalities' contents concatenated in modality
        order, (B, (M-1)*d_c); with one modality, or content="self", its own content c^i (MCU-self)."""
        if len(c) == 1 or self.config.content == "self":
            return c
        return [concat([cj for j, cj in enumerate(c) if j != i]) for i in range(len(c))]

    def final_states(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """h^i_N of every modality, each (B, d_h)."""
        f = self.segment_features(*inputs)
        if self.config.rnn != "mcu":  # Table 2: the sequence alone, no action content
            return [rnn(fi)[:, -1] for rnn, fi in zip(self.mcus, f)]
        g = self.cross_contents([self.action_content(fi, i) for i, fi in enumerate(f)])
        return [mcu(fi, gi) for mcu, fi, gi in zip(self.mcus, f, g)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """M tensors (B, N, ...) in config order -> logits (B, num_classes), eq. 5 before softmax."""
        h = concat(self.final_states(*inputs))  # ||_i h^i_N, (B, M*d_h)
        return self.classifier(self.dropout(h))

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs with the config's shapes: the same ones export, tests and benchmarks use."""
        return tuple(torch.randn(batch, *s) for s in self.config.input_shapes)


@register_model("mmixer", MMixerConfig)
def mmixer(**cfg: Any) -> MMixer:
    return MMixer(MMixerConfig.from_dict(cfg))


@register_model("mmixer_tiny", MMixerConfig)
def mmixer_tiny(**cfg: Any) -> MMixer:
    return MMixer(MMixerConfig.tiny(**cfg))
