"""One tiny trained bundle and its exports, shared by test_export, test_backends and
test_deploy_without_torch (built once per test process; exporting is the slow part).

`mmtsa_tiny` trained 2 epochs on 5 simulated subjects: its accuracy means nothing, so
the round-trip exports run with the floor off (`min_agreement=0`); the floor itself is
tested by forcing a failure, and the full-size check is run by hand (docs/export.md).
"""

from __future__ import annotations

from pathlib import Path

_cache: dict[str, object] = {}

CALIBRATION_WINDOWS = 16


def tiny_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(sessions folder, trained eager bundle)."""
    if "bundle" not in _cache:
        from edgehar.simulator.world import generate_dataset
        from edgehar.models.train import TrainConfig, train

        root = tmp_path_factory.mktemp("export-src")
        generate_dataset(root / "sessions", subjects=5, repeats=1, bout_s=4.0, seed=3, progress=False)
        cfg = TrainConfig(data=str(root / "sessions"), model="mmtsa_tiny", epochs=2, windows_per_bout=2,
                          out=str(root / "run"), threads=2)
        train(cfg, progress=False)
        _cache["bundle"] = (root / "sessions", root / "run" / "bundle")
    return _cache["bundle"]  # type: ignore[return-value]


def tiny_export(tmp_path_factory, fmt: str, precision: str):
    """The ExportResult of exporting the tiny bundle to (fmt, precision), floor off."""
    key = f"{fmt}-{precision}"
    if key not in _cache:
        from edgehar.quantize import export_bundle

        _, bundle = tiny_bundle(tmp_path_factory)
        out = tmp_path_factory.mktemp("exports") / key
        # no data=: the calibration and test windows come from the data the manifest names
        _cache[key] = export_bundle(bundle, out, fmt, precision, calibration=CALIBRATION_WINDOWS,
                                    min_agreement=0.0, max_accuracy_drop=1.0, threads=2, progress=False)
    return _cache[key]
