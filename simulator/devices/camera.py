"""The simulated chest camera: the world's frames pushed into the app's sink, one at a time.

It is a `BlockSink` of the rig's player (a block is one frame, due at its timestamp),
not a capture behind app.camera.CameraSource: that one pulls frames from OpenCV and
stamps them on arrival, while these frames carry the world's own timestamps (with
their jitter and drops) and are pushed on the player's clock. What the app asks of a
camera — its newest frame and a health snapshot with a device stream's keys — is
kept here, in `health()`, the one place that describes the simulated camera's state.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from ...firmware_bridge.health import RATE_WINDOW_S, StreamHealth

# (stream, host times (n,), frames (n, H, W, 3), device times or None): the app's sink shape
FrameSink = Callable[[str, np.ndarray, np.ndarray, None], None]

STALE_S = 1.0  # no frame for this long: "reconnecting"


class SimulatedCamera:
    """Frames of the world's "camera" stream, forwarded to `sink` under the name `name`."""

    kind = "camera"  # the world stream it plays
    block_samples = 1  # one frame at a time, like a camera driver

    def __init__(self, sink: FrameSink, name: str = "camera"):
        self.name = name
        self.frames = 0
        self._sink = sink
        self._t: deque[float] = deque(maxlen=256)
        self._latest: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self.covered = False  # a stalled driver or a lens cap: frames are made but none arrive
        self.outages = 0  # gaps longer than STALE_S, counted when frames come back
        self.outage_s = 0.0

    def block_due(self, timestamps: np.ndarray) -> float:
        return float(timestamps[-1])

    def emit_block(self, timestamps: np.ndarray, frames: np.ndarray) -> None:
        if self.covered:
            return
        for t, frame in zip(timestamps, frames):
            with self._lock:
                if self._t and t - self._t[-1] >= STALE_S:
                    self.outages += 1
                    self.outage_s += float(t) - self._t[-1]
                self.frames += 1
                self._t.append(float(t))
                self._latest = (float(t), frame)
            self._sink(self.name, np.array([t]), frame[None], None)

    def latest(self) -> tuple[float, np.ndarray] | None:
        """(host time, BGR frame) of the newest frame, or None before the first."""
        with self._lock:
            return self._latest

    def health(self, now: float) -> StreamHealth:
        """The camera's health snapshot, the same type a device stream gives."""
        with self._lock:
            ts = [t for t in self._t if t >= now - RATE_WINDOW_S]
            last = self._t[-1] if self._t else None
        rate = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 2 and ts[-1] > ts[0] else None
        state = "connecting" if last is None else "connected" if now - last < STALE_S else "reconnecting"
        return StreamHealth(self.name, "sim://camera", state=state, device="simulated camera",
                            rate_hz=None if rate is None else round(rate, 2), samples=self.frames, frames=self.frames,
                            outages=self.outages, outage_s=round(self.outage_s, 3), last_sample_t=last)
