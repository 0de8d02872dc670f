"""`edgehar demo`: the live path with simulated devices, no hardware.

The demo IS `edgehar live` with the simulated rig (simulator.devices.rig) as the feed
of its sources (app.sources.Sources); this roof is the one place the two meet. One
simulated world (a person doing activities) drives a simulated glove and wrist IMU
whose firmware speaks the wire protocol over a real transport — a pseudo-terminal read
with pyserial (default) or BLE through bleak and an emulated BlueZ — and a synthetic
camera. Everything after the sources is `live.run_live`: DeviceHub, rings, window
scheduler, smoothing, the view (window / headless / video) and the JSON log, which in
the demo also holds what the simulated person was really doing. A device given by URL
(`--glove serial:///dev/ttyACM0`) or a real `--camera` replaces its simulated twin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from ..app.backends import load_bundle
from ..contract.bundle import BundleError
from ..app.live import LiveOptions, LiveSummary, run_live
from ..app.sources import Sources
from ..simulator.devices.rig import TRANSPORTS, SimulatedRig
from ..simulator.world import SimulatedWorld

DemoSummary = LiveSummary


# The default MMTSA as it ships inside the package (`make bundles` regenerates it: the
# project's own `edgehar train` with its default seed, then `edgehar export` to each
# format), best first, with the module each runtime needs. A deploy-only board runs
# the LiteRT one without torch and without training anything.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "bundles" / "default-mmtsa-v1"
SHIPPED = (("litert-int8", ("ai_edge_litert", "tflite_runtime")), ("executorch-int8", ("executorch",)))


def shipped_bundle() -> Path | None:
    """The best shipped default bundle a runtime installed here can run, or None."""
    from importlib.util import find_spec

    for name, modules in SHIPPED:
        folder = SHIPPED_DIR / name
        if (folder / "manifest.json").is_file() and any(find_spec(m) is not None for m in modules):
            return folder
    return None


def default_bundle(progress: bool = True) -> Path:
    """The shipped default MMTSA bundle the installed runtimes can run; without one, the
    cached eager bundle, trained on the simulated data set on first use (the only place
    the runtime may import torch, lazily)."""
    shipped = shipped_bundle()
    if shipped is not None:
        return shipped
    from ..models.datasets import default_bundle_dir

    bundle = default_bundle_dir()
    folder = bundle.parent
    if not (bundle / "manifest.json").is_file():
        print("edgehar: no bundle given, no runtime here for the shipped ones and no cached default; training "
              f"the default MMTSA once (simulated data, a few minutes) into {folder}", file=sys.stderr)
        from ..models.train import TrainConfig, train

        metrics = train(TrainConfig(out=str(folder)), progress=progress)
        print(f"edgehar: default bundle ready: test accuracy {100 * metrics['accuracy']:.1f}% "
              f"(macro-F1 {100 * metrics['macro_f1']:.1f}%)", file=sys.stderr)
    return bundle


def demo_sources(manifest, devices: dict[str, str] | None = None, camera: str | None = None,
                 transport: str = "serial", seed: int = 0) -> Sources:
    """Sources for the bundle: the given devices and camera, and the simulated rig for
    every stream not given one."""
    if transport not in TRANSPORTS:
        raise BundleError(f"transport {transport!r} is not one of {TRANSPORTS}")
    devices = dict(devices or {})
    sensors = [s.name for s in manifest.streams if s.kind == "sensor"]
    unknown = sorted(set(devices) - set(sensors))
    if unknown:
        raise BundleError(f"--device {unknown[0]}=...: the bundle has no sensor stream {unknown[0]!r} (it reads {sensors})")
    cam = next((s.name for s in manifest.streams if s.kind == "camera"), None)
    if camera is not None and cam is None:
        raise BundleError("--camera given, but the bundle reads no camera stream")
    simulate = tuple(s.name for s in manifest.streams if s.name not in devices and not (s.name == cam and camera is not None))
    missing = [s for s in simulate if s not in SimulatedWorld.streams]
    if missing:
        raise BundleError(f"the bundle needs stream(s) {missing} that the simulated devices do not "
                          f"provide (they provide {list(SimulatedWorld.streams)})")
    rig = SimulatedRig(simulate, transport=transport, seed=seed) if simulate else None
    return Sources(devices=devices, camera=camera, camera_name=cam or "camera", feed=rig)


def run_demo(bundle: Path | None, seconds: float | None, json_path: Path | None, seed: int = 0,
             threads: int | None = None, transport: str = "serial", devices: dict[str, str] | None = None,
             out: TextIO = sys.stdout, camera: str | None = None, options: LiveOptions | None = None,
             key_source=None, providers: tuple[str, ...] = ()) -> DemoSummary:
    """Run the live demo; `devices` maps stream names to URLs of real devices that
    replace the simulated ones, `camera` a real camera that replaces the simulated one,
    `providers` the execution providers of an onnx bundle (default: its manifest's)."""
    manifest, backend = load_bundle(bundle or default_bundle(), num_threads=threads, providers=providers)
    opts = options or LiveOptions()
    opts.seconds, opts.json_path = seconds, json_path
    sources = demo_sources(manifest, devices, camera, transport, seed)
    return run_live(manifest, backend, sources, opts, out=out, verb="demo", key_source=key_source)
