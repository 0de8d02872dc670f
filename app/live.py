"""The live path: per-stream ring buffers -> window scheduler -> backend -> predictions.

Every hop the scheduler takes the last `window_s` seconds of every stream, samples N
aligned segment times (segment centres: inference), builds GAF images and frames with
the same `build_inputs` that training uses, and runs the backend. Every constant comes
from the bundle manifest.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from .backends import Backend
from ..contract.manifest import Manifest
from ..contract.preprocess.frames import FrameTransform
from ..contract.preprocess.inputs import ModelInputs, build_inputs
from ..contract.preprocess.sampling import SegmentSampler
from .ringbuffer import FrameRing, SensorRing

# How much history each ring keeps, in windows: one window is all the scheduler reads;
# the rest absorbs producers that run ahead of the scheduler.
_RING_WINDOWS = 2.0
# A stream whose newest sample is older than this when a window ends has dropped out:
# its modality is fed as missing (zeros) and the prediction is marked degraded.
STALE_S = 0.5


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
    smoothed: str | None = None  # the label the view announces (Smoother)
    smoothed_confidence: float | None = None
    smoothing: str = ""
    inputs: ModelInputs | None = field(default=None, repr=False)  # for the view's thumbnails; not logged

    @property
    def degraded(self) -> bool:
        return not all(self.present.values())

    def to_json(self, labels: tuple[str, ...]) -> dict:
        smoothed = {} if self.smoothed is None else {"smoothed": {
            "label": self.smoothed, "confidence": round(float(self.smoothed_confidence or 0.0), 4), "mode": self.smoothing}}
        return {
            "t": round(self.t, 4),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "top3": [[labels[i], round(float(self.probs[i]), 4)] for i in np.argsort(self.probs)[::-1][:3]],
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "degraded": not all(self.present.values()),
            "present": self.present,
            "missing": [k for k, v in self.present.items() if not v],
            **smoothed,
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

    def stale_streams(self, t_end: float, stale_s: float = STALE_S) -> tuple[str, ...]:
        """Streams whose newest sample is older than `stale_s` at t_end: dropped out
        (glove out of range, camera unplugged). Their old samples must not pass for live data."""
        out = []
        for name, ring in self.rings.items():
            latest = ring.latest_time()
            if latest is None or latest < t_end - stale_s:
                out.append(name)
        return tuple(out)

    def predict(self, t_end: float, missing: tuple[str, ...] = ()) -> Prediction:
        """The prediction for the window ending at t_end; streams in `missing` are treated
        as absent (zeros, present=False: the model runs on what is left)."""
        m = self.manifest
        t_start = time.perf_counter()
        t0 = t_end - m.window_s
        series = {name: None if name in missing else ring.window(t0, t_end) for name, ring in self.rings.items()}
        inputs = build_inputs(m, series, t0, t_end, self._sampler, self._frames)
        t_inf = time.perf_counter()
        logits = self.backend.run(tuple(a[None] for a in inputs.arrays))[0]
        t_done = time.perf_counter()
        probs = _softmax(np.asarray(logits, np.float64))
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
            inputs=inputs,
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
            yield self.predict(next_t, self.stale_streams(next_t))
            next_t += m.hop_s
            behind = clock() - next_t
            if behind > m.hop_s:  # fell behind: skip to the newest hop instead of queueing
                next_t += np.floor(behind / m.hop_s) * m.hop_s


class Smoother:
    """The label the view announces, smoothed over the last k hops so it does not flicker.

    "majority": the most frequent raw label of the last k (ties: the most recent);
    confidence is its mean probability over those hops. "ema": exponential moving
    average of the probabilities, alpha = 2 / (k + 1). "none": the raw label.
    The raw per-hop result is always kept in the log.
    """

    MODES = ("majority", "ema", "none")

    def __init__(self, num_classes: int, mode: str = "majority", k: int = 5):
        if mode not in self.MODES:
            raise ValueError(f"smoothing {mode!r} is not one of {self.MODES}")
        if k < 1:
            raise ValueError(f"smoothing k must be >= 1, got {k}")
        self.mode, self.k, self.num_classes = mode, int(k), num_classes
        self._history: deque[np.ndarray] = deque(maxlen=self.k)
        self._ema: np.ndarray | None = None

    def describe(self) -> str:
        return {"majority": f"majority of {self.k}", "ema": f"EMA over {self.k}", "none": "no smoothing"}[self.mode]

    def cycle(self) -> str:
        self.mode = self.MODES[(self.MODES.index(self.mode) + 1) % len(self.MODES)]
        return self.mode

    def update(self, probs: np.ndarray) -> tuple[int, float]:
        """Add one hop's probabilities; returns (class index, confidence) to show."""
        probs = np.asarray(probs, np.float64)
        self._history.append(probs)
        alpha = 2.0 / (self.k + 1)
        self._ema = probs.copy() if self._ema is None else alpha * probs + (1 - alpha) * self._ema
        if self.mode == "none":
            i = int(np.argmax(probs))
            return i, float(probs[i])
        if self.mode == "ema":
            i = int(np.argmax(self._ema))
            return i, float(self._ema[i])
        votes = [int(np.argmax(p)) for p in self._history]
        counts = np.bincount(votes, minlength=self.num_classes)
        best = np.flatnonzero(counts == counts.max())
        i = next(v for v in reversed(votes) if v in best)  # ties: the most recent
        return i, float(np.mean([p[i] for p in self._history]))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# --------------------------------------------------------------------------- the live loop
# One loop for `edgehar live` (real devices) and `edgehar demo` (simulated ones): the
# sources differ, nothing else does.

@dataclass
class LiveOptions:
    """What a run shows and writes; every field has a flag and a config key."""

    seconds: float | None = None  # stop after this long (None: until quit / Ctrl-C)
    json_path: Path | None = None  # one JSON line per prediction
    view: str = "auto"  # "auto": a window where a display exists, else headless
    save_video: Path | None = None  # the annotated view as a video file
    video_fps: float = 10.0  # frames per second of the window / video
    smoothing: str = "majority"  # Smoother.MODES
    smoothing_k: int = 5
    thumbnails: bool = True
    stale_s: float = STALE_S
    snapshot: Path | None = None  # write the view at the end as an image (PNG), even headless


@dataclass
class LiveSummary:
    predictions: int
    scored: int
    agreement: float | None  # fraction of predictions equal to the simulated truth
    degraded: int = 0  # predictions made with a stream missing
    video_frames: int = 0


def run_live(manifest: Manifest, backend: Backend, sources, options: LiveOptions, out: TextIO = sys.stdout,
             verb: str = "live", key_source: Callable[[], str] | None = None) -> LiveSummary:
    """Stream `sources` into rings, predict every hop, show / log / record each prediction.

    `sources` is an app.sources.Sources (not started). `key_source` (tests) stands in
    for the window's keyboard.
    """
    from . import display

    frame_shape = sources.open()
    cam = next((s for s in manifest.streams if s.kind == "camera"), None)
    if cam is not None and frame_shape is None:
        raise display.ViewError(f"the bundle reads camera stream {cam.name!r} but no camera was given")
    rings = make_rings(manifest, frame_shape)

    def to_ring(name: str, t: np.ndarray, data: np.ndarray, _t_device=None) -> None:  # copy only
        ring = rings.get(name)
        if ring is None:
            return
        if data.ndim == 4:
            for ti, frame in zip(t, data):
                ring.append(float(ti), frame)
        else:
            ring.append(t, data)

    sources.add_sink(to_ring)
    scheduler = WindowScheduler(manifest, backend, rings)
    smoother = Smoother(len(manifest.labels), options.smoothing, options.smoothing_k)
    title = f"edgehar {verb} | {manifest.model} ({backend.name}, {manifest.precision})"
    subtitle = f"window {manifest.window_s:g} s | hop {manifest.hop_s:g} s | N={manifest.num_segments} | K={manifest.gaf_k}"

    window, why = display.open_window(options.view, title)
    note = f"edgehar {verb}: {why}; showing the headless view" if why else ""
    with contextlib.ExitStack() as stack:
        video = None
        if options.save_video is not None:
            video = display.VideoView(options.save_video, options.video_fps)
            stack.callback(video.close)
        if window is not None:
            stack.callback(window.close)
        terminal = display.TerminalView(out) if window is None else None
        if terminal is not None:
            stack.callback(terminal.close)
        json_file = stack.enter_context(open(options.json_path, "w")) if options.json_path else None

        # one inference before the streams start: a runtime's first call (allocation, graph
        # set-up) can take 100x a normal one and would cost the first hops
        backend.run(tuple(np.zeros((1, *shape), np.float32) for shape in manifest.input_shapes()))
        start = sources.start(expect={s.name: s for s in manifest.streams if s.kind == "sensor"})
        stack.callback(sources.stop)
        urls = {**getattr(sources, "devices", {}), **({n: u for n, u in _sim_urls(sources).items()})}
        if note:  # after the sources started: an error stays the only line on stderr
            print(note, file=out, flush=True)
        print(f"edgehar {verb}: {manifest.model} ({backend.name}, {manifest.precision}); "
              + ", ".join(f"{n} via {u}" for n, u in urls.items())
              + (f", {sources.camera_name} from {sources.camera_spec if sources.camera_spec is not None else 'the simulator'}"
                 if frame_shape is not None else "")
              + f"; window {manifest.window_s:g} s, hop {manifest.hop_s:g} s, N={manifest.num_segments}, K={manifest.gaf_k}",
              file=out, flush=True)

        predictions = scored = agree = degraded = 0
        state = display.ViewState(title=title, subtitle=subtitle, labels=manifest.labels,
                                  smoothing=smoother.describe(), show_thumbnails=options.thumbnails)
        last: Prediction | None = None
        paused = False
        frozen: np.ndarray | None = None
        next_t = start + manifest.window_s
        end = None if options.seconds is None else start + options.seconds
        frame_period = 1.0 / options.video_fps
        next_frame = start
        show = window is not None or video is not None
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                failure = sources.failure()
                if failure is not None:
                    raise failure
                now = time.monotonic()
                if end is not None and next_t > end and (not show or next_frame > end):
                    break
                if now >= next_t and (end is None or next_t <= end):
                    pred = scheduler.predict(next_t, scheduler.stale_streams(next_t, options.stale_s))
                    i, conf = smoother.update(pred.probs)
                    pred.smoothed, pred.smoothed_confidence, pred.smoothing = manifest.labels[i], conf, smoother.describe()
                    health = sources.health()
                    pred.extra["streams"] = {n: {k: h.get(k) for k in _HEALTH_FIELDS} for n, h in health.items()}
                    if sources.feed is not None:  # a feed (the demo's simulated rig) knows the truth
                        truth = sources.truth(pred.t - manifest.window_s, pred.t)
                        pred.extra["truth"] = truth
                        if truth is not None:
                            scored += 1
                            agree += truth == pred.label
                    predictions += 1
                    degraded += pred.degraded
                    if json_file:
                        json_file.write(json.dumps(pred.to_json(manifest.labels)) + "\n")
                        json_file.flush()
                    if not paused:
                        last = pred
                    if terminal is not None:
                        if terminal.live:  # the rich panel shows the state; plain lines need none of it
                            _update_state(state, manifest, scheduler, sources, last, start, smoother, options)
                        terminal.update(state, format_line(pred, start))
                    next_t += manifest.hop_s
                    behind = time.monotonic() - next_t
                    if behind > manifest.hop_s:  # fell behind: skip to the newest hop
                        next_t += np.floor(behind / manifest.hop_s) * manifest.hop_s
                    now = time.monotonic()
                    if not show:
                        continue
                # the view gets its turn after every prediction: slow inference must not freeze it
                if show and now >= next_frame and (end is None or next_frame <= end):
                    if paused and frozen is not None:
                        image = frozen
                    else:
                        _update_state(state, manifest, scheduler, sources, last, start, smoother, options)
                        state.paused = paused
                        image = display.render_view(state)
                        frozen = image if paused else None
                    if video is not None:  # one image per slot keeps the video's clock
                        while next_frame <= (now if end is None else min(now, end)):
                            video.write(image)
                            next_frame += frame_period
                    else:
                        next_frame = now + frame_period
                    if window is not None:
                        window.show(image)
                    key = window.poll_key() if window is not None else (key_source() if key_source else "")
                    if key == "q":
                        break
                    if key == "p":
                        paused = not paused
                        state.paused = paused
                    elif key == "s":
                        smoother.cycle()
                        state.smoothing = smoother.describe()
                    elif key == "t":
                        options.thumbnails = not options.thumbnails
                wake = min(next_t, next_frame) if show else next_t
                time.sleep(min(max(0.0, wake - time.monotonic()), 0.02))
        failure = sources.failure()
        if failure is not None:
            raise failure
        if options.snapshot is not None:
            _update_state(state, manifest, scheduler, sources, last, start, smoother, options)
            if not cv2.imwrite(str(options.snapshot), display.render_view(state)):
                raise display.ViewError(f"--snapshot {str(options.snapshot)!r}: OpenCV cannot write this image")
    summary = LiveSummary(predictions, scored, agree / scored if scored else None, degraded,
                          video.frames if video is not None else 0)
    if summary.agreement is not None:
        print(f"edgehar {verb}: {predictions} predictions, {100 * summary.agreement:.1f}% agree with the "
              "simulated activity", file=out)
    if degraded:
        print(f"edgehar {verb}: {degraded} of {predictions} predictions were degraded (a stream was missing)", file=out)
    if video is not None:
        print(f"edgehar {verb}: wrote {video.frames} frames ({video.frames / options.video_fps:.1f} s) to {options.save_video}", file=out)
    return summary


# Health fields carried in each JSON prediction line.
_HEALTH_FIELDS = ("state", "rate_hz", "lost_blocks", "crc_errors", "outages", "battery_pct")


def _sim_urls(sources) -> dict[str, str]:
    hub = getattr(sources, "hub", None)
    if hub is None:
        return {}
    return {n: s.url for n, s in hub.streams.items() if n not in getattr(sources, "devices", {})}


def trace_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """What the trace plot shows of a sensor stream: the glove's fingers, else the accelerometer."""
    flex = tuple(c for c in channels if c.startswith("flex"))
    if flex:
        return flex
    acc = tuple(c for c in channels if c.startswith("acc"))
    return acc or channels[:3]


def _update_state(state, manifest: Manifest, scheduler: WindowScheduler, sources, pred: Prediction | None,
                  start: float, smoother: Smoother, options: LiveOptions) -> None:
    from .display import TRACE_SECONDS, Trace, frames_thumbnail, gaf_thumbnail, series_thumbnail

    now = time.monotonic()
    state.now = now - start
    latest = sources.latest_frame()
    state.frame = None if latest is None or now - latest[0] > 2.0 else latest[1]
    state.health = sources.health()
    state.smoothing = smoother.describe()
    state.show_thumbnails = options.thumbnails
    traces = []
    for s in manifest.streams:
        if s.kind != "sensor":
            continue
        ring = scheduler.rings[s.name]
        series = ring.window(now - TRACE_SECONDS, now + 1.0)
        chans = trace_channels(s.channels)
        what = "fingers" if chans and chans[0].startswith("flex") else "accelerometer" if chans[0].startswith("acc") else ""
        traces.append(Trace(f"{s.name} {what}".strip(), series.timestamps - start, series.select(chans), chans))
    state.traces = traces
    if pred is None:
        return
    state.probs, state.label = pred.probs, pred.label
    state.smoothed, state.smoothed_confidence = pred.smoothed, pred.smoothed_confidence or 0.0
    state.missing = tuple(k for k, v in pred.present.items() if not v)
    state.latency_ms = pred.latency_ms
    thumbs = []
    if pred.inputs is not None and options.thumbnails:
        for m, arr, present in zip(manifest.modalities, pred.inputs.arrays, pred.inputs.present):
            if not present:
                tile = np.full((48, 64, 3), (40, 40, 90), np.uint8)
                thumbs.append((m.name, np.stack([tile] * len(arr))))
            elif m.type == "gaf":
                thumbs.append((m.name, np.stack([gaf_thumbnail(a) for a in arr])))
            elif m.type == "series":
                thumbs.append((m.name, np.stack([series_thumbnail(a) for a in arr])))
            else:
                thumbs.append((m.name, frames_thumbnail(arr, manifest.frame_mean, manifest.frame_std)))
    state.thumbnails = thumbs


def format_line(pred: Prediction, start: float) -> str:
    """One line per prediction for logs and the plain headless view."""
    lat = pred.latency_ms
    stages = " | ".join(f"{k} {lat[k]:.1f}" for k in ("sampling", "gaf", "frames", "inference"))
    truth = pred.extra.get("truth")
    mark = "" if truth is None else ("  ok" if truth == pred.label else f"  (truth {truth})")
    smooth = "" if pred.smoothed is None or pred.smoothed == pred.label else f"  -> {pred.smoothed}"
    degraded = "" if not pred.degraded else "  DEGRADED: missing " + ",".join(k for k, v in pred.present.items() if not v)
    return (f"t={pred.t - start:7.2f}s  {pred.label:<14} {pred.confidence:5.2f}{smooth}  "
            f"[{stages} | total {lat['total']:.1f} ms]{mark}{degraded}")
