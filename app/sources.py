"""Every stream of one run, behind one sink: real devices, cameras, and an injected feed.

`Sources` is the single place the live path (`edgehar live`), the demo (`edgehar demo`
= live with a simulated rig as the feed) and the recorder (`edgehar record`) get their
data:

    src = Sources(devices={"glove": "serial:///dev/ttyACM0"}, camera="0")      # real
    src = Sources(devices=..., feed=rig)      # the roof's demo: a feed of simulated streams
    src.add_sink(fn)           # fn(name, t_host (n,), data (n, C) | (n, H, W, 3), t_device (n,) | None)
    src.open()                 # camera opened (first frame read), feed opened; nothing streams yet
    start = src.start(expect)  # devices connected + described, or a one-line error
    ... src.health() -> {name: snapshot}; src.latest_frame(); src.truth(t0, t1) (a feed's); src.failure()
    src.stop()

A feed is any object with the `Feed` interface: it may serve devices of its own (their
URLs join the real ones in one DeviceHub once it started) and push samples or frames
into the sink itself, reporting their health and newest frame. The app never knows
what it is; the CLI (the roof) builds the simulated rig and hands it in. Sinks only
copy or enqueue (they run in device callbacks, the camera thread and the feed's).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from ..errors import EdgeharError
from ..firmware_bridge.device import DeviceInfo
from ..firmware_bridge.health import StreamHealth
from ..firmware_bridge.sink import Sink
from .camera import CameraSource



class SourceError(EdgeharError, ValueError):
    """The requested streams cannot be provided (bad combination of sources)."""


class Feed(Protocol):
    """Streams that come from neither a device URL nor a camera spec (the roof's simulated rig)."""

    names: tuple[str, ...]  # every stream behind it: the ones it pushes and the ones its devices serve
    urls: Mapping[str, str]  # its device streams -> URLs the app connects to (valid once started)

    def open(self) -> tuple[int, int, int] | None:
        """Prepare; returns the shape of the frames it will push, None if it pushes none."""

    def start(self, sink: Sink, clock: Callable[[], float]) -> float:
        """Serve its devices and start pushing into `sink`; returns the clock time its streams begin."""

    def stop(self) -> None: ...

    def health(self, now: float) -> dict[str, StreamHealth]:
        """Snapshots (a device stream's keys) of the streams it pushes itself."""

    def latest_frame(self) -> tuple[float, np.ndarray] | None: ...

    def truth(self, t0: float, t1: float) -> str | None:
        """What really happened over [t0, t1), if it knows."""

    def failure(self) -> BaseException | None: ...


class Sources:
    """Devices (DeviceHub), a camera (CameraSource) and an optional feed, one sink fan-out."""

    def __init__(self, devices: Mapping[str, str] | None = None, camera: str | None = None,
                 camera_name: str = "camera", feed: Feed | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.devices = dict(devices or {})
        self.camera_spec = camera
        self.camera_name = camera_name
        self.feed = feed
        self.clock = clock
        both = set(self.devices) & set(self.feed_names)
        if both:
            raise SourceError(f"stream {sorted(both)[0]!r} is given a device URL and simulated")
        if camera is not None and camera_name in self.feed_names:
            raise SourceError(f"stream {camera_name!r} is given --camera and simulated")
        self._sinks: list[Sink] = []
        self.hub = None
        self.camera: CameraSource | None = None
        self._opened = False
        self._stack = contextlib.ExitStack()
        self.start_time: float | None = None

    # -- what is provided ------------------------------------------------------------------
    @property
    def feed_names(self) -> tuple[str, ...]:
        """The streams behind the feed (the simulated ones), () without a feed."""
        return tuple(self.feed.names) if self.feed is not None else ()

    @property
    def names(self) -> tuple[str, ...]:
        cam = (self.camera_name,) if self.camera_spec is not None else ()
        return tuple(self.devices) + self.feed_names + cam

    @property
    def camera_fps(self) -> float | None:
        """The frame rate the opened camera reports (None: no camera, or not opened yet)."""
        return self.camera.fps if self.camera is not None else None

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def _dispatch(self, name: str, t: np.ndarray, data: np.ndarray, t_device: np.ndarray | None = None) -> None:
        for sink in self._sinks:
            sink(name, t, data, t_device)

    # -- opening ---------------------------------------------------------------------------
    def open(self) -> tuple[int, int, int] | None:
        """Open what can be checked before streaming (the camera's first frame; the feed).
        Returns the frame shape of the camera (or the feed's), or None without frames."""
        shape = None
        if self.camera_spec is not None:
            self.camera = CameraSource(self.camera_spec, sink=lambda n, t, f: self._dispatch(n, t, f),
                                       name=self.camera_name, clock=self.clock)
            shape = self.camera.open()
        if self.feed is not None:
            shape = self.feed.open() or shape
        self._opened = True
        return shape

    def start(self, expect: Mapping[str, Any] | None = None, wait_s: float = 5.0) -> float:
        """Start streaming; returns the host time the streams begin. Devices that cannot
        be opened or do not match `expect` (stream name -> StreamSpec) raise here."""
        from ..firmware_bridge.device import DeviceHub

        if not self._opened:
            self.open()
        try:
            if self.feed is not None:
                self._stack.callback(self.feed.stop)
                self.start_time = self.feed.start(self._dispatch, self.clock)
            urls = {**self.devices, **(self.feed.urls if self.feed is not None else {})}
            if urls:
                expect = expect or {}
                self.hub = DeviceHub(urls, self._device_sink, expect={n: expect[n] for n in urls if n in expect}, clock=self.clock)
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

    # -- sinks -----------------------------------------------------------------------------
    def _device_sink(self, name: str, t: np.ndarray, values: np.ndarray) -> None:
        stream = self.hub.streams.get(name) if self.hub is not None else None
        self._dispatch(name, t, values, getattr(stream, "last_t_device", None))

    # -- reads -----------------------------------------------------------------------------
    def health(self) -> dict[str, StreamHealth]:
        now = self.clock()
        out = dict(self.hub.health()) if self.hub is not None else {}
        if self.camera is not None:
            out[self.camera_name] = self.camera.health(now)
        if self.feed is not None:
            out.update(self.feed.health(now))
        return out

    @property
    def loop(self):
        """The devices' asyncio loop (running in its own thread) once started, None
        without device streams; other asyncio work of the run (the web view) joins it."""
        return self.hub.loop if self.hub is not None else None

    def latest_frame(self) -> tuple[float, np.ndarray] | None:
        if self.camera is not None:
            return self.camera.latest()
        return self.feed.latest_frame() if self.feed is not None else None

    def truth(self, t0: float, t1: float) -> str | None:
        """What really happened over [t0, t1) (the simulated person's activity); None
        without a feed that knows."""
        return self.feed.truth(t0, t1) if self.feed is not None else None

    def failure(self) -> BaseException | None:
        """A fatal error of any source (the feed or a device), or None."""
        failure = self.feed.failure() if self.feed is not None else None
        if failure is not None:
            return failure
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

    def stop(self) -> None:
        self._stack.close()
