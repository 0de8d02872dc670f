"""The demo's simulated rig: one simulated person, seen by simulated devices the way the
app sees hardware.

A world (a person the default bundle never saw, following a protocol if given), its
glove and wrist IMU as firmware on pseudo-terminals (serial) or as BLE peripherals on
an emulated BlueZ, and the simulated camera; one `BlockPlayer` plays the world into
all of them on the app's clock. The app reaches the glove and IMU only through their
ordinary device URLs (`urls`: serial://PTY, ble://name=...), so the demo exercises the
real device path; the camera pushes its frames into the app's sink itself.

The rig is what app.sources.Sources takes as a feed (open, start, stop, health,
latest_frame, truth, failure); the roof (edgehar.cli) composes the two, so the app
never imports the simulator.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from ...errors import EdgeharError
from ...firmware_bridge.health import StreamHealth
from ..world import SimulatedWorld, make_subject
from .camera import FrameSink, SimulatedCamera
from .firmware import PtyFirmware, SimulatedFirmware, pty_devices
from .player import BlockPlayer, BlockSink

TRANSPORTS = ("serial", "ble")  # how the simulated glove and IMU reach the app
DEMO_SUBJECT = 42  # a simulated person the default bundle never saw in training (sim subjects 0-9)
PTY_BLOCK_SAMPLES = 5  # one frame per 5-sample block keeps arrival jitter (and clock-fit noise) low


class RigError(EdgeharError, ValueError):
    """The simulated rig cannot be built as asked (unknown stream, transport or activity)."""


class SimulatedRig:
    """Simulated `streams` (of SimulatedWorld.streams) on one world; see the module docstring.

    `replugable` puts each serial device behind a stable link, so a test can `unplug`
    and `replug` it under one path.
    """

    def __init__(self, streams: Sequence[str], *, transport: str = "serial", seed: int = 0,
                 protocol: Sequence[tuple[str, float]] = (), replugable: bool = False, subject: int = DEMO_SUBJECT):
        if transport not in TRANSPORTS:
            raise RigError(f"transport {transport!r} is not one of {TRANSPORTS}")
        unknown = [s for s in streams if s not in SimulatedWorld.streams]
        if unknown:
            raise RigError(f"no simulated stream {unknown[0]!r} (the simulator provides {list(SimulatedWorld.streams)})")
        self.names = tuple(streams)
        self.transport = transport
        self.seed = seed
        self.protocol = tuple(protocol)
        self.replugable = replugable
        self.subject = subject
        self.urls: dict[str, str] = {}  # device streams -> the URLs the app opens (after start)
        self.world: SimulatedWorld | None = None
        self.camera: SimulatedCamera | None = None
        self.player: BlockPlayer | None = None
        self._pty: dict[str, PtyFirmware] = {}
        self._stack = contextlib.ExitStack()

    def open(self) -> tuple[int, int, int] | None:
        """Make the simulated person (doing the protocol first); returns the camera's frame
        shape, or None when the rig has no camera."""
        world = SimulatedWorld(make_subject(self.subject, seed=self.seed), seed=self.seed)
        try:
            world.follow(self.protocol)
        except (KeyError, ValueError) as exc:
            raise RigError(f"the simulated person cannot follow the protocol: {exc.args[0]}") from None
        self.world = world
        return world.frame_shape if "camera" in self.names else None

    def start(self, sink: FrameSink, clock: Callable[[], float] = time.monotonic) -> float:
        """Bring the devices up (`urls`) and start playing the world on `clock`; camera
        frames go to `sink`. Returns the clock time the streams begin."""
        if self.world is None:
            self.open()
        try:
            sinks: list[BlockSink] = list(self._start_devices(tuple(n for n in self.names if n != "camera")))
            if "camera" in self.names:
                self.camera = SimulatedCamera(sink)
                sinks.append(self.camera)
            self.player = BlockPlayer(self.world, sinks, base_clock=clock)
            self._stack.callback(self.player.stop)
            return self.player.start()
        except BaseException:
            self.stop()
            raise

    def _start_devices(self, kinds: tuple[str, ...]) -> list[SimulatedFirmware]:
        if not kinds:
            return []
        if self.transport == "serial":
            link_dir = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="edgehar-sim-")) if self.replugable else None
            self._pty = pty_devices(kinds, seed=self.seed, link_dir=link_dir, block_samples=PTY_BLOCK_SAMPLES)
            for dev in self._pty.values():
                self._stack.callback(dev.close)
            self.urls = {k: f"serial://{d.path}" for k, d in self._pty.items()}
            return [d.firmware for d in self._pty.values()]
        from .ble_peripheral import BleSimulation  # D-Bus and the emulated BlueZ: only when asked for

        ble = self._stack.enter_context(BleSimulation(kinds, seed=self.seed, player=False))
        self.urls = dict(ble.urls)
        return list(ble.firmwares.values())

    def stop(self) -> None:
        self._stack.close()

    # -- what the app reads ----------------------------------------------------------------
    def health(self, now: float) -> dict[str, StreamHealth]:
        """Health of the streams the rig pushes itself (the camera); devices report through the app."""
        return {self.camera.name: self.camera.health(now)} if self.camera is not None else {}

    def latest_frame(self) -> tuple[float, np.ndarray] | None:
        return self.camera.latest() if self.camera is not None else None

    def truth(self, t0: float, t1: float) -> str | None:
        """What the simulated person was doing over [t0, t1) (clock times)."""
        return self.player.truth(t0, t1) if self.player is not None else None

    def failure(self) -> BaseException | None:
        """Why the simulation stopped, or None while it plays."""
        return self.player.error if self.player is not None else None

    # -- tests: unplug and replug a serial device (replugable=True), or stall the camera --
    def unplug(self, name: str) -> None:
        """Pull a serial device's cable (its pty closes), or stall the camera (no frames)."""
        if name == "camera" and self.camera is not None:
            self.camera.covered = True
            return
        self._pty[name].port.close()

    def replug(self, name: str) -> None:
        if name == "camera" and self.camera is not None:
            self.camera.covered = False
            return
        dev = self._pty[name]
        dev.port.reopen()
        dev.boot()
