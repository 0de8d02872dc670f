"""The on-disk session: one folder of plain CSV, one video and JSON (docs/session-format.md).

The simulator writes it, a recorder of real devices will write it, the trainer and
the replay transport read it. It is deliberately readable without edgehar (any
CSV reader, any video player), so a session can be checked by eye and by other
tools. Reading validates everything it relies on and fails with one `SessionError`
line naming the file and what is wrong, because a half-read session silently
trains a wrong model.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from ..contract.series import FrameSeries, SensorSeries
from ..errors import EdgeharError, EdgeharWarning

FORMAT_NAME = "edgehar-session"
FORMAT_VERSION = 1
META_FILE = "meta.json"
LABELS_FILE = "labels.csv"
VIDEO_FOURCC = "mp4v"  # MPEG-4 part 2 in .mp4: round-trips frame-exact counts with opencv-python
TIME_FMT = "%.6f"  # host seconds with microsecond resolution
VALUE_FMT = "%.7g"  # float32 values keep ~7 significant digits

Labels = list[tuple[float, float, str]]


class SessionRepairWarning(EdgeharWarning):
    """A recording was repaired while reading: its cut-off tail (crash, kill, power loss)
    or rows with non-finite values were left out, and counted in the message."""


class SessionError(EdgeharError):
    """A session folder is missing a file or holds a malformed one; carries the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Recording:
    """Synchronised streams with their labels, from any source (simulator or real devices).

    meta["streams"][name] must give each stream's nominal "rate_hz", and for sensors
    the "units" per channel; an optional "device" dict is kept as free-form info.
    Optional meta keys: "session_id", "split", "start_time" (ISO 8601); everything else
    in meta is stored under "extra".
    """

    series: dict[str, SensorSeries | FrameSeries]  # "glove", "imu", "camera", ...
    labels: Labels  # (start_s, end_s, activity), on the streams' clock
    subject: str
    meta: dict


@dataclass(frozen=True)
class Session(Recording):
    """A recording read back from disk; meta is the folder's meta.json."""

    folder: Path = Path()


def label_at(labels: Labels, t: float) -> str | None:
    """The activity labelled at time t, or None where no label covers it."""
    for start, end, activity in labels:
        if start <= t < end:
            return activity
    return None


def window_label(labels: Labels, t0: float, t1: float) -> str | None:
    """The activity covering most of [t0, t1), or None where no label overlaps it."""
    cover: dict[str, float] = {}
    for start, end, activity in labels:
        overlap = min(end, t1) - max(start, t0)
        if overlap > 0:
            cover[activity] = cover.get(activity, 0.0) + overlap
    return max(cover, key=cover.get) if cover else None


def _write_csv(path: Path, header: list[str], columns: np.ndarray, fmt: list[str]) -> None:
    np.savetxt(path, columns, fmt=fmt, delimiter=",", header=",".join(header), comments="")


def write_session(folder: Path | str, recording: Recording) -> Path:
    """Write a recording as a session folder (created if needed) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = recording.meta.get("streams", {})
    streams = {}
    for name, s in recording.series.items():
        if name not in info or "rate_hz" not in info[name]:
            raise SessionError(folder / META_FILE, f"recording meta has no streams.{name}.rate_hz")
        entry = {"rate_hz": float(info[name]["rate_hz"]), "device": info[name].get("device", {})}
        if isinstance(s, SensorSeries):
            units = list(info[name].get("units", []))
            if len(units) != len(s.channels):
                raise SessionError(folder / META_FILE, f"streams.{name}.units has {len(units)} entries for {len(s.channels)} channels")
            file = f"{name}.csv"
            _write_csv(folder / file, ["t", *s.channels], np.column_stack([s.timestamps, s.values]), [TIME_FMT] + [VALUE_FMT] * len(s.channels))
            streams[name] = {"kind": "sensor", "file": file, **entry, "channels": list(s.channels), "units": units}
        else:
            file, stamps = f"{name}.mp4", f"{name}_timestamps.csv"
            n, h, w, _ = s.frames.shape
            writer = cv2.VideoWriter(str(folder / file), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), entry["rate_hz"], (w, h))
            if not writer.isOpened():
                raise SessionError(folder / file, f"OpenCV cannot open a {VIDEO_FOURCC} writer")
            for frame in s.frames:
                writer.write(frame)
            writer.release()
            _write_csv(folder / stamps, ["frame", "t"], np.column_stack([np.arange(n), s.timestamps]), ["%d", TIME_FMT])
            streams[name] = {"kind": "camera", "file": file, "timestamps": stamps, **entry, "width": w, "height": h, "fps": entry["rate_hz"], "frames": n}
    with open(folder / LABELS_FILE, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["start", "end", "activity"])
        out.writerows([TIME_FMT % a, TIME_FMT % b, act] for a, b, act in recording.labels)
    known = {"streams", "session_id", "split", "start_time"}
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "session_id": recording.meta.get("session_id", folder.name),
        "subject": recording.subject,
        "split": recording.meta.get("split"),
        "start_time": recording.meta.get("start_time", datetime.now(timezone.utc).isoformat(timespec="seconds")),
        "streams": streams,
        "labels": LABELS_FILE,
        "extra": {k: v for k, v in recording.meta.items() if k not in known},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
    return folder


def _json_default(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def _read_csv(path: Path, header: list[str], cut_off: bool = False, optional: str | None = None) -> np.ndarray:
    """Rows of a numeric CSV whose first line must be exactly `header` (with the
    `optional` column allowed second; it is dropped). In a recording that was cut off
    (`cut_off`), a truncated last row is ignored with a warning."""
    if not path.is_file():
        raise SessionError(path, "missing file")
    with open(path) as fh:
        first = fh.readline().strip()
        body = fh.read() if cut_off else None
    names = first.split(",")
    extra = optional is not None and names == [header[0], optional, *header[1:]]
    if names != header and not extra:
        raise SessionError(path, f"bad header {first!r}, expected {','.join(header)!r}")
    width = len(header) + extra  # columns in the file
    source: object = path
    if body is not None and body and not body.endswith("\n"):
        body = body[: body.rfind("\n") + 1]
        warnings.warn(f"{path}: ignored a truncated last row (the recording was cut off)", SessionRepairWarning, stacklevel=3)
    if body is not None:
        source = io.StringIO(body)
    try:
        if body is not None and not body.strip():
            data = np.zeros((0, width))
        else:
            cols = [0, *range(2, width)] if extra else None  # the optional column may be empty
            data = np.loadtxt(source, delimiter=",", skiprows=0 if body is not None else 1, ndmin=2,
                              dtype=np.float64, usecols=cols)
    except (ValueError, IndexError) as e:
        raise SessionError(path, f"not numeric CSV ({str(e).splitlines()[0]})") from None
    if data.shape[0] and data.shape[1] != len(header):
        raise SessionError(path, f"{data.shape[1]} columns, header has {len(header)}")
    return data.reshape(-1, len(header))


def _finite_rows(path: Path, data: np.ndarray) -> np.ndarray:
    """The rows whose time and values are all finite; the others are dropped and counted
    in a warning. Kept, a NaN or inf (a hand-edited file, a logger's gap marker) would
    poison every window it falls in, and a replay's int16 scaling (by each channel's peak)
    would flatten the whole channel to nothing."""
    ok = np.isfinite(data).all(axis=1)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        warnings.warn(f"{path}: dropped {len(bad)} of {len(data)} rows with non-finite values (NaN or inf), "
                      f"the first at row {bad[0] + 2}", SessionRepairWarning, stacklevel=3)
    return data[ok]


def _check_times(path: Path, t: np.ndarray) -> None:
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise SessionError(path, f"timestamps decrease at row {int(np.argmax(np.diff(t) < 0)) + 2}")


def read_video(path: Path, size: tuple[int, int] | None, step: int = 1) -> np.ndarray:
    """Every `step`-th frame of a video file, (T, H, W, 3) uint8 BGR, resized to `size`
    (w, h) while decoding so only the small frames are ever held. Sessions and the
    public data sets (models/public_datasets.py) read their videos through this."""
    if not path.is_file():
        raise SessionError(path, "missing file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SessionError(path, "OpenCV cannot open the video")
    frames = []
    for i in itertools.count():
        if i % step:  # skipped frames are grabbed, never decoded
            if not cap.grab():
                break
            continue
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame if size is None else cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise SessionError(path, "no decodable frames")
    return np.stack(frames)


def _meta_field(meta: dict, path: Path, *keys: str) -> object:
    node = meta
    for i, k in enumerate(keys):
        if i and not isinstance(node, dict):
            raise SessionError(path, f"{'.'.join(keys[:i])} is {node!r}, expected an object with key {k!r}")
        if not isinstance(node, dict) or k not in node:
            raise SessionError(path, f"missing key {'.'.join(keys[: i + 1])}")
        node = node[k]
    return node


def read_session(folder: Path | str, streams: tuple[str, ...] | None = None, frame_size: tuple[int, int] | None = None) -> Session:
    """Read a session folder back; `streams` picks a subset, `frame_size` (w, h) resizes frames on decode.

    Resizing while decoding keeps memory small when a trainer wants e.g. 64x64 frames:
    ten subjects of 160x120 video are ~4 GB as raw frames.
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise SessionError(meta_path, "missing file (not a session folder?)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise SessionError(meta_path, f"not valid JSON ({e})") from None
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise SessionError(meta_path, f"format {meta.get('format')!r} version {meta.get('version')!r}; this reader reads {FORMAT_NAME!r} version {FORMAT_VERSION}")
    all_streams = _meta_field(meta, meta_path, "streams")
    if not isinstance(all_streams, dict) or not all_streams:
        raise SessionError(meta_path, f"streams is {all_streams!r}, expected an object of streams by name")
    # a live recording that never closed (crash, kill -9): repair its tail, with a warning
    recording = meta.get("recording")
    cut_off = isinstance(recording, dict) and recording.get("complete") is False
    names = tuple(all_streams) if streams is None else streams
    series: dict[str, SensorSeries | FrameSeries] = {}
    for name in names:
        info = _meta_field(meta, meta_path, "streams", name)
        kind = _meta_field(meta, meta_path, "streams", name, "kind")
        file = folder / str(_meta_field(meta, meta_path, "streams", name, "file"))
        if kind == "sensor":
            channels = list(_meta_field(meta, meta_path, "streams", name, "channels"))
            data = _finite_rows(file, _read_csv(file, ["t", *channels], cut_off, optional="t_device"))
            _check_times(file, data[:, 0])
            series[name] = SensorSeries(data[:, 0].copy(), data[:, 1:].astype(np.float32), tuple(channels))
        elif kind == "camera":
            stamps_file = folder / str(_meta_field(meta, meta_path, "streams", name, "timestamps"))
            stamps = _read_csv(stamps_file, ["frame", "t"], cut_off)
            _check_times(stamps_file, stamps[:, 1])
            if cut_off and len(stamps) == 0:  # cut off before the first frame
                w, h = frame_size or (int(info.get("width", 0)), int(info.get("height", 0)))
                series[name] = FrameSeries(np.zeros(0), np.zeros((0, h, w, 3), np.uint8))
                continue
            frames = read_video(file, frame_size)
            if cut_off and len(frames) != len(stamps):
                n = min(len(frames), len(stamps))
                warnings.warn(f"{file}: kept the {n} frames that have both an image and a timestamp "
                              f"({len(frames)} decoded, {len(stamps)} timestamps; the recording was cut off)",
                              SessionRepairWarning, stacklevel=2)
                frames, stamps = frames[:n], stamps[:n]
            if len(frames) != len(stamps):
                raise SessionError(file, f"{len(frames)} frames decoded but {stamps_file.name} has {len(stamps)} rows")
            want = (info.get("width"), info.get("height"))
            if frame_size is None and (frames.shape[2], frames.shape[1]) != want:
                raise SessionError(file, f"frames are {frames.shape[2]}x{frames.shape[1]}, meta.json says {want[0]}x{want[1]}")
            series[name] = FrameSeries(stamps[:, 1].copy(), frames)
        else:
            raise SessionError(meta_path, f"streams.{name}.kind is {kind!r}, expected 'sensor' or 'camera'")
    labels = _read_labels(folder / str(_meta_field(meta, meta_path, "labels")))
    return Session(series=series, labels=labels, subject=str(_meta_field(meta, meta_path, "subject")), meta=meta, folder=folder)


def _read_labels(path: Path) -> Labels:
    if not path.is_file():
        raise SessionError(path, "missing file")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != ["start", "end", "activity"]:
        raise SessionError(path, f"bad header {','.join(rows[0]) if rows else ''!r}, expected 'start,end,activity'")
    labels = []
    for i, row in enumerate(rows[1:], start=2):
        try:
            start, end, activity = float(row[0]), float(row[1]), row[2]
        except (ValueError, IndexError):
            raise SessionError(path, f"row {i} is not start,end,activity: {','.join(row)!r}") from None
        if end < start:
            raise SessionError(path, f"row {i} ends before it starts")
        labels.append((start, end, activity))
    return labels
