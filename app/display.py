"""The live view: one function draws everything a person watches into an image.

`render_view(state) -> (H, W, 3) uint8 BGR` needs no display, so tests check pixels,
`--save-video` writes it, and the window just shows it. Layout (1280 x 720):

    +--------------------------------------------------------------------------+
    | edgehar · model (backend, precision) · window/hop/N/K          t  status |
    +-----------------------------------+--------------------------------------+
    |                                   |  SMOOTHED LABEL          confidence  |
    |      camera (newest frame)        |  raw label · smoothing · DEGRADED    |
    |                                   |  top-3 bars                          |
    |                                   |  thumbnails: per modality, the N     |
    |                                   |  sampled GAF images / frames         |
    +-----------------------------------+--------------------------------------+
    |  traces: glove fingers            |  traces: IMU accelerometer           |
    +--------------------------------------------------------------------------+
    |  ● glove connected 100 Hz lost 0 batt 87%   ● imu ...   ● camera ...      |
    |  sampling 0.1 | gaf 0.4 | frames 0.3 | inference 6.1 | total 7.0 ms  keys |
    +--------------------------------------------------------------------------+

Views that show it: `WindowView` (OpenCV window + keys, only where a display and a GUI
build of OpenCV exist: `cv2.imshow` without a display aborts the process), `VideoView`
(`--save-video`), `TerminalView` (`--headless`: rich live table on a terminal, plain
lines otherwise). What a live run shows over time (thumbnails, traces, the video's
clock, keys) is app.liveview's.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from ..errors import EdgeharError
from ..firmware_bridge.health import StreamHealth
from .config import LATENCY_STAGES, VIEWS
from .opencv_build import gui_backend

VIEW_SIZE = (1280, 720)  # (w, h)
TRACE_SECONDS = 5.0
FONT = cv2.FONT_HERSHEY_SIMPLEX
BG = (24, 24, 28)
PANEL = (40, 40, 46)
TEXT = (235, 235, 235)
DIM = (150, 150, 155)
ACCENT = (255, 170, 60)  # BGR: a light blue
BAR = (90, 200, 120)
BAR_BG = (70, 70, 78)
RED = (60, 60, 230)
STATE_COLOURS = {"connected": (90, 200, 120), "connecting": (60, 200, 230), "reconnecting": (40, 160, 255),
                 "down": (60, 60, 230), "failed": (60, 60, 230), "missing": (60, 60, 230)}
TRACE_COLOURS = [(80, 170, 255), (120, 220, 120), (255, 160, 80), (200, 120, 255), (90, 220, 230), (180, 180, 180)]
KEYS_HELP = "q quit  p pause  s smoothing  t thumbnails"


class ViewError(EdgeharError):
    """A view cannot be opened (no display, a video file that cannot be written)."""


@dataclass
class Trace:
    """Recent samples of some channels of one stream, for the trace plot."""

    name: str  # e.g. "glove fingers"
    t: np.ndarray  # (T,) host seconds
    values: np.ndarray  # (T, C)
    channels: tuple[str, ...]


@dataclass
class ViewState:
    """Everything one frame of the view shows; plain data, built by the live loop."""

    title: str = "edgehar"
    subtitle: str = ""
    now: float = 0.0  # seconds since the run started
    frame: np.ndarray | None = None  # newest camera frame, BGR
    labels: tuple[str, ...] = ()
    probs: np.ndarray | None = None  # raw probabilities of the last prediction
    label: str | None = None  # raw label of the last prediction
    smoothed: str | None = None  # what the view announces
    smoothed_confidence: float = 0.0
    smoothing: str = ""  # e.g. "majority of 5"
    missing: tuple[str, ...] = ()  # modalities missing in the last prediction (degraded)
    thumbnails: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (modality, (N, h, w, 3) BGR)
    show_thumbnails: bool = True
    traces: list[Trace] = field(default_factory=list)
    health: dict[str, StreamHealth] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    paused: bool = False
    banner: str = ""  # e.g. recording status / protocol step
    banner_colour: tuple[int, int, int] = (60, 60, 230)
    recording: bool = False  # `edgehar record`: the panel shows the activity being labelled
    activity_keys: tuple[str, ...] = ()  # activities on keys 1..9 (recording)
    protocol: list[tuple[str, float, str]] = field(default_factory=list)  # (activity, seconds, "done"|"now"|"next")


# --------------------------------------------------------------------------- drawing


def _text(img, text, org, scale=0.5, colour=TEXT, thickness=1):
    cv2.putText(img, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def _text_width(text, scale=0.5, thickness=1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def _fit(text: str, width: int, scale=0.5, thickness=1) -> str:
    while text and _text_width(text, scale, thickness) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
        text = text.replace("……", "…")
    return text.replace("…", "~")


def _paste(img, patch, x, y, w, h):
    """Fit `patch` into the box (x, y, w, h) keeping its aspect; returns the box used."""
    ph, pw = patch.shape[:2]
    scale = min(w / pw, h / ph)
    nw, nh = max(1, int(pw * scale)), max(1, int(ph * scale))
    interp = cv2.INTER_NEAREST if scale >= 2 and pw <= 64 else cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    resized = cv2.resize(patch, (nw, nh), interpolation=interp)
    ox, oy = x + (w - nw) // 2, y + (h - nh) // 2
    img[oy : oy + nh, ox : ox + nw] = resized
    return ox, oy, nw, nh


@functools.lru_cache(maxsize=1)
def viridis() -> np.ndarray:
    """OpenCV's VIRIDIS colour map as a (256, 3) BGR lookup table. Indexing it equals
    `cv2.applyColorMap` pixel for pixel, but OpenCV runs that call on its thread pool for
    tiles past ~100 px, whose worker then spin-waits after every call: ~0.7 % of a core
    at the view's rate, on a board with two to four cores."""
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0]


def gaf_thumbnail(images: np.ndarray) -> np.ndarray:
    """(C, K, K) GAF images in [-1, 1] -> one BGR tile: the channels in a grid, colour-mapped."""
    c, k, _ = images.shape
    cols = int(np.ceil(np.sqrt(c * 4 / 3)))
    rows = int(np.ceil(c / cols))
    gap = 2
    tile = np.full((rows * (k + gap) - gap, cols * (k + gap) - gap), 0, np.uint8)
    u8 = np.clip((images + 1.0) * 127.5, 0, 255).astype(np.uint8)
    for i in range(c):
        r, q = divmod(i, cols)
        tile[r * (k + gap) : r * (k + gap) + k, q * (k + gap) : q * (k + gap) + k] = u8[i]
    out = viridis()[tile]
    mask = np.ones_like(tile, bool)
    for i in range(c):
        r, q = divmod(i, cols)
        mask[r * (k + gap) : r * (k + gap) + k, q * (k + gap) : q * (k + gap) + k] = False
    out[mask] = PANEL
    return out


def series_thumbnail(window: np.ndarray, height: int = 48, width: int = 64) -> np.ndarray:
    """(C, K) raw series window in [-1, 1] (a "series" modality) -> one BGR tile: each channel
    a line across the tile, coloured like the trace plots."""
    c, k = window.shape
    out = np.full((height, width, 3), PANEL, np.uint8)
    xs = np.linspace(0, width - 1, k)
    ys = (1.0 - (np.clip(window, -1.0, 1.0) + 1.0) / 2.0) * (height - 1)
    for i in range(c):
        pts = np.stack([xs, ys[i]], axis=1).round().astype(np.int32)
        cv2.polylines(out, [pts], False, TRACE_COLOURS[i % len(TRACE_COLOURS)], 1, cv2.LINE_AA)
    return out


def frames_thumbnail(frames: np.ndarray, mean, std) -> np.ndarray:
    """(N, 3, H, W) normalised RGB model input -> (N, H, W, 3) BGR uint8 (what the model saw)."""
    rgb = frames.transpose(0, 2, 3, 1) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(rgb[..., ::-1] * 255.0, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _background(w: int, h: int) -> np.ndarray:
    """The empty view, kept: copying it costs a tenth of filling a new image with a
    colour (np.full broadcasts BG pixel by pixel), which was most of a frame's cost."""
    img = np.full((h, w, 3), BG, np.uint8)
    img.flags.writeable = False
    return img


def render_view(s: ViewState, size: tuple[int, int] = VIEW_SIZE) -> np.ndarray:
    """Draw the whole view for `s` into a new (h, w, 3) BGR image."""
    w, h = size
    img = _background(w, h).copy()
    sx = w / VIEW_SIZE[0]
    # header
    cv2.rectangle(img, (0, 0), (w, 38), PANEL, -1)
    _text(img, _fit(s.title, int(560 * sx), 0.6), (12, 26), 0.6, TEXT)
    _text(img, _fit(s.subtitle, int(430 * sx), 0.45), (int(600 * sx), 25), 0.45, DIM)
    clock = f"t = {s.now:.1f} s" + ("   PAUSED" if s.paused else "")
    _text(img, clock, (w - _text_width(clock, 0.55) - 12, 26), 0.55, ACCENT if s.paused else TEXT)
    # camera
    cam_w, cam_h = int(640 * sx), int(480 * h / VIEW_SIZE[1])
    cam_box = (8, 46, cam_w - 8, cam_h)
    cv2.rectangle(img, (cam_box[0], cam_box[1]), (cam_box[0] + cam_box[2], cam_box[1] + cam_box[3]), PANEL, -1)
    if s.frame is not None:
        _paste(img, s.frame, *cam_box)
    else:
        _text(img, "no camera frame", (cam_box[0] + cam_box[2] // 2 - 75, cam_box[1] + cam_box[3] // 2), 0.6, DIM)
    if s.banner:
        bw = _text_width(s.banner, 0.65, 2) + 24
        cv2.rectangle(img, (cam_box[0] + 10, cam_box[1] + 10), (cam_box[0] + 10 + bw, cam_box[1] + 44), s.banner_colour, -1)
        _text(img, s.banner, (cam_box[0] + 22, cam_box[1] + 35), 0.65, (255, 255, 255), 2)
    # prediction panel
    px, pw = cam_w + 8, w - cam_w - 16
    cv2.rectangle(img, (px, 46), (px + pw, 46 + cam_h), PANEL, -1)
    _prediction(img, s, px + 14, 46, pw - 28)
    # traces
    ty, th = 46 + cam_h + 8, int(110 * h / VIEW_SIZE[1])
    n = max(1, len(s.traces))
    tw = (w - 16 - 8 * (n - 1)) // n
    for i in range(n):
        box = (8 + i * (tw + 8), ty, tw, th)
        cv2.rectangle(img, (box[0], box[1]), (box[0] + box[2], box[1] + box[3]), PANEL, -1)
        if i < len(s.traces):
            _trace(img, s.traces[i], box)
    # status strip
    _status(img, s, ty + th + 6, w)
    return img


def _recording(img, s: ViewState, x, y, width):
    _text(img, "labelling", (x, y + 24), 0.5, DIM)
    _text(img, _fit((s.label or "no activity").replace("_", " "), width, 1.3, 2), (x, y + 64), 1.3,
          TEXT if s.label else DIM, 2)
    yy = y + 100
    if s.protocol:
        _text(img, "protocol", (x, yy), 0.5, DIM)
        for activity, seconds, status in s.protocol[:9]:
            yy += 26
            colour = {"done": DIM, "now": BAR, "next": TEXT}[status]
            _text(img, f"{'>' if status == 'now' else ' '} {activity.replace('_', ' ')}", (x, yy), 0.6, colour, 2 if status == "now" else 1)
            _text(img, f"{seconds:g} s", (x + width - 60, yy), 0.55, colour)
    elif s.activity_keys:
        _text(img, "keys: number = start activity, 0 = stop", (x, yy), 0.5, DIM)
        for i, activity in enumerate(s.activity_keys[:9]):
            yy += 26
            colour = BAR if activity == s.label else TEXT
            _text(img, f"{i + 1}  {activity.replace('_', ' ')}", (x, yy), 0.6, colour, 2 if activity == s.label else 1)


def _prediction(img, s: ViewState, x, y, width):
    if s.recording:
        _recording(img, s, x, y, width)
        return
    if s.smoothed is None:
        _text(img, "waiting for the first window...", (x, y + 48), 0.7, DIM)
    else:
        _text(img, _fit(s.smoothed.replace("_", " "), width - 110, 1.3, 2), (x, y + 52), 1.3, TEXT, 2)
        conf = f"{100 * s.smoothed_confidence:.0f}%"
        _text(img, conf, (x + width - _text_width(conf, 1.0, 2), y + 52), 1.0, ACCENT, 2)
        raw = f"raw: {s.label}  ·  {s.smoothing}".replace("·", "|")
        _text(img, _fit(raw, width, 0.45), (x, y + 78), 0.45, DIM)
    if s.missing:
        msg = "DEGRADED: missing " + ", ".join(s.missing)
        cv2.rectangle(img, (x - 4, y + 88), (x + _text_width(msg, 0.55, 2) + 8, y + 114), RED, -1)
        _text(img, msg, (x + 2, y + 107), 0.55, (255, 255, 255), 2)
    # top-3 bars
    by = y + 124
    if s.probs is not None and len(s.labels):
        order = np.argsort(s.probs)[::-1][:3]
        for r, i in enumerate(order):
            yy = by + r * 30
            name = s.labels[i].replace("_", " ")
            _text(img, _fit(name, 150, 0.5), (x, yy + 16), 0.5, TEXT)
            bx, bw = x + 160, width - 160 - 56
            cv2.rectangle(img, (bx, yy + 3), (bx + bw, yy + 21), BAR_BG, -1)
            cv2.rectangle(img, (bx, yy + 3), (bx + int(bw * float(s.probs[i])), yy + 21), BAR if r == 0 else (150, 150, 150), -1)
            pct = f"{100 * float(s.probs[i]):.0f}%"
            _text(img, pct, (x + width - _text_width(pct, 0.5), yy + 17), 0.5, TEXT)
    # thumbnails
    ty = by + 3 * 30 + 8
    bottom = y + int(480 * img.shape[0] / VIEW_SIZE[1]) - 6
    if not s.show_thumbnails:
        _text(img, "thumbnails hidden (t)", (x, ty + 20), 0.45, DIM)
        return
    if not s.thumbnails:
        return
    _text(img, "sampled segments (what the model sees)", (x, ty + 12), 0.45, DIM)
    ty += 20
    rows = len(s.thumbnails)
    rh = min(96, (bottom - ty) // rows - 4)
    for r, (name, tiles) in enumerate(s.thumbnails):
        yy = ty + r * (rh + 4)
        _text(img, _fit(name, 64, 0.45), (x, yy + rh // 2 + 5), 0.45, TEXT)
        n = len(tiles)
        cw = (width - 70 - 6 * (n - 1)) // max(1, n)
        for j, tile in enumerate(tiles):
            _paste(img, tile, x + 70 + j * (cw + 6), yy, cw, rh)


def _trace(img, tr: Trace, box):
    x, y, w, h = box
    _text(img, tr.name, (x + 8, y + 16), 0.45, TEXT)
    plot = (x + 8, y + 24, w - 16, h - 30)
    if len(tr.t) < 2:
        _text(img, "no data", (plot[0] + plot[2] // 2 - 30, plot[1] + plot[3] // 2), 0.5, DIM)
        return
    t_end = tr.t[-1]
    lo, hi = float(np.min(tr.values)), float(np.max(tr.values))
    pad = max(1e-3, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    xs = plot[0] + (1 - (t_end - tr.t) / TRACE_SECONDS) * plot[2]
    for c in range(tr.values.shape[1]):
        ys = plot[1] + (1 - (tr.values[:, c] - lo) / (hi - lo)) * plot[3]
        pts = np.stack([xs, ys], 1).astype(np.int32)[:, None, :]
        cv2.polylines(img, [pts], False, TRACE_COLOURS[c % len(TRACE_COLOURS)], 1, cv2.LINE_AA)
    lx = x + 8 + _text_width(tr.name, 0.45) + 14
    for c, name in enumerate(tr.channels):
        short = name.split("_", 1)[-1]
        cv2.line(img, (lx, y + 12), (lx + 12, y + 12), TRACE_COLOURS[c % len(TRACE_COLOURS)], 2)
        _text(img, short, (lx + 15, y + 16), 0.4, DIM)
        lx += 15 + _text_width(short, 0.4) + 10


def _status(img, s: ViewState, y, w):
    n = max(1, len(s.health))
    cw = (w - 16) // n
    for i, (name, hl) in enumerate(s.health.items()):
        x = 8 + i * cw
        colour = STATE_COLOURS.get(hl.state, DIM)
        cv2.circle(img, (x + 8, y + 10), 6, colour, -1, cv2.LINE_AA)
        parts = [f"{name} {hl.state}", "-- Hz" if hl.rate_hz is None else f"{hl.rate_hz:.0f} Hz", f"lost {hl.lost_blocks}"]
        if hl.battery_pct is not None:
            parts.append(f"batt {hl.battery_pct}%")
        _text(img, _fit("  ".join(parts), cw - 24, 0.48), (x + 20, y + 15), 0.48, TEXT)
    lat = s.latency_ms
    if lat:
        stages = " | ".join(f"{k} {lat[k]:.1f}" for k in LATENCY_STAGES if k in lat)
        _text(img, f"latency ms: {stages} | total {lat.get('total', 0):.1f}", (16, y + 40), 0.48, TEXT)
    keys = KEYS_HELP if not s.recording else ("1-9 start activity  0 stop  " if s.activity_keys else "") + "q end recording"
    _text(img, keys, (w - _text_width(keys, 0.45) - 12, y + 40), 0.45, DIM)


# --------------------------------------------------------------------------- views


# A child process opens and closes one window on the display: OpenCV's Qt (or GTK) build
# aborts the whole process when the display it is given cannot be reached.
_PROBE = "import cv2; cv2.namedWindow('edgehar-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
_PROBE_TIMEOUT_S = 15.0


def gui_available() -> tuple[bool, str]:
    """(True, "") when a window can be opened; else (False, why). Checked before any
    cv2.imshow: where OpenCV's GUI cannot reach the display it aborts the whole process
    (a Qt fatal error, not a Python exception), so a display that is named but cannot be
    reached (a stale DISPLAY, Wayland without XWayland) is tried in a child process."""
    if gui_backend() is None:  # cv2.imshow would raise "The function is not implemented"
        return False, (f"this OpenCV ({cv2.__version__}, {Path(cv2.__file__).parent}) has no GUI backend "
                       "(opencv-python-headless?); for a window: pip install 'edgehar[gui]'")
    x11 = not sys.platform.startswith(("win32", "darwin"))
    x_display, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if x11 and not (x_display or wayland):
        return False, "no display (DISPLAY is not set)"
    return _probe_display(x_display, wayland) if x11 else (True, "")


@functools.lru_cache(maxsize=8)
def _probe_display(x_display: str, wayland: str) -> tuple[bool, str]:
    """Open a window on this display in a child process (about 0.3 s); cached per display."""
    shown = x_display or f"wayland {wayland}"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                               timeout=_PROBE_TIMEOUT_S, env={**os.environ, **_qt_env()})
    except subprocess.TimeoutExpired:
        return False, f"display {shown!r} did not answer within {_PROBE_TIMEOUT_S:g} s"
    if probe.returncode == 0:
        return True, ""
    lines = [l.strip() for l in probe.stderr.splitlines() if l.strip()]
    detail = next((l for l in lines if "display" in l.lower()), lines[0] if lines else f"exit status {probe.returncode}")
    return False, f"cannot use display {shown!r} ({detail})"


def _qt_env() -> dict[str, str]:
    """opencv-python points Qt at a font folder its wheel does not ship (QT_QPA_FONTDIR, set
    when cv2 is imported), and Qt then warns about it on stderr at every font lookup; a
    system font folder instead keeps the window's start quiet."""
    current = os.environ.get("QT_QPA_FONTDIR")
    if current is None or os.path.isdir(current):
        return {}
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"):
        if os.path.isdir(folder):
            return {"QT_QPA_FONTDIR": folder}
    return {}


class WindowView:
    """An OpenCV window showing the rendered view; `poll_key()` returns a pressed key or ''."""

    def __init__(self, title: str = "edgehar"):
        ok, why = gui_available()
        if not ok:
            raise ViewError(f"cannot open a window: {why}")
        self.title = title
        os.environ.update(_qt_env())  # read when the first window creates Qt's application
        # resizable, keeping the aspect; no Qt toolbar (pan / zoom), which would shrink the view
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        cv2.resizeWindow(title, *VIEW_SIZE)

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)

    def poll_key(self) -> str:
        code = cv2.waitKey(1) & 0xFF
        if code == 255:
            try:  # the window was closed with the mouse
                if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    return "q"
            except cv2.error:
                return "q"
            return ""
        return "q" if code == 27 else chr(code)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def open_window(view: str, title: str) -> tuple[WindowView | None, str]:
    """The window of a run whose view is `view` (config.VIEWS), or (None, why there is none).

    "headless": no window. "auto": a window where one can be opened, else None and the
    reason, which the caller prints as a one-line notice before going on headless.
    "window": a window, or a ViewError saying why not (the user asked for one).
    """
    if view not in VIEWS:
        raise ViewError(f"view {view!r} is not one of {VIEWS}")
    if view == "headless":
        return None, ""
    ok, why = gui_available()
    if ok:
        return WindowView(title), ""
    if view == "window":
        raise ViewError(f"cannot open a window: {why}")
    return None, why


class VideoView:
    """Writes rendered views to a video at a fixed fps (`--save-video`)."""

    def __init__(self, path: Path | str, fps: float, size: tuple[int, int] = VIEW_SIZE):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise ViewError(f"--save-video {str(self.path)!r}: folder {str(self.path.parent)!r} does not exist")
        fourcc = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self.fps = fps
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise ViewError(f"--save-video {str(self.path)!r}: OpenCV cannot write this file (use .mp4 or .avi)")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()


class TerminalView:
    """The view's information as text: a rich live panel on a terminal, else one line per prediction."""

    def __init__(self, out: TextIO = sys.stdout, rich: bool | None = None):
        self.out = out
        use_rich = out.isatty() if rich is None else rich
        self._live = None
        if use_rich:
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:  # rich is optional: plain lines
                use_rich = False
            else:
                self._live = Live(console=Console(file=out), refresh_per_second=8, transient=False)
                self._live.start()

    @property
    def live(self) -> bool:
        return self._live is not None

    def update(self, s: ViewState, line: str | None) -> None:
        if self._live is not None:
            self._live.update(_rich_panel(s))
        elif line is not None:
            print(line, file=self.out, flush=True)

    def note(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _rich_panel(s: ViewState):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(f"{s.title}   t = {s.now:.1f} s" + ("   PAUSED" if s.paused else ""), style="bold")
    label = Text()
    if s.smoothed is None:
        label.append("waiting for the first window...", style="dim")
    else:
        label.append(f"{s.smoothed}  {100 * s.smoothed_confidence:.0f}%", style="bold green")
        label.append(f"   raw: {s.label}   ({s.smoothing})", style="dim")
    if s.missing:
        label.append("   DEGRADED: missing " + ", ".join(s.missing), style="bold white on red")
    if s.banner:
        label.append(f"\n{s.banner}", style="bold yellow")
    bars = Table.grid(padding=(0, 1))
    if s.probs is not None:
        for i in np.argsort(s.probs)[::-1][:3]:
            p = float(s.probs[i])
            bars.add_row(f"{s.labels[i]:<16}", "█" * int(round(30 * p)) + "·" * (30 - int(round(30 * p))), f"{100 * p:3.0f}%")
    streams = Table("stream", "state", "rate", "lost", "battery", box=None, header_style="dim")
    colours = {"connected": "green", "reconnecting": "yellow"}
    for name, hl in s.health.items():
        streams.add_row(name, Text(hl.state, style=colours.get(hl.state, "red")),
                        "--" if hl.rate_hz is None else f"{hl.rate_hz:.0f} Hz", str(hl.lost_blocks),
                        "--" if hl.battery_pct is None else f"{hl.battery_pct}%")
    lat = s.latency_ms
    latency = Text(" | ".join(f"{k} {v:.1f}" for k, v in lat.items()) + " ms" if lat else "", style="dim")
    return Group(head, label, bars, streams, latency)
