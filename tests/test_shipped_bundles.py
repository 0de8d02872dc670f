"""Issue 14: the default MMTSA ships inside the package, so a fresh install (a torch-free
board included) predicts without training anything. The shipped bundles cannot drift
from the code: their input contract is what the simulated devices and the input pipeline
deliver today, and they still recognise freshly simulated activity."""

from __future__ import annotations

import numpy as np
import pytest

from edgehar.app.backends import load_bundle
from edgehar.cli.demo import SHIPPED, SHIPPED_DIR, shipped_bundle
from edgehar.contract.bundle import read_manifest
from edgehar.simulator.datasheet import STREAM_RATES, STREAM_SPECS

NAMES = [name for name, _ in SHIPPED]


def test_every_shipped_bundle_is_there_and_small():
    for name in NAMES:
        folder = SHIPPED_DIR / name
        manifest = read_manifest(folder)  # the current typed reader takes it
        assert manifest.model == "mmtsa" and manifest.precision == "int8", name
        size = sum(p.stat().st_size for p in folder.iterdir())
        assert size < 500_000, (name, size)  # a few hundred KB
    assert shipped_bundle() == SHIPPED_DIR / "litert-int8"  # LiteRT is installed here: the best one


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_bundle_reads_what_the_devices_and_the_pipeline_deliver(name):
    """Code and bundle cannot drift: each sensor stream is a simulated device's datasheet
    (name, rate, channels), and the model file takes exactly the manifest's input shapes."""
    manifest, backend = load_bundle(SHIPPED_DIR / name)
    assert {s.name for s in manifest.streams} == set(STREAM_RATES)
    for stream in manifest.streams:
        assert stream.rate_hz == STREAM_RATES[stream.name], stream.name
        if stream.kind == "sensor":
            assert stream.channels == tuple(c.name for c in STREAM_SPECS[stream.name]), stream.name
    zeros = tuple(np.zeros((1, *shape), np.float32) for shape in manifest.input_shapes())
    assert np.asarray(backend.run(zeros)).shape == (1, len(manifest.labels))


@pytest.mark.parametrize("name", NAMES)
def test_a_shipped_bundle_recognises_freshly_simulated_activity(name, tmp_path):
    """>= 95 % on test windows of a simulated data set generated now, with a seed the
    training never saw (bench's accuracy: the live input pipeline, the bundle's runtime)."""
    from edgehar.benchmarks.bench import measure_bundle
    from edgehar.simulator.world import generate_dataset

    generate_dataset(tmp_path / "fresh", subjects=4, repeats=1, bout_s=8.0, seed=2026, progress=False)
    row = measure_bundle(SHIPPED_DIR / name, runs=1, warmup=1, threads=2, data=str(tmp_path / "fresh"))
    assert row.status == "ok", row.status
    print(f"{name}: {100 * row.accuracy:.1f} % of {row.test_windows} fresh test windows")
    assert row.test_windows >= 30 and row.accuracy >= 0.95, (row.test_windows, row.accuracy)
