"""Export: every (format, precision) of the FORMATS table round-trips a trained bundle,
reloads in its runtime, agrees with the fp32 eager model; failures say why and are
never written as a good bundle."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgehar.app.backends import BACKEND_GROUP, load_bundle
from edgehar.contract.bundle import BundleError, file_sha256
from edgehar.contract.manifest import Manifest
from edgehar.models.datasets import WindowSampler, load_data
from edgehar.quantize import FORMATS, FormatError, export_bundle, export_targets, get_format
from edgehar.quantize.export import ExportError, fidelity
from edgehar.contract.formats import formats_markdown
from edgehar.plugins import load_plugin

from export_helpers import CALIBRATION_WINDOWS, tiny_bundle, tiny_export

DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"


def test_the_table_drives_backends_and_docs():
    for f in FORMATS:
        backend = load_plugin(BACKEND_GROUP, f.backend)  # installed by pyproject.toml's entry points
        assert backend is not None and backend.name == f.backend, f.name
        assert set(f.precisions) <= {"fp32", "int8"}
    assert {("executorch", "int8"), ("litert", "int8"), ("onnx", "int8")} <= set(export_targets())
    assert formats_markdown() in DOCS.read_text(), "docs/export.md: paste formats_markdown() output"


@pytest.mark.parametrize(
    "fmt, precision, expect",
    [
        ("executorch", "int4", "unknown precision 'int4' for format 'executorch'; did you mean 'int8'? (known: fp32, int8)"),
        ("executorch", "fp16", "unknown precision 'fp16' for format 'executorch' (known: fp32, int8)"),
        ("lite-rt", "int8", "unknown format 'lite-rt'; did you mean 'litert'? (known: eager, executorch, litert, onnx)"),
        ("tensorrt", "fp32", "unknown format 'tensorrt' (known: eager, executorch, litert, onnx)"),
        ("eager", "int8", "unknown precision 'int8' for format 'eager'"),
    ],
)
def test_unknown_format_or_precision_is_one_line_with_the_known_ones(tmp_path, fmt, precision, expect):
    with pytest.raises(FormatError) as info:
        export_bundle(tmp_path / "nothing", tmp_path / "out", fmt, precision)
    assert expect in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt, precision", export_targets())
def test_export_round_trip(tmp_path_factory, fmt, precision):
    sessions, source = tiny_bundle(tmp_path_factory)
    result = tiny_export(tmp_path_factory, fmt, precision)
    assert result.ok, result.reason
    spec = get_format(fmt)
    assert result.files == [result.out_dir / spec.model_file, result.out_dir / "manifest.json"]
    assert all(f.is_file() for f in result.files) and result.size_bytes == result.files[0].stat().st_size > 0

    # a self-contained bundle: the source manifest with format, precision, file and figures
    src = Manifest.load(source)
    manifest, backend = load_bundle(result.out_dir, num_threads=2)
    assert (manifest.format, manifest.precision, manifest.model_file) == (fmt, precision, spec.model_file)
    assert (manifest.modalities, manifest.labels, manifest.model_config) == (src.modalities, src.labels, src.model_config)
    fid = manifest.metrics["fidelity"]
    assert set(fid) == {"top1_agreement", "sqnr_db", "accuracy", "accuracy_eager", "accuracy_drop", "windows"}
    assert fid["windows"] == manifest.metrics["test_windows"] > 0
    assert manifest.metrics["accuracy"] == fid["accuracy"]
    assert manifest.metrics["export"]["floor"] == {"min_agreement": 0.0, "max_accuracy_drop": 1.0}  # tiny_export's
    if precision == "int8":
        assert manifest.metrics["calibration"] == {
            "data": str(Path(sessions).resolve()), "split": "train", "windows": CALIBRATION_WINDOWS, "seed": 0,
            "sampling": "random windows over the labelled bouts, random segment times (as in training)"}
        assert "per-channel" in manifest.metrics["export"]["quantizer"]
    else:
        assert "calibration" not in manifest.metrics

    # what the export reported is what the bundle does: rerun on the test windows
    _, eager = load_bundle(source)
    data = load_data(str(sessions), frame_resize=manifest.frame_resize, progress=False)
    windows = WindowSampler(manifest, data.split("test"), train=False)
    ref, out = [], []
    for item in windows.eval_windows:
        arrays, _ = windows.inputs([item])
        ref.append(eager.run(tuple(arrays))[0])
        out.append(backend.run(tuple(arrays))[0])
        assert out[-1].shape == (len(manifest.labels),) and out[-1].dtype == np.float32
    labels = np.array([c for _, _, c in windows.eval_windows])
    again = fidelity(np.stack(ref), np.stack(out), labels)
    assert again["sqnr_db"] == pytest.approx(fid["sqnr_db"], rel=0.05)
    assert {k: v for k, v in again.items() if k != "sqnr_db"} == {k: v for k, v in fid.items() if k != "sqnr_db"}
    if precision == "fp32":
        np.testing.assert_allclose(np.stack(out), np.stack(ref), rtol=1e-4, atol=1e-4)
        assert fid["top1_agreement"] == 1.0 and fid["sqnr_db"] > 60
    else:  # int8 of an untrained tiny model: logits close in SQNR terms, top-1 mostly kept
        assert fid["sqnr_db"] > 20 and fid["top1_agreement"] >= 0.8


def test_executorch_int8_mmtsa_lowers_to_one_xnnpack_piece(tmp_path_factory):
    result = tiny_export(tmp_path_factory, "executorch", "int8")
    # the zero-input gate is written in delegable ops (models/modality.presence) and the
    # attention pooling as bmm: nothing is left to portable kernels between delegate calls
    assert result.export["delegates"] == 1 and result.export["undelegated_ops"] == {}


def test_executorch_export_lists_the_ops_left_outside_xnnpack(tmp_path):
    import torch

    from edgehar.quantize.executorch_export import export_executorch

    class GateByAmax(torch.nn.Module):  # the old zero-input gate: amax and gt have no XNNPACK kernel
        def forward(self, x):
            return torch.relu(x) * (x.abs().amax(dim=-1, keepdim=True) > 0).to(x.dtype)

    info = export_executorch(GateByAmax(), (torch.randn(1, 8),), "fp32", None, tmp_path / "m.pte")
    assert info["delegates"] >= 1
    assert {"amax", "gt"} <= set(info["undelegated_ops"])


def test_below_the_floor_is_failed_and_not_written_as_a_bundle(tmp_path_factory, tmp_path):
    sessions, source = tiny_bundle(tmp_path_factory)
    out = tmp_path / "litert-fp32"
    # no model reaches 101% agreement, no drop is below -50 points: the floor must refuse it
    result = export_bundle(source, out, "litert", "fp32", min_agreement=1.01, max_accuracy_drop=-0.5, progress=False)
    assert result.status == "failed" and not result.ok
    assert result.reason == ("below the fidelity floor: top-1 agreement 100.0% < 101.0%; "
                             "accuracy drop 0.0 points > -50.0")
    assert not out.exists()
    rejected = tmp_path / "litert-fp32.rejected"
    assert result.out_dir == rejected
    assert sorted(p.name for p in rejected.iterdir()) == ["REJECTED.txt", "manifest.rejected.json", "model.tflite"]
    assert "below the fidelity floor" in (rejected / "REJECTED.txt").read_text()
    kept = json.loads((rejected / "manifest.rejected.json").read_text())
    assert kept["metrics"]["fidelity"]["top1_agreement"] == 1.0
    # the rejected file's own digest, not the source's listing
    assert kept["model_sha256"] == file_sha256(rejected / "model.tflite") and kept["inputs"] == []
    with pytest.raises(BundleError, match="no bundle manifest"):
        load_bundle(rejected)
    assert [p.name for p in tmp_path.iterdir()] == ["litert-fp32.rejected"]  # no staging left behind


def test_the_command_takes_a_floor_and_the_bundle_records_it(tmp_path_factory, tmp_path, capsys):
    from edgehar.cli import main

    _, source = tiny_bundle(tmp_path_factory)
    out = tmp_path / "litert-fp32"
    assert main(["export", str(source), "--format", "litert", "--out", str(out),
                 "--min-agreement", "0.5", "--max-accuracy-drop", "0.2"]) == 0
    assert Manifest.load(out).metrics["export"]["floor"] == {"min_agreement": 0.5, "max_accuracy_drop": 0.2}
    with pytest.raises(SystemExit) as info:
        main(["export", str(source), "--format", "litert", "--out", str(tmp_path / "x"), "--min-agreement", "98"])
    assert info.value.code == 2 and "'98' must be within [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_onnx_int8_below_the_floor_is_rejected_with_its_model(tmp_path_factory, tmp_path):
    """The ONNX Runtime quantizer's model goes through the same floor as the PT2E ones."""
    _, source = tiny_bundle(tmp_path_factory)
    result = export_bundle(source, tmp_path / "onnx-int8", "onnx", "int8", calibration=CALIBRATION_WINDOWS,
                           min_agreement=1.01, progress=False)
    assert not result.ok and result.reason.startswith("below the fidelity floor: top-1 agreement")
    assert not (tmp_path / "onnx-int8").exists()
    assert sorted(p.name for p in result.out_dir.iterdir()) == ["REJECTED.txt", "manifest.rejected.json", "model.onnx"]


def test_bad_sources(tmp_path_factory, tmp_path):
    sessions, source = tiny_bundle(tmp_path_factory)
    with pytest.raises(ExportError, match="is not a folder"):
        export_bundle(tmp_path / "missing", tmp_path / "out", "litert", "fp32")
    exported = tiny_export(tmp_path_factory, "litert", "fp32").out_dir
    with pytest.raises(ExportError, match="is format 'litert'; export starts from an eager"):
        export_bundle(exported, tmp_path / "out", "executorch", "fp32")
    # the data the bundle names must be found here, else the user passes it
    moved = tmp_path / "moved"
    shutil.copytree(source, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["metrics"]["data"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="trained on data '.*gone'.*pass the data"):
        export_bundle(moved, tmp_path / "out", "litert", "fp32")
    with pytest.raises(ExportError, match="calibration must be at least 1"):
        export_bundle(source, tmp_path / "out", "litert", "int8", data=str(sessions), calibration=0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="holds more than a bundle"):
        export_bundle(source, tmp_path / "busy", "litert", "fp32", progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
