"""M-Mixer / MCU (models/mmixer.py): the equations of sec. 3, any number of modalities, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import edgehar.models.mmixer  # noqa: F401  (registers mmixer, mmixer_tiny)
from edgehar.models import create_model, list_models
from edgehar.models.mmixer import MCU, LayerNorm, MMixer, MMixerConfig

IMAGE, SERIES, SERIES2 = (3, 3, 16, 16), (3, 4, 8), (3, 6, 8)
MIXES = {
    "image": (IMAGE,),
    "series": (SERIES,),
    "image+series": (IMAGE, SERIES),
    "series+image+series": (SERIES, IMAGE, SERIES2),
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(*shapes: tuple[int, ...], **overrides) -> MMixer:
    if shapes:
        overrides["input_shapes"] = shapes
    return create_model("mmixer_tiny", **overrides)


def warmed(model: MMixer) -> MMixer:
    """Eval mode after one train-mode pass, so BN running stats are not the identity."""
    with torch.no_grad():
        model.train()(*model.example_inputs(batch=8))
    return model.eval()


def randomise_layer_norms(module: nn.Module) -> None:
    """Non-trivial LN gains and biases, so where each LN sits changes the numbers."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.3)


def contents(model: MMixer, inputs: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(c^i, g^i) per modality, eq. 2 and 3."""
    c = [model.action_content(f) for f in model.segment_features(*inputs)]
    return c, model.cross_contents(c)


def reference_mcu(mcu: MCU, f: torch.Tensor, g: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Eq. 7-14 as printed, one step at a time, with the MCU's weights: [(s, r, z, h)] per step."""

    def ln(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)

    w_s = torch.cat([mcu.w_sf.weight, mcu.w_sg.weight], dim=1)  # W_s acting on [f_bar || g_bar]
    g_bar = torch.tanh(ln(mcu.ln_g, g @ mcu.w_g.weight.T))  # eq. 8
    h = torch.zeros(f.shape[0], mcu.hidden)
    out = []
    for t in range(f.shape[1]):
        f_bar = torch.tanh(ln(mcu.ln_f, f[:, t] @ mcu.w_f.weight.T))  # eq. 7
        s = torch.sigmoid(ln(mcu.ln_s, torch.cat([f_bar, g_bar], dim=-1) @ w_s.T))  # eq. 9
        f_tilde = s * f_bar + (1 - s) * g_bar  # eq. 10
        r = torch.sigmoid(ln(mcu.ln_r, (f_tilde + h) @ mcu.w_r.weight.T))  # eq. 11
        z = torch.sigmoid(ln(mcu.ln_z, (f_tilde + h) @ mcu.w_z.weight.T))  # eq. 12
        h_tilde = torch.tanh(ln(mcu.ln_h, (r * h + f_tilde) @ mcu.w_h.weight.T))  # eq. 14
        h = z * h_tilde + (1 - z) * h  # eq. 13
        out.append((s, r, z, h))
    return out


# -- registry and config -------------------------------------------------------------


def test_both_presets_are_registered_and_the_config_validates() -> None:
    assert {"mmixer", "mmixer_tiny"} <= set(list_models("mmixer*"))
    assert MMixerConfig.input_recipe.sensor_type == "series"
    with pytest.raises(AssertionError, match="same number of segments"):
        MMixerConfig(input_shapes=((3, 3, 16, 16), (2, 4, 8)))
    with pytest.raises(AssertionError, match="hidden must be >= 1"):
        MMixerConfig(hidden=0)


# -- shapes, gradients, export, for 1 / 2 / 3 modalities ----------------------------------


@pytest.mark.parametrize("mix", MIXES)
def test_any_number_and_mix_of_modalities(mix: str) -> None:
    model = tiny(*MIXES[mix]).eval()
    M, cfg = len(MIXES[mix]), model.config
    logits = model(*model.example_inputs(batch=3))
    assert logits.shape == (3, cfg.num_classes) and torch.isfinite(logits).all()
    # W_g reads (M-1) contents, one for M = 1 (MCU-self); W_p reads M hidden states (eq. 5)
    assert all(mcu.w_g.in_features == max(M - 1, 1) * cfg.feature_dim for mcu in model.mcus)
    assert model.classifier.in_features == M * cfg.hidden


@pytest.mark.parametrize("mix", ["image", "series+image+series"])
def test_gradients_reach_every_parameter(mix: str) -> None:
    model = tiny(*MIXES[mix], modality_dropout=0.0).train()
    target = torch.arange(8) % model.config.num_classes
    F.cross_entropy(model(*model.example_inputs(batch=8)), target).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reached {dead}"


def test_torch_export_matches_eager() -> None:
    model = warmed(tiny((2, 3, 16, 16), (2, 4, 8)))  # N = 2: the unrolled graph, and its export time, grow with N
    program = torch.export.export(model, model.example_inputs())
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not ops & {"aten.layer_norm.default", "aten.select.int", "aten.zeros.default", "aten.expand.default"}
    with torch.no_grad():
        for inputs in (model.example_inputs(), model.example_inputs()):  # not specialised to the example
            torch.testing.assert_close(program.module()(*inputs), model(*inputs), atol=1e-5, rtol=0)


# -- the MCU (eq. 7-14) --------------------------------------------------------------


def test_layer_norm_equals_torch_layer_norm() -> None:
    norm = LayerNorm(16)
    randomise_layer_norms(norm)
    for x in (torch.randn(5, 16), 100 * torch.randn(2, 3, 16)):
        torch.testing.assert_close(norm(x), F.layer_norm(x, (16,), norm.weight, norm.bias, norm.eps))
    assert set(norm.state_dict()) == set(nn.LayerNorm(16).state_dict())


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_mcu_follows_equations_7_to_14(num_modalities: int) -> None:
    d_f, d_h, T = 12, 16, 5
    mcu = MCU(d_f, (num_modalities - 1) * d_f, d_h)
    randomise_layer_norms(mcu)
    f, g = torch.randn(4, T, d_f), torch.randn(4, (num_modalities - 1) * d_f)
    expected = reference_mcu(mcu, f, g)
    _, s = mcu.mix(f, g)
    for t, step in enumerate(mcu.unroll(f, g)):
        e_s, e_r, e_z, e_h = expected[t]
        torch.testing.assert_close(s[:, t], e_s)
        torch.testing.assert_close(step.r.flatten(1), e_r)
        torch.testing.assert_close(step.z.flatten(1), e_z)
        torch.testing.assert_close(step.h.flatten(1), e_h)
    torch.testing.assert_close(mcu(f, g), expected[-1][3])


def test_layer_norm_right_after_the_projections_makes_input_scale_irrelevant() -> None:
    # eq. 7 / 8: LN directly on the bias-free W_f f and W_g g, so a positive rescaling of f or
    # g changes nothing; it would with no LN, or with LN after the tanh
    mcu = MCU(12, 24, 16)
    randomise_layer_norms(mcu)
    f, g = torch.randn(4, 5, 12), torch.randn(4, 24)
    h = mcu(f, g)
    for a in (0.5, 4.0):
        torch.testing.assert_close(mcu(a * f, g), h, atol=1e-4, rtol=0)
        torch.testing.assert_close(mcu(f, a * g), h, atol=1e-4, rtol=0)
    assert not torch.allclose(mcu(f, -g), h, atol=1e-3), "g does not reach the MCU"


def test_gates_and_scores_lie_in_the_open_unit_interval() -> None:
    mcu = MCU(12, 24, 16)
    f, g = 1e3 * torch.randn(8, 6, 12), 1e3 * torch.randn(8, 24)  # huge inputs: LN keeps the gates unsaturated
    f_tilde, s = mcu.mix(f, g)
    steps = mcu.unroll(f, g)
    for gate in [s] + [st.r for st in steps] + [st.z for st in steps]:
        assert ((gate > 0) & (gate < 1)).all()
    # eq. 10 and 13 are convex combinations of tanh outputs (and h_0 = 0): states stay in (-1, 1)
    assert (f_tilde.abs() < 1).all() and all((st.h.abs() < 1).all() for st in steps)


# -- the network (eq. 2, 3, 5) ---------------------------------------------------------


@pytest.mark.parametrize("mix", ["image+series", "series+image+series"])
def test_cross_modality_content_comes_from_the_other_modalities(mix: str) -> None:
    model = warmed(tiny(*MIXES[mix]))
    inputs = model.example_inputs(batch=2)
    M = len(inputs)
    c, g = contents(model, inputs)
    for j in range(M):
        changed = tuple(torch.randn_like(x) if k == j else x for k, x in enumerate(inputs))
        c2, g2 = contents(model, changed)
        for i in range(M):
            if i == j:  # changing only modality i leaves g^i alone
                torch.testing.assert_close(g2[i], g[i])
            else:  # changing any other modality j changes g^i, in c^j's block (eq. 3, modality order)
                assert not torch.allclose(g2[i], g[i]), f"g^{i} ignores modality {j}"
                block = (j if j < i else j - 1) * model.config.feature_dim
                torch.testing.assert_close(g2[i][:, block : block + model.config.feature_dim], c2[j])
    if M == 2:  # "if only two modalities are used, g^i is equal to c^j"
        torch.testing.assert_close(g[0], c[1])
        torch.testing.assert_close(g[1], c[0])


def test_action_content_is_the_average_over_segments() -> None:
    f = torch.randn(3, 5, 7)
    torch.testing.assert_close(tiny().action_content(f), f.mean(dim=1))


def test_one_modality_is_mcu_self() -> None:
    model = warmed(tiny(SERIES))
    c, g = contents(model, model.example_inputs(batch=2))
    assert len(g) == 1
    torch.testing.assert_close(g[0], c[0])


def test_classifier_reads_the_concatenated_final_states() -> None:
    model = warmed(tiny(*MIXES["series+image+series"]))
    inputs = model.example_inputs(batch=3)
    seen = []
    model.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    logits = model(*inputs)
    f = model.segment_features(*inputs)
    _, g = contents(model, inputs)
    h_last = [mcu.unroll(fi, gi)[-1].h.flatten(1) for mcu, fi, gi in zip(model.mcus, f, g)]
    torch.testing.assert_close(seen[0], torch.cat(h_last, dim=1))  # [h^1_N || h^2_N || h^3_N]
    torch.testing.assert_close(logits, seen[0] @ model.classifier.weight.T + model.classifier.bias)


def test_the_recurrence_follows_segment_order_and_keeps_samples_apart() -> None:
    model = warmed(tiny(*MIXES["image+series"]))
    inputs = model.example_inputs(batch=3)
    logits = model(*inputs)
    for b in range(3):
        torch.testing.assert_close(model(*(x[b : b + 1] for x in inputs)), logits[b : b + 1])
    reversed_time = model(*(x.flip(1) for x in inputs))
    assert not torch.allclose(reversed_time, logits, atol=1e-4), "segment order does not matter: no recurrence"


# -- missing modalities ------------------------------------------------------------------


def test_modality_dropout_zeroes_whole_modalities_in_train_mode_only() -> None:
    # modality_dropout=1 drops every modality, then keeps one per sample at random
    model = tiny(*MIXES["series+image+series"], modality_dropout=1.0)
    inputs = model.example_inputs(batch=32)
    alive = torch.stack([f.abs().amax(dim=(1, 2)) > 0 for f in model.train().segment_features(*inputs)], dim=1)
    assert (alive.sum(dim=1) == 1).all(), "train mode must keep exactly one whole modality per sample here"
    assert alive.any(dim=0).all(), "the kept modality should vary across samples"
    model.eval()
    assert all((f.abs().amax(dim=(1, 2)) > 0).all() for f in model.segment_features(*inputs)), "eval dropped one"
    torch.testing.assert_close(model(*inputs), model(*inputs))


@pytest.mark.parametrize("mix", ["series", "series+image+series"])
def test_all_zero_input_is_a_missing_modality(mix: str) -> None:
    model = warmed(tiny(*MIXES[mix]))
    inputs = model.example_inputs(batch=2)
    missing = (torch.zeros_like(inputs[0]),) + inputs[1:]
    f, f_missing = model.segment_features(*inputs), model.segment_features(*missing)
    assert (f_missing[0] == 0).all(), "a zero (missing) stream must give zero features"
    for a, b in zip(f[1:], f_missing[1:]):
        torch.testing.assert_close(a, b)
    _, g = contents(model, missing)
    d = model.config.feature_dim
    for i in range(1, len(inputs)):  # c^0 = 0 fills modality 0's block of every other g^i
        assert (g[i][:, :d] == 0).all()
    assert torch.isfinite(model(*missing)).all()


def test_wrong_number_of_inputs_is_reported() -> None:
    model = tiny().eval()
    with pytest.raises(AssertionError, match="expected 2 inputs"):
        model(model.example_inputs()[0])
