"""`--set key=value` (models/settings.py): typed parsing against each family's config, one-line
errors, and a `--set` bundle that the manifest alone rebuilds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgehar.app.backends import load_bundle
from edgehar.models import create_model, list_models, model_config_class
from edgehar.models.settings import SettingError, apply_settings, parse_settings, setting_keys
from edgehar.models.train import TrainConfig, imbalanced
from edgehar.models.datasets import LabelledRecording


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgehar.cli", *args], capture_output=True, text=True, timeout=timeout)


def _one_line(result: subprocess.CompletedProcess, *expect: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for e in expect:
        assert e in lines[0], lines[0]
    return lines[0]


def test_values_parse_by_the_field_annotation() -> None:
    got = parse_settings("mmtsa", ["hidden=64", "dropout=0.1", "segment_fusion=concat", "width=1",
                                   "stages=((1, 8, 1, 1), (2, 16, 1, 2))"])
    assert got == {"hidden": 64, "dropout": 0.1, "segment_fusion": "concat", "width": 1.0,
                   "stages": ((1, 8, 1, 1), (2, 16, 1, 2))}
    assert isinstance(got["width"], float)
    assert parse_settings("nonlocal_fusion", ["lead=none"]) == {"lead": None}
    assert parse_settings("nonlocal_fusion", ["lead=1", "nonlocal_block=false"]) == {"lead": 1, "nonlocal_block": False}
    assert parse_settings("cam", ["series_channels=[8, 16]"]) == {"series_channels": (8, 16)}
    assert parse_settings("mmtsa", ["gaf_kind=difference", "num_segments=5", "sampling=dense"]) == {
        "gaf_kind": "difference", "num_segments": 5, "sampling": "dense"}
    assert parse_settings("mmtsa", ["hidden=8", "hidden=16"]) == {"hidden": 16}  # the last one wins


@pytest.mark.parametrize("item, expect", [
    ("fusio=concat", "unknown key 'fusio' for resatt; did you mean 'fusion'?"),
    ("hiden=3", "did you mean 'hidden'?"),
    ("hidden=abc", "hidden takes an integer, got 'abc'"),
    ("dropout=lots", "dropout takes a number, got 'lots'"),
    ("variant=early", "variant takes one of late_attention, fully_residual, late_residual, got 'early'"),
    ("layers=2.5", "layers takes an integer, got '2.5'"),
    ("series_channels=(8, 'x')", "series_channels takes a tuple (an integer each)"),
    ("series_channels=8", "series_channels takes a tuple"),
    ("gaf_kind=cubic", "gaf_kind takes one of summation, difference, got 'cubic'"),
    ("dropout=2", "resatt rejects it: dropout must be in [0, 1)"),
    ("minority_keep=0", "minority_keep takes a number in (0, 1]"),
    ("num_classes=3", "num_classes comes from the data"),
    ("hidden", "expected KEY=VALUE"),
])
def test_bad_settings_name_the_key_the_value_and_what_was_expected(item: str, expect: str) -> None:
    with pytest.raises(SettingError) as err:
        parse_settings("resatt", [item])
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(SettingError) as err:
        parse_settings("mmixer", ["zzz=1"])
    message = str(err.value)
    for key in ("aso", "rnn", "content", "mix", "layer_norm", "hidden", "gaf_kind", "sampling"):
        assert key in message
    assert "input_shapes" not in setting_keys("mmixer") and "num_classes" not in setting_keys("mmixer")


@pytest.mark.parametrize("name", list_models())
def test_every_registered_config_field_but_the_data_ones_is_settable(name: str) -> None:
    """Each field's own default, written as text, parses back to itself: the parser knows every annotation."""
    cls = model_config_class(name)
    defaults = cls().to_dict()
    items = [f"{k}={'none' if v is None else v}" for k, v in defaults.items() if k not in ("input_shapes", "num_classes")]
    assert parse_settings(name, items) == {k: v for k, v in defaults.items() if k not in ("input_shapes", "num_classes")}


def test_apply_settings_splits_pipeline_and_model_keys() -> None:
    cfg = apply_settings(TrainConfig(model="mmtsa", model_config={"width": 0.25}),
                         ["segment_fusion=mean", "gaf_kind=difference", "num_segments=1"])
    assert cfg.model_config == {"width": 0.25, "segment_fusion": "mean"}
    assert (cfg.gaf_kind, cfg.num_segments) == ("difference", 1)


def test_imbalanced_split_is_seeded_and_keeps_a_share_of_half_the_classes() -> None:
    labels = ("a", "b", "c", "d")
    recs = [LabelledRecording({}, [(float(i), i + 1.0, labels[i % 4]) for i in range(40)], f"s{r}", "train") for r in range(3)]
    counts = lambda rs: {a: sum(lab[2] == a for r in rs for lab in r.labels) for a in labels}  # noqa: E731
    out = imbalanced(recs, labels, 0.25, seed=1)
    assert out == imbalanced(recs, labels, 0.25, seed=1)  # deterministic by seed
    got = counts(out)
    assert sorted(got.values()) == [8, 8, 30, 30]  # 2 of 4 classes keep ceil(0.25 * 30) of 30 bouts
    assert imbalanced(recs, labels, 1.0, seed=1) is recs
    assert counts(recs) == {a: 30 for a in labels}  # the input is not modified


def test_cli_bad_setting_is_one_line_before_any_training(tmp_path: Path) -> None:
    _one_line(_cli("train", "--model", "mmtsa", "--set", "segment_fusoin=concat", "--out", str(tmp_path / "t")),
              "edgehar train: error:", "did you mean 'segment_fusion'?")
    _one_line(_cli("evaluate", "--models", "cam,mmtsa", "--set", "mar=none", "--out", str(tmp_path / "e")),
              "edgehar evaluate: error:", "unknown key 'mar' for mmtsa")
    _one_line(_cli("evaluate", "--components", "--models", "cam", "--set", "mar=sideways", "--out", str(tmp_path / "c")),
              "mar takes one of mutual, one_way, none, got 'sideways'")
    _one_line(_cli("evaluate", "--seeds", "2", "--out", str(tmp_path / "s")), "--seeds is for --components")
    under_torchrun = subprocess.run([sys.executable, "-m", "edgehar.cli", "evaluate", "--components", "--jobs", "2",
                                     "--out", str(tmp_path / "j")], capture_output=True, text=True, timeout=600,
                                    env={**os.environ, "WORLD_SIZE": "2"})  # what torchrun sets
    _one_line(under_torchrun, "--jobs 2 under torchrun: the ranks already train each run together")
    assert not any(tmp_path.iterdir())  # nothing written


def test_set_bundle_records_the_settings_and_the_manifest_rebuilds_the_model(sessions, tmp_path: Path) -> None:
    """`edgehar train --set ...`: the manifest holds the settings; the model rebuilt from the
    manifest alone takes the bundle's weights exactly and gives the bundle's logits."""
    out = tmp_path / "run"
    result = _cli("train", "--data", str(sessions), "--model", "mmtsa_tiny", "--epochs", "1", "--windows-per-bout", "1",
                  "--threads", "2", "--set", "segment_fusion=concat", "--set", "hidden=8", "--set", "gaf_kind=difference",
                  "--set", "sampling=dense", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest, backend = load_bundle(out / "bundle")
    assert manifest.model_config["segment_fusion"] == "concat" and manifest.model_config["hidden"] == 8
    assert (manifest.gaf_kind, manifest.sampling) == ("difference", "dense")
    assert json.loads((out / "bundle" / "manifest.json").read_text())["model_config"]["segment_fusion"] == "concat"

    model = create_model(manifest.model, **manifest.model_config).eval()
    program = torch.export.load(str(out / "bundle" / manifest.model_file))
    model.load_state_dict(program.state_dict, strict=True)  # same architecture: every key and shape matches
    inputs = model.example_inputs(batch=1)
    with torch.no_grad():
        expected = model(*inputs).numpy()
    np.testing.assert_allclose(backend.run(tuple(x.numpy() for x in inputs)), expected, rtol=1e-5, atol=1e-5)
    # without the settings the default config cannot take these weights
    default = create_model(manifest.model, input_shapes=manifest.model_config["input_shapes"],
                           num_classes=manifest.model_config["num_classes"])
    with pytest.raises(RuntimeError):
        default.load_state_dict(program.state_dict, strict=True)
