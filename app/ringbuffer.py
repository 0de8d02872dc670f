"""Bounded per-stream ring buffers indexed by host time.

Producers (device readers, the camera thread) append time-stamped samples; the
window scheduler asks for the samples of [t0, t1) as a `SensorSeries` / `FrameSeries`,
the same containers a recorded session yields, so the live path reuses the training
input code unchanged. Memory is fixed at construction: a live app runs for hours.

Written by hand because no library offers a thread-safe, time-indexed numpy ring with
copy-out of a time range; `collections.deque` would need a Python object per sample.
"""

from __future__ import annotations

import threading

import numpy as np

from ..contract.series import FrameSeries, SensorSeries


class _Ring:
    """Fixed-capacity ring of (timestamp, row) with time-range copy-out."""

    def __init__(self, capacity: int, row_shape: tuple[int, ...], dtype: np.dtype):
        assert capacity > 0, f"capacity must be > 0, got {capacity}"
        self._t = np.zeros(capacity, np.float64)
        self._rows = np.zeros((capacity, *row_shape), dtype)
        self._capacity = capacity
        self._count = 0  # total rows ever appended; write index = count % capacity
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return min(self._count, self._capacity)

    @property
    def capacity(self) -> int:
        """Rows it holds at most: memory is allocated once, at this size."""
        return self._capacity

    def _append(self, timestamps: np.ndarray, rows: np.ndarray) -> None:
        n = len(timestamps)
        if n == 0:
            return
        if n > self._capacity:  # only the newest rows can be kept
            timestamps, rows, n = timestamps[-self._capacity :], rows[-self._capacity :], self._capacity
        with self._lock:
            idx = (self._count + np.arange(n)) % self._capacity
            self._t[idx] = timestamps
            self._rows[idx] = rows
            self._count += n

    def _range(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows with t0 <= t < t1, oldest first."""
        with self._lock:
            n = len(self)
            start = (self._count - n) % self._capacity
            order = (start + np.arange(n)) % self._capacity
            t = self._t[order]
            lo, hi = np.searchsorted(t, [t0, t1], side="left")
            sel = order[lo:hi]
            return self._t[sel].copy(), self._rows[sel].copy()

    def latest_time(self) -> float | None:
        with self._lock:
            if self._count == 0:
                return None
            return float(self._t[(self._count - 1) % self._capacity])


class SensorRing(_Ring):
    """Samples x channels of one sensor stream."""

    def __init__(self, channels: tuple[str, ...], capacity: int):
        super().__init__(capacity, (len(channels),), np.float32)
        self.channels = tuple(channels)

    def append(self, timestamps: np.ndarray, values: np.ndarray) -> None:
        """Append a block: timestamps (n,) host seconds, values (n, C)."""
        assert values.shape == (len(timestamps), len(self.channels)), (
            f"block {values.shape} does not match {len(timestamps)} timestamps x {len(self.channels)} channels"
        )
        self._append(np.asarray(timestamps, np.float64), values)

    def window(self, t0: float, t1: float) -> SensorSeries:
        t, v = self._range(t0, t1)
        return SensorSeries(t, v, self.channels)


class FrameRing(_Ring):
    """Camera frames; capacity bounds memory (e.g. a few seconds at 30 fps)."""

    def __init__(self, frame_shape: tuple[int, int, int], capacity: int):
        super().__init__(capacity, frame_shape, np.uint8)

    def append(self, timestamp: float, frame: np.ndarray) -> None:
        self._append(np.array([timestamp], np.float64), frame[None])

    def window(self, t0: float, t1: float) -> FrameSeries:
        t, f = self._range(t0, t1)
        return FrameSeries(t, f)
