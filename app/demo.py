"""`edgehar demo`: the whole live path with simulated devices, no hardware.

Simulated glove, wrist IMU and camera stream in real time into the per-stream rings;
every hop the scheduler predicts from the last window with the bundle's backend; each
prediction is printed with its per-stage latency and, with `--json`, written as one
JSON line that also holds what the simulated person was really doing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .backends import BundleError, load_bundle
from .live import Prediction, WindowScheduler, make_rings

# The default bundle is trained once per machine and cached; bump when its recipe changes.
DEFAULT_BUNDLE_NAME = "default-mmtsa-v1"
# A demo subject the default bundle never saw in training (sim subjects 0-9 make the data set).
DEMO_SUBJECT = 42


@dataclass
class DemoSummary:
    predictions: int
    scored: int
    agreement: float | None  # fraction of predictions equal to the simulated truth


def default_bundle(progress: bool = True) -> Path:
    """The cached default MMTSA bundle, trained on the simulated data set on first use."""
    from ..models.datasets import cache_dir

    folder = cache_dir() / DEFAULT_BUNDLE_NAME
    bundle = folder / "bundle"
    if not (bundle / "manifest.json").is_file():
        print("edgehar: no bundle given and no cached default; training the default MMTSA once "
              f"(simulated data, a few minutes) into {folder}", file=sys.stderr)
        from ..models.train import TrainConfig, train

        metrics = train(TrainConfig(out=str(folder)), progress=progress)
        print(f"edgehar: default bundle ready: test accuracy {100 * metrics['accuracy']:.1f}% "
              f"(macro-F1 {100 * metrics['macro_f1']:.1f}%)", file=sys.stderr)
    return bundle


def run_demo(bundle: Path | None, seconds: float | None, json_path: Path | None, seed: int = 0,
             threads: int | None = None, out: TextIO = sys.stdout) -> DemoSummary:
    from ..firmware_bridge.sim.realtime import RealtimeSimulation
    from ..firmware_bridge.sim.world import SimulatedWorld, make_subject

    manifest, backend = load_bundle(bundle or default_bundle(), num_threads=threads)
    world = SimulatedWorld(make_subject(DEMO_SUBJECT, seed=seed), seed=seed)
    missing = [s.name for s in manifest.streams if s.name not in world.streams]
    if missing:
        raise BundleError(f"the bundle needs stream(s) {missing} that the simulated devices do not "
                          f"provide (they provide {list(world.streams)})")
    rings = make_rings(manifest, world.frame_shape)

    def sink(stream: str, timestamps, data) -> None:  # timestamp-and-enqueue only
        ring = rings.get(stream)
        if ring is None:
            return
        if data.ndim == 4:
            for t, frame in zip(timestamps, data):
                ring.append(float(t), frame)
        else:
            ring.append(timestamps, data)

    sim = RealtimeSimulation(world, sink)
    scheduler = WindowScheduler(manifest, backend, rings)
    print(f"edgehar demo: {manifest.model} ({backend.name}, {manifest.precision}) on simulated "
          f"{', '.join(s.name for s in manifest.streams)}; window {manifest.window_s:g} s, hop {manifest.hop_s:g} s, "
          f"N={manifest.num_segments}, K={manifest.gaf_k}", file=out)
    predictions = scored = agree = 0
    json_file = open(json_path, "w") if json_path else None
    start = sim.start()
    try:
        for pred in scheduler.run(time.monotonic, start, seconds, stop=lambda: sim.error is not None):
            truth = sim.truth(pred.t - manifest.window_s, pred.t)
            pred.extra["truth"] = truth
            predictions += 1
            if truth is not None:
                scored += 1
                agree += truth == pred.label
            print(_format(pred, start), file=out, flush=True)
            if json_file:
                json_file.write(json.dumps(pred.to_json(manifest.labels)) + "\n")
                json_file.flush()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if json_file:
            json_file.close()
    if sim.error is not None:
        raise sim.error
    summary = DemoSummary(predictions, scored, agree / scored if scored else None)
    if summary.agreement is not None:
        print(f"edgehar demo: {predictions} predictions, {100 * summary.agreement:.1f}% agree with the "
              "simulated activity", file=out)
    return summary


def _format(pred: Prediction, start: float) -> str:
    lat = pred.latency_ms
    stages = " | ".join(f"{k} {lat[k]:.1f}" for k in ("sampling", "gaf", "frames", "inference"))
    truth = pred.extra.get("truth")
    mark = "" if truth is None else ("  ok" if truth == pred.label else f"  (truth {truth})")
    degraded = "" if all(pred.present.values()) else "  DEGRADED: missing " + ",".join(
        k for k, v in pred.present.items() if not v)
    return (f"t={pred.t - start:7.2f}s  {pred.label:<14} {pred.confidence:5.2f}  "
            f"[{stages} | total {lat['total']:.1f} ms]{mark}{degraded}")
