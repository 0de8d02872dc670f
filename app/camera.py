"""The camera: a thread that reads OpenCV frames and keeps only the newest, with its time.

`--camera` takes what OpenCV takes, chosen once here:

    0, 1, ...                       a V4L2 / system camera by index
    0?width=640&height=480&fps=30&fourcc=MJPG
                                    ... asking the driver for a size, rate and pixel
                                    format (MJPG: a USB camera compresses on the device,
                                    which is how most reach 30 fps at 720p over USB 2)
    path/to/video.mp4               a video file, played at its own fps (loops at the end)
    "nvarguscamerasrc ! ... ! appsink"   a GStreamer pipeline (Jetson CSI cameras); needs
                                    an OpenCV built with GStreamer (pip wheels are not)

`CameraSource.open()` reads the first frame synchronously, so a camera index that
does not exist or an unreadable video fails at once with one `CameraError` line. Then
a thread reads continuously (a driver queue drained as fast as it fills is what keeps
latency low), stamps each frame with the host monotonic clock at arrival (a video file
on its own time base: start + k/fps, paced in real time) and hands it
to `sink(name, t (1,), frames (1, H, W, 3))` — the same sink shape the device layer
uses — and keeps the newest for the display. A camera that stops delivering (unplugged)
is marked "reconnecting" and reopened every second; its health is the device streams'
`StreamHealth` (state, rate_hz, lost_blocks, ...), so the view and the logs read both alike.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..errors import EdgeharError, EdgeharWarning
from ..firmware_bridge.health import CONNECTED, DOWN, RATE_WINDOW_S, RECONNECTING, StreamHealth
from ..firmware_bridge.sink import Sink
from .opencv_build import has_gstreamer

REOPEN_S = 1.0  # seconds between attempts to reopen a lost camera
READ_FAILURES = 5  # consecutive failed reads before a live camera counts as lost

Opener = Callable[..., "cv2.VideoCapture"]


class CameraError(EdgeharError):
    """A camera cannot be opened or read; carries what was asked for."""

    def __init__(self, spec: str, reason: str):
        self.spec = spec
        super().__init__(f"camera {spec!r}: {reason}")


# What a camera index may ask its driver for, in the order V4L2 wants them set (the pixel
# format first: it decides which sizes and rates exist).
_INDEX_OPTIONS = {"fourcc": cv2.CAP_PROP_FOURCC, "width": cv2.CAP_PROP_FRAME_WIDTH,
                  "height": cv2.CAP_PROP_FRAME_HEIGHT, "fps": cv2.CAP_PROP_FPS}


def index_options(spec: str) -> tuple[int, dict[str, float | str]]:
    """'0?width=640&height=480&fps=30&fourcc=MJPG' -> (0, options); CameraError names a bad one."""
    index, _, query = str(spec).strip().partition("?")
    options: dict[str, float | str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in _INDEX_OPTIONS:
            raise CameraError(spec, f"unknown option {key!r} (known: {', '.join(_INDEX_OPTIONS)})")
        if key == "fourcc":
            if len(value) != 4:
                raise CameraError(spec, f"fourcc={value!r} must be 4 characters, e.g. MJPG or YUYV")
            options[key] = value
            continue
        try:
            options[key] = float(value)
        except ValueError:
            options[key] = -1.0
        if not options[key] > 0:
            raise CameraError(spec, f"{key}={value!r} must be a positive number")
    return int(index), options


def camera_kind(spec: str) -> str:
    """'index', 'gstreamer' or 'file'."""
    text = str(spec).strip()
    if text.partition("?")[0].isdigit():
        return "index"
    if "!" in text:
        return "gstreamer"
    return "file"


def _quiet_opencv() -> None:
    """OpenCV logs its own warnings (e.g. "can't open camera by index") to stderr;
    our error says it in one line instead."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # older builds
        pass


class CameraSource:
    """One camera read by a background thread; see the module docstring."""

    def __init__(self, spec: str | int, sink: Sink | None = None, name: str = "camera",
                 opener: Opener = cv2.VideoCapture, clock: Callable[[], float] = time.monotonic,
                 loop_files: bool = True):
        self.spec = str(spec)
        self.kind = camera_kind(self.spec)
        self.name = name
        self.sink = sink
        self._opener = opener
        self._clock = clock
        self.loop_files = loop_files
        self.frame_shape: tuple[int, int, int] | None = None
        self.fps: float = 30.0
        self.state = DOWN
        self.frames = 0
        self.lost = 0  # frames a file had to skip to keep up, or reads that failed
        self.outages = 0
        self.last_error = ""
        self._cap = None
        self._latest: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._rate: deque = deque(maxlen=512)
        self._cost: deque = deque(maxlen=64)  # thread CPU s per frame: read, decode, sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- opening -------------------------------------------------------------------------
    def _open_capture(self):
        _quiet_opencv()
        if self.kind == "index":
            index, options = index_options(self.spec)
            cap = self._opener(index)
            for key in (k for k in _INDEX_OPTIONS if k in options):  # a driver may settle on the nearest it has: open() says so
                value = options[key]
                cap.set(_INDEX_OPTIONS[key], cv2.VideoWriter_fourcc(*value) if key == "fourcc" else value)
            return cap
        if self.kind == "gstreamer":
            if not has_gstreamer():
                raise CameraError(self.spec, "looks like a GStreamer pipeline, but this OpenCV was built without "
                                  "GStreamer (pip wheels are); install an OpenCV with GStreamer (on Jetson: JetPack's python3-opencv)")
            return self._opener(self.spec, cv2.CAP_GSTREAMER)
        if not Path(self.spec).is_file():
            raise CameraError(self.spec, "no such camera index or video file")
        return self._opener(self.spec)

    def open(self) -> tuple[int, int, int]:
        """Open and read one frame; returns its shape (H, W, 3). Raises CameraError."""
        cap = self._open_capture()
        if cap is None or not cap.isOpened():
            what = {"index": "cannot open this camera index (no such device?)",
                    "gstreamer": "GStreamer could not start the pipeline",
                    "file": "OpenCV cannot open this file as a video"}[self.kind]
            raise CameraError(self.spec, what)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise CameraError(self.spec, "opened, but no frame could be read" + (" (not a video?)" if self.kind == "file" else ""))
        frame = _bgr(frame)
        if self.kind == "index":
            _say_what_the_driver_gave(self.spec, frame.shape, float(cap.get(cv2.CAP_PROP_FPS) or 0.0))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.frame_shape = frame.shape
        self._cap = cap
        self.state = CONNECTED
        self._deliver(self._clock(), frame)
        return frame.shape

    def start(self) -> None:
        if self._cap is None:
            self.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self.state != DOWN:
            self.state = DOWN

    # -- the reader thread ---------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        with self._lock:  # files are paced at their fps, from the frame open() delivered
            next_due = self._clock() if self._latest is None else self._latest[0] + 1.0 / self.fps
        while not self._stop.is_set():
            if self._cap is None:  # lost: try to reopen
                if self._stop.wait(REOPEN_S):
                    return
                try:
                    cap = self._open_capture()
                except CameraError as exc:
                    self.last_error = str(exc)
                    continue
                if cap is not None and cap.isOpened():
                    self._cap, failures = cap, 0
                    self.state = CONNECTED
                    next_due = self._clock()
                continue
            cpu0 = time.thread_time()  # CPU, not wall: a camera's read blocks until its next frame
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if self.kind == "file" and self.loop_files and self.frames > 0:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = self._cap.read()
                if not ok or frame is None:
                    failures += 1
                    if failures >= READ_FAILURES or self.kind == "file":
                        self._lost("no frames (unplugged?)" if self.kind != "file" else "the video ended")
                    else:
                        self._stop.wait(0.02)
                    continue
            failures = 0
            if self.kind == "file":  # stamped on the file's own time base, see _due
                t = next_due = self._due(next_due)
                if t is None:
                    return
                next_due += 1.0 / self.fps
            else:
                t = self._clock()
            self._deliver(t, _bgr(frame), cpu0)

    def _due(self, due: float) -> float | None:
        """Wait for a file's next frame time and return it as the frame's time (None: stopped).

        A video file's frame k is stamped start + k/fps -- when the file says it was
        captured -- not when this thread woke, so a busy host does not jitter the
        intervals the samplers see. A thread more than 1 s behind re-bases on now rather
        than bursting through the backlog.
        """
        now = self._clock()
        if now < due and self._stop.wait(due - now):
            return None
        return max(due, self._clock() - 1.0)

    def _lost(self, reason: str) -> None:
        if self.state == CONNECTED:
            self.outages += 1
        self.state = RECONNECTING if not (self.kind == "file" and not self.loop_files) else DOWN
        self.last_error = reason
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self.state == DOWN:
            self._stop.set()

    def _deliver(self, t: float, frame: np.ndarray, cpu0: float | None = None) -> None:
        """Keep the frame as the newest and hand it to the sink; `cpu0`: the thread's CPU
        time before the read, to account the frame's cost (decode_ms in health)."""
        if self.frame_shape is not None and frame.shape != self.frame_shape:  # replugged at another size
            frame = cv2.resize(frame, (self.frame_shape[1], self.frame_shape[0]), interpolation=cv2.INTER_AREA)
        with self._lock:
            self._latest = (t, frame)
            self.frames += 1
            self._rate.append(t)
        if self.sink is not None:
            self.sink(self.name, np.array([t]), frame[None])
        if cpu0 is not None:
            self._cost.append(time.thread_time() - cpu0)

    # -- reads (any thread) ----------------------------------------------------------------
    def latest(self) -> tuple[float, np.ndarray] | None:
        """(host time, BGR frame) of the newest frame, or None before the first."""
        with self._lock:
            return self._latest

    def health(self, now: float | None = None) -> StreamHealth:
        """The camera's health, in the device streams' type (`now` unused: no outage clock)."""
        with self._lock:
            ts = [t for t in self._rate if t >= (self._rate[-1] if self._rate else 0) - RATE_WINDOW_S]
            rate = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 2 and ts[-1] > ts[0] else None
            last = self._latest[0] if self._latest else None
            decode_ms = round(1e3 * sum(self._cost) / len(self._cost), 3) if self._cost else None
        return StreamHealth(self.name, self.spec, self.state, device=f"camera {self.spec}",
                            rate_hz=None if rate is None else round(rate, 2), samples=self.frames, frames=self.frames,
                            lost_blocks=self.lost, outages=self.outages, last_sample_t=last, last_error=self.last_error,
                            decode_ms=decode_ms)


def _say_what_the_driver_gave(spec: str, shape: tuple[int, ...], fps: float) -> None:
    """A driver answers a size or rate it lacks with the nearest it has: one warning line."""
    asked = index_options(spec)[1]
    got = {"width": shape[1], "height": shape[0], "fps": fps}
    off = [f"{k} {asked[k]:g} (got {got[k]:g})" for k in ("width", "height", "fps")
           if k in asked and got[k] and abs(got[k] - asked[k]) > 0.5]
    if off:
        warnings.warn(EdgeharWarning(f"camera {spec!r}: the driver did not take " + ", ".join(off)), stacklevel=2)


def _bgr(frame: np.ndarray) -> np.ndarray:
    """3-channel uint8 BGR whatever the camera delivers (grey, BGRA)."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame
