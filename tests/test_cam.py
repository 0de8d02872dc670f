"""CAM with the Mutual-Aid RNN (models/cam.py): shapes, the paper's equations, two-stage training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import edgehar.models.cam  # noqa: F401  (registers cam, cam_tiny)
from edgehar.models import create_model
from edgehar.models.cam import CAM, CAMConfig, MutualAidRNN, normalise_attention
from edgehar.models.recurrent import LSTM
from edgehar.models.train import LossContext

IMG, SER, SER2 = (3, 3, 16, 16), (3, 4, 8), (3, 2, 8)  # one image and two series modalities, N = 3


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(*shapes: tuple[int, ...], **overrides) -> CAM:
    return create_model("cam_tiny", **({"input_shapes": shapes} if shapes else {}), **overrides)


def ctx(k: int) -> LossContext:
    return LossContext(nn.CrossEntropyLoss(label_smoothing=0.05), torch.ones(k))


def plain_lstm(cell: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The hidden sequence of an ordinary LSTM with `cell`'s weights."""
    lstm = LSTM(cell.input_proj.in_features, cell.hidden_size)
    lstm.forward_cell = cell
    return lstm(x)


# -- shapes, any number of modalities --------------------------------------------------


@pytest.mark.parametrize("shapes", [(IMG,), (SER,), (IMG, SER), (SER, IMG), (IMG, SER, SER2)])
def test_any_mix_of_modalities_gives_finite_logits_and_exports(shapes) -> None:
    model = tiny(*shapes).eval()
    inputs = model.example_inputs(batch=3)
    logits = model(*inputs)
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()
    M = len(shapes)
    assert model.stage2.fusion.in_features == max(1, M * (M - 1) // 2) * 4 * 4  # one K x K matrix per pair
    assert len(model.stage2.mar.collaborators) == M * (M - 1)  # one G_{u->v} per ordered pair
    one = tuple(x[:1] for x in inputs)
    program = torch.export.export(model, one)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*one), model(*one), atol=1e-5, rtol=0)
        other = model.example_inputs(batch=1)
        torch.testing.assert_close(program.module()(*other), model(*other), atol=1e-5, rtol=0)


def test_samples_stay_separate() -> None:
    model = tiny().eval()
    inputs = model.example_inputs(batch=3)
    logits = model(*inputs)
    for b in range(3):
        torch.testing.assert_close(model(*(x[b : b + 1] for x in inputs)), logits[b : b + 1])


def test_config_validation() -> None:
    with pytest.raises(AssertionError, match="same number of segments"):
        CAMConfig(input_shapes=((3, 3, 16, 16), (2, 4, 8)))
    with pytest.raises(AssertionError, match="stage1_fraction"):
        CAMConfig(stage1_fraction=1.0)
    with pytest.raises(AssertionError, match="expected 2 inputs"):
        tiny().eval()(torch.randn(1, *IMG))


# -- the paper's equations ----------------------------------------------------------------


def test_attention_distributions_are_distributions_over_steps() -> None:
    model = tiny(IMG, SER, SER2).eval()
    inputs = model.example_inputs(batch=4)
    feats, z, r = model.stage1(inputs)  # eq. 2.3 / 2.4
    _, z_m = model.stage2(feats, z)  # eq. 2.11
    for dist in (z, z_m):
        assert dist.shape == (4, 3, 3) and (dist >= 0).all()
        torch.testing.assert_close(dist.sum(dim=-1), torch.ones(4, 3))
    assert not torch.allclose(z[0], z[1]), "attention ignores the input"
    # r = sum_t z_t h_t (eq. 2.3) for the first modality
    h = model.stage1.lstms[0](feats[0])
    torch.testing.assert_close(r[:, 0], (z[:, 0, :, None] * h).sum(dim=1))


def test_eq_2_9_normalisation_sums_to_one_over_modalities() -> None:
    z = torch.softmax(torch.randn(5, 3, 7), dim=-1)
    w = normalise_attention(z)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5, 7))
    torch.testing.assert_close(w[:, 0] / w[:, 1], z[:, 0] / z[:, 1])  # ratios kept: z^r / (z^r + z^d)
    z[:, 2] = 0  # a missing modality takes no share; all missing gives zeros, not NaN
    torch.testing.assert_close(normalise_attention(z)[:, :2].sum(dim=1), torch.ones(5, 7))
    assert (normalise_attention(torch.zeros(2, 3, 4)) == 0).all()


def test_mar_matches_the_paper_equations_by_hand() -> None:
    """Two modalities r, d, two steps: eqs. 2.6-2.10 written out as in the paper."""
    mar = MutualAidRNN([3, 5], hidden=4)
    xr, xd = torch.randn(2, 2, 3), torch.randn(2, 2, 5)
    z = torch.softmax(torch.randn(2, 2, 2), dim=-1)  # (B, M, T)
    g_dr, g_rd = (mar.collaborators[mar.pairs.index(p)] for p in [(1, 0), (0, 1)])

    def lstm_step(cell, x, h, c):  # eq. 2.2 / 2.6
        i, f, g, o = (cell.input_proj(x) + cell.hidden_proj(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    hr = cr = hd = cd = torch.zeros(2, 4)
    outs_r, outs_d = [], []
    for t in range(2):
        G_dr = torch.sigmoid(g_dr.input_proj(xd[:, t]) + g_dr.hidden_proj(hr))  # eq. 2.7: x^d, h^r
        G_rd = torch.sigmoid(g_rd.input_proj(xr[:, t]) + g_rd.hidden_proj(hd))  # eq. 2.7: x^r, h^d
        hr, cr = lstm_step(mar.cells[0], xr[:, t], hr, cr)
        hd, cd = lstm_step(mar.cells[1], xd[:, t], hd, cd)
        zr, zd = z[:, 0, t, None], z[:, 1, t, None]
        zr_, zd_ = zr / (zr + zd), zd / (zr + zd)  # eq. 2.9
        cr, cd = zr_ * cr + zd_ * (G_dr * cr), zd_ * cd + zr_ * (G_rd * cd)  # eqs. 2.8, 2.10
        outs_r.append(hr)
        outs_d.append(hd)
    h_r, h_d = mar([xr, xd], z)
    torch.testing.assert_close(h_r, torch.stack(outs_r, dim=1))
    torch.testing.assert_close(h_d, torch.stack(outs_d, dim=1))


@pytest.mark.parametrize("M", [2, 3])
def test_collaborators_of_v_depend_on_the_other_modalities_attention(M: int) -> None:
    mar = MutualAidRNN([3, 5, 2][:M], hidden=4)
    xs = [torch.randn(2, 4, d) for d in [3, 5, 2][:M]]
    z = torch.softmax(torch.randn(2, M, 4), dim=-1)
    base = mar(xs, z)
    for u in range(1, M):  # another modality's attention moves modality 0's representation
        z2 = z.clone()
        z2[:, u] = torch.softmax(torch.randn(2, 4), dim=-1)
        assert not torch.allclose(mar(xs, z2)[0], base[0]), f"H_M^0 ignores z^{u}"
    # with every other modality's attention at zero, modality 0 is a plain LSTM (c'' = c)
    # and no longer depends on the other inputs
    z0 = z.clone()
    z0[:, 1:] = 0
    alone = mar(xs, z0)[0]
    torch.testing.assert_close(alone, plain_lstm(mar.cells[0], xs[0]))
    torch.testing.assert_close(mar([xs[0]] + [torch.randn_like(x) for x in xs[1:]], z0)[0], alone)
    assert not torch.allclose(base[0], alone), "collaboration changed nothing"


def test_one_modality_mar_is_a_plain_lstm() -> None:
    model = tiny(SER).eval()
    assert model.config.fusion_pairs() == [(0, 0)]  # D = p p^T
    x = model.example_inputs(batch=2)
    feats, z, _ = model.stage1(x)
    torch.testing.assert_close(model.stage2.mar(feats, z)[0], plain_lstm(model.stage2.mar.cells[0], feats[0]))


def test_correlative_late_fusion_by_hand() -> None:
    """Eqs. 2.13-2.14: C^f on the flattened outer products of the per-modality predictions."""
    model = tiny(IMG, SER, SER2).eval()
    logits = torch.randn(2, 3, 4)
    p = torch.softmax(logits, dim=-1)
    d = [(p[:, u, :, None] * p[:, v, None, :]).flatten(1) for u, v in [(0, 1), (0, 2), (1, 2)]]
    fused = model.stage2.fuse(logits, torch.ones(2, 3))
    torch.testing.assert_close(fused, model.stage2.fusion(torch.cat(d, dim=1)))
    # a missing modality contributes the uniform distribution
    q = p.clone()
    q[:, 1] = 0.25
    d = [(q[:, u, :, None] * q[:, v, None, :]).flatten(1) for u, v in [(0, 1), (0, 2), (1, 2)]]
    present = torch.tensor([[1.0, 0.0, 1.0]]).expand(2, 3)
    torch.testing.assert_close(model.stage2.fuse(logits, present), model.stage2.fusion(torch.cat(d, dim=1)))


# -- missing modalities ----------------------------------------------------------------------


def test_all_zero_input_is_a_missing_modality() -> None:
    model = tiny(IMG, SER, SER2)
    model.train()(*model.example_inputs(batch=8))  # non-zero BN statistics, so zero in != zero out by luck
    model.eval()
    x = list(model.example_inputs(batch=2))
    x[1] = torch.zeros_like(x[1])
    feats, z, _ = model.stage1(tuple(x))
    assert (feats[1] == 0).all(), "a zero (missing) stream must give zero features"
    logits_m, fused, present = model.collaborate(tuple(x), feats, z)
    assert present.tolist() == [[1.0, 0.0, 1.0]] * 2
    assert torch.isfinite(fused).all()
    # the missing stream takes no attention share: the others collaborate as if it were not there
    z_without = z.clone()
    z_without[:, 1] = 0
    torch.testing.assert_close(logits_m[:, [0, 2]], model.stage2(feats, z_without)[0][:, [0, 2]])
    torch.testing.assert_close(model(*x), fused)
    other = logits_m.clone()  # ... and its prediction is the uniform distribution, whatever C_M^1 says
    other[:, 1] = torch.randn(2, 4)
    torch.testing.assert_close(model.stage2.fuse(other, present), fused)


def test_modality_dropout_is_a_missing_stream_in_train_mode_only() -> None:
    # modality_dropout=1 drops every modality, then keeps one per sample at random; dropout=0 and
    # stage 2 (stage 1 frozen in eval mode) leave modality dropout the only train-time difference
    model = tiny(IMG, SER, SER2, modality_dropout=1.0, dropout=0.0)
    model.set_training_stage("stage2")
    model.train()
    inputs = model.example_inputs(batch=16)
    feats, z, _ = model.stage1(inputs)
    _, fused, present = model.collaborate(inputs, feats, z)
    assert (present.sum(dim=1) == 1).all(), "train mode must keep exactly one modality per sample here"
    assert present.any(dim=0).all(), "the kept modality should vary across samples"
    model.eval()
    dropped = tuple(x * present[:, v].reshape(-1, *[1] * (x.dim() - 1)) for v, x in enumerate(inputs))
    torch.testing.assert_close(fused, model(*dropped))  # exactly as if those streams were missing
    assert not torch.allclose(model(*inputs), fused)
    torch.testing.assert_close(model(*inputs), model(*inputs))  # eval is deterministic


# -- two-stage training --------------------------------------------------------------------


def test_training_stages_split_the_epochs() -> None:
    model = tiny()
    assert model.training_stages(10) == [("stage1", 5), ("stage2", 5)]
    assert tiny(stage1_fraction=0.3).training_stages(10) == [("stage1", 3), ("stage2", 7)]
    assert model.training_stages(1) == [("stage1", 1), ("stage2", 1)]  # each stage runs
    with pytest.raises(AssertionError, match="unknown training stage"):
        model.set_training_stage("stage3")


def _grads(model: CAM, loss: torch.Tensor) -> dict[str, bool]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}


@pytest.mark.parametrize("shapes", [(IMG, SER), (IMG, SER, SER2), (SER,)])
def test_each_stage_trains_its_own_parameters(shapes) -> None:
    model = tiny(*shapes, modality_dropout=0.0)
    inputs, labels = model.example_inputs(batch=8), torch.arange(8) % 4
    stage1 = {n for n, _ in model.named_parameters() if n.startswith("stage1.")}
    stage2 = {n for n, _ in model.named_parameters() if n.startswith("stage2.")}
    assert stage1 and stage2
    # before a stage is set: one-stage training, both losses reach every parameter
    model.train()
    grads = _grads(model, model.training_loss(inputs, labels, ctx(4)))
    assert all(grads.values()), f"no gradient reached {[n for n, g in grads.items() if not g]}"
    for stage, mine in (("stage1", stage1), ("stage2", stage2)):
        model.set_training_stage(stage)
        model.train()
        assert {n for n, p in model.named_parameters() if p.requires_grad} == mine
        grads = _grads(model, model.training_loss(inputs, labels, ctx(4)))
        assert {n for n, g in grads.items() if g} == mine, f"{stage} trains the wrong parameters"


def test_stage_2_leaves_stage_1_untouched() -> None:
    """An optimiser step as the trainer runs it (AdamW over what requires grad, weight decay on):
    stage 2 changes no stage-1 weight or BatchNorm statistic, stage 1 no stage-2 weight."""
    model = tiny(IMG, SER)
    inputs, labels = model.example_inputs(batch=8), torch.arange(8) % 4
    for stage, frozen in (("stage1", "stage2."), ("stage2", "stage1.")):
        model.set_training_stage(stage)
        model.train()
        before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(frozen)}
        trained = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(frozen)}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
        model.training_loss(inputs, labels, ctx(4)).backward()
        opt.step()
        after = model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before.items()), f"{stage} changed {frozen}*"
        assert any(not torch.equal(after[k], v) for k, v in trained.items()), f"{stage} trained nothing"
    assert not model.stage1.training and model.stage2.training, "stage 2 must keep stage 1 in eval mode"


def test_stage_losses_are_the_papers() -> None:
    model = tiny(IMG, SER, modality_dropout=0.0, dropout=0.0)
    inputs, labels = model.example_inputs(batch=6), torch.arange(6) % 4
    c = ctx(4)
    model.set_training_stage("stage1")
    model.eval()  # no dropout, deterministic
    feats, z, r = model.stage1(inputs)
    logits_a = model.stage1.logits(r)
    expected1 = (c.loss_fn(logits_a[:, 0], labels) + c.loss_fn(logits_a[:, 1], labels)) / 2  # eq. 2.5
    torch.testing.assert_close(model.training_loss(inputs, labels, c), expected1)
    model.set_training_stage("stage2")
    logits_m, fused, _ = model.collaborate(inputs, feats, z)
    expected2 = (c.loss_fn(logits_m[:, 0], labels) + c.loss_fn(logits_m[:, 1], labels)) / 2 + c.loss_fn(fused, labels)
    torch.testing.assert_close(model.training_loss(inputs, labels, c), expected2)  # eqs. 2.12 + 2.14
    assert math.isfinite(expected2.item())
