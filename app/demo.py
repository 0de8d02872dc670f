"""`edgehar demo`: the whole live path with simulated devices, no hardware.

One simulated world (a person doing activities) drives a simulated glove and wrist
IMU whose firmware speaks the wire protocol over a real transport — a pseudo-terminal
read with pyserial (default) or BLE through bleak and an emulated BlueZ — and a
synthetic camera. The app side is the real one: DeviceHub decodes, maps device clocks
to host time and fills the rings; every hop the scheduler predicts from the last
window. Each prediction is printed with its per-stage latency and, with `--json`,
written as one JSON line that also holds stream health and what the simulated person
was really doing. A device given by URL (`--device glove=serial:///dev/ttyACM0`)
replaces its simulated twin: the same command drives real hardware.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .backends import BundleError, load_bundle
from .live import Prediction, WindowScheduler, make_rings

# The default bundle is trained once per machine and cached; bump when its recipe changes.
DEFAULT_BUNDLE_NAME = "default-mmtsa-v1"
# A demo subject the default bundle never saw in training (sim subjects 0-9 make the data set).
DEMO_SUBJECT = 42
# How the simulated devices reach the app.
DEMO_TRANSPORTS = ("serial", "ble")
# Health fields carried in each JSON prediction line.
_HEALTH_FIELDS = ("state", "rate_hz", "lost_blocks", "crc_errors", "outages", "battery_pct")

Sink = Callable[[str, np.ndarray, np.ndarray], None]


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
             threads: int | None = None, transport: str = "serial", devices: dict[str, str] | None = None,
             out: TextIO = sys.stdout) -> DemoSummary:
    """Run the live demo; `devices` maps stream names to URLs of real devices that
    replace the simulated ones."""
    from ..firmware_bridge.device import DeviceHub
    from ..firmware_bridge.sim.realtime import RealtimeSimulation
    from ..firmware_bridge.sim.world import SimulatedWorld, make_subject

    if transport not in DEMO_TRANSPORTS:
        raise BundleError(f"transport {transport!r} is not one of {DEMO_TRANSPORTS}")
    manifest, backend = load_bundle(bundle or default_bundle(), num_threads=threads)
    world = SimulatedWorld(make_subject(DEMO_SUBJECT, seed=seed), seed=seed)
    devices = dict(devices or {})
    unknown = sorted(set(devices) - {s.name for s in manifest.streams if s.kind == "sensor"})
    if unknown:
        raise BundleError(f"--device {unknown[0]}=...: the bundle has no sensor stream {unknown[0]!r} "
                          f"(it reads {[s.name for s in manifest.streams if s.kind == 'sensor']})")
    missing = [s.name for s in manifest.streams if s.name not in world.streams and s.name not in devices]
    if missing:
        raise BundleError(f"the bundle needs stream(s) {missing} that the simulated devices do not "
                          f"provide (they provide {list(world.streams)})")
    rings = make_rings(manifest, world.frame_shape)
    simulated = tuple(s.name for s in manifest.streams if s.kind == "sensor" and s.name not in devices)

    def to_ring(stream: str, timestamps: np.ndarray, data: np.ndarray) -> None:  # timestamp-and-enqueue only
        ring = rings[stream]
        if data.ndim == 4:
            for t, frame in zip(timestamps, data):
                ring.append(float(t), frame)
        else:
            ring.append(timestamps, data)

    predictions = scored = agree = 0
    with contextlib.ExitStack() as stack:
        sim_urls, to_firmware = stack.enter_context(_simulated_devices(simulated, transport, seed))

        def world_sink(stream: str, timestamps: np.ndarray, data: np.ndarray) -> None:
            if stream in sim_urls:
                to_firmware(stream, timestamps, data)
            elif stream in rings and stream not in devices:  # the camera; real devices feed themselves
                to_ring(stream, timestamps, data)

        hub = DeviceHub({**sim_urls, **devices}, to_ring, expect={n: manifest.stream(n) for n in {**sim_urls, **devices}})
        sim = RealtimeSimulation(world, world_sink)
        start = sim.start()
        stack.callback(sim.stop)
        hub.start()
        stack.callback(hub.stop)
        scheduler = WindowScheduler(manifest, backend, rings)
        print(f"edgehar demo: {manifest.model} ({backend.name}, {manifest.precision}); "
              + ", ".join(f"{n} via {u}" for n, u in {**sim_urls, **devices}.items())
              + f"; window {manifest.window_s:g} s, hop {manifest.hop_s:g} s, N={manifest.num_segments}, K={manifest.gaf_k}",
              file=out)
        json_file = stack.enter_context(open(json_path, "w")) if json_path else None

        def stop() -> bool:
            return sim.error is not None or bool(hub.errors())

        with contextlib.suppress(KeyboardInterrupt):
            for pred in scheduler.run(time.monotonic, start, seconds, stop=stop):
                health = hub.health()
                pred.extra["streams"] = {n: {k: h[k] for k in _HEALTH_FIELDS} for n, h in health.items()}
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
        if sim.error is not None:
            raise sim.error
        hub.raise_if_failed()
    summary = DemoSummary(predictions, scored, agree / scored if scored else None)
    if summary.agreement is not None:
        print(f"edgehar demo: {predictions} predictions, {100 * summary.agreement:.1f}% agree with the "
              "simulated activity", file=out)
    return summary


@contextlib.contextmanager
def _simulated_devices(kinds: tuple[str, ...], transport: str, seed: int) -> Iterator[tuple[dict[str, str], Sink]]:
    """Simulated firmware for each kind, reachable over `transport`: (URLs, sink feeding them)."""
    if not kinds:
        yield {}, lambda *_: None
    elif transport == "serial":
        from ..firmware_bridge.sim.firmware import pty_devices

        # one frame per simulated 5-sample block keeps arrival jitter (and clock-fit noise) low
        devs = pty_devices(kinds, seed=seed, block_samples=5)
        try:
            yield {k: f"serial://{d.path}" for k, d in devs.items()}, lambda k, t, v: devs[k].push(t, v)
        finally:
            for d in devs.values():
                d.close()
    else:
        from ..firmware_bridge.sim.ble_peripheral import BleSimulation

        with BleSimulation(kinds, seed=seed, player=False) as sim:
            yield sim.urls, sim.push


def _format(pred: Prediction, start: float) -> str:
    lat = pred.latency_ms
    stages = " | ".join(f"{k} {lat[k]:.1f}" for k in ("sampling", "gaf", "frames", "inference"))
    truth = pred.extra.get("truth")
    mark = "" if truth is None else ("  ok" if truth == pred.label else f"  (truth {truth})")
    degraded = "" if all(pred.present.values()) else "  DEGRADED: missing " + ",".join(
        k for k, v in pred.present.items() if not v)
    return (f"t={pred.t - start:7.2f}s  {pred.label:<14} {pred.confidence:5.2f}  "
            f"[{stages} | total {lat['total']:.1f} ms]{mark}{degraded}")
