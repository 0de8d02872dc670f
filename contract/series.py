"""Time-stamped arrays: the one shape every stream takes between devices and models.

They live in firmware_bridge, the lowest layer, because devices and recorded sessions
produce them; app and models import them from here.

A recorded session, a live ring buffer and a simulated device all hand the input
pipeline these two containers, so the SAME sampling / GAF / frame code builds
training batches and live inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorSeries:
    """Samples of one sensor stream on the host clock."""

    timestamps: np.ndarray  # (T,) float64, seconds, non-decreasing
    values: np.ndarray  # (T, C) float32, one column per channel
    channels: tuple[str, ...]  # column names, len C

    def __post_init__(self) -> None:
        assert self.timestamps.ndim == 1, f"timestamps must be 1-D, got {self.timestamps.shape}"
        assert self.values.ndim == 2 and self.values.shape[0] == self.timestamps.shape[0], (
            f"values {self.values.shape} do not match timestamps {self.timestamps.shape}"
        )
        assert self.values.shape[1] == len(self.channels), f"{self.values.shape[1]} columns, {len(self.channels)} names"

    def select(self, channels: tuple[str, ...]) -> np.ndarray:
        """Columns in the given order, (T, len(channels))."""
        idx = [self.channels.index(c) for c in channels]
        return self.values[:, idx]


@dataclass(frozen=True)
class FrameSeries:
    """Camera frames on the host clock."""

    timestamps: np.ndarray  # (T,) float64, seconds, non-decreasing
    frames: np.ndarray  # (T, H, W, 3) uint8, BGR as OpenCV delivers them
    # True: the frames went through FrameTransform.reduce already (the live ring keeps
    # only the square the model sees); the input pipeline then only normalises them.
    reduced: bool = False

    def __post_init__(self) -> None:
        assert self.timestamps.ndim == 1 and self.frames.shape[0] == self.timestamps.shape[0], (
            f"frames {self.frames.shape} do not match timestamps {self.timestamps.shape}"
        )
        assert self.frames.ndim == 4 and self.frames.shape[-1] == 3, f"frames must be (T, H, W, 3), got {self.frames.shape}"


def between(series: SensorSeries | FrameSeries, t0: float, t1: float) -> SensorSeries | FrameSeries:
    """The part of a series with t0 <= t < t1, as views (no copy)."""
    lo, hi = np.searchsorted(series.timestamps, [t0, t1], side="left")
    if isinstance(series, SensorSeries):
        return SensorSeries(series.timestamps[lo:hi], series.values[lo:hi], series.channels)
    return FrameSeries(series.timestamps[lo:hi], series.frames[lo:hi], series.reduced)
