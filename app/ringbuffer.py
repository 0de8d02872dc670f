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

from ..contract.preprocess.frames import FrameTransform
from ..contract.series import FrameSeries, SensorSeries


class _Ring:
    """Fixed-capacity ring of (timestamp, row) with time-range queries.

    Every row is written twice, at slot i and i + capacity, so the newest `capacity`
    rows are always one contiguous slice of the storage, never wrapped: a query can
    hand out a view instead of gathering a copy (the frame ring's window costs nothing
    whatever it holds). Twice the rows' memory buys that; rows are small (sensor
    samples, reduced frames).
    """

    def __init__(self, capacity: int, row_shape: tuple[int, ...], dtype: np.dtype):
        assert capacity > 0, f"capacity must be > 0, got {capacity}"
        self._t = np.zeros(2 * capacity, np.float64)
        self._rows = np.zeros((2 * capacity, *row_shape), dtype)
        self._capacity = capacity
        self._count = 0  # total rows ever appended; write slot = count % capacity (and + capacity)
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
            for at in (idx, idx + self._capacity):
                self._t[at] = timestamps
                self._rows[at] = rows
            self._count += n

    def _range(self, t0: float, t1: float, copy: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps, rows) with t0 <= t < t1, oldest first; the timestamps are a copy.

        copy=False returns the rows as a view of the storage. It stays valid until the
        producers append as many rows as the ring holds before the range's first one:
        a ring sized to two windows, queried for the newest window, gives its reader a
        whole window's time.
        """
        with self._lock:
            n = len(self)
            start = (self._count - n) % self._capacity
            lo, hi = np.searchsorted(self._t[start : start + n], [t0, t1], side="left")
            rows = self._rows[start + lo : start + hi]
            return self._t[start + lo : start + hi].copy(), rows.copy() if copy else rows

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
    """Camera frames, kept as the (crop, crop, 3) squares the model reads.

    Each frame is reduced (`FrameTransform.reduce`: resize, centre crop) once, on
    arrival, in the producer's thread (the camera's), so neither memory nor a hop's work
    grows with the camera's resolution; the view shows the camera's newest full frame,
    which the camera keeps itself. `window` hands out a view, not a copy: the input
    pipeline copies only the N frames it samples.
    """

    def __init__(self, transform: FrameTransform, capacity: int):
        super().__init__(capacity, (transform.crop, transform.crop, 3), np.uint8)
        self.transform = transform

    def append(self, timestamp: float, frame: np.ndarray) -> None:
        """One (H, W, 3) BGR frame of any size."""
        self._append(np.array([timestamp], np.float64), self.transform.reduce(frame)[None])

    def window(self, t0: float, t1: float) -> FrameSeries:
        t, f = self._range(t0, t1, copy=False)
        return FrameSeries(t, f, reduced=True)
