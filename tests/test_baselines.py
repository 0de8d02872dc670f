"""The papers' baselines (models/baselines.py): late concatenation and average score fusion."""

from __future__ import annotations

import torch
from torch import nn

from edgehar.models import create_model
from edgehar.models.train import LossContext


def test_late_concat_classifies_the_concatenated_segment_means() -> None:
    torch.manual_seed(0)
    model = create_model("late_concat_tiny").eval()
    inputs = model.example_inputs(batch=3)
    vectors = [enc(x).mean(dim=1) for enc, x in zip(model.encoders, inputs)]  # (B, d) each
    torch.testing.assert_close(model(*inputs), model.head(torch.cat(vectors, dim=1)))
    # segment order does not matter to a mean
    perm = torch.tensor([1, 0])
    torch.testing.assert_close(model(*(x[:, perm] for x in inputs)), model(*inputs))


def test_late_concat_modality_dropout_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = create_model("late_concat_tiny", modality_dropout=1.0, dropout=0.0).eval()
    inputs = model.example_inputs(batch=64)
    torch.testing.assert_close(model(*inputs), model(*inputs))  # eval: nothing dropped, deterministic
    # with p = 1 exactly one modality survives per sample, so a train-mode output equals the
    # output with the other modality's input zeroed (BN kept in eval mode to compare like for like)
    only = [model(*(torch.zeros_like(x) if i != j else x for i, x in enumerate(inputs))) for j in range(2)]
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    train_out = model(*inputs)
    matches = [torch.isclose(train_out, o, atol=1e-5).all(dim=1) for o in only]
    assert (matches[0] | matches[1]).all(), "train mode must keep exactly one whole modality per sample"
    assert matches[0].any() and matches[1].any(), "the kept modality should vary across samples"


def test_score_avg_averages_the_scores_of_the_modalities_present() -> None:
    torch.manual_seed(0)
    model = create_model("score_avg_tiny").eval()
    inputs = model.example_inputs(batch=2)
    branch = model.branch_logits(inputs)  # (B, M, K)
    torch.testing.assert_close(model(*inputs), branch.mean(dim=1))
    x0, x1 = inputs
    missing = model(x0, torch.zeros_like(x1))
    torch.testing.assert_close(missing, model.branch_logits((x0, torch.zeros_like(x1)))[:, 0])  # the vote of rgb alone
    assert torch.isfinite(model(torch.zeros_like(x0), torch.zeros_like(x1))).all()


def test_score_avg_trains_every_branch_as_its_own_classifier() -> None:
    torch.manual_seed(0)
    model = create_model("score_avg_tiny", dropout=0.0).eval()  # eval: deterministic for the comparison
    inputs = model.example_inputs(batch=4)
    labels = torch.tensor([0, 1, 2, 3])
    ce = nn.CrossEntropyLoss()
    loss = model.training_loss(inputs, labels, LossContext(ce, torch.ones(4)))
    branch = model.branch_logits(inputs)
    torch.testing.assert_close(loss, (ce(branch[:, 0], labels) + ce(branch[:, 1], labels)) / 2)
