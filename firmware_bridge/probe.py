"""Connect to one device for a few seconds and say what it sends: `edgehar devices --probe URL`.

Before a device goes into `live` or `record`, a user wants to know it is the device
they think and that it is well: who it says it is (its wire-v1 descriptor, or the
profile it was read through and whether the bytes matched it), how fast samples come
against the nominal rate, each channel's range in physical units (a sensor stuck at
zero or saturated shows here), and what was lost or broken on the way. The probe runs
the same `DeviceStream` the app runs, so what it reports is what the app will get.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from .device import DeviceInfo, DeviceStream
from .health import StreamHealth

PROBE_STREAM = "probe"


@dataclass(frozen=True)
class ProbeReport:
    """What one probe saw."""

    url: str
    seconds: float
    info: DeviceInfo | None  # what the device described (or its profile did); None: nothing
    samples: int
    rate_hz: float | None  # measured from the samples' arrivals; None with fewer than two deliveries
    minima: tuple[float, ...]  # per channel of `info`, physical units; () without samples
    maxima: tuple[float, ...]
    health: StreamHealth

    @property
    def nominal_hz(self) -> float | None:
        return None if self.info is None else self.info.rate_hz

    @property
    def profile(self) -> str | None:
        return None if self.info is None else self.info.device.get("profile")


class _Ranges:
    """Sink: per-channel min/max and the host times deliveries happened at."""

    def __init__(self) -> None:
        self.lo: np.ndarray | None = None
        self.hi: np.ndarray | None = None
        self.samples = 0
        self.first: tuple[float, int] | None = None  # (arrival, samples before it)
        self.last_arrival: float | None = None

    def __call__(self, name: str, t_host: np.ndarray, values: np.ndarray) -> None:
        now = time.monotonic()
        lo, hi = values.min(axis=0), values.max(axis=0)
        self.lo = lo if self.lo is None else np.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else np.maximum(self.hi, hi)
        if self.first is None:
            self.first = (now, len(values))
        self.samples += len(values)
        self.last_arrival = now

    def rate_hz(self) -> float | None:
        """Samples after the first delivery over the time since it: the device's real pace."""
        if self.first is None or self.last_arrival is None or self.last_arrival <= self.first[0]:
            return None
        return (self.samples - self.first[1]) / (self.last_arrival - self.first[0])


def probe(url: str, seconds: float) -> ProbeReport:
    """Stream `url` for `seconds` (reconnecting if it drops) and report.

    A device that cannot be reached raises its TransportError (one line), as `live` would.
    """
    ranges = _Ranges()
    stream = DeviceStream(PROBE_STREAM, url, ranges)

    async def run() -> StreamHealth:
        task = asyncio.ensure_future(stream.run())
        done, _ = await asyncio.wait({task}, timeout=seconds)
        health = stream.health.snapshot(time.monotonic())  # as it was while streaming, not as stopped
        if task in done:
            task.result()  # ended by itself (a replay) or failed: raise its error
        else:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return health

    health = asyncio.run(run())
    info = stream.info()
    has = ranges.lo is not None
    return ProbeReport(url=url, seconds=seconds, info=info, samples=ranges.samples, rate_hz=ranges.rate_hz(),
                       minima=tuple(float(x) for x in ranges.lo) if has else (),
                       maxima=tuple(float(x) for x in ranges.hi) if has else (),
                       health=health)
