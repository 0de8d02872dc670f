"""Residual attention fusion (models/resatt.py): variants, attention, weighted-SVM loss, fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import edgehar.models.resatt  # noqa: F401  (registers resatt, resatt_tiny)
from edgehar.models import create_model
from edgehar.models.resatt import VARIANTS, RABLStack, ResAttConfig, ResidualAttentionFusion, TemporalAttention, class_weighted_hinge
from edgehar.models.train import LossContext

IMAGE, SERIES, SERIES2 = (4, 3, 16, 16), (4, 4, 8), (4, 6, 8)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny(**overrides) -> ResidualAttentionFusion:
    return create_model("resatt_tiny", **overrides)


def ctx(weights: list[float]) -> LossContext:
    return LossContext(nn.CrossEntropyLoss(), torch.tensor(weights))


# -- shapes, gradients, export ---------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shape_finite_and_gradients_reach_every_parameter(variant: str) -> None:
    model = tiny(variant=variant).train()
    inputs = model.example_inputs(batch=8)
    logits = model(*inputs)
    assert logits.shape == (8, 4) and torch.isfinite(logits).all()
    # unbalanced labels: with every margin active, a balanced batch sums the SVM bias gradient to 0
    model.training_loss(inputs, torch.tensor([0, 0, 0, 1, 1, 2, 3, 3]), ctx([1.0] * 4)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reached {dead}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_export_matches_eager(variant: str) -> None:
    model = tiny(variant=variant).eval()
    program = torch.export.export(model, model.example_inputs())
    with torch.no_grad():
        for inputs in (model.example_inputs(), model.example_inputs()):  # not specialised to its example
            torch.testing.assert_close(program.module()(*inputs), model(*inputs), atol=1e-5, rtol=0)


def test_config_validation() -> None:
    with pytest.raises(AssertionError, match="variant must be one of"):
        ResAttConfig.tiny(variant="early_attention")
    with pytest.raises(AssertionError, match="same number of segments"):
        ResAttConfig.tiny(input_shapes=(IMAGE, (3, 4, 8)))
    with pytest.raises(AssertionError, match="expected 2 inputs"):
        tiny()(torch.randn(1, *IMAGE))


# -- where the residual and the attention sit (Fig. 1) ---------------------------------


def trace(stack: RABLStack, x: torch.Tensor) -> tuple[list[tuple[str, torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Run the stack, recording every BiLSTM / attention call as (kind, input, output)."""
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for kind, modules in (("lstm", stack.lstms), ("att", stack.attentions)):
        for m in modules:
            m.register_forward_hook(lambda _m, args, out, kind=kind: calls.append((kind, args[0], out)))
    y, _ = stack(x)
    return calls, y


def stack_and_input(variant: str) -> tuple[RABLStack, torch.Tensor]:
    return RABLStack(variant, hidden=4, layers=3, attention_dim=5, steps=6).eval(), torch.randn(2, 6, 8)


def test_late_attention_is_residual_bilstms_then_plain_attention() -> None:
    stack, x = stack_and_input("late_attention")
    calls, y = trace(stack, x)
    assert [k for k, *_ in calls] == ["lstm", "lstm", "lstm", "att"]
    for (_, xin, c), (_, nxt, _) in zip(calls[:-1], calls[1:]):
        torch.testing.assert_close(nxt, xin + c)  # x <- x + BiLSTM(x), attention reads the last sum
    torch.testing.assert_close(y, calls[-1][2][0])  # no shortcut around the attention


def test_fully_residual_attention_follows_every_bilstm() -> None:
    stack, x = stack_and_input("fully_residual")
    calls, y = trace(stack, x)
    assert [k for k, *_ in calls] == ["lstm", "att"] * 3
    outs = []
    for (_, _, c), (_, att_in, (h, _)) in zip(calls[0::2], calls[1::2]):
        torch.testing.assert_close(att_in, c)  # attention reads its BiLSTM's output
        outs.append(c + h)  # shortcut around the attention
    for out, (_, nxt, _) in zip(outs, calls[2::2]):
        torch.testing.assert_close(nxt, out)
    torch.testing.assert_close(y, outs[-1])


def test_late_residual_is_plain_bilstms_then_residual_attention() -> None:
    stack, x = stack_and_input("late_residual")
    calls, y = trace(stack, x)
    assert [k for k, *_ in calls] == ["lstm", "lstm", "lstm", "att"]
    for (_, _, c), (_, nxt, _) in zip(calls[:-1], calls[1:]):
        torch.testing.assert_close(nxt, c)  # no shortcut between the BiLSTMs
    c, h = calls[-2][2], calls[-1][2][0]
    torch.testing.assert_close(y, c + h)  # one residual attention after the final BiLSTM


def test_variants_give_different_outputs_from_the_same_weights() -> None:
    a, b = tiny(variant="late_attention").eval(), tiny(variant="late_residual").eval()
    b.load_state_dict(a.state_dict())  # same parameter layout, different wiring
    inputs = a.example_inputs(batch=2)
    assert not torch.allclose(a(*inputs), b(*inputs))
    assert len(tiny(variant="fully_residual").temporal[0].attentions) == 2


# -- attention (eqs. 1-3) ----------------------------------------------------------------


def test_attention_weights_are_distributions_over_time_that_depend_on_input() -> None:
    model = tiny(variant="fully_residual").eval()
    _, a = model.forward_with_attention(*model.example_inputs(batch=3))
    assert a.shape == (3, 2, 2, 4, 4)  # (B, M, attention layers, N_t, N_i)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(3, 2, 2, 4))
    assert not torch.allclose(a[0], a[1]), "attention ignores the input"
    assert not torch.allclose(a[0, :, :, 0], a[0, :, :, 1]), "every output step attends alike"


def test_attention_matches_eqs_1_to_3_by_hand() -> None:
    att = TemporalAttention(dim=6, attention_dim=3, steps=4)
    c = torch.randn(2, 4, 6)
    h, a = att(c)
    W, b, w = att.score.weight, att.score.bias, att.query.weight  # w[t] is w_t
    for n in range(2):
        s = [torch.tanh(W @ c[n, i] + b) for i in range(4)]  # eq. 2
        for t in range(4):
            e = torch.stack([w[t] @ s[i] for i in range(4)])
            a_t = torch.exp(e) / torch.exp(e).sum()  # eq. 3
            torch.testing.assert_close(a[n, t], a_t)
            torch.testing.assert_close(h[n, t], sum(a_t[i] * c[n, i] for i in range(4)))  # eq. 1


# -- the weighted SVM ----------------------------------------------------------------------


def test_class_weighted_hinge_matches_hand_computation() -> None:
    scores = torch.tensor([[0.5, -0.2, 0.8], [0.2, 0.9, -2.0]])
    labels = torch.tensor([0, 1])
    # sample 0 (class 0): max(0, 1 - (0.5 + 0.2)) + max(0, 1 - (0.5 - 0.8)) = 0.3 + 1.3 = 1.6
    # sample 1 (class 1): max(0, 1 - (0.9 - 0.2)) + max(0, 1 - (0.9 + 2.0)) = 0.3 + 0   = 0.3
    torch.testing.assert_close(class_weighted_hinge(scores, labels, torch.ones(3)), torch.tensor((1.6 + 0.3) / 2))
    weights = torch.tensor([0.5, 2.0, 0.5])
    torch.testing.assert_close(class_weighted_hinge(scores, labels, weights), torch.tensor((0.5 * 1.6 + 2.0 * 0.3) / 2))
    # the true class beats every other by the margin: no loss
    assert class_weighted_hinge(torch.tensor([[1.5, -1.0, 0.4]]), torch.tensor([0]), weights) == 0
    # margins are relative: a shift of every score (what a missing modality does) changes nothing
    torch.testing.assert_close(class_weighted_hinge(scores - 3.0, labels, weights), class_weighted_hinge(scores, labels, weights))


def test_training_loss_weighs_samples_by_their_class_weight() -> None:
    model = tiny(num_classes=3).eval()  # eval: no dropout, so two calls see the same scores
    inputs, labels = model.example_inputs(batch=6), torch.tensor([0, 0, 1, 1, 2, 2])
    scores = model(*inputs)
    per_sample = torch.stack([sum(torch.relu(1 - s[y] + s[k]) for k in range(3) if k != y) for s, y in zip(scores, labels)])
    for weights in ([1.0, 1.0, 1.0], [0.5, 2.0, 0.5], [0.0, 0.0, 3.0]):
        expected = (torch.tensor(weights)[labels] * per_sample).mean()
        torch.testing.assert_close(model.training_loss(inputs, labels, ctx(weights)), expected)
    # a class of weight 0 gives no gradient: only its samples' inputs change nothing
    model.zero_grad()
    x0 = inputs[0].clone().requires_grad_(True)
    model.training_loss((x0, inputs[1]), labels, ctx([0.0, 1.0, 1.0])).backward()
    assert (x0.grad[:2] == 0).all() and (x0.grad[2:] != 0).any()


# -- fusion: the SVM sees [z_1, ..., z_M] ---------------------------------------------------


def svm_input(model: ResidualAttentionFusion, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    seen = []
    handle = model.svm.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model(*inputs)
    handle.remove()
    return seen[0]


def test_classifier_sees_the_concatenation_of_modality_representations() -> None:
    model = tiny(input_shapes=(IMAGE, SERIES, SERIES2)).eval()
    inputs = model.example_inputs(batch=2)
    # each modality alone, through its own encoder -> RABL stack -> FC
    zs = [emb(rabl(enc(x))[0]) for x, enc, rabl, emb in zip(inputs, model.encoders, model.temporal, model.embed)]
    seen = svm_input(model, inputs)
    assert model.svm.in_features == 3 * model.config.embed_dim
    torch.testing.assert_close(seen, torch.cat(zs, dim=1))
    # changing one modality changes only its block of the joint vector
    changed = svm_input(model, (inputs[0], torch.randn_like(inputs[1]), inputs[2]))
    E = model.config.embed_dim
    assert not torch.allclose(changed[:, E : 2 * E], seen[:, E : 2 * E])
    torch.testing.assert_close(changed[:, :E], seen[:, :E])
    torch.testing.assert_close(changed[:, 2 * E :], seen[:, 2 * E :])


@pytest.mark.parametrize(
    "shapes", [(SERIES,), (IMAGE,), (IMAGE, SERIES), (SERIES, IMAGE, SERIES2)], ids=["series", "image", "2", "3"]
)
def test_any_number_and_mix_of_modalities(shapes: tuple) -> None:
    model = tiny(input_shapes=shapes).train()
    assert model.svm.in_features == len(shapes) * model.config.embed_dim
    model(*model.example_inputs(batch=4))  # train mode runs (M=1: dropout keeps the only one)
    model.eval()
    logits = model(*model.example_inputs(batch=2))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


# -- missing modalities -------------------------------------------------------------------


def test_modality_dropout_zeroes_whole_modalities_in_train_mode_only() -> None:
    # modality_dropout=1 drops every modality, then keeps one per sample at random
    model = tiny(modality_dropout=1.0, input_shapes=(IMAGE, SERIES, SERIES2))
    inputs = model.example_inputs(batch=32)
    alive = model.train().modality_representations(*inputs)[0].abs().amax(dim=2) > 0  # (B, M)
    assert (alive.sum(dim=1) == 1).all(), "train mode must keep exactly one modality per sample here"
    assert alive.any(dim=0).all(), "the kept modality should vary across samples"
    model.eval()
    assert (model.modality_representations(*inputs)[0].abs().amax(dim=2) > 0).all(), "eval mode dropped a modality"
    torch.testing.assert_close(model(*inputs), model(*inputs))


def test_all_zero_input_is_a_missing_modality() -> None:
    model = tiny().train()
    model(*model.example_inputs(batch=8))  # non-zero BN running stats, so zero in != zero out by luck
    model.eval()
    x_img, x_ser = model.example_inputs(batch=2)
    full = model.modality_representations(x_img, x_ser)[0]
    missing = model.modality_representations(x_img, torch.zeros_like(x_ser))[0]
    assert (missing[:, 1] == 0).all(), "a zero (missing) stream must give a zero representation"
    torch.testing.assert_close(missing[:, 0], full[:, 0])
    logits = model(x_img, torch.zeros_like(x_ser))
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.svm(missing.flatten(1)))  # it adds nothing to the SVM score
