"""Device time -> host time: unwrap the device's µs counter, fit offset + drift.

A device stamps each sample block with its own free-running microsecond counter
(u32, wraps every 71.6 min). The host knows only when the bytes *arrived*, which is
the true time plus a non-negative, jittery transport latency (BLE connection
interval, serial buffering, scheduler wake-ups). Arrival time is never used as the
sample time; instead, like LSL/pyxdf, we fit

    host_monotonic = offset + (1 + drift) * device_seconds

continuously over a sliding horizon. Because latency is one-sided, the truth lies on
the *lower envelope* of the (device time, arrival time) cloud, so the fit is the
classic linear-programming clock fit (Moon, Skelly & Towsley 1999): the highest line
that stays below every point, i.e. the edge of the lower convex hull under a chosen
abscissa. Points are first reduced to the minimum-delay point per short time bin
(cheap, and it drops nothing the hull would use), isolated points far *below* their
neighbours (impossible physically: a corrupt timestamp or a clock glitch) are rejected,
and a device clock that jumps (reboot) restarts the fit.

Before enough data (`min_span_s` of device time): drift is assumed 0 (or the last
fit's drift after a restart) and the offset is the lower envelope of what was seen,
so the very first block maps to its own arrival time and estimates only improve.

Arrivals can also say nothing about the clock: a device that dumps seconds of backlog
in one read gives every block the same arrival time (a fitted slope of exactly -1), a
replay faster than real time compresses host time. A fitted drift beyond `max_drift_ppm`
(no crystal or RC oscillator is that far off; arrival patterns are) is therefore not
believed: the mapper keeps the prior drift (0: the nominal rate) under the lower
envelope and reports itself not `ready` (health: clock unlocked) until the arrivals
again fit a plausible clock. Mapped times then stay strictly increasing at the
device's own spacing whatever the arrivals do.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

U32 = 1 << 32


class DeviceClock:
    """Unwraps a wrapping device counter into continuous device seconds.

    The wire protocol's counter is u32 microseconds (the defaults); a device profile's
    counter field may be any width and tick (`modulus` = 2**bits, `tick_s` seconds per
    count). A step of more than half the range backwards is a wrap forwards would be
    wrong: deltas are taken modulo the range and read as signed, so small reorderings go
    backwards and wraps go forwards. After a silence longer than half the range
    (35.8 min for u32 µs) the number of wraps is ambiguous; pass `host_elapsed` (seconds
    since the previous call) and it is resolved from the host clock.
    """

    def __init__(self, modulus: int = U32, tick_s: float = 1e-6) -> None:
        self.modulus = int(modulus)
        self.tick_s = float(tick_s)
        self._last: int | None = None  # last raw counter value
        self._total = 0  # unwrapped ticks of the last value

    def reset(self) -> None:
        self._last = None
        self._total = 0

    def unwrap(self, count: int, host_elapsed: float | None = None) -> float:
        """Continuous device seconds of a raw counter value."""
        m = self.modulus
        count = int(count) % m
        if self._last is None:
            self._total = count
        else:
            delta = (count - self._last) % m
            elapsed = None if host_elapsed is None else host_elapsed / self.tick_s
            if elapsed is not None and elapsed > m / 2:
                delta += m * round((elapsed - delta) / m)
            elif delta >= m // 2:
                delta -= m
            self._total += delta
        self._last = count
        return self._total * self.tick_s


@dataclass(frozen=True)
class ClockFit:
    """host = offset + (1 + drift) * device, with device seconds measured from `x0`."""

    x0: float  # device seconds: reference point of the fit (for numerical conditioning)
    offset: float  # host seconds at device time x0
    drift: float  # dimensionless (1e-6 = 1 ppm); device clock fast -> drift < 0
    span_s: float  # device seconds of data the fit saw
    points: int  # bins the fit used
    locked: bool = False  # drift fitted from enough data and plausible (else the prior drift)

    def to_host(self, t_device):
        return self.offset + (1.0 + self.drift) * (np.asarray(t_device, np.float64) - self.x0)


class ClockMapper:
    """Online lower-envelope fit of device -> host time over a sliding horizon.

    `add(t_device, t_host_arrival)` per received block, using the device time of the
    block's LAST sample (the block cannot arrive before it is complete); `to_host()`
    maps any device time. Thread-unsafe: one mapper per stream, used by its consumer.
    """

    def __init__(
        self,
        horizon_s: float = 30.0,  # s of device time the fit looks back (60 s tracked a drift change 2x slower)
        bin_s: float = 0.25,  # s: keep only the minimum-delay point per bin
        min_span_s: float = 2.0,  # s: below this, drift is not fitted (prior drift used)
        outlier_s: float = 0.010,  # s: a supporting point this far below the fit without it is rejected
        jump_s: float = 0.5,  # s: points this far below the fit mean the device clock jumped
        late_s: float = 30.0,  # s: points this far above it too (a clock restart reads as huge latency)
        jump_count: int = 5,  # consecutive such points before the fit restarts
        max_drift_ppm: float = 1000.0,  # a fitted drift beyond this is an arrival pattern, not a clock
    ):
        self.horizon_s, self.bin_s, self.min_span_s = horizon_s, bin_s, min_span_s
        self.outlier_s, self.jump_s, self.late_s, self.jump_count = outlier_s, jump_s, late_s, jump_count
        self.max_drift = max_drift_ppm * 1e-6
        self._bins: deque[list] = deque()  # [bin index, x, z] with z = host - device, x relative to x0
        self._x0: float | None = None
        self._fit: ClockFit | None = None
        self._dirty = False
        self._prior_drift = 0.0
        self._below = 0
        self.points = 0  # pairs added since the last restart
        self.restarts = 0  # device clock jumps detected
        self.rejected = 0  # outlier points dropped from fits

    # -- input ---------------------------------------------------------------------------
    def add(self, t_device: float, t_host: float) -> None:
        """One (device seconds of a block's last sample, host arrival seconds) pair."""
        fit = self.fit()
        early = None if fit is None else float(fit.to_host(t_device)) - t_host
        if early is not None and (early > self.jump_s or early < -self.late_s):
            self._below += 1  # arrived before it was sampled, or absurdly late: the device clock jumped?
            if self._below < self.jump_count:
                return
            self._prior_drift = fit.drift
            self.reset()
            self.restarts += 1
        else:
            self._below = 0
        if self._x0 is None:
            self._x0 = float(t_device)
        x = float(t_device) - self._x0
        z = float(t_host) - float(t_device)
        b = int(np.floor(x / self.bin_s))
        bins = self._bins
        changed = True  # the fit is a function of the bins alone: refitted only when they change
        if bins and bins[-1][0] == b:
            changed = z < bins[-1][2]
            if changed:
                bins[-1][1], bins[-1][2] = x, z
        elif bins and b < bins[-1][0]:  # out of order (rare): insert in place
            for entry in bins:
                if entry[0] == b:
                    changed = z < entry[2]
                    if changed:
                        entry[1], entry[2] = x, z
                    break
            else:
                bins.append([b, x, z])
                self._bins = deque(sorted(bins, key=lambda e: e[0]))
        else:
            bins.append([b, x, z])
        last_x = self._bins[-1][1]
        while self._bins and self._bins[0][1] < last_x - self.horizon_s:
            self._bins.popleft()
        self.points += 1
        # Most blocks land in their bin above its lowest point and change nothing; refitting
        # on every block (up to 120 bins, a hull per supporting point) cost ~0.5 ms a block
        # once the horizon filled: 5 % of a core for one stream of 100 blocks a second
        # (benchmarks/clock_cost.py).
        self._dirty = self._dirty or changed

    def reset(self) -> None:
        """Forget every point (a different device, or its clock restarted); keeps the last drift as prior."""
        if self._fit is not None:
            self._prior_drift = self._fit.drift
        self._bins.clear()
        self._x0 = None
        self._fit = None
        self._dirty = False
        self._below = 0
        self.points = 0

    # -- output --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once drift is fitted (at least `min_span_s` of data) and plausible; before
        that, or while arrivals fit no plausible clock, offset only (clock unlocked)."""
        fit = self.fit()
        return fit is not None and fit.locked

    def fit(self) -> ClockFit | None:
        if self._dirty:
            self._fit = self._refit()
            self._dirty = False
        return self._fit

    def to_host(self, t_device):
        """Host seconds of device time(s); raises RuntimeError before the first add()."""
        fit = self.fit()
        if fit is None:
            raise RuntimeError("ClockMapper.to_host before any add()")
        return fit.to_host(t_device)

    @property
    def drift_ppm(self) -> float | None:
        fit = self.fit()
        return None if fit is None else fit.drift * 1e6

    # -- fitting -------------------------------------------------------------------------
    def _refit(self) -> ClockFit | None:
        if not self._bins:
            return None
        x = np.fromiter((e[1] for e in self._bins), np.float64, len(self._bins))
        z = np.fromiter((e[2] for e in self._bins), np.float64, len(self._bins))
        span = float(x[-1] - x[0])
        if span < self.min_span_s or len(x) < 3:
            return self._unlocked(x, z, span)
        keep = np.ones(len(x), bool)
        for _ in range(4):  # reject isolated points far below their neighbours, refit
            c, slope, support = _lp_fit(x[keep], z[keep], x_star=float(x[keep].mean()))
            idx = np.flatnonzero(keep)[list(support)]
            bad = [i for i in set(idx) if not self._supported(x, z, keep, i, slope)]
            if not bad:
                break
            keep[bad] = False
            self.rejected += len(bad)
        if abs(slope) > self.max_drift:  # a backlog, a burst or a replay: no clock to fit
            return self._unlocked(x, z, span)
        return self._make(c, slope, span, int(keep.sum()), locked=True)

    def _unlocked(self, x: np.ndarray, z: np.ndarray, span: float) -> ClockFit:
        """Offset only: the lower envelope of the points under the prior drift."""
        slope = self._prior_drift
        return self._make(float(np.min(z - slope * x)), slope, span, len(x), locked=False)

    def _supported(self, x: np.ndarray, z: np.ndarray, keep: np.ndarray, i: int, slope: float) -> bool:
        """A supporting point is real unless it lies far below its neighbours (within ±1 s) or
        below the fit made without it (catches a pair of outliers masking each other)."""
        near = keep & (np.abs(x - x[i]) <= 1.0)
        near[i] = False
        if near.any() and np.min(z[near] - slope * (x[near] - x[i])) - z[i] > self.outlier_s:
            return False
        rest = keep.copy()
        rest[i] = False
        if rest.sum() < 3:
            return True
        c, s, _ = _lp_fit(x[rest], z[rest], x_star=float(x[rest].mean()))
        return bool(z[i] - (c + s * x[i]) >= -self.outlier_s)

    def _make(self, c: float, slope: float, span: float, n: int, locked: bool) -> ClockFit:
        # z = c + slope * x  with z = host - device, x = device - x0
        #   => host = (x0 + c) + (1 + slope) * (device - x0)
        assert self._x0 is not None
        return ClockFit(x0=self._x0, offset=self._x0 + c, drift=slope, span_s=span, points=n, locked=locked)


def _lp_fit(x: np.ndarray, z: np.ndarray, x_star: float) -> tuple[float, float, tuple[int, int]]:
    """The highest line below every point at abscissa x_star: the lower-hull edge over x_star.

    Returns (intercept, slope, indices of the two supporting points). x must be sorted.
    With x_star = the points' mean abscissa this is the LP clock fit (minimum total
    gap). Tried and measured worse for extrapolating to the newest samples (uniform
    0-30 ms latency, 20 blocks/s, 10 s): an x_star nearer the newest data (slope from a
    short hull edge), averaging edges, least squares through hull vertices, per-segment
    minima; the mean's edge is long, so its slope is the steadiest.
    """
    hull: list[int] = []
    for i in range(len(x)):  # Andrew's monotone chain, lower hull
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (x[b] - x[a]) * (z[i] - z[a]) - (z[b] - z[a]) * (x[i] - x[a]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    if len(hull) == 1:
        return float(z[hull[0]]), 0.0, (hull[0], hull[0])
    x_star = min(max(x_star, x[hull[0]]), x[hull[-1]])
    for a, b in zip(hull, hull[1:]):
        if x[b] >= x_star:
            break
    slope = (z[b] - z[a]) / (x[b] - x[a])
    return float(z[a] - slope * x[a]), float(slope), (a, b)
