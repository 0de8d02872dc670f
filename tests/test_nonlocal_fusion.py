"""Heterogeneous non-local fusion (models/nonlocal_fusion.py): the block's equations,
the asymmetric / symmetric variants, eq. 6 for three modalities, one modality, and
missing-modality handling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgehar.models import create_model
# importing the family module registers nonlocal_fusion / nonlocal_fusion_tiny
from edgehar.models.nonlocal_fusion import NonLocalFusion, NonLocalFusionConfig, NonLocalPair, SeriesBranch

IMG, SER, SER2 = (2, 3, 16, 16), (2, 4, 8), (2, 6, 8)  # image, series, another series (tiny)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(**overrides):
    return create_model("nonlocal_fusion_tiny", **overrides)


def zero_h(module: nn.Module) -> None:
    """h := 0 in every non-local pair."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, NonLocalPair):
                m.h.weight.zero_()
                m.h.bias.zero_()


# -- the block (eq. 2-6) -----------------------------------------------------------------


def test_block_fuses_different_shapes_and_keeps_the_query_shape() -> None:
    x, y = torch.randn(2, 12, 16), torch.randn(2, 5, 8)  # different positions and channels
    pair = NonLocalPair(16, 8, embed_dim=4)
    att = pair.attention(x, y)
    assert att.shape == (2, 12, 5)
    torch.testing.assert_close(att.sum(dim=-1), torch.ones(2, 12))  # C(x_i, y) of eq. 4 normalises over j
    assert pair(x, y).shape == x.shape
    block = NonLocalFusion(16, [8, 16], embed_dim=4)
    ys = [y, torch.randn(2, 30, 16)]
    assert block(x, ys, [torch.ones(2)] * 2).shape == x.shape
    # y only enters through the attention sum over its positions: permuting them changes nothing
    perm = torch.randperm(5)
    torch.testing.assert_close(pair(x, y[:, perm]), pair(x, y))


def test_pair_matches_eq_2_to_4_by_hand() -> None:
    pair = NonLocalPair(6, 3, embed_dim=4)
    x, y = torch.randn(1, 4, 6), torch.randn(1, 7, 3)
    th, ph, g = pair.theta(x)[0], pair.phi(y)[0], pair.g(y)[0]
    z = torch.zeros(4, 4)
    for i in range(4):
        f = torch.stack([torch.exp(th[i] @ ph[j]) for j in range(7)])  # eq. 3
        z[i] = sum(f[j] * g[j] for j in range(7)) / f.sum()  # eq. 2 with C of eq. 4
    torch.testing.assert_close(pair(x, y)[0], pair.h(z))


def test_residual_block_is_identity_when_h_is_zero() -> None:
    block = NonLocalFusion(16, [8], embed_dim=4)
    x, y = torch.randn(2, 12, 16), torch.randn(2, 5, 8)
    assert not torch.allclose(block(x, [y], [torch.ones(2)]), x)
    zero_h(block)
    torch.testing.assert_close(block(x, [y], [torch.ones(2)]), x)  # eq. 5: h(z) + x


def test_eq6_sums_one_term_per_other_modality() -> None:
    block = NonLocalFusion(16, [8, 12], embed_dim=4)
    x, y1, y2 = torch.randn(2, 10, 16), torch.randn(2, 5, 8), torch.randn(2, 3, 12)
    p1, p2 = block.pairs
    ones = torch.ones(2)
    torch.testing.assert_close(block(x, [y1, y2], [ones, ones]), x + p1(x, y1) + p2(x, y2))
    # a missing y^r (p_r = 0) drops exactly its term, per sample
    p = torch.tensor([1.0, 0.0])
    out = block(x, [y1, y2], [ones, p])
    torch.testing.assert_close(out[0], (x + p1(x, y1) + p2(x, y2))[0])
    torch.testing.assert_close(out[1], (x + p1(x, y1))[1])
    assert not set(map(id, p1.parameters())) & set(map(id, p2.parameters())), "pairs must not share weights"


# -- the network: variants ----------------------------------------------------------------


def test_asymmetric_fusion_returns_the_leading_modality_enforced_by_the_other() -> None:
    for lead, positions in ((0, 2 * 4 * 4), (1, 2 * 8 // 4)):  # video: N*h*w; glove: N*K / 2^2 pools
        model = tiny(lead=lead).eval()
        inputs = model.example_inputs(batch=2)
        feats, present = model.branch_features(*inputs)
        (fused,) = model.fused(*inputs)
        assert fused.shape == (2, positions, 16)
        other = 1 - lead
        torch.testing.assert_close(fused, model.fusions[0](feats[lead], [feats[other]], [present[other]]))
        assert model.head[1].in_features == 16  # one pooled set -> FC


def test_symmetric_fusion_fuses_both_ways_and_concatenates() -> None:
    model = tiny(lead=None).eval()
    inputs = model.example_inputs(batch=2)
    feats, present = model.branch_features(*inputs)
    z0, z1 = model.fused(*inputs)
    assert z0.shape == feats[0].shape and z1.shape == feats[1].shape  # each keeps its own shape
    torch.testing.assert_close(z0, model.fusions[0](feats[0], [feats[1]], [present[1]]))
    torch.testing.assert_close(z1, model.fusions[1](feats[1], [feats[0]], [present[0]]))
    pooled = torch.cat([z0.mean(dim=1), z1.mean(dim=1)], dim=1)  # mean over each set's own positions
    torch.testing.assert_close(model(*inputs), model.head(pooled))


def test_with_h_zero_only_the_leading_modality_reaches_asymmetric_logits() -> None:
    x_img, x_ser = tiny().example_inputs(batch=2)
    other_ser = torch.randn_like(x_ser)
    for lead, expect_same in ((0, True), (None, False)):
        model = tiny(lead=lead).eval()
        zero_h(model)
        same = torch.allclose(model(x_img, x_ser), model(x_img, other_ser))
        assert same == expect_same, f"lead={lead}: the glove {'must not' if expect_same else 'must'} reach the logits"
    model = tiny(lead=0).eval()  # with h trained (non-zero) the glove does enforce the video
    assert not torch.allclose(model(x_img, x_ser), model(x_img, other_ser))


def test_three_modalities_eq6_in_the_network() -> None:
    for lead in (0, 2, None):
        model = tiny(input_shapes=(IMG, SER, SER2), lead=lead).eval()
        inputs = model.example_inputs(batch=2)
        feats, _ = model.branch_features(*inputs)
        for fusion, z, m in zip(model.fusions, model.fused(*inputs), model.config.leads):
            assert len(fusion.pairs) == 2
            ys = [feats[r] for r in range(3) if r != m]
            torch.testing.assert_close(z, feats[m] + sum(p(feats[m], y) for p, y in zip(fusion.pairs, ys)))
        assert model(*inputs).shape == (2, 4)
    assert len(model.fusions) == 3 and model.head[1].in_features == 3 * 16  # symmetric: M pooled sets


@pytest.mark.parametrize("shape", [IMG, SER])
def test_one_modality_is_a_self_non_local_block(shape) -> None:
    model = tiny(input_shapes=(shape,)).eval()
    (x,) = model.example_inputs(batch=2)
    (feat,), _ = model.branch_features(x)
    (pair,) = model.fusions[0].pairs
    (z,) = model.fused(x)
    torch.testing.assert_close(z, feat + pair(feat, feat))  # eq. 1 as a residual block, y = x
    assert model(x).shape == (2, 4)


MIXES = [(IMG,), (SER,), (IMG, SER), (SER, IMG), (SER, SER2), (IMG, SER, SER2), (IMG, IMG, SER)]


@pytest.mark.parametrize("shapes", MIXES)
@pytest.mark.parametrize("lead", [0, None])
def test_mixed_modalities_shapes_finite_and_gradients(shapes, lead) -> None:
    model = tiny(input_shapes=shapes, lead=lead, modality_dropout=0.0).train()
    inputs = model.example_inputs(batch=4)
    logits = model(*inputs)
    assert logits.shape == (4, 4) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reached {dead}"


def test_variant_and_shape_validation() -> None:
    with pytest.raises(AssertionError, match="lead must be"):
        NonLocalFusionConfig.tiny(lead=2)
    with pytest.raises(AssertionError, match="max-pools"):
        NonLocalFusionConfig.tiny(input_shapes=(IMG, (2, 4, 1)))
    with pytest.raises(AssertionError, match="same number of segments"):
        NonLocalFusionConfig.tiny(input_shapes=(IMG, (3, 4, 8)))
    model = tiny().eval()
    x_img, x_ser = model.example_inputs()
    with pytest.raises(AssertionError, match="input 1: expected"):
        model(x_img, x_ser[..., :4])
    with pytest.raises(AssertionError, match="expected 2 inputs"):
        model(x_img)


# -- branches ----------------------------------------------------------------------------


def test_series_branch_joins_the_windows_in_time_order() -> None:
    branch = SeriesBranch((3, 4, 8), channels=6, conv_channels=(5, 7)).eval()
    x = torch.randn(2, 3, 4, 8)
    joined = torch.cat([x[:, n] for n in range(3)], dim=-1)  # (B, C, N*K): window n at times n*K..
    expected = branch.lstm(branch.convs(joined.unsqueeze(2)).squeeze(2).transpose(1, 2))
    out = branch(x)
    assert out.shape == (2, 3 * 8 // 4, 6)  # T' = N*K / 2^pools, c = 2 x LSTM units
    torch.testing.assert_close(out, expected)


def test_samples_stay_apart() -> None:
    model = tiny(input_shapes=(IMG, SER, SER2)).eval()
    inputs = model.example_inputs(batch=3)
    logits = model(*inputs)
    for b in range(3):
        torch.testing.assert_close(model(*(x[b : b + 1] for x in inputs)), logits[b : b + 1])


# -- missing modalities --------------------------------------------------------------------


def test_modality_dropout_zeroes_whole_modalities_in_train_mode_only() -> None:
    model = tiny(input_shapes=(IMG, SER, SER2), modality_dropout=1.0)  # drop all, rescue one per sample
    inputs = model.example_inputs(batch=32)
    feats, present = model.train().branch_features(*inputs)
    alive = torch.stack([f.abs().amax(dim=(1, 2)) > 0 for f in feats], dim=1)  # (B, M)
    assert (alive.sum(dim=1) == 1).all(), "train mode must keep exactly one modality per sample here"
    assert alive.any(dim=0).all(), "the kept modality should vary across samples"
    assert torch.equal(alive.float(), torch.stack(present, dim=1)), "eq. 6 must drop exactly the dropped modalities"
    feats, present = model.eval().branch_features(*inputs)
    assert all((p == 1).all() for p in present) and all((f.abs().amax(dim=(1, 2)) > 0).all() for f in feats)
    torch.testing.assert_close(model(*inputs), model(*inputs))


def test_all_zero_input_is_a_missing_modality() -> None:
    for lead in (0, 1, None):
        model = tiny(lead=lead)
        model.train()(*model.example_inputs(batch=8))  # non-trivial BN statistics
        model.eval()
        x_img, x_ser = model.example_inputs(batch=2)
        feats, present = model.branch_features(x_img, torch.zeros_like(x_ser))
        assert (feats[1] == 0).all() and (present[1] == 0).all() and (present[0] == 1).all()
        no_img, no_ser = torch.zeros_like(x_img), torch.zeros_like(x_ser)
        fused = dict(zip(model.config.leads, model.fused(x_img, no_ser)))
        if 0 in fused:  # a missing y adds nothing: the video keeps its own features
            torch.testing.assert_close(fused[0], feats[0])
        if 1 in fused:  # a missing lead still reads the video through the attention
            assert fused[1].abs().amax() > 0
        for missing in ((no_img, x_ser), (x_img, no_ser)):
            assert torch.isfinite(model(*missing)).all()
        # the prediction still depends on the modality that is there
        assert not torch.allclose(model(x_img, no_ser), model(torch.randn_like(x_img), no_ser))
        assert not torch.allclose(model(no_img, x_ser), model(no_img, torch.randn_like(x_ser)))


# -- export ------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes,lead", [((IMG, SER), 0), ((IMG, SER, SER2), None), ((SER,), 0)])
def test_torch_export_matches_eager(shapes, lead) -> None:
    model = tiny(input_shapes=shapes, lead=lead).eval()
    inputs = model.example_inputs(batch=1)
    program = torch.export.export(model, inputs)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*inputs), model(*inputs), atol=1e-5, rtol=0)
        other = tuple(torch.zeros_like(x) if i == 0 else torch.randn_like(x) for i, x in enumerate(inputs))
        torch.testing.assert_close(program.module()(*other), model(*other), atol=1e-5, rtol=0)
    softmax = [n for n in program.graph.nodes if "softmax" in str(n.target)]
    assert softmax and all(n.args[1] in (-1, 2) for n in softmax), "softmax must run over the last axis"
