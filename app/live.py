"""The live path: per-stream ring buffers -> window scheduler -> backend -> predictions.

Every hop the scheduler takes the last `window_s` seconds of every stream, samples N
aligned segment times (segment centres: inference), builds GAF images and frames with
the same `build_inputs` that training uses, and runs the backend. Every constant comes
from the bundle manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .manifest import Manifest
from .preprocess.frames import FrameTransform
from .preprocess.inputs import build_inputs
from .preprocess.sampling import SegmentSampler
from .ringbuffer import FrameRing, SensorRing

# How much history each ring keeps, in windows: one window is all the scheduler reads;
# the rest absorbs producers that run ahead of the scheduler.
_RING_WINDOWS = 2.0


@dataclass
class Prediction:
    """One model output for the window ending at host time `t`."""

    t: float
    label: str
    confidence: float
    probs: np.ndarray  # (classes,)
    latency_ms: dict[str, float]  # sampling, gaf, frames, inference, total
    present: dict[str, bool]  # per modality: False when its stream had no data (degraded)
    extra: dict = field(default_factory=dict)  # e.g. the simulated truth

    def to_json(self, labels: tuple[str, ...]) -> dict:
        return {
            "t": round(self.t, 4),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "top3": [[labels[i], round(float(self.probs[i]), 4)] for i in np.argsort(self.probs)[::-1][:3]],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "degraded": not all(self.present.values()),
            "present": self.present,
            **self.extra,
        }


def make_rings(manifest: Manifest, frame_shape: tuple[int, int, int] | None) -> dict[str, SensorRing | FrameRing]:
    """One bounded ring per manifest stream, sized to hold `_RING_WINDOWS` windows."""
    rings: dict[str, SensorRing | FrameRing] = {}
    for s in manifest.streams:
        capacity = max(8, int(np.ceil(s.rate_hz * manifest.window_s * _RING_WINDOWS)))
        if s.kind == "camera":
            assert frame_shape is not None, "a camera stream needs the frame shape"
            rings[s.name] = FrameRing(frame_shape, capacity)
        else:
            rings[s.name] = SensorRing(s.channels, capacity)
    return rings


class WindowScheduler:
    """Turns the rings' last window into a prediction."""

    def __init__(self, manifest: Manifest, backend: Backend, rings: dict[str, SensorRing | FrameRing]):
        self.manifest = manifest
        self.backend = backend
        self.rings = rings
        self._sampler = SegmentSampler(manifest.num_segments, train=False)
        self._frames = FrameTransform.from_manifest(manifest)

    def predict(self, t_end: float) -> Prediction:
        m = self.manifest
        t_start = time.perf_counter()
        t0 = t_end - m.window_s
        series = {name: ring.window(t0, t_end) for name, ring in self.rings.items()}
        inputs = build_inputs(m, series, t0, t_end, self._sampler, self._frames)
        t_inf = time.perf_counter()
        logits = self.backend.run(tuple(a[None] for a in inputs.arrays))[0]
        t_done = time.perf_counter()
        probs = _softmax(logits)
        best = int(np.argmax(probs))
        latency = {k: v * 1e3 for k, v in inputs.timings.items()}
        latency["inference"] = (t_done - t_inf) * 1e3
        latency["total"] = (t_done - t_start) * 1e3
        return Prediction(
            t=t_end,
            label=m.labels[best],
            confidence=float(probs[best]),
            probs=probs,
            latency_ms=latency,
            present=dict(zip(m.modality_names(), inputs.present)),
        )

    def run(
        self,
        clock: Callable[[], float],
        start: float,
        seconds: float | None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Prediction]:
        """Yield one prediction per hop once the first window has filled.

        `start` is the host time the streams began; predictions start at
        start + window_s and follow a fixed hop grid (no drift from processing time;
        a hop that falls behind is skipped, not queued).
        """
        m = self.manifest
        next_t = start + m.window_s
        end = None if seconds is None else start + seconds
        while not stop():
            if end is not None and next_t > end:
                return
            now = clock()
            if now < next_t:
                time.sleep(min(next_t - now, 0.05))
                continue
            yield self.predict(next_t)
            next_t += m.hop_s
            behind = clock() - next_t
            if behind > m.hop_s:  # fell behind: skip to the newest hop instead of queueing
                next_t += np.floor(behind / m.hop_s) * m.hop_s


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()
