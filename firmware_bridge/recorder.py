"""Record live streams into a session folder, incrementally and crash-safe.

`write_session` (session.py) writes a whole recording at once; a live recorder cannot
wait for the end: a person records for an hour and the board may lose power. The
`SessionRecorder` writes the same format (docs/session-format.md) as data arrives:

    rec = SessionRecorder(folder, subject="p01", split=None)
    rec.add_sensor("glove", channels, rate_hz=100, units=[...], device={...})
    rec.add_camera("camera", rate_hz=30, width=640, height=480)
    rec.start(t0=time.monotonic())           # meta.json written now ("complete": false)
    ... from any thread:  rec.sink(name, t_host, values_or_frames, t_device=None)
                          rec.start_label("hammer", t_host); rec.stop_label(t_host)
                          rec.event(t_host, "glove", "reconnecting", "link lost")
    rec.close()                               # meta.json updated ("complete": true)

`sink` only enqueues (it runs in a device callback); one writer thread appends CSV
rows, JPEG frames and timestamp rows and flushes every `flush_s` (0.5 s), so a
`kill -9` loses at most the last flush interval. The camera is written as a Motion-
JPEG stream (`camera.mjpeg`: concatenated JPEG images, written unbuffered frame by
frame) because an MP4 written by OpenCV is unreadable until it is finalised; each
frame's timestamp row is written only after its image reached the OS, so a cut-off
session never has a timestamp without its frame. `labels.csv` is small and replaced
atomically at every flush, with a label still in progress ending at the newest data.
`read_session` repairs what a cut-off recording can leave (a truncated last CSV row,
a frame without a timestamp) with a warning.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from .session import FORMAT_NAME, FORMAT_VERSION, LABELS_FILE, META_FILE, TIME_FMT, VALUE_FMT, SessionError

FLUSH_S = 0.5  # seconds between flushes: the most a crash can lose (plus the delivery latency)
EVENTS_FILE = "events.csv"
JPEG_QUALITY = 90
_STOP = object()


@dataclass
class _Stream:
    name: str
    kind: str  # "sensor" | "camera"
    rate_hz: float
    channels: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    width: int = 0
    height: int = 0
    device: dict = field(default_factory=dict)
    rows: int = 0  # samples or frames written
    last_t: float | None = None


class SessionRecorder:
    """Appends every stream of a live run to a session folder; see the module docstring."""

    def __init__(self, folder: Path | str, subject: str = "anonymous", split: str | None = None,
                 session_id: str | None = None, extra: dict | None = None, flush_s: float = FLUSH_S,
                 jpeg_quality: int = JPEG_QUALITY):
        self.folder = Path(folder)
        _check_folder(self.folder)
        if (self.folder / META_FILE).exists():
            raise SessionError(self.folder / META_FILE, "already holds a session; record into a new folder")
        if split not in (None, "train", "val", "test"):
            raise SessionError(self.folder / META_FILE, f"split {split!r} is not train, val, test or none")
        self.subject, self.split = subject, split
        self.session_id = session_id or self.folder.name
        self.extra = dict(extra or {})
        self.flush_s = flush_s
        self.jpeg_quality = jpeg_quality
        self.streams: dict[str, _Stream] = {}
        self.t0: float | None = None  # host monotonic time of session t = 0
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._labels: list[tuple[float, float, str]] = []  # closed, session time
        self._open_label: tuple[float, str] | None = None  # (start, activity), session time
        self._label_lock = threading.Lock()
        self._labels_dirty = False
        self._files: dict[str, object] = {}
        self._thread: threading.Thread | None = None
        self._start_time = ""
        self._newest = 0.0  # newest data time written (session time)
        self._meta_newest = 0.0  # _newest when meta.json was last written

    # -- declaration -------------------------------------------------------------------
    def add_sensor(self, name: str, channels: tuple[str, ...], rate_hz: float, units: tuple[str, ...] | None = None,
                   device: dict | None = None) -> None:
        units = tuple(units) if units else ("",) * len(channels)
        assert len(units) == len(channels), f"{name}: {len(units)} units for {len(channels)} channels"
        self._add(_Stream(name, "sensor", float(rate_hz), tuple(channels), units, device=dict(device or {})))

    def add_camera(self, name: str, rate_hz: float, width: int, height: int, device: dict | None = None) -> None:
        self._add(_Stream(name, "camera", float(rate_hz), width=int(width), height=int(height), device=dict(device or {})))

    def _add(self, s: _Stream) -> None:
        assert self.t0 is None, "declare every stream before start()"
        assert s.name not in self.streams, f"stream {s.name!r} declared twice"
        self.streams[s.name] = s

    # -- life cycle ----------------------------------------------------------------------
    def start(self, t0: float) -> None:
        """Open the files, write meta.json (complete: false) and start the writer thread."""
        if not self.streams:
            raise SessionError(self.folder, "nothing to record: no stream was declared")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # what _check_folder cannot foresee (a read-only mount, /proc)
            raise SessionError(self.folder, f"cannot create the folder: {exc.strerror or exc}") from None
        self.t0 = float(t0)
        self._start_time = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for s in self.streams.values():
            if s.kind == "sensor":
                fh = open(self.folder / f"{s.name}.csv", "w", newline="")
                fh.write(",".join(["t", "t_device", *s.channels]) + "\n")
                self._files[s.name] = fh
            else:
                self._files[s.name] = open(self.folder / f"{s.name}.mjpeg", "wb", buffering=0)
                stamps = open(self.folder / f"{s.name}_timestamps.csv", "w", newline="")
                stamps.write("frame,t\n")
                self._files[s.name + "/t"] = stamps
        events = open(self.folder / EVENTS_FILE, "w", newline="")
        events.write("t,stream,event,detail\n")
        self._files["/events"] = events
        self._write_labels()
        self._write_meta(complete=False)
        self._flush()
        self._thread = threading.Thread(target=self._run, name="session-recorder", daemon=True)
        self._thread.start()

    def close(self) -> Path:
        """Stop writing: flush everything, close a label in progress, mark meta complete."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
        if self.t0 is not None and self._files:
            self.stop_label(None)
            self._flush()
            for fh in self._files.values():
                fh.close()
            self._files.clear()
            self._write_meta(complete=True)
        if self.error is not None:
            raise SessionError(self.folder, f"recording failed: {self.error}")
        return self.folder

    def __enter__(self) -> "SessionRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- producers (any thread): enqueue only ---------------------------------------------
    def sink(self, name: str, t_host: np.ndarray, data: np.ndarray, t_device: np.ndarray | None = None) -> None:
        """Samples (n, C) or frames (n, H, W, 3) of stream `name` at host times (n,)."""
        if name in self.streams:
            self._queue.put((name, np.array(t_host, np.float64, ndmin=1), np.array(data),
                             None if t_device is None else np.array(t_device, np.float64, ndmin=1)))

    def event(self, t_host: float, stream: str, event: str, detail: str = "") -> None:
        """A stream-health event (state change, lost blocks, battery...), kept in events.csv."""
        self._queue.put(("/event", float(t_host), stream, event, detail))

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything handed to this recorder before the call is written and
        flushed to the OS (labels included); False when `timeout` ran out first. What a
        caller waits on instead of sleeping past a flush interval."""
        if self._thread is None or not self._thread.is_alive():
            return False  # not started, closed, or the writer failed (see `error`)
        done = threading.Event()
        self._queue.put(("/sync", done))
        return done.wait(timeout)

    def start_label(self, activity: str, t_host: float) -> None:
        """`activity` starts now (a label in progress ends first)."""
        self.stop_label(t_host)
        with self._label_lock:
            self._open_label = (self._session_t(t_host), activity)
            self._labels_dirty = True

    def stop_label(self, t_host: float | None) -> None:
        """End the label in progress at t_host (None: at the newest data written)."""
        with self._label_lock:
            if self._open_label is None:
                return
            start, activity = self._open_label
            end = self._newest if t_host is None else self._session_t(t_host)
            if end > start:
                self._labels.append((start, end, activity))
            self._open_label = None
            self._labels_dirty = True

    def add_label(self, start_host: float, end_host: float, activity: str) -> None:
        with self._label_lock:
            self._labels.append((self._session_t(start_host), self._session_t(end_host), activity))
            self._labels_dirty = True

    @property
    def current_label(self) -> str | None:
        with self._label_lock:
            return None if self._open_label is None else self._open_label[1]

    def _session_t(self, t_host: float) -> float:
        assert self.t0 is not None, "start() the recorder first"
        return float(t_host) - self.t0

    # -- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        last_flush = time.monotonic()
        try:
            while True:
                timeout = max(0.0, self.flush_s - (time.monotonic() - last_flush))
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    self._drain()
                    return
                if item is not None and self._handle(item):
                    last_flush = time.monotonic()
                if time.monotonic() - last_flush >= self.flush_s:
                    self._flush()
                    last_flush = time.monotonic()
        except BaseException as exc:  # surfaced by close(); the app checks `error` too
            self.error = exc

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._handle(item)

    def _handle(self, item: tuple) -> bool:
        """Write one queued item; a sync marker flushes and wakes its waiter. True when flushed."""
        if item[0] != "/sync":
            self._write(item)
            return False
        self._flush()
        item[1].set()
        return True

    def _write(self, item: tuple) -> None:
        if item[0] == "/event":
            _, t, stream, event, detail = item
            csv.writer(self._files["/events"]).writerow([TIME_FMT % self._session_t(t), stream, event, detail])
            return
        name, t_host, data, t_device = item
        s = self.streams[name]
        t = t_host - self.t0
        if s.kind == "sensor":
            dev = np.full(len(t), np.nan) if t_device is None else t_device
            buf = io.StringIO()
            np.savetxt(buf, np.column_stack([t, dev, data.reshape(len(t), -1)]), delimiter=",",
                       fmt=[TIME_FMT, TIME_FMT] + [VALUE_FMT] * len(s.channels))
            self._files[name].write(buf.getvalue().replace("nan", ""))
        else:
            for ti, frame in zip(t, data.reshape(-1, *data.shape[-3:])):
                if frame.shape[:2] != (s.height, s.width):  # a camera replugged at another size
                    frame = cv2.resize(frame, (s.width, s.height), interpolation=cv2.INTER_AREA)
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise SessionError(self.folder / f"{name}.mjpeg", "OpenCV could not encode a frame as JPEG")
                self._files[name].write(jpeg.tobytes())  # unbuffered: the image is in the OS before its row
                self._files[name + "/t"].write(f"{s.rows},{TIME_FMT % ti}\n")
                s.rows += 1
        if s.kind == "sensor":
            s.rows += len(t)
        s.last_t = float(t[-1]) if len(t) else s.last_t
        self._newest = max(self._newest, s.last_t or 0.0)

    def _flush(self) -> None:
        for key, fh in self._files.items():
            fh.flush()
        with self._label_lock:
            dirty = self._labels_dirty or self._open_label is not None
            self._labels_dirty = False
        if dirty:
            self._write_labels()
        if self._newest != self._meta_newest:  # duration_s and frame counts stay true after a kill -9
            self._write_meta(complete=False)

    # -- small files, replaced atomically --------------------------------------------------
    def _write_labels(self) -> None:
        with self._label_lock:
            rows = list(self._labels)
            if self._open_label is not None and self._newest > self._open_label[0]:
                rows.append((self._open_label[0], self._newest, self._open_label[1]))
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["start", "end", "activity"])
        out.writerows([TIME_FMT % a, TIME_FMT % b, act] for a, b, act in sorted(rows))
        _replace(self.folder / LABELS_FILE, buf.getvalue())

    def _write_meta(self, complete: bool) -> None:
        self._meta_newest = self._newest
        streams = {}
        for s in self.streams.values():
            if s.kind == "sensor":
                streams[s.name] = {"kind": "sensor", "file": f"{s.name}.csv", "rate_hz": s.rate_hz, "device": s.device,
                                   "channels": list(s.channels), "units": list(s.units), "device_time": "t_device"}
            else:
                streams[s.name] = {"kind": "camera", "file": f"{s.name}.mjpeg", "timestamps": f"{s.name}_timestamps.csv",
                                   "rate_hz": s.rate_hz, "fps": s.rate_hz, "width": s.width, "height": s.height,
                                   "frames": s.rows, "device": s.device}
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "session_id": self.session_id,
            "subject": self.subject,
            "split": self.split,
            "start_time": self._start_time,
            "streams": streams,
            "labels": LABELS_FILE,
            "events": EVENTS_FILE,
            "recording": {"writer": "edgehar.firmware_bridge.recorder", "complete": complete, "flush_s": self.flush_s,
                          "duration_s": round(self._newest, 3), "host_monotonic_t0": self.t0},
            "extra": self.extra,
        }
        _replace(self.folder / META_FILE, json.dumps(meta, indent=1, default=str) + "\n")


def _check_folder(folder: Path) -> None:
    """SessionError unless `folder` is, or can be made, a folder this process may write:
    said when the recorder is made, before any device is opened or file written."""
    if folder.exists() and not folder.is_dir():
        raise SessionError(folder, "exists and is not a folder; give a new folder to record into")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SessionError(folder, f"cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SessionError(folder, f"cannot be written: no write permission in {existing}")


def _replace(path: Path, text: str) -> None:
    """Write a small file so that a reader sees the old or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
    os.replace(tmp, path)
