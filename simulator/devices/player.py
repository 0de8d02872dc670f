"""Simulated devices in real time: the simulated world played out on the host clock.

A background thread generates the world a couple of seconds ahead and hands each
stream's samples to a sink as soon as their time has come, in small blocks the way
real firmware sends them (a few samples per packet; one frame at a time). The sink
does "timestamp and enqueue" work only, like a BLE notify callback should.

It also remembers what the simulated person was really doing, so a demo can score
its predictions against the truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ...contract.series import FrameSeries, SensorSeries
from ..world import SimulatedWorld

# Samples per emitted sensor block (a BLE notification carries a handful).
BLOCK_SAMPLES = 5
# How far ahead of the host clock the world is generated, in seconds.
_LOOKAHEAD_S = 2.0
# How long past intervals of the truth are remembered, in seconds.
_LABEL_MEMORY_S = 60.0

Sink = Callable[[str, np.ndarray, np.ndarray], None]  # (stream, timestamps (n,), data (n, ...))


class RealtimeSimulation:
    """Plays a `SimulatedWorld` into `sink` on the host's monotonic clock."""

    def __init__(self, world: SimulatedWorld, sink: Sink, clock: Callable[[], float] = time.monotonic):
        self._world = world
        self._sink = sink
        self._clock = clock
        self._labels: list[tuple[float, float, str]] = []  # host-time intervals
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_time = 0.0  # host time of the world's t = 0
        self.error: BaseException | None = None

    def start(self) -> float:
        """Start streaming; returns the host time the streams begin."""
        self.start_time = self._clock()
        self._thread = threading.Thread(target=self._run, name="sim-devices", daemon=True)
        self._thread.start()
        return self.start_time

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def truth(self, t0: float, t1: float) -> str | None:
        """The activity that covers most of the host-time interval [t0, t1)."""
        with self._lock:
            best, best_overlap = None, 0.0
            for start, end, activity in self._labels:
                overlap = min(end, t1) - max(start, t0)
                if overlap > best_overlap:
                    best, best_overlap = activity, overlap
            return best

    def _run(self) -> None:
        try:
            pending: list[tuple[float, str, np.ndarray, np.ndarray]] = []  # (host t, stream, ts, data)
            generated_until = 0.0
            while not self._stop.is_set():
                now = self._clock()
                while generated_until < now - self.start_time + _LOOKAHEAD_S:
                    chunk = self._world.next_chunk(1.0)
                    pending.extend(self._blocks(chunk.series))
                    with self._lock:
                        self._labels.extend((self.start_time + a, self.start_time + b, act) for a, b, act in chunk.labels)
                        # keep what a window can still ask about; a demo may run for hours
                        self._labels = [lab for lab in self._labels if lab[1] > now - _LABEL_MEMORY_S]
                    generated_until = max(float(s.timestamps[-1]) for s in chunk.series.values())
                    pending.sort(key=lambda b: b[0])
                due = 0
                while due < len(pending) and pending[due][0] <= now:
                    _, stream, ts, data = pending[due]
                    self._sink(stream, ts, data)
                    due += 1
                del pending[:due]
                wait = (pending[0][0] - self._clock()) if pending else 0.005
                self._stop.wait(min(max(wait, 0.0), 0.01))
        except BaseException as exc:  # surfaced to the app, which stops with the reason
            self.error = exc

    def _blocks(self, series: dict[str, SensorSeries | FrameSeries]):
        """Split a chunk into device-sized blocks stamped in host time; each block is
        released when its last sample exists."""
        for name, s in series.items():
            ts = s.timestamps + self.start_time
            if isinstance(s, FrameSeries):
                for i in range(len(ts)):
                    yield ts[i], name, ts[i : i + 1], s.frames[i : i + 1]
            else:
                for i in range(0, len(ts), BLOCK_SAMPLES):
                    block_t = ts[i : i + BLOCK_SAMPLES]
                    yield block_t[-1], name, block_t, s.values[i : i + BLOCK_SAMPLES]
