"""What the browser view's page is sent: the data it draws the view from.

The page (web/live.html) draws the view itself, in canvas and DOM. Each view frame
reaches it as **one** binary WebSocket message (`frame_message`), made of pieces each
encoded once in the live loop's thread for every viewer:

- **state** (JSON, every frame): smoothed label, top-3, per-stage latency, stream
  health, pause / smoothing / thumbnails, the recording's labelling state, plus `seq`
  (the frame's number) and `made` (when the prediction it shows was made, for the lag
  benchmark).
- **traces** (JSON, with every frame that follows new samples): the samples each trace
  gained since the last frame (`trace_json(trace, since)`), which the page adds to the
  5 s it keeps; a new viewer first gets the whole 5 s. Sending the whole window every
  frame was ~19 kB of JSON (glove and IMU at 100 Hz); a frame's new samples ~0.7 kB.
- **camera** (a JPEG part, only when the camera frame is a new one): the frame alone at
  the camera's own size, or shrunk to fit the box the page shows it in (`CAMERA_BOX`),
  never enlarged; at most at the view's rate.
- **segments** (a JPEG part, only when a new prediction changed them, ~4 Hz): every
  modality's N sampled inputs (the thumbnails `liveview.thumbnails` draws for the window)
  packed side by side in one JPEG, with where each tile lies.

A frame message is `[4-byte big-endian header length][JSON header][the parts' bytes]`;
the header is `{"type": "frame", "state": ..., "traces": ..., "parts": [...]}` (state or
traces null when the frame has none), each part's header saying its kind, its `bytes`
and what it needs (the camera's size, the tiles' rectangles). Why one message: each
WebSocket message is a write and a wake-up of the server's loop for each viewer, and an
event for each page; state, traces and images as separate messages were ~3 per frame
and viewer, and their sending cost about as much as making them (benchmarks/RESULTS.md).

Why the page draws rather than being sent the window's whole rendered view as one JPEG:
the server then encodes only what only it has (the camera image, the thumbnails it
colour-mapped), and the 1280x720 view is neither drawn nor encoded per frame (that cost
~10 % of a core at 10 fps; see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from .display import TRACE_SECONDS, Trace, ViewError, ViewState

JPEG_QUALITY = 75  # the camera image
SEGMENTS_JPEG_QUALITY = 90  # GAF tiles have sharp cell edges that 75 blurs visibly
CAMERA_BOX = (640, 480)  # (w, h): the page's camera box (about the window's, 632 x 480): a VGA camera goes unscaled
TRACE_POINTS = 600  # the page's trace plot is at most this many pixels wide: more samples draw nothing more
TRACE_LEVELS = 999  # values are sent as integers 0..TRACE_LEVELS over the trace's own range
_TILE_GAP = 4


def page_state(s: ViewState) -> dict:
    """The frame's state, from the view's state (the traces go beside it: `trace_json`)."""
    top3 = [] if s.probs is None else [[s.labels[i], round(float(s.probs[i]), 4)]
                                       for i in np.argsort(s.probs)[::-1][:3]]
    return {
        "subtitle": s.subtitle, "now": round(s.now, 2), "paused": s.paused, "thumbnails": s.show_thumbnails, "smoothing": s.smoothing,
        "label": s.smoothed, "confidence": round(float(s.smoothed_confidence), 4), "raw": s.label, "top3": top3,
        "missing": list(s.missing), "latency_ms": {k: round(v, 2) for k, v in s.latency_ms.items()},
        "streams": {n: {"state": h.state, "rate_hz": None if h.rate_hz is None else round(h.rate_hz, 1),
                        "lost_blocks": h.lost_blocks, "battery_pct": h.battery_pct} for n, h in s.health.items()},
        "recording": s.recording, "banner": s.banner, "activity_keys": list(s.activity_keys),
        "protocol": [[a, seconds, status] for a, seconds, status in s.protocol],
    }


def decimate(t: np.ndarray, values: np.ndarray, points: int = TRACE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `points` samples of a (T,) time axis and (T, C) values, for a plot `points`
    pixels wide. With more, each of points/2 equal runs of samples becomes two: its
    minimum and its maximum per channel (the one met first where the run falls), at the
    run's first and last sample time, so a spike one sample long still shows, as it would
    in a plot of every sample. Hand-written: `np.minimum.reduceat` does it in a few
    lines, and no plotting library is on the deploy install."""
    n = len(t)
    if n <= points:
        return t, values
    starts = np.linspace(0, n, points // 2, endpoint=False).astype(np.int64)
    ends = np.append(starts[1:], n) - 1
    lo, hi = np.minimum.reduceat(values, starts, axis=0), np.maximum.reduceat(values, starts, axis=0)
    falling = values[starts] > values[ends]
    first, second = np.where(falling, hi, lo), np.where(falling, lo, hi)
    return (np.stack([t[starts], t[ends]], 1).reshape(-1),
            np.stack([first, second], 1).reshape(-1, values.shape[1]))


def trace_json(tr: Trace, since: float | None = None) -> dict:
    """One trace's samples after `since` (all of them when None), compact: `t_end` the
    last sample's time (seconds since the run began), `dt` the whole milliseconds between
    consecutive samples (the page sums them back from `t_end`), each channel's values as
    integers 0..TRACE_LEVELS over [lo, hi]; decimated to the share of the page's plot
    width they span. The plot is ~600 x 80 pixels, so 1000 levels and 1 ms lose nothing
    it could show, and the text is a fifth of rounded floats."""
    start = 0 if since is None else int(np.searchsorted(tr.t, since, side="right"))
    t, v = tr.t[start:], tr.values[start:]
    if len(t) > 1:
        share = 1.0 if since is None else min(1.0, (t[-1] - t[0]) / TRACE_SECONDS)
        t, v = decimate(t, v, max(2, int(np.ceil(TRACE_POINTS * share))))
    out = {"name": tr.name, "channels": list(tr.channels), "window_s": TRACE_SECONDS}
    if len(t) == 0:
        return {**out, "t_end": None, "lo": 0.0, "hi": 0.0, "dt": [], "values": [[] for _ in tr.channels]}
    lo, hi = float(np.min(v)), float(np.max(v))
    span = hi - lo if hi > lo else 1.0
    ms = np.rint((t - t[-1]) * 1000.0).astype(np.int64)  # <= 0, rounded once: the sums below never drift
    q = np.rint((v - lo) * (TRACE_LEVELS / span)).astype(np.int32)
    return {**out, "t_end": float(t[-1]), "lo": lo, "hi": hi, "dt": np.diff(ms).tolist(),
            "values": q.T.tolist()}


def traces_json(chunks: list[str], full: bool) -> str:
    """A frame's traces from chunks already encoded (each a JSON list of `trace_json`s, one
    per published frame): joined as text, so a viewer that fell behind by several frames
    costs no new encoding. `full`: the chunk is every trace's whole window (a new viewer,
    or one that fell too far behind), which replaces what the page holds."""
    return f'{{"full":{"true" if full else "false"},"chunks":[{",".join(chunks)}]}}'


def trace_samples(msg: dict) -> tuple[np.ndarray, np.ndarray]:
    """A trace message back to (T,) times and (T, C) values (what the page computes; for tests)."""
    if msg["t_end"] is None:
        return np.zeros(0), np.zeros((0, len(msg["channels"])))
    ms = np.concatenate([[0], np.cumsum(msg["dt"])])
    t = msg["t_end"] + (ms - ms[-1]) / 1000.0
    span = msg["hi"] - msg["lo"] if msg["hi"] > msg["lo"] else 1.0
    return t, msg["lo"] + np.asarray(msg["values"], np.float64).T * (span / TRACE_LEVELS)


Part = tuple[str, bytes]  # an image part of a frame: its header (JSON text, without `bytes`) and its bytes


def _part(header: dict, payload: bytes) -> Part:
    return json.dumps(header, separators=(",", ":")), payload


def frame_message(state: str | None, traces: str | None, parts: list[Part]) -> bytes:
    """One view frame for the page: the state and traces (JSON text, or None) and the
    image parts, in one binary message (the layout: the module's docstring). Joined as
    text and bytes: nothing is encoded again per viewer."""
    heads = ",".join(f'{head[:-1]},"bytes":{len(payload)}}}' for head, payload in parts)
    header = f'{{"type":"frame","state":{state or "null"},"traces":{traces or "null"},"parts":[{heads}]}}'.encode()
    return b"".join([len(header).to_bytes(4, "big"), header, *(payload for _, payload in parts)])


def split_frame(message: bytes) -> tuple[dict, list[tuple[dict, bytes]]]:
    """`frame_message`'s inverse (what the page does; for tests and tools): the header, and
    each part's header with its bytes."""
    n = int.from_bytes(message[:4], "big")
    header = json.loads(message[4:4 + n])
    parts, at = [], 4 + n
    for head in header["parts"]:
        parts.append((head, message[at:at + head["bytes"]]))
        at += head["bytes"]
    return header, parts


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ViewError(f"OpenCV could not encode a {image.shape} image as JPEG for the page")
    return buf.tobytes()


def camera_part(frame: np.ndarray | None, box: tuple[int, int] = CAMERA_BOX) -> Part:
    """The camera frame as a JPEG, shrunk to fit `box` if larger (the page never shows it
    bigger); None: no fresh frame (the page says so)."""
    if frame is None:
        return _part({"kind": "camera", "width": 0, "height": 0}, b"")
    h, w = frame.shape[:2]
    scale = min(1.0, box[0] / w, box[1] / h)
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return _part({"kind": "camera", "width": frame.shape[1], "height": frame.shape[0]}, _jpeg(frame, JPEG_QUALITY))


def segments_part(thumbnails: list[tuple[str, np.ndarray]]) -> Part:
    """Every modality's sampled tiles ((N, h, w, 3) BGR each) in one JPEG: a row per
    modality, the N tiles side by side; the header gives each row's name and each tile's
    [x, y, w, h] in the image. No tiles (hidden, or no prediction yet): an empty part."""
    if not thumbnails:
        return _part({"kind": "segments", "rows": []}, b"")
    width = max(len(tiles) * (tiles.shape[2] + _TILE_GAP) - _TILE_GAP for _, tiles in thumbnails)
    height = sum(tiles.shape[1] for _, tiles in thumbnails) + _TILE_GAP * (len(thumbnails) - 1)
    sheet = np.zeros((height, width, 3), np.uint8)
    rows, y = [], 0
    for name, tiles in thumbnails:
        _, th, tw, _ = tiles.shape
        rects = []
        for j, tile in enumerate(tiles):
            x = j * (tw + _TILE_GAP)
            sheet[y:y + th, x:x + tw] = tile
            rects.append([x, y, tw, th])
        rows.append({"name": name, "tiles": rects})
        y += th + _TILE_GAP
    return _part({"kind": "segments", "rows": rows}, _jpeg(sheet, SEGMENTS_JPEG_QUALITY))
