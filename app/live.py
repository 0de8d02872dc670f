"""The live path: per-stream ring buffers -> window scheduler -> backend -> predictions.

Every hop the scheduler takes the last `window_s` seconds of every stream, samples N
aligned segment times (segment centres: inference), builds GAF images and frames with
the same `build_inputs` that training uses, and runs the backend. Every constant comes
from the bundle manifest.

`WindowScheduler.run` is the project's one hop loop; `run_live` consumes it and adds,
in small pieces, what a live run does with each prediction: smoothing, health and the
simulated truth into the JSON log, the same line and the health over MQTT (mqtt.MqttPublisher),
the view (liveview.LiveView), the summary.
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

import numpy as np

from . import display
from .liveview import LiveView
from .mqtt import MqttPublisher, MqttTarget
from .backends import Backend
from .config import LATENCY_STAGES, SMOOTHING_MODES, STALE_S
from ..contract.manifest import Manifest
from ..contract.preprocess.frames import FrameTransform
from ..contract.preprocess.inputs import ModelInputs, build_inputs
from ..contract.preprocess.sampling import SegmentSampler
from ..firmware_bridge.health import StreamHealth
from .ringbuffer import FrameRing, SensorRing

# How much history each ring keeps, in windows: one window is all the scheduler reads;
# the rest absorbs producers that run ahead of the scheduler.
_RING_WINDOWS = 2.0
# The most the hop loop sleeps at once while waiting without a `wait` of the caller's.
_WAIT_S = 0.05


@dataclass
class Prediction:
    """One model output for the window ending at host time `t`."""

    t: float
    label: str
    confidence: float
    probs: np.ndarray  # (classes,)
    latency_ms: dict[str, float]  # late, rings, sampling, gaf, frames, inference, unattributed, total
    present: dict[str, bool]  # per modality: False when its stream had no data (degraded)
    age_ms: dict[str, float] = field(default_factory=dict)  # per stream: newest sample used -> prediction
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
            "age_ms": self.age_ms,
            "degraded": not all(self.present.values()),
            "present": self.present,
            "missing": [k for k, v in self.present.items() if not v],
            **smoothed,
            **self.extra,
        }


def make_rings(manifest: Manifest, camera: bool, camera_fps: float | None = None) -> dict[str, SensorRing | FrameRing]:
    """One bounded ring per manifest stream, sized to hold `_RING_WINDOWS` windows.

    The frame ring keeps frames reduced to the model's input size (FrameRing), so its
    memory is the bundle's business, not the camera's. It is sized for the faster of
    the bundle's frame rate and the camera's own (`camera_fps`): a 60 fps camera under a
    30 fps bundle would otherwise leave it one window deep, and a hop's window view
    (FrameRing.window) would be overwritten while it is read."""
    rings: dict[str, SensorRing | FrameRing] = {}
    for s in manifest.streams:
        rate = max(s.rate_hz, camera_fps or 0.0) if s.kind == "camera" else s.rate_hz
        capacity = max(8, int(np.ceil(rate * manifest.window_s * _RING_WINDOWS)))
        if s.kind == "camera":
            assert camera, "a camera stream needs a camera"
            rings[s.name] = FrameRing(FrameTransform.from_manifest(manifest), capacity)
        else:
            rings[s.name] = SensorRing(s.channels, capacity)
    return rings


class WindowScheduler:
    """Turns the rings' last window into a prediction."""

    def __init__(self, manifest: Manifest, backend: Backend, rings: dict[str, SensorRing | FrameRing]):
        self.manifest = manifest
        self.backend = backend
        self.rings = rings
        self._sampler = SegmentSampler.for_manifest(manifest, train=False)
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

    def predict(self, t_end: float, missing: tuple[str, ...] = (), late_s: float = 0.0) -> Prediction:
        """The prediction for the window ending at t_end; streams in `missing` are treated
        as absent (zeros, present=False: the model runs on what is left).

        Every millisecond from the hop's deadline to the prediction is in `latency_ms`:
        "late" (`late_s`: the deadline to this call, i.e. the loop's queueing), "rings"
        (the window queries), "sampling", "gaf", "frames", "inference", and what none of
        them covers as "unattributed" (softmax, bookkeeping); "total" is their sum.
        `age_ms` is, per stream, how old its newest sample in the window is when the
        prediction is made.
        """
        m = self.manifest
        t_start = time.perf_counter()
        t0 = t_end - m.window_s
        series = {name: None if name in missing else ring.window(t0, t_end) for name, ring in self.rings.items()}
        t_rings = time.perf_counter()
        inputs = build_inputs(m, series, t0, t_end, self._sampler, self._frames)
        t_inf = time.perf_counter()
        logits = self.backend.run(tuple(a[None] for a in inputs.arrays))[0]
        t_done = time.perf_counter()
        probs = _softmax(np.asarray(logits, np.float64))
        best = int(np.argmax(probs))
        t_end_call = time.perf_counter()
        latency = {"late": late_s * 1e3, "rings": (t_rings - t_start) * 1e3}
        latency.update((k, v * 1e3) for k, v in inputs.timings.items())
        latency["inference"] = (t_done - t_inf) * 1e3
        total = late_s * 1e3 + (t_end_call - t_start) * 1e3
        latency["unattributed"] = max(0.0, total - sum(latency.values()))
        latency["total"] = total
        made = t_end + total / 1e3  # the prediction's time on the streams' clock
        age = {name: round((made - s.timestamps[-1]) * 1e3, 3)
               for name, s in series.items() if s is not None and len(s.timestamps)}
        return Prediction(
            t=t_end,
            label=m.labels[best],
            confidence=float(probs[best]),
            probs=probs,
            latency_ms=latency,
            present=dict(zip(m.modality_names(), inputs.present)),
            age_ms=age,
            inputs=inputs,
        )

    def run(
        self,
        clock: Callable[[], float],
        start: float,
        seconds: float | None,
        stop: Callable[[], bool] = lambda: False,
        wait: Callable[[float], None] | None = None,
        stale_s: float = STALE_S,
    ) -> Iterator[Prediction]:
        """Yield one prediction per hop once the first window has filled.

        `start` is the host time the streams began; predictions start at
        start + window_s and follow a fixed hop grid (no drift from processing time;
        a hop that falls behind is skipped, not queued). While the next hop is not due,
        `wait(its time)` is called (the caller's turn, e.g. the view; it returns
        shortly); without one the loop sleeps. `stop()` is asked before every step.
        """
        m = self.manifest
        next_t = start + m.window_s
        end = None if seconds is None else start + seconds
        while not stop():
            if end is not None and next_t > end:
                return
            now = clock()
            if now < next_t:
                if wait is not None:
                    wait(next_t)
                else:
                    time.sleep(min(next_t - now, _WAIT_S))
                continue
            # late: from the hop's deadline to the prediction's start (this loop's
            # queueing: the caller's turn, the staleness check)
            missing = self.stale_streams(next_t, stale_s)
            yield self.predict(next_t, missing, late_s=max(0.0, clock() - next_t))
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

    MODES = SMOOTHING_MODES

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
    serve: tuple[str, int] | None = None  # (host, port): the view as a web page (app.webview)
    token: str | None = None  # the page's token (a non-loopback host gets a random one without)
    mqtt: MqttTarget | None = None  # publish each prediction and the streams' health to this broker


@dataclass
class LiveSummary:
    predictions: int
    scored: int
    agreement: float | None  # fraction of predictions equal to the simulated truth
    degraded: int = 0  # predictions made with a stream missing
    video_frames: int = 0


# Health fields carried in each JSON prediction line.
_HEALTH_FIELDS = ("state", "rate_hz", "lost_blocks", "crc_errors", "outages", "battery_pct", "decode_ms")


def run_live(manifest: Manifest, backend: Backend, sources, options: LiveOptions, out: TextIO = sys.stdout,
             verb: str = "live", key_source: Callable[[], str] | None = None) -> LiveSummary:
    """Stream `sources` into rings, predict every hop, show / log / record each prediction.

    `sources` is an app.sources.Sources (not started). `key_source` (tests) stands in
    for the window's keyboard.
    """
    mqtt = None if options.mqtt is None else MqttPublisher(  # before anything opens: paho may be missing
        options.mqtt, note=lambda text: print(f"edgehar {verb}: {text}", file=sys.stderr, flush=True))
    frame_shape = sources.open()
    cam = next((s for s in manifest.streams if s.kind == "camera"), None)
    if cam is not None and frame_shape is None:
        raise display.ViewError(f"the bundle reads camera stream {cam.name!r} but no camera was given")
    rings = make_rings(manifest, frame_shape is not None, sources.camera_fps)
    sources.add_sink(_ring_sink(rings))
    scheduler = WindowScheduler(manifest, backend, rings)
    smoother = Smoother(len(manifest.labels), options.smoothing, options.smoothing_k)
    state = display.ViewState(
        title=f"edgehar {verb} | {manifest.model} ({backend.name}, {manifest.precision})",
        subtitle=f"window {manifest.window_s:g} s | hop {manifest.hop_s:g} s | N={manifest.num_segments} | K={manifest.gaf_k}",
        labels=manifest.labels, smoothing=smoother.describe(), show_thumbnails=options.thumbnails)
    tally = _Tally()
    with contextlib.ExitStack() as stack:
        view = stack.enter_context(LiveView(manifest, rings, sources, state, options.view, options.save_video,
                                                    options.video_fps, out, key_source, options.serve, options.token))
        log = stack.enter_context(open(options.json_path, "w")) if options.json_path else None
        if mqtt is not None:
            stack.enter_context(mqtt)  # connects in the background: the broker may take its time
        warm_up(backend, manifest)
        start = sources.start(expect={s.name: s for s in manifest.streams if s.kind == "sensor"})
        stack.callback(sources.stop)
        if view.why:  # after the sources started: an error stays the only line on stderr
            print(f"edgehar {verb}: {view.why}; showing the headless view", file=out, flush=True)
        print(_banner(verb, manifest, backend, sources, frame_shape is not None), file=out, flush=True)
        view.begin(start)
        if view.web is not None:
            view.web.start(sources.loop)
            stack.callback(view.web.close)  # before the devices' loop it serves on stops
            print(f"edgehar {verb}: live view at {view.web.url}"
                  + ("" if view.web.loopback else " (anyone with this address can watch and use the keys)"),
                  file=out, flush=True)
        run = _Run(manifest, scheduler, smoother, sources, view, log, mqtt, tally, options, start)
        with contextlib.suppress(KeyboardInterrupt):
            run.loop()
        _raise_failure(sources)
        if options.snapshot is not None:
            view.snapshot(options.snapshot)
    summary = tally.summary(view.video.frames if view.video is not None else 0)
    _print_summary(summary, verb, options, out)
    if mqtt is not None:
        print(f"edgehar {verb}: {mqtt.summary()}", file=out)
    return summary


def warm_up(backend: Backend, manifest: Manifest) -> None:
    """One inference before the streams start: a runtime's first call (allocation, graph
    set-up) can take 100x a normal one and would cost the first hops."""
    backend.run(tuple(np.zeros((1, *shape), np.float32) for shape in manifest.input_shapes()))


def _ring_sink(rings: dict[str, SensorRing | FrameRing]):
    """The sink that copies every stream into its ring (nothing else: it runs in device callbacks)."""

    def to_ring(name: str, t: np.ndarray, data: np.ndarray, _t_device=None) -> None:
        ring = rings.get(name)
        if ring is None:
            return
        if data.ndim == 4:
            for ti, frame in zip(t, data):
                ring.append(float(ti), frame)
        else:
            ring.append(t, data)

    return to_ring


def _raise_failure(sources) -> None:
    failure = sources.failure()
    if failure is not None:
        raise failure


@dataclass
class _Tally:
    """Counts of a run, for its summary."""

    predictions: int = 0
    scored: int = 0  # predictions with a simulated truth
    agree: int = 0
    degraded: int = 0

    def add(self, pred: Prediction) -> None:
        self.predictions += 1
        self.degraded += pred.degraded
        truth = pred.extra.get("truth")
        if truth is not None:
            self.scored += 1
            self.agree += truth == pred.label

    def summary(self, video_frames: int) -> LiveSummary:
        return LiveSummary(self.predictions, self.scored, self.agree / self.scored if self.scored else None,
                           self.degraded, video_frames)


class _Run:
    """One run's hop loop: the scheduler's predictions, annotated, logged and shown; the
    view's turns while waiting; keys."""

    def __init__(self, manifest: Manifest, scheduler: WindowScheduler, smoother: Smoother, sources,
                 view: LiveView, log: TextIO | None, mqtt: MqttPublisher | None, tally: _Tally, options: LiveOptions,
                 start: float):
        self.manifest, self.scheduler, self.smoother, self.sources = manifest, scheduler, smoother, sources
        self.view, self.log, self.mqtt, self.tally, self.options, self.start = view, log, mqtt, tally, options, start
        self.end = None if options.seconds is None else start + options.seconds
        self.quit = False

    def loop(self) -> None:
        for pred in self.scheduler.run(time.monotonic, self.start, self.options.seconds, self._stop, self._wait,
                                       self.options.stale_s):
            health = self._annotate(pred)
            self.tally.add(pred)
            line = json.dumps(pred.to_json(self.manifest.labels)) if self.log is not None or self.mqtt is not None else ""
            if self.log is not None:
                self.log.write(line + "\n")
                self.log.flush()
            if self.mqtt is not None:
                self.mqtt.predicted(line, health)
            self.view.predicted(pred, format_line(pred, self.start))
            self._turn()  # after every prediction: slow inference must not freeze the view
        while self.end is not None and not self._stop() and not self.view.done(self.end):  # the video's last frames
            self._wait(self.end)

    def _annotate(self, pred: Prediction) -> dict[str, StreamHealth]:
        """The smoothed label, every stream's health and (simulated sources) the truth; returns the health."""
        i, conf = self.smoother.update(pred.probs)
        pred.smoothed, pred.smoothed_confidence, pred.smoothing = self.manifest.labels[i], conf, self.smoother.describe()
        health = self.sources.health()
        pred.extra["streams"] = {n: {k: getattr(h, k) for k in _HEALTH_FIELDS} for n, h in health.items()}
        if self.sources.feed is not None:  # a feed (the demo's simulated rig) may know the truth
            pred.extra["truth"] = self.sources.truth(pred.t - self.manifest.window_s, pred.t)
        return health

    def _stop(self) -> bool:
        _raise_failure(self.sources)
        return self.quit

    def _wait(self, until: float) -> None:
        """Until the next hop at `until`: the view's turn, then sleep until the hop or the
        view's next frame (the view wakes it sooner for keys)."""
        self._turn()
        wake = min(until, self.view.next_frame) if self.view.shows_images else until
        self.view.sleep(wake - time.monotonic())

    def _turn(self) -> None:
        key = self.view.turn(self.end)
        if key == "q":
            self.quit = True
        elif key == "s":
            self.smoother.cycle()
            self.view.set_smoothing(self.smoother.describe())


def _banner(verb: str, manifest: Manifest, backend: Backend, sources, camera: bool) -> str:
    """The run's first line: model, where each stream comes from, the window."""
    urls = {**getattr(sources, "devices", {}), **_sim_urls(sources)}
    return (f"edgehar {verb}: {manifest.model} ({backend.name}, {manifest.precision}); "
            + ", ".join(f"{n} via {u}" for n, u in urls.items())
            + (f", {sources.camera_name} from {sources.camera_spec if sources.camera_spec is not None else 'the simulator'}"
               if camera else "")
            + f"; window {manifest.window_s:g} s, hop {manifest.hop_s:g} s, N={manifest.num_segments}, K={manifest.gaf_k}")


def _sim_urls(sources) -> dict[str, str]:
    hub = getattr(sources, "hub", None)
    if hub is None:
        return {}
    return {n: s.url for n, s in hub.streams.items() if n not in getattr(sources, "devices", {})}


def _print_summary(summary: LiveSummary, verb: str, options: LiveOptions, out: TextIO) -> None:
    n = summary.predictions
    if summary.agreement is not None:
        print(f"edgehar {verb}: {n} predictions, {100 * summary.agreement:.1f}% agree with the "
              "simulated activity", file=out)
    if summary.degraded:
        print(f"edgehar {verb}: {summary.degraded} of {n} predictions were degraded (a stream was missing)", file=out)
    if options.save_video is not None:
        frames = summary.video_frames
        print(f"edgehar {verb}: wrote {frames} frames ({frames / options.video_fps:.1f} s) to {options.save_video}", file=out)


def format_line(pred: Prediction, start: float) -> str:
    """One line per prediction for logs and the plain headless view."""
    lat = pred.latency_ms
    stages = " | ".join(f"{k} {lat[k]:.1f}" for k in LATENCY_STAGES if k in lat)
    truth = pred.extra.get("truth")
    mark = "" if truth is None else ("  ok" if truth == pred.label else f"  (truth {truth})")
    smooth = "" if pred.smoothed is None or pred.smoothed == pred.label else f"  -> {pred.smoothed}"
    degraded = "" if not pred.degraded else "  DEGRADED: missing " + ",".join(k for k, v in pred.present.items() if not v)
    return (f"t={pred.t - start:7.2f}s  {pred.label:<14} {pred.confidence:5.2f}{smooth}  "
            f"[{stages} | total {lat['total']:.1f} ms]{mark}{degraded}")
