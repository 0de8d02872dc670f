"""The one block player: a simulated world played out on a clock, in device-sized blocks.

Every simulated device that runs in real time is driven by a `BlockPlayer`: the demo's
rig (firmwares on ptys or BLE plus the simulated camera, `rig.py`), a standalone
device (`edgehar simulate glove --serial`, `sim://`, `FirmwarePlayer` in
firmware.py) and the transport tests and benchmarks. A background thread generates
the world a little ahead of the clock, cuts each stream into its sink's blocks and
hands a block over at the instant its last sample exists, the way real firmware
sends a packet once it is full (one frame at a time for a camera). Sinks do
"timestamp and write / enqueue" work only, like a BLE notify callback should.

It also remembers what the simulated person was really doing, so a demo can score
its predictions against the truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from ...contract.series import FrameSeries
from ..world import SimulatedWorld

# How long past intervals of the truth are remembered, in seconds (a demo may run for hours).
_LABEL_MEMORY_S = 60.0


class BlockSink(Protocol):
    """Where one world stream goes: a simulated firmware, or the simulated camera."""

    kind: str  # the world stream it takes ("glove", "imu", "camera")
    block_samples: int  # samples (or frames) per block

    def block_due(self, timestamps: np.ndarray) -> float:
        """Clock time the block of samples taken at `timestamps` is complete."""

    def emit_block(self, timestamps: np.ndarray, data: np.ndarray) -> object:
        """Send one block: clock times (n,), values (n, C) or frames (n, H, W, 3)."""


class BlockPlayer:
    """Plays a `SimulatedWorld` into block sinks on `clock` (x `speed`), in a thread.

    `clock()` is the player's clock: `base_clock` itself at speed 1, else an accelerated
    one starting at the real time of construction, which the host side must then use too.
    Samples are stamped in that clock (world time + `start_time`).
    """

    def __init__(self, world: SimulatedWorld, sinks: Sequence[BlockSink], *, speed: float = 1.0,
                 base_clock: Callable[[], float] = time.monotonic, chunk_s: float = 0.25, lookahead_s: float = 0.3):
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.world = world
        self.sinks = list(sinks)
        self.speed = float(speed)
        self.chunk_s = chunk_s  # small: generating a chunk delays the blocks due meanwhile
        self.lookahead_s = lookahead_s
        self._base_clock = base_clock
        self._real0 = base_clock()
        self.start_time = 0.0  # player-clock time of the world's t = 0
        self.error: BaseException | None = None
        self._labels: list[tuple[float, float, str]] = []  # player-clock intervals
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def clock(self) -> float:
        now = self._base_clock()
        return now if self.speed == 1.0 else self._real0 + (now - self._real0) * self.speed

    def start(self) -> float:
        """Start playing; returns the clock time the streams begin."""
        self.start_time = self.clock()
        self._thread = threading.Thread(target=self._run, name="sim-player", daemon=True)
        self._thread.start()
        return self.start_time

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` of player time (returns early when stopped)."""
        self._stop.wait(seconds / self.speed)

    def truth(self, t0: float, t1: float) -> str | None:
        """The activity that covers most of the clock interval [t0, t1), None if none does."""
        # Summed per activity: the labels arrive in chunk-sized pieces (chunk_s), so the
        # largest single piece would name whichever activity came first in a tie -- the
        # previous one, for a window across a change (the demo's truth lagged ~1 s).
        covered: dict[str, float] = {}
        with self._lock:
            for start, end, activity in self._labels:
                overlap = min(end, t1) - max(start, t0)
                if overlap > 0:
                    covered[activity] = covered.get(activity, 0.0) + overlap
        return max(covered, key=covered.get) if covered else None

    def _run(self) -> None:
        try:
            pending: list[tuple[float, BlockSink, np.ndarray, np.ndarray]] = []  # (due, sink, t, data), by due
            carry: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per sink: samples short of a full block
            while not self._stop.is_set():
                now = self.clock()
                behind = self.world.time < now - self.start_time + self.lookahead_s
                if behind:  # one chunk at a time: a player that cannot keep up still sends what is due
                    chunk = self.world.next_chunk(self.chunk_s)
                    with self._lock:
                        self._labels.extend((self.start_time + a, self.start_time + b, act) for a, b, act in chunk.labels)
                        self._labels = [lab for lab in self._labels if lab[1] > now - _LABEL_MEMORY_S]
                    for sink in self.sinks:
                        s = chunk.series[sink.kind]
                        data = s.frames if isinstance(s, FrameSeries) else s.values
                        t0, d0 = carry.get(id(sink), (np.zeros(0), data[:0]))
                        t = np.concatenate([t0, s.timestamps + self.start_time])
                        d = np.concatenate([d0, data])
                        k = sink.block_samples
                        full = len(t) // k * k
                        pending += [(sink.block_due(t[i : i + k]), sink, t[i : i + k], d[i : i + k]) for i in range(0, full, k)]
                        carry[id(sink)] = (t[full:], d[full:])
                    pending.sort(key=lambda b: b[0])
                due = 0
                while due < len(pending) and pending[due][0] <= now:
                    _, sink, t, d = pending[due]
                    sink.emit_block(t, d)
                    due += 1
                del pending[:due]
                if behind:
                    continue
                wait = (pending[0][0] - self.clock()) / self.speed if pending else 0.005
                self._stop.wait(min(max(wait, 0.0), 0.01))
        except BaseException as exc:  # surfaced to whoever runs the player
            self.error = exc
