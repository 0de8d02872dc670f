"""Segment-based sparse sampling aligned across modalities (MMTSA sec. 3.2, TSN).

The observation window [t0, t1) is split into N equal segments and ONE time is drawn
per segment. That same time picks the K-sample window of every sensor stream and the
camera frame, each on its own clock and rate (100 Hz glove, 50 Hz IMU, 30 fps camera,
irregular timestamps allowed), so segment i of every modality shows the same moment.

The official MMTSA training loader shuffles the sensor segment order, so RGB segment i
and IMU segment i come from different moments during training (but not at test time).
We do not: the times here are sorted and shared by all modalities, in training and in
evaluation alike.
"""

from __future__ import annotations

import numpy as np

from ..manifest import Manifest


class SegmentSampler:
    """Draws N aligned sample times in a window: random per segment in training, centres in eval.

    `dense=True` is the contrast the MMTSA paper draws (sec. 1, 3.2): instead of one time
    per segment spread over the whole window, N evenly spaced times inside ONE clip of a
    segment's length ((t1 - t0) / N), placed at random in training and centred in eval.
    Same number of snippets, same cost; only the temporal coverage differs. The paper does
    not say how long its dense clips are; one segment's length keeps the two samplers'
    inputs the same size and spacing the snippets K-ish samples apart at N = 3.
    (`edgehar bench`'s sparse-vs-dense figure is the paper's other reading, "the entire
    series": the trained weights run on enough segments to read every frame, N-fold cost.)
    """

    def __init__(self, num_segments: int, train: bool, seed: int | None = None, dense: bool = False):
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.num_segments = num_segments
        self.train = train
        self.dense = dense
        # Own generator, so a seeded sampler is reproducible whatever else draws numbers.
        self._rng = np.random.default_rng(seed)

    @classmethod
    def for_manifest(cls, manifest: Manifest, train: bool, seed: int | None = None) -> "SegmentSampler":
        """The sampler a bundle's manifest asks for (its N and its `sampling`)."""
        return cls(manifest.num_segments, train=train, seed=seed, dense=manifest.sampling == "dense")

    def times(self, t0: float, t1: float) -> np.ndarray:
        """(N,) float64 times in [t0, t1), ascending.

        Sparse: one inside each of N equal segments, uniform in training (TSN's random
        snippet), the segment centre in eval. Dense: see the class doc.
        """
        if not t1 > t0:
            raise ValueError(f"empty observation window [{t0}, {t1})")
        n = self.num_segments
        seg = (t1 - t0) / n
        if self.dense:
            start = t0 + (self._rng.random() if self.train else 0.5) * (t1 - t0 - seg)  # clip [start, start + seg)
            return start + (np.arange(n) + 0.5) * (seg / n)
        offset = self._rng.random(n) if self.train else np.full(n, 0.5)  # (N,) in [0, 1)
        return t0 + (np.arange(n) + offset) * seg


def sensor_windows(
    series_timestamps: np.ndarray,
    series_values: np.ndarray,
    times: np.ndarray,
    k: int,
    t0: float,
    t1: float,
    in_segments: bool = False,
) -> np.ndarray:
    """K consecutive samples around each time: (T,), (T, C), (N,) -> (N, C, K) float32.

    Each window is centred on the sample nearest the time (that sample at position
    K // 2), then shifted so all K samples lie among the samples inside its bounds: a
    time near an edge gets a window flush with that edge. The bounds are the observation
    window [t0, t1) (the edge recipe), or with `in_segments` the time's own segment, the
    i-th of N equal parts of [t0, t1) (MMTSA eq. 6: S_i-1 <= i < i + K - 1 <= S_i; the
    times must then be one per segment, as `SegmentSampler` draws them). If the bounds
    hold fewer than K samples, all of them are used, centred, and padded by repeating
    the first / last sample (edge padding adds no new values, so the per-window GAF
    rescale is unchanged); a segment with no sample at all falls back to the observation
    window. Raises ValueError if no sample lies in [t0, t1).
    """
    ts = np.asarray(series_timestamps, dtype=np.float64)  # (T,)
    lo, hi = _bounds(ts, t0, t1)
    if hi <= lo:
        raise ValueError(f"no sample in [{t0}, {t1}) (stream covers {_span(ts)})")
    times = np.asarray(times, dtype=np.float64)
    j = _nearest(ts, times, lo, hi)  # (N,)
    if in_segments:
        n = len(times)
        edges = np.searchsorted(ts, t0 + np.arange(n + 1) * ((t1 - t0) / n), side="left")  # (N + 1,)
        empty = edges[1:] <= edges[:-1]
        lo_r, hi_r = np.where(empty, lo, np.maximum(edges[:-1], lo)), np.where(empty, hi, np.minimum(edges[1:], hi))  # (N,)
    else:
        lo_r, hi_r = lo, hi
    # np.minimum/np.maximum rather than np.clip: clip's per-call overhead in numpy 2 is
    # several times the work on these (N,)-sized arrays, and this runs every hop.
    count = hi_r - lo_r
    start = np.where(count >= k, np.minimum(np.maximum(j - k // 2, lo_r), hi_r - k), lo_r - (k - count) // 2)  # (N,)
    idx = np.minimum(np.maximum(start[:, None] + np.arange(k), np.reshape(lo_r, (-1, 1))), np.reshape(hi_r, (-1, 1)) - 1)  # (N, K)
    values = np.asarray(series_values)  # (T, C)
    return np.ascontiguousarray(values[idx].transpose(0, 2, 1), dtype=np.float32)  # (N, C, K)


def nearest_frames(
    frame_timestamps: np.ndarray,
    times: np.ndarray,
    t0: float | None = None,
    t1: float | None = None,
) -> np.ndarray:
    """(N,) int64 index of the frame nearest in time to each of times (N,).

    With bounds, frames inside [t0, t1) are preferred; if none is inside, the nearest
    frame overall is taken. Ties go to the earlier frame.
    """
    ts = np.asarray(frame_timestamps, dtype=np.float64)  # (T,)
    if ts.size == 0:
        raise ValueError("no frames")
    lo, hi = _bounds(ts, -np.inf if t0 is None else t0, np.inf if t1 is None else t1)
    if hi <= lo:
        lo, hi = 0, ts.size
    return _nearest(ts, np.asarray(times, dtype=np.float64), lo, hi)


def has_sample(ts: np.ndarray, t0: float, t1: float) -> bool:
    """Whether any of the sorted timestamps falls inside [t0, t1): a stream silent for the
    whole window gives no input rather than stale samples from outside it."""
    lo, hi = _bounds(ts, t0, t1)
    return hi > lo


def _bounds(ts: np.ndarray, t0: float, t1: float) -> tuple[int, int]:
    """Index range [lo, hi) of the timestamps inside [t0, t1)."""
    lo, hi = np.searchsorted(ts, [t0, t1], side="left")
    return int(lo), int(hi)


def _nearest(ts: np.ndarray, times: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(N,) index in [lo, hi) of the timestamp nearest each time; ties to the earlier."""
    sub = ts[lo:hi]  # (n,)
    p = np.searchsorted(sub, times)  # (N,) in 0..n
    left, right = np.maximum(p - 1, 0), np.minimum(p, sub.size - 1)
    take_right = np.abs(sub[right] - times) < np.abs(times - sub[left])
    return lo + np.where(take_right, right, left)


def _span(ts: np.ndarray) -> str:
    return f"[{ts[0]:.3f}, {ts[-1]:.3f}]" if ts.size else "nothing"
