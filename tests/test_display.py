"""The live view rendered offscreen: what a person sees is checked by pixels."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from edgehar.app import display
from edgehar.firmware_bridge.health import StreamHealth
from edgehar.app.display import (BAR, PANEL, RED, STATE_COLOURS, TRACE_COLOURS, Trace, ViewState, VideoView, TerminalView,
                                 gaf_thumbnail, gui_available, render_view, series_thumbnail)

LABELS = ("neutral", "hammer", "screwdriver", "plug_cable")


def _state(**kw) -> ViewState:
    t = np.linspace(0, 5, 500)
    base = dict(
        title="edgehar live | mmtsa (eager, fp32)", subtitle="window 3 s | hop 0.25 s", now=12.3,
        frame=np.full((120, 160, 3), (0, 200, 255), np.uint8),  # orange camera frame
        labels=LABELS, probs=np.array([0.1, 0.7, 0.15, 0.05]), label="hammer", smoothed="hammer",
        smoothed_confidence=0.7, smoothing="majority of 5",
        thumbnails=[("glove", np.stack([gaf_thumbnail(np.random.default_rng(i).uniform(-1, 1, (12, 16, 16))) for i in range(3)]))],
        traces=[Trace("glove fingers", t, np.column_stack([np.sin(t), np.cos(t)]), ("flex_thumb", "flex_index"))],
        health={"glove": StreamHealth("glove", "", "connected", rate_hz=100.0, lost_blocks=0, battery_pct=87),
                "camera": StreamHealth("camera", "", "reconnecting", rate_hz=None, lost_blocks=3, battery_pct=None)},
        latency_ms={"sampling": 0.1, "gaf": 0.4, "frames": 0.3, "inference": 6.0, "total": 6.8},
    )
    base.update(kw)
    return ViewState(**base)


def _share(img: np.ndarray, colour, box) -> float:
    x0, y0, x1, y1 = box
    region = img[y0:y1, x0:x1].astype(int)
    return float(np.mean(np.all(np.abs(region - np.array(colour)) <= 8, axis=-1)))


def test_view_has_the_size_and_shows_the_camera_frame():
    img = render_view(_state())
    assert img.shape == (720, 1280, 3) and img.dtype == np.uint8
    assert _share(img, (0, 200, 255), (100, 150, 540, 450)) > 0.95  # the camera fills the left panel
    no_cam = render_view(_state(frame=None))
    assert _share(no_cam, (0, 200, 255), (100, 150, 540, 450)) == 0


def test_top3_bars_are_drawn_to_their_probability():
    img = render_view(_state())
    # first bar (hammer, 0.7): from x=822 to 822 + 0.7 * 381 px at y ~ 181; bar track ends at 1203
    row = img[181, 822:1203]
    filled = np.all(np.abs(row.astype(int) - np.array(BAR)) <= 8, axis=-1)
    assert filled.mean() == pytest.approx(0.7, abs=0.03)
    other = render_view(_state(probs=np.array([0.05, 0.3, 0.6, 0.05])))  # screwdriver on top now at 60 %
    filled = np.all(np.abs(other[181, 822:1203].astype(int) - np.array(BAR)) <= 8, axis=-1)
    assert filled.mean() == pytest.approx(0.6, abs=0.03)


def test_the_label_text_and_the_degraded_banner_are_drawn():
    ok = render_view(_state())
    degraded = render_view(_state(missing=("imu",)))
    banner = (660, 134, 1000, 160)
    assert _share(ok, RED, banner) == 0 and _share(degraded, RED, banner) > 0.3
    # different smoothed labels give different pixels where the label is written
    other = render_view(_state(smoothed="screwdriver"))
    assert np.abs(other[60:110, 650:1150].astype(int) - ok[60:110, 650:1150]).sum() > 10000


def test_status_strip_colours_each_stream_by_its_state():
    img = render_view(_state())
    # two streams: cells of 632 px; dots at (x+8, y+10) with y = 46 + 480 + 8 + 110 + 6
    y = 46 + 480 + 8 + 110 + 6 + 10
    assert np.abs(img[y, 16].astype(int) - STATE_COLOURS["connected"]).max() <= 8
    assert np.abs(img[y, 8 + 632 + 8].astype(int) - STATE_COLOURS["reconnecting"]).max() <= 8


def test_series_thumbnail_draws_each_channel_at_its_value():
    """A raw window (C, K) in [-1, 1]: channel i is a line in TRACE_COLOURS[i], +1 at the top, -1 at the bottom."""
    tile = series_thumbnail(np.array([np.ones(16), -np.ones(16)]))
    assert tile.shape == (48, 64, 3) and tile.dtype == np.uint8
    assert np.all(np.abs(tile[0, 2:-2].astype(int) - TRACE_COLOURS[0]) <= 40)
    assert np.all(np.abs(tile[-1, 2:-2].astype(int) - TRACE_COLOURS[1]) <= 40)
    assert np.all(tile[8:40] == PANEL)


def test_gaf_thumbnail_colours_as_opencvs_viridis():
    """The lookup table (no OpenCV thread pool behind it) gives applyColorMap's pixels."""
    images = np.random.default_rng(0).uniform(-1, 1, (12, 32, 32))
    tile = gaf_thumbnail(images)
    u8 = np.clip((images[0] + 1.0) * 127.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tile[:32, :32], cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS))
    assert tile.shape[:2] == (100, 134) and (tile[:32, 32:34] == PANEL).all()  # a pool-sized tile; its gaps in the panel colour


def test_thumbnails_toggle_and_traces():
    shown = render_view(_state())
    hidden = render_view(_state(show_thumbnails=False))
    thumbs = (730, 290, 1270, 520)
    assert np.abs(shown[290:520, 730:1270].astype(int) - hidden[290:520, 730:1270]).sum() > 100000
    assert _share(hidden, display.PANEL, thumbs) > 0.9
    x0, y0, x1, y1 = (20, 560, 620, 640)  # the traces' box
    flat = render_view(_state(traces=[]))
    assert np.abs(shown[y0:y1, x0:x1].astype(int) - flat[y0:y1, x0:x1]).sum() > 10000


def test_recording_panel_shows_the_protocol():
    img = render_view(_state(recording=True, label="hammer", probs=None,
                             protocol=[("neutral", 5, "done"), ("hammer", 5, "now"), ("mallet", 5, "next")]))
    assert img.shape == (720, 1280, 3)
    assert _share(img, BAR, (660, 170, 900, 260)) > 0.005  # the step in progress is highlighted
    plain = render_view(_state(recording=True, label="hammer", probs=None,
                               protocol=[("neutral", 5, "done"), ("hammer", 5, "next"), ("mallet", 5, "next")]))
    assert _share(plain, BAR, (660, 170, 900, 260)) == 0


def test_the_key_help_names_the_keys_of_the_view_shown():
    """`record` has its own keys (numbers, 0, q); a protocol run only q: the status strip says which."""
    keys = (660, 1270, 675, 700)  # x0, x1, y0, y1 of the right end of the status strip

    def help_pixels(img):
        return img[keys[2] : keys[3], keys[0] : keys[1]].astype(int)

    live = help_pixels(render_view(_state()))
    numbers = help_pixels(render_view(_state(recording=True, probs=None, activity_keys=("neutral", "hammer"))))
    protocol = help_pixels(render_view(_state(recording=True, probs=None, protocol=[("neutral", 5, "now")])))
    assert np.abs(live - numbers).sum() > 10000 and np.abs(numbers - protocol).sum() > 10000
    assert np.abs(live - protocol).sum() > 10000


def test_no_window_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ok, why = gui_available()
    assert not ok and "display" in why
    with pytest.raises(display.ViewError, match="cannot open a window"):
        display.WindowView()


def test_video_view_writes_a_readable_video(tmp_path):
    video = VideoView(tmp_path / "v.mp4", fps=10)
    for i in range(5):
        video.write(render_view(_state(now=i)))
    video.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 5 and frames[0].shape == (720, 1280, 3)
    with pytest.raises(display.ViewError, match="does not exist"):
        VideoView(tmp_path / "no" / "v.mp4", fps=10)


def test_terminal_view_prints_lines_off_a_terminal():
    out = io.StringIO()
    view = TerminalView(out)
    assert not view.live
    view.update(_state(), "t=1.00s hammer")
    view.close()
    assert out.getvalue() == "t=1.00s hammer\n"


def test_terminal_view_rich_panel_renders():
    pytest.importorskip("rich")
    out = io.StringIO()
    view = TerminalView(out, rich=True)
    view.update(_state(missing=("imu",)), None)
    view.close()
    text = out.getvalue()
    assert "hammer" in text and "DEGRADED" in text and "glove" in text
