"""Every stream of one run, behind one sink: real devices, cameras, or the simulated world.

`Sources` is the single place the live path (`edgehar live`), the demo (`edgehar demo`
= live with simulated sources) and the recorder (`edgehar record`) get their data:

    src = Sources(devices={"glove": "serial:///dev/ttyACM0"}, camera="0")      # real
    src = Sources(simulate=("glove", "imu", "camera"), transport="serial")     # demo
    src.add_sink(fn)           # fn(name, t_host (n,), data (n, C) | (n, H, W, 3), t_device (n,) | None)
    src.open(expect)           # camera opened (first frame read); nothing streams yet
    start = src.start()        # devices connected + described, or a one-line error
    ... src.health() -> {name: snapshot}; src.latest_frame(); src.truth(t0, t1) (simulated)
    src.stop()

Simulated glove and IMU are firmware on a pseudo-terminal read back with pyserial
(or BLE through bleak and an emulated BlueZ), so the demo exercises the real device
path; the simulated camera is fed by the same simulated world. Sinks only copy or
enqueue (they run in device callbacks and the camera thread).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeharError
from ..firmware_bridge.device import DeviceInfo
from ..firmware_bridge.sink import Sink
from .camera import CameraSource

SIM_TRANSPORTS = ("serial", "ble")
DEMO_SUBJECT = 42  # a simulated person the default bundle never saw in training (sim subjects 0-9)


class SourceError(EdgeharError, ValueError):
    """The requested streams cannot be provided (bad combination of sources)."""


class _FeedHealth:
    """Health of a stream fed directly by the simulated world (the simulated camera)."""

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url
        self.frames = 0
        self._t: deque = deque(maxlen=256)
        self.last: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()

    def add(self, t: float, frame: np.ndarray) -> None:
        with self._lock:
            self.frames += 1
            self._t.append(t)
            self.last = (t, frame)

    def snapshot(self, now: float) -> dict:
        with self._lock:
            ts = [t for t in self._t if t >= now - 5.0]
            last = self._t[-1] if self._t else None
        rate = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 2 and ts[-1] > ts[0] else None
        state = "connected" if last is not None and now - last < 1.0 else "reconnecting" if last is not None else "connecting"
        return {"name": self.name, "url": self.url, "state": state, "device": "simulated camera",
                "rate_hz": None if rate is None else round(rate, 2), "samples": self.frames, "frames": self.frames,
                "lost_blocks": 0, "crc_errors": 0, "outages": 0, "battery_pct": None, "last_sample_t": last,
                "last_error": ""}


class Sources:
    """Devices (DeviceHub), cameras (CameraSource) and the simulated world, one sink fan-out."""

    def __init__(self, devices: Mapping[str, str] | None = None, camera: str | None = None,
                 simulate: tuple[str, ...] = (), transport: str = "serial", seed: int = 0,
                 protocol: list[tuple[str, float]] | None = None, camera_name: str = "camera",
                 clock: Callable[[], float] = time.monotonic, replugable: bool = False):
        if transport not in SIM_TRANSPORTS:
            raise SourceError(f"transport {transport!r} is not one of {SIM_TRANSPORTS}")
        self.devices = dict(devices or {})
        self.camera_spec = camera
        self.camera_name = camera_name
        self.simulate = tuple(simulate)
        self.transport = transport
        self.seed = seed
        self.protocol = protocol
        self.clock = clock
        self.replugable = replugable  # simulated serial devices under stable links (unplug / replug)
        both = set(self.devices) & set(self.simulate)
        if both:
            raise SourceError(f"stream {sorted(both)[0]!r} is given a device URL and simulated")
        if camera is not None and camera_name in self.simulate:
            raise SourceError(f"stream {camera_name!r} is given --camera and simulated")
        self._sinks: list[Sink] = []
        self.hub = None
        self.camera: CameraSource | None = None
        self.world = None
        self.sim = None
        self._sim_camera: _FeedHealth | None = None
        self._stack = contextlib.ExitStack()
        self._sim_devices: dict[str, Any] = {}
        self._push: Callable[[str, np.ndarray, np.ndarray], None] = lambda *_: None
        self.start_time: float | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- what is provided ------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        cam = (self.camera_name,) if self.camera_spec is not None else ()
        return tuple(self.devices) + tuple(self.simulate) + cam

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def _dispatch(self, name: str, t: np.ndarray, data: np.ndarray, t_device: np.ndarray | None = None) -> None:
        for sink in self._sinks:
            sink(name, t, data, t_device)

    # -- opening ---------------------------------------------------------------------------
    def open(self) -> tuple[int, int, int] | None:
        """Open what can be checked before streaming (the camera's first frame; the
        simulated world). Returns the camera frame shape, or None without a camera."""
        shape = None
        if self.camera_spec is not None:
            self.camera = CameraSource(self.camera_spec, sink=lambda n, t, f: self._dispatch(n, t, f),
                                       name=self.camera_name, clock=self.clock)
            shape = self.camera.open()
        if self.simulate:
            from ..simulator.world import SimulatedWorld, make_subject

            unknown = [s for s in self.simulate if s not in SimulatedWorld.streams]
            if unknown:
                raise SourceError(f"no simulated stream {unknown[0]!r} (the simulator provides {list(SimulatedWorld.streams)})")
            self.world = SimulatedWorld(make_subject(DEMO_SUBJECT, seed=self.seed), seed=self.seed)
            if self.protocol:
                follow_protocol(self.world, self.protocol)
            if self.camera_name in self.simulate:
                shape = self.world.frame_shape
                self._sim_camera = _FeedHealth(self.camera_name, "sim://camera")
        return shape

    def start(self, expect: Mapping[str, Any] | None = None, wait_s: float = 5.0) -> float:
        """Start streaming; returns the host time the streams begin. Devices that cannot
        be opened or do not match `expect` (stream name -> StreamSpec) raise here."""
        from ..firmware_bridge.device import DeviceHub

        if self.world is None and self.simulate or self.camera is None and self.camera_spec is not None:
            self.open()
        try:
            sim_kinds = tuple(s for s in self.simulate if s != self.camera_name)
            urls = dict(self.devices)
            if sim_kinds:
                sim_urls = self._start_sim_devices(sim_kinds)
                urls.update(sim_urls)
            if urls:
                expect = expect or {}
                self.hub = DeviceHub(urls, self._device_sink, expect={n: expect[n] for n in urls if n in expect}, clock=self.clock)
            if self.world is not None:
                from ..simulator.devices.player import RealtimeSimulation

                self.sim = RealtimeSimulation(self.world, self._world_sink, clock=self.clock)
                self.start_time = self.sim.start()
                self._stack.callback(self.sim.stop)
            if self.hub is not None:
                self.hub.start(wait_s=wait_s)
                self._stack.callback(self.hub.stop)
            if self.camera is not None:
                self.camera.start()
                self._stack.callback(self.camera.stop)
            if self.start_time is None:
                self.start_time = self.clock()
        except BaseException:
            self.stop()
            raise
        return self.start_time

    def _start_sim_devices(self, kinds: tuple[str, ...]) -> dict[str, str]:
        if self.transport == "serial":
            from ..simulator.devices.firmware import PtyFirmware

            link = None
            if self.replugable:  # a stable symlink per device lets a test unplug and replug it under one path
                self._tmp = tempfile.TemporaryDirectory(prefix="edgehar-sim-")
                self._stack.callback(self._tmp.cleanup)
            for i, kind in enumerate(kinds):
                if self._tmp is not None:
                    link = Path(self._tmp.name) / kind
                # one frame per 5-sample block keeps arrival jitter (and clock-fit noise) low
                dev = PtyFirmware(kind, link=link, seed=self.seed + i, block_samples=5)
                dev.boot()
                self._sim_devices[kind] = dev
                self._stack.callback(dev.close)
            self._push = lambda k, t, v: self._sim_devices[k].push(t, v)
            return {k: f"serial://{d.path}" for k, d in self._sim_devices.items()}
        from ..simulator.devices.ble_peripheral import BleSimulation

        sim = BleSimulation(kinds, seed=self.seed, player=False)
        sim.__enter__()
        self._stack.callback(sim.__exit__, None, None, None)
        self._ble = sim
        self._push = sim.push
        return dict(sim.urls)

    # -- sinks -----------------------------------------------------------------------------
    def _device_sink(self, name: str, t: np.ndarray, values: np.ndarray) -> None:
        stream = self.hub.streams.get(name) if self.hub is not None else None
        self._dispatch(name, t, values, getattr(stream, "last_t_device", None))

    def _world_sink(self, name: str, t: np.ndarray, data: np.ndarray) -> None:
        if name in self._sim_devices or (name in self.simulate and name != self.camera_name and self.transport == "ble"):
            self._push(name, t, data)
        elif name == self.camera_name and self._sim_camera is not None:
            for ti, frame in zip(t, data):
                self._sim_camera.add(float(ti), frame)
                self._dispatch(name, np.array([ti]), frame[None])

    # -- reads -----------------------------------------------------------------------------
    def health(self) -> dict[str, dict]:
        now = self.clock()
        out = dict(self.hub.health()) if self.hub is not None else {}
        if self.camera is not None:
            out[self.camera_name] = self.camera.health(now)
        if self._sim_camera is not None:
            out[self.camera_name] = self._sim_camera.snapshot(now)
        return out

    def latest_frame(self) -> tuple[float, np.ndarray] | None:
        if self.camera is not None:
            return self.camera.latest()
        if self._sim_camera is not None:
            return self._sim_camera.last
        return None

    def truth(self, t0: float, t1: float) -> str | None:
        """What the simulated person was doing over [t0, t1); None without a simulation."""
        return self.sim.truth(t0, t1) if self.sim is not None else None

    def failure(self) -> BaseException | None:
        """A fatal error of any source (the simulation or a device), or None."""
        if self.sim is not None and self.sim.error is not None:
            return self.sim.error
        if self.hub is not None:
            errors = self.hub.errors()
            if errors:
                return next(iter(errors.values()))
        return None

    def device_info(self, name: str) -> DeviceInfo:
        """What a device said about itself: channels, units, rate, device fields (for the recorder)."""
        info = self.hub.streams[name].info()
        if info is None:
            raise SourceError(f"{name}: the device never described itself (no descriptor within the wait)")
        return info

    # -- tests: unplug and replug a simulated serial device -------------------------------
    def unplug(self, name: str) -> None:
        self._sim_devices[name].port.close()

    def replug(self, name: str) -> None:
        dev = self._sim_devices[name]
        dev.port.reopen()
        dev.boot()

    def stop(self) -> None:
        self._stack.close()


def follow_protocol(world, protocol: list[tuple[str, float]]) -> None:
    """Make the simulated person do the protocol's activities first, in order.

    SimulatedWorld plans its own random bouts only once the planned ones run out, so
    bouts added up front are what it plays. (Reaches into the world's engine: the
    simulator has no public schedule argument for an unbounded world yet.)
    """
    engine = world._engine
    for activity, seconds in protocol:
        if activity == "rest":
            activity = "neutral"
        engine.add_bout(activity, float(seconds), world._rng)
