"""Component switches of the five families (their papers' ablations) and `evaluate --components`.

Each switch: the shapes hold, it computes what its docstring says, and the default is the
full model (the families' own test files check the default against the equations).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from edgehar.models import create_model, model_config_class
from edgehar.models.evaluate import _folder, _train_once, evaluate_components
from edgehar.models.recurrent import GRU, LSTM
from edgehar.models.settings import DATA_KEYS, PIPELINE_KEYS, parse_settings
from edgehar.models.train import LossContext, TrainConfig

TINY = ("mmtsa_tiny", "cam_tiny", "mmixer_tiny", "nonlocal_fusion_tiny", "resatt_tiny")
ROWS = [(name, row) for name in TINY for row in model_config_class(name).components]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _model_settings(name: str, items: tuple[str, ...]) -> dict:
    values = parse_settings(name, items)
    return {k: v for k, v in values.items() if k not in PIPELINE_KEYS + DATA_KEYS}


@pytest.mark.parametrize("name, row", ROWS)
def test_every_component_row_builds_and_changes_the_computation(name: str, row: str) -> None:
    items = model_config_class(name).components[row]
    settings = _model_settings(name, items)
    torch.manual_seed(0)
    model = create_model(name, **settings).eval()
    x = model.example_inputs(batch=3)
    logits = model(*x)
    assert logits.shape == (3, model.config.num_classes) and torch.isfinite(logits).all()
    model.train()
    assert torch.isfinite(model(*x)).all()
    if settings:  # a model row: the same seed without it gives other logits, or another loss
        torch.manual_seed(0)
        full = create_model(name).eval()
        assert full.config != model.config
        same = full(*x).shape == logits.shape and torch.allclose(full(*x), logits)
        if same and hasattr(model, "training_loss"):
            labels = torch.tensor([0, 1, 1])
            ctx = LossContext(nn.CrossEntropyLoss(), torch.tensor([3.0, 0.5, 0.25, 0.25]))
            same = torch.allclose(full.training_loss(x, labels, ctx), model.training_loss(x, labels, ctx))
        assert not same, f"{row}: the switch changed nothing"


@pytest.mark.parametrize("name", TINY)
def test_each_family_has_its_full_model_row_first(name: str) -> None:
    rows = model_config_class(name).components
    assert next(iter(rows.values())) == () and len(rows) >= 4


# -- MMTSA ---------------------------------------------------------------------------------


def test_mmtsa_concat_and_mean_segment_fusion() -> None:
    for fusion in ("concat", "mean"):
        model = create_model("mmtsa_tiny", segment_fusion=fusion).eval()
        assert model.attention is None
        x = model.example_inputs(batch=2)
        y = model.segment_features(*x)  # (B, N, M*d)
        g = y.flatten(1) if fusion == "concat" else y.mean(dim=1)
        logits, alpha = model.forward_with_attention(*x)
        torch.testing.assert_close(logits, model.head(g))
        torch.testing.assert_close(alpha, torch.full((2, y.shape[1]), 1 / y.shape[1]))
    assert create_model("mmtsa_tiny").config.segment_fusion == "attention"


# -- CAM -----------------------------------------------------------------------------------


def test_cam_without_mar_is_plain_lstms_and_one_way_aids_only_its_target() -> None:
    def lstm_of(cell, x):
        lstm = LSTM(cell.input_proj.in_features, cell.hidden_size)
        lstm.forward_cell = cell
        return lstm(x)

    for mar, plain in (("none", (0, 1)), ("one_way", (1,))):
        model = create_model("cam_tiny", mar=mar, mar_target=0).eval()
        feats, z, _ = model.stage1(model.example_inputs(batch=2))
        hs = model.stage2.mar(feats, z)
        for v in plain:
            torch.testing.assert_close(hs[v], lstm_of(model.stage2.mar.cells[v], feats[v]))
        if mar == "one_way":
            assert model.stage2.mar.pairs == [(1, 0)]
            assert not torch.allclose(hs[0], lstm_of(model.stage2.mar.cells[0], feats[0]))
        else:
            assert len(model.stage2.mar.collaborators) == 0
    assert create_model("cam_tiny").stage2.mar.pairs == [(1, 0), (0, 1)]  # default: mutual


def test_cam_average_fusion_is_the_mean_of_the_present_modalities_logits() -> None:
    model = create_model("cam_tiny", fusion="average").eval()
    assert model.stage2.fusion is None
    logits = torch.randn(2, 2, 4)
    torch.testing.assert_close(model.stage2.fuse(logits, torch.ones(2, 2)), logits.mean(dim=1))
    torch.testing.assert_close(model.stage2.fuse(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]])),
                               torch.stack([logits[0, 0], logits[1, 1]]))


def test_cam_mar_target_out_of_range_is_refused() -> None:
    with pytest.raises(AssertionError, match="mar_target"):
        create_model("cam_tiny", mar_target=2)


# -- M-Mixer -------------------------------------------------------------------------------


def test_gru_matches_torch_gru() -> None:
    ours = GRU(5, 7)
    ref = nn.GRU(5, 7, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.cell.input_proj.weight)
        ref.bias_ih_l0.copy_(ours.cell.input_proj.bias)
        ref.weight_hh_l0.copy_(ours.cell.hidden_proj.weight)
        ref.bias_hh_l0.copy_(ours.cell.hidden_proj.bias)
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(ours(x), ref(x)[0])


def test_mmixer_aso_choices() -> None:
    f = torch.randn(2, 3, 16)
    torch.testing.assert_close(create_model("mmixer_tiny", aso="max").action_content(f), f.amax(dim=1))
    model = create_model("mmixer_tiny", aso="gru")
    torch.testing.assert_close(model.action_content(f, 1), model.aso[1](f)[:, -1])
    torch.testing.assert_close(create_model("mmixer_tiny").action_content(f), f.mean(dim=1))


def test_mmixer_rnn_instead_of_mcu_reads_no_action_content() -> None:
    for rnn, cls in (("lstm", LSTM), ("gru", GRU)):
        model = create_model("mmixer_tiny", rnn=rnn).eval()
        assert all(isinstance(m, cls) for m in model.mcus)
        x = model.example_inputs(batch=2)
        f = model.segment_features(*x)
        states = model.final_states(*x)
        for rnn_i, fi, h in zip(model.mcus, f, states):
            torch.testing.assert_close(h, rnn_i(fi)[:, -1])


def test_mmixer_self_content_no_layer_norm_and_concat_mix() -> None:
    model = create_model("mmixer_tiny", content="self").eval()
    c = [torch.randn(2, 16), torch.randn(2, 16)]
    assert model.cross_contents(c) == c  # MCU-self: each modality its own content
    model = create_model("mmixer_tiny", layer_norm=False)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    model = create_model("mmixer_tiny", mix="concat")
    mcu = model.mcus[0]
    assert not hasattr(mcu, "w_sf")
    f, g = torch.randn(2, 3, 16), torch.randn(2, 16)
    f_tilde, _ = mcu.mix(f, g)
    torch.testing.assert_close(f_tilde, mcu.w_f(f) + mcu.w_g(g)[:, None])
    assert sum(isinstance(m, nn.LayerNorm) for m in create_model("mmixer_tiny").mcus[0].modules()) == 6  # default: eq. 7, 8, 9, 11, 12, 14


# -- non-local fusion ------------------------------------------------------------------------


def test_nonlocal_without_the_block_pools_the_branch_features() -> None:
    for lead in (None, 0):
        model = create_model("nonlocal_fusion_tiny", nonlocal_block=False, lead=lead).eval()
        assert len(model.fusions) == 0
        x = model.example_inputs(batch=2)
        feats, _ = model.branch_features(*x)
        leads = model.config.leads
        assert all(torch.equal(a, feats[i]) for a, i in zip(model.fused(*x), leads))
        pooled = torch.cat([feats[i].mean(dim=1) for i in leads], dim=1)
        torch.testing.assert_close(model(*x), model.head(pooled))


# -- residual attention ----------------------------------------------------------------------


def test_resatt_early_fusion_is_one_stack_on_the_fused_steps() -> None:
    model = create_model("resatt_tiny", fusion="early").eval()
    assert len(model.temporal) == 1 and model.svm.in_features == model.config.embed_dim
    x = model.example_inputs(batch=2)
    z, weights = model.modality_representations(*x)
    assert z.shape == (2, 1, model.config.embed_dim)
    fused = model.project(torch.cat([enc(xi) for enc, xi in zip(model.encoders, x)], dim=-1))
    torch.testing.assert_close(z[:, 0], model.embed[0](model.temporal[0](fused)[0]))
    # nothing there: no evidence
    z0, _ = model.modality_representations(*(torch.zeros_like(xi) for xi in x))
    assert torch.all(z0 == 0)


def test_resatt_losses() -> None:
    from edgehar.models.resatt import class_weighted_hinge

    labels = torch.tensor([0, 1, 2, 1])
    weights = torch.tensor([0.5, 2.0, 1.0, 0.5])
    ctx = LossContext(nn.CrossEntropyLoss(), weights)
    x = create_model("resatt_tiny").example_inputs(batch=4)
    for loss, expect in (("weighted_hinge", lambda s: class_weighted_hinge(s, labels, weights)),
                         ("hinge", lambda s: class_weighted_hinge(s, labels, torch.ones(4))),
                         ("cross_entropy", lambda s: nn.functional.cross_entropy(s, labels))):
        torch.manual_seed(0)
        model = create_model("resatt_tiny", loss=loss).eval()
        torch.testing.assert_close(model.training_loss(x, labels, ctx), expect(model(*x)))


# -- evaluate --components -------------------------------------------------------------------


def test_evaluate_components_table(sessions, tmp_path: Path) -> None:
    """One seed, one epoch, MMTSA's table (model and input-pipeline rows): one row per component,
    mean ± std, train time."""
    cfg = TrainConfig(data=str(sessions), epochs=1, windows_per_bout=1, threads=2, out=str(tmp_path))
    rows = evaluate_components(cfg, models=("mmtsa_tiny",), seeds=1, progress=False)
    expected = [("mmtsa_tiny", r) for r in model_config_class("mmtsa_tiny").components]
    assert [(r["model"], r["component"]) for r in rows] == expected
    for r in rows:
        assert r["seeds"] == 1 and r["accuracy"]["std"] == 0.0 and len(r["accuracy"]["values"]) == 1
        assert 0.0 <= r["accuracy"]["mean"] <= 1.0 and r["train_seconds"]["mean"] > 0
    # each row trained its own bundle with its settings in the manifest
    dense = next(r for r in rows if r["component"] == "dense sampling")
    assert dense["settings"] == ["sampling=dense"]
    bundle = tmp_path / "mmtsa_tiny" / "dense_sampling" / "seed-0" / "bundle" / "manifest.json"
    assert json.loads(bundle.read_text())["sampling"] == "dense"
    run = json.loads((bundle.parent.parent / "metrics.json").read_text())
    assert dense["accuracy"]["values"] == [run["accuracy"]]
    concat = json.loads((tmp_path / "mmtsa_tiny" / "segment_concatenation" / "seed-0" / "bundle" / "manifest.json").read_text())
    assert concat["model_config"]["segment_fusion"] == "concat"
    n5 = json.loads((tmp_path / "mmtsa_tiny" / "N_5_segments" / "seed-0" / "bundle" / "manifest.json").read_text())
    assert n5["num_segments"] == 5

    table = (tmp_path / "evaluation.md").read_text()
    assert "### mmtsa_tiny" in table
    header = "| component | settings | accuracy % | macro-F1 % | params | MACs / prediction | train s | seeds |"
    assert table.count(header) == 1 and len([x for x in table.splitlines() if x.startswith("| ")]) == 1 + len(rows)
    line = next(x for x in table.splitlines() if x.startswith("| dense sampling |"))
    assert f"| {100 * dense['accuracy']['mean']:.1f} ± 0.0 |" in line and line.endswith("| 1 |")
    assert json.loads((tmp_path / "evaluation.json").read_text())["rows"] == rows


def test_evaluate_components_in_processes_resumes(sessions, tmp_path: Path) -> None:
    """`jobs=2` trains the runs in two processes, to the same table layout; the same command
    again trains nothing (each run's `run.json` matches its recipe: its metrics are read
    back), and a changed recipe trains again."""
    name = "nonlocal_fusion_tiny"
    cfg = TrainConfig(data=str(sessions), epochs=1, windows_per_bout=1, out=str(tmp_path))
    rows = evaluate_components(cfg, models=(name,), seeds=1, progress=False, jobs=2)
    assert [r["component"] for r in rows] == list(model_config_class(name).components)
    assert json.loads((tmp_path / "evaluation.json").read_text())["complete"] is True
    first = tmp_path / name / _folder(rows[0]["component"]) / "seed-0"
    assert json.loads((first / "run.json").read_text())["model_config"] == {}
    metrics = json.loads((first / "metrics.json").read_text())
    (first / "metrics.json").write_text(json.dumps({**metrics, "accuracy": 0.123}))  # what a resumed run must read
    bundle_written = (first / "bundle" / "manifest.json").stat().st_mtime_ns

    again = evaluate_components(cfg, models=(name,), seeds=1, progress=False)
    assert again[0]["accuracy"]["values"] == [0.123]
    assert [r["accuracy"] for r in again[1:]] == [r["accuracy"] for r in rows[1:]]
    assert (first / "bundle" / "manifest.json").stat().st_mtime_ns == bundle_written

    run_cfg = TrainConfig(**{**json.loads((first / "run.json").read_text()), "out": str(first)})
    retrained = _train_once(replace(run_cfg, lr=1e-3), None, progress=False)  # a changed recipe trains again
    assert retrained["accuracy"] != 0.123 and json.loads((first / "run.json").read_text())["lr"] == 1e-3
