"""MMTSA (models/mmtsa.py): eq. 7-9, segment/backbone sharing, modality dropout, and the
MobileNetV2 backbone and MAC counter it is built on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgehar.models import MMTSA, BackboneConfig, MobileNetV2Backbone, count_macs, create_model
from edgehar.models.backbone import InvertedResidual, make_divisible


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(**overrides) -> MMTSA:
    return create_model("mmtsa_tiny", **overrides)


def modality_blocks(model: MMTSA, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Y_Si split per modality: (B, N, M, d)."""
    y = model.segment_features(*inputs)
    return y.reshape(*y.shape[:2], model.config.num_modalities, model.config.feature_dim)


@pytest.mark.parametrize("name", ["mmtsa", "mmtsa_tiny"])
def test_attention_is_a_distribution_over_segments_that_depends_on_input(name: str) -> None:
    model = create_model(name).eval()
    _, alpha = model.forward_with_attention(*model.example_inputs(batch=4))
    _, alpha2 = model.forward_with_attention(*model.example_inputs(batch=4))
    assert alpha.shape == (4, model.config.num_segments)
    assert (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(4))
    assert not torch.allclose(alpha, alpha2), "attention ignores the input"
    assert not torch.allclose(alpha[0], alpha[1]), "attention is the same for every sample"


def test_forward_matches_eq9_by_hand() -> None:
    model = tiny().eval()
    inputs = model.example_inputs(batch=2)
    y = model.segment_features(*inputs)  # (B, N, M*d)
    alpha = torch.softmax(y @ model.attention.weight.squeeze(0), dim=1)  # eq. 8
    g = (alpha[:, :, None] * y).sum(dim=1)  # eq. 9
    logits, alpha_model = model.forward_with_attention(*inputs)
    torch.testing.assert_close(alpha_model, alpha)
    torch.testing.assert_close(logits, model.head(g))


def test_samples_and_segments_stay_aligned() -> None:
    model = tiny().eval()
    inputs = model.example_inputs(batch=3)
    logits, alpha = model.forward_with_attention(*inputs)
    for b in range(3):  # batch folding must not mix samples
        torch.testing.assert_close(model(*(x[b : b + 1] for x in inputs)), logits[b : b + 1])
    perm = torch.tensor([1, 0])  # reorder the segments of every modality alike
    logits_p, alpha_p = model.forward_with_attention(*(x[:, perm] for x in inputs))
    torch.testing.assert_close(alpha_p, alpha[:, perm])  # the weight follows its segment
    torch.testing.assert_close(logits_p, logits)  # eq. 9 is a weighted sum: order-free


def test_segments_share_the_backbone() -> None:
    counts = []
    for n in (1, 2, 5):
        model = tiny(input_shapes=((n, 3, 16, 16), (n, 4, 8, 8))).eval()
        assert model(*model.example_inputs(2)).shape == (2, 4)
        counts.append(sum(p.numel() for p in model.parameters()))
    assert len(set(counts)) == 1, f"parameter count changes with N: {counts}"


def test_each_modality_has_its_own_backbone() -> None:
    model = tiny(input_shapes=((2, 3, 16, 16), (2, 3, 16, 16), (2, 4, 8, 8))).eval()
    assert len(model.backbones) == 3
    convs = [{id(m) for m in b.modules() if isinstance(m, nn.Conv2d)} for b in model.backbones]
    params = [{p.data_ptr() for p in b.parameters()} for b in model.backbones]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not convs[i] & convs[j], f"backbones {i} and {j} share a conv module"
            assert not params[i] & params[j], f"backbones {i} and {j} share parameters"
    # two modalities with identical shapes and identical inputs still get different features
    x = model.example_inputs(2)
    blocks = modality_blocks(model, (x[0], x[0], x[2]))
    assert not torch.allclose(blocks[:, :, 0], blocks[:, :, 1])


def test_modality_dropout_zeroes_whole_blocks_in_train_mode_only() -> None:
    # modality_dropout=1 drops every modality, then keeps one per sample at random
    model = tiny(modality_dropout=1.0, input_shapes=((2, 3, 16, 16), (2, 3, 16, 16), (2, 4, 8, 8)))
    inputs = model.example_inputs(batch=32)
    blocks = modality_blocks(model.train(), inputs)  # (B, N, M, d)
    alive = blocks.abs().amax(dim=(1, 3)) > 0  # (B, M)
    assert (alive.sum(dim=1) == 1).all(), "train mode must keep exactly one modality per sample here"
    assert alive.any(dim=0).all(), "the kept modality should vary across samples"
    model.eval()
    assert (modality_blocks(model, inputs).abs().amax(dim=(1, 3)) > 0).all(), "eval mode dropped a modality"
    torch.testing.assert_close(model(*inputs), model(*inputs))  # eval is deterministic


def test_modality_dropout_rate() -> None:
    model = tiny(modality_dropout=0.3).train()
    alive = modality_blocks(model, model.example_inputs(batch=2000)).abs().amax(dim=(1, 3)) > 0
    # P(drop) = 0.3, minus the samples where both were dropped and one was rescued (0.09 / 2)
    assert abs((~alive).float().mean().item() - (0.3 - 0.045)) < 0.03


def test_all_zero_input_is_a_missing_modality() -> None:
    model = tiny().train()
    model(*model.example_inputs(batch=8))  # non-zero BN running stats, so zero in != zero out by luck
    model.eval()
    x_rgb, x_gaf = model.example_inputs(batch=2)
    full = modality_blocks(model, (x_rgb, x_gaf))
    missing = modality_blocks(model, (x_rgb, torch.zeros_like(x_gaf)))
    assert (missing[:, :, 1] == 0).all(), "a zero (missing) stream must give zero features"
    torch.testing.assert_close(missing[:, :, 0], full[:, :, 0])
    assert torch.isfinite(model(x_rgb, torch.zeros_like(x_gaf))).all()


def test_wrong_input_shape_is_reported() -> None:
    model = tiny().eval()
    x_rgb, x_gaf = model.example_inputs(batch=1)
    with pytest.raises(AssertionError, match="input 1: expected"):
        model(x_rgb, x_gaf[:, :, :3])
    with pytest.raises(AssertionError, match="expected 2 inputs"):
        model(x_rgb)


# -- backbone and MAC counter ----------------------------------------------------------


def test_backbone_feature_vector_and_residuals() -> None:
    cfg = BackboneConfig(in_chans=6, width=0.5, stages=((1, 16, 1, 1), (4, 24, 2, 2)), feature_dim=32)
    net = MobileNetV2Backbone(cfg).eval()
    assert net(torch.randn(5, 6, 32, 32)).shape == (5, 32)
    blocks = [m for m in net.modules() if isinstance(m, InvertedResidual)]
    # 16*0.5 -> 8 == stem 8 (residual); 24*0.5 -> 16: first block strides, the repeat is residual
    assert [b.use_residual for b in blocks] == [True, False, True]
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None for m in net.modules())


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (4, 8, 12, 16 * 0.35, 32 * 0.75, 100)] == [8, 8, 16, 8, 24, 104]


def test_count_macs_counts_every_segment() -> None:
    def backbone_macs(n: int) -> int:
        model = tiny(input_shapes=((n, 3, 16, 16), (n, 4, 8, 8)))
        head = sum(fc.in_features * fc.out_features for fc in model.head if isinstance(fc, nn.Linear))
        attention = n * model.attention.in_features  # one score per segment
        total = count_macs(model, model.example_inputs())
        assert model.training, "count_macs must restore train mode"
        return total - head - attention

    assert backbone_macs(4) == 2 * backbone_macs(2) > 0
