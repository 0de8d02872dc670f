"""What a live run shows over time: the state the views draw, kept current.

`display` draws one `ViewState` into an image and shows it (window, video, terminal);
`LiveView` keeps that state current through a run (the last prediction's thumbnails,
the traces read from the rings, the camera frame, stream health, pause), keeps the
video's clock and reads the keys (the window's, or a browser's: app.webview), so the
live loop (app.live) only hands it predictions and gives it turns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TextIO

import cv2
import numpy as np

from ..contract.manifest import Manifest
from ..contract.preprocess.inputs import ModelInputs
from .display import (TRACE_SECONDS, TerminalView, Trace, VideoView, ViewError, ViewState, WindowView,
                      frames_thumbnail, gaf_thumbnail, open_window, render_view, series_thumbnail)
from .ringbuffer import FrameRing, SensorRing
from .webview import WebView


class Prediction(Protocol):
    """What the view reads of a live.Prediction (live imports this module, not the reverse)."""

    label: str
    probs: np.ndarray
    present: dict[str, bool]
    latency_ms: dict[str, float]
    smoothed: str | None
    smoothed_confidence: float | None
    inputs: ModelInputs | None


KEY_POLL_S = 0.02  # a window's (or a test's key source's) keys are polled this often; a page's key wakes the loop
FRAME_FRESH_S = 2.0  # an older camera frame is not shown as the current one
_MISSING_TILE = (40, 40, 90)  # BGR: the tile of a modality that was missing in the window


def trace_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """What the trace plot shows of a sensor stream: the glove's fingers, else the accelerometer."""
    flex = tuple(c for c in channels if c.startswith("flex"))
    if flex:
        return flex
    acc = tuple(c for c in channels if c.startswith("acc"))
    return acc or channels[:3]


def thumbnails(manifest: Manifest, pred: Prediction) -> list[tuple[str, np.ndarray]]:
    """Per modality, the N sampled inputs of `pred` as BGR tiles (what the model saw)."""
    if pred.inputs is None:
        return []
    thumbs = []
    for m, arr, present in zip(manifest.modalities, pred.inputs.arrays, pred.inputs.present):
        if not present:
            tile = np.full((48, 64, 3), _MISSING_TILE, np.uint8)
            thumbs.append((m.name, np.stack([tile] * len(arr))))
        elif m.type == "gaf":
            thumbs.append((m.name, np.stack([gaf_thumbnail(a) for a in arr])))
        elif m.type == "series":
            thumbs.append((m.name, np.stack([series_thumbnail(a) for a in arr])))
        else:
            thumbs.append((m.name, frames_thumbnail(arr, manifest.frame_mean, manifest.frame_std)))
    return thumbs


def traces(manifest: Manifest, rings: Mapping[str, SensorRing | FrameRing], now: float, start: float) -> list[Trace]:
    """The last TRACE_SECONDS of every sensor stream's trace channels, times since `start`."""
    out = []
    for s in manifest.streams:
        if s.kind != "sensor":
            continue
        series = rings[s.name].window(now - TRACE_SECONDS, now + 1.0)
        chans = trace_channels(s.channels)
        what = "fingers" if chans and chans[0].startswith("flex") else "accelerometer" if chans[0].startswith("acc") else ""
        out.append(Trace(f"{s.name} {what}".strip(), series.timestamps - start, series.select(chans), chans))
    return out


class LiveView:
    """What a live run shows: a window or the terminal, the video (`--save-video`) and
    the page (`--serve`: a WebView, bound here, served once the devices' loop runs).

    The live loop calls `predicted()` once per prediction and `turn()` whenever it has
    time (after each prediction and while waiting for the next): a turn draws the view at
    the video's fps, writes one video image per slot (the video keeps the run's clock),
    shows the window and reads its keys. p (pause) and t (thumbnails) are the view's
    own; every key is returned, so the caller acts on q and s. The page is sent frames
    only while someone watches it: at the video's fps, and at once after a prediction
    (its state without a camera image, so it shows without waiting for the next slot
    and the camera stays at the view's rate).
    """

    def __init__(self, manifest: Manifest, rings: Mapping[str, SensorRing | FrameRing], sources, state: ViewState,
                 view: str = "auto", save_video: Path | None = None, video_fps: float = 10.0,
                 out: TextIO = sys.stdout, key_source: Callable[[], str] | None = None,
                 serve: tuple[str, int] | None = None, token: str | None = None):
        self.manifest, self.rings, self.sources, self.state = manifest, rings, sources, state
        self.window: WindowView | None = None
        self.terminal: TerminalView | None = None
        self.web: WebView | None = None
        self.video = VideoView(save_video, video_fps) if save_video is not None else None
        try:
            self.web = WebView(*serve, token=token, title=state.title) if serve is not None else None
            self.window, self.why = open_window(view, state.title)  # why: no window where one was hoped for
        except ViewError:
            self.close()
            raise
        self.terminal = TerminalView(out) if self.window is None else None
        self.frame_period = 1.0 / video_fps
        self._keys = key_source
        self._last: Prediction | None = None  # what the view shows (frozen while paused)
        self._frozen: np.ndarray | None = None  # the window's / video's image while paused
        self._paused_shown = False  # the view has been brought up to date since p was pressed
        self._made = 0.0  # wall time the shown prediction was made (the page's lag is measured from it)
        self._fresh = False  # a prediction the page has not been sent yet
        self._thumbs_of: Prediction | None = None  # the prediction state.thumbnails were drawn from
        self.start = 0.0
        self.next_frame = 0.0

    @property
    def shows_images(self) -> bool:
        """A window, a video or a watched page: the view is drawn every frame, not only per prediction."""
        return self.window is not None or self.video is not None or (self.web is not None and self.web.watched)

    def begin(self, start: float) -> None:
        """The streams began at host time `start`: the view's and the video's clock."""
        self.start = self.next_frame = start

    def set_smoothing(self, description: str) -> None:
        self.state.smoothing = description

    def predicted(self, pred: Prediction, line: str) -> None:
        """A new prediction (`line`: its one-line form for the plain terminal view)."""
        if not self.state.paused:
            self._last, self._made, self._fresh = pred, time.time(), True
        if self.terminal is not None:
            if self.terminal.live:  # the rich panel shows the state; plain lines need none of it
                self._refresh()
            self.terminal.update(self.state, line)

    def turn(self, end: float | None) -> str:
        """Draw, show and record the view if a frame is due (none past `end`); returns a key or ''."""
        now = time.monotonic()
        watched = self.web is not None and self.web.watched
        slot = self.shows_images and now >= self.next_frame and (end is None or self.next_frame <= end)
        if not (slot or (self._fresh and watched)):
            return self._key(self.web.key() if self.web is not None else "")
        self._fresh = False
        frozen = self.state.paused and self._paused_shown  # the paused view is the one shown when p was pressed
        if not frozen:
            self._refresh()
        self._paused_shown = self.state.paused
        image = None
        if self.window is not None or self.video is not None:  # the page draws itself from the state
            image = self._frozen if frozen and self._frozen is not None else render_view(self.state)
            self._frozen = image if self.state.paused else None
        if slot and self.video is not None:  # one image per slot keeps the video's clock
            while self.next_frame <= (now if end is None else min(now, end)):
                self.video.write(image)
                self.next_frame += self.frame_period
        elif slot and self.video is None:
            self.next_frame = now + self.frame_period
        if self.window is not None:
            self.window.show(image)
        if watched:  # a frame for a fresh prediction between slots: its state and segments, no camera image
            self.web.publish(self.state, made=self._made, camera=slot)
        key = self.window.poll_key() if self.window is not None else (self._keys() if self._keys else "")
        return self._key(key or (self.web.key() if self.web is not None else ""))

    def sleep(self, seconds: float) -> None:
        """Sleep until the view's next turn, `seconds` from now: at most KEY_POLL_S where
        keys must be polled (a window), and no longer than until a page sends a key. A
        page-only or terminal run so sleeps a whole hop or view frame, not 20 ms at a time
        (waking 50 times a second cost ~1 % of a core for nothing)."""
        if self.window is not None or self._keys is not None:
            seconds = min(seconds, KEY_POLL_S)
        seconds = max(0.0, seconds)
        if self.web is not None:
            self.web.wait_key(seconds)
        else:
            time.sleep(seconds)

    def _key(self, key: str) -> str:
        """The view's own keys act here (p pause, t thumbnails); every key is returned."""
        if key == "p":
            self.state.paused = not self.state.paused
        elif key == "t":
            self.state.show_thumbnails = not self.state.show_thumbnails
        return key

    def done(self, end: float) -> bool:
        """No frame is due before `end` any more."""
        return not self.shows_images or self.next_frame > end

    def snapshot(self, path: Path) -> None:
        """Write the view as it is now to an image file."""
        self._refresh()
        if not cv2.imwrite(str(path), render_view(self.state)):
            raise ViewError(f"--snapshot {str(path)!r}: OpenCV cannot write this image")

    def _refresh(self) -> None:
        """Bring the state up to now: clock, camera frame, health, traces, the shown prediction."""
        s, now = self.state, time.monotonic()
        s.now = now - self.start
        latest = self.sources.latest_frame()
        s.frame = None if latest is None or now - latest[0] > FRAME_FRESH_S else latest[1]
        s.health = self.sources.health()
        s.traces = traces(self.manifest, self.rings, now, self.start)
        pred = self._last
        if pred is None:
            return
        s.probs, s.label = pred.probs, pred.label
        s.smoothed, s.smoothed_confidence = pred.smoothed, pred.smoothed_confidence or 0.0
        s.missing = tuple(k for k, v in pred.present.items() if not v)
        s.latency_ms = pred.latency_ms
        if not s.show_thumbnails:
            s.thumbnails, self._thumbs_of = [], None
        elif self._thumbs_of is not pred:  # once per prediction, not per frame: colour-mapping GAF tiles is most of a frame
            s.thumbnails, self._thumbs_of = thumbnails(self.manifest, pred), pred

    def close(self) -> None:
        for view in (self.terminal, self.window, self.video, self.web):
            if view is not None:
                view.close()

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
