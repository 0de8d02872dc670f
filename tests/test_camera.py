"""The camera thread: newest frame with its time, clear errors, reconnect after a loss.
The camera is replaced at the seam by a video file, or an injected capture."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgehar.app.camera import CameraError, CameraSource, camera_kind
from edgehar.app.opencv_build import has_gstreamer


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("cam") / "cam.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_kinds():
    assert camera_kind("0") == "index" and camera_kind("clip.mp4") == "file"
    assert camera_kind("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! appsink") == "gstreamer"


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
def test_a_video_file_streams_in_real_time_with_timestamps(video):
    got = []
    cam = CameraSource(str(video), sink=lambda name, t, f: got.append((name, float(t[0]), f[0].mean())))
    assert cam.open() == (48, 64, 3)
    cam.start()
    try:
        assert _wait(lambda: len(got) >= 25)  # more than the file holds: it loops
    finally:
        cam.stop()
    times = np.array([t for _, t, _ in got])
    assert all(n == "camera" for n, _, _ in got) and np.all(np.diff(times) > 0)
    # stamped on the file's time base (start + k/fps): exact intervals however busy the host
    np.testing.assert_allclose(np.diff(times), 1 / cam.fps, rtol=1e-6)
    assert cam.fps == 30
    t, frame = cam.latest()
    assert t == times[-1] and frame.shape == (48, 64, 3)
    health = cam.health()
    assert health.state == "down" and health.frames == len(got)  # stopped
    # the camera thread's CPU per frame (read, decode, the sink): real work, far below a frame period
    assert health.decode_ms is not None and 0 < health.decode_ms < 1e3 / cam.fps


def test_decode_ms_counts_the_sink_in_the_camera_thread(video):
    """Issue 19: a frame's cost on the camera thread (decode + reduce) is visible in health."""
    import time

    def slow_sink(name, t, f):  # busy, not sleeping: CPU is what decode_ms measures
        end = time.thread_time() + 0.005
        while time.thread_time() < end:
            pass

    cam = CameraSource(str(video), sink=slow_sink)
    cam.start()
    try:
        assert _wait(lambda: cam.health().samples >= 6)
    finally:
        cam.stop()
    assert cam.health().decode_ms >= 5.0


@pytest.mark.parametrize("spec, message", [
    ("7", "cannot open this camera index"),
    ("/no/such/clip.mp4", "no such camera index or video file"),
])
def test_bad_cameras_fail_with_one_line(spec, message):
    with pytest.raises(CameraError, match=message) as err:
        CameraSource(spec).open()
    assert "\n" not in str(err.value)


def test_unreadable_video(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(CameraError, match="cannot open this file|no frame could be read"):
        CameraSource(str(tmp_path / "x.mp4")).open()


def test_gstreamer_pipeline_needs_gstreamer():
    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(CameraError, match="built without GStreamer"):
        CameraSource("videotestsrc ! videoconvert ! appsink").open()


class _FlakyCapture:
    """A camera that delivers, fails (unplugged), then can be opened again."""

    plugged = True

    def __init__(self, *args):
        self.open_now = _FlakyCapture.plugged

    def isOpened(self):
        return self.open_now

    def read(self):
        if not _FlakyCapture.plugged or not self.open_now:
            return False, None
        time.sleep(0.01)
        return True, np.zeros((4, 6, 3), np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        self.open_now = False


def test_an_unplugged_camera_reconnects(monkeypatch):
    monkeypatch.setattr("edgehar.app.camera.REOPEN_S", 0.05)
    _FlakyCapture.plugged = True
    cam = CameraSource("0", opener=_FlakyCapture)
    cam.open()
    cam.start()
    try:
        assert _wait(lambda: cam.frames > 5)
        _FlakyCapture.plugged = False
        assert _wait(lambda: cam.health().state == "reconnecting")
        frames = cam.frames
        _FlakyCapture.plugged = True
        assert _wait(lambda: cam.health().state == "connected" and cam.frames > frames + 3)
        assert cam.health().outages == 1
    finally:
        cam.stop()


class _V4L2Driver:
    """A camera index at the opener seam (no camera here): takes the pixel format and
    rate it is asked for, but has only 640x480 frames, as a driver answers a size it lacks."""

    calls: list = []

    def __init__(self, index):
        self.index, self.props = index, {}

    def isOpened(self):
        return True

    def set(self, prop, value):
        _V4L2Driver.calls.append((prop, value))
        self.props[prop] = value
        return True

    def read(self):
        return True, np.zeros((480, 640, 3), np.uint8)

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def release(self):
        pass


def test_a_camera_index_asks_its_driver_for_format_size_and_rate_and_says_what_it_got():
    """Issue 19: USB cameras reach 30 fps at 720p as MJPG; the spec asks the driver for it."""
    import cv2

    from edgehar.app.camera import index_options
    from edgehar.errors import EdgeharWarning

    assert camera_kind("2?width=1280&height=720") == "index"
    assert index_options("2?fourcc=MJPG&width=1280&fps=30") == (2, {"fourcc": "MJPG", "width": 1280.0, "fps": 30.0})
    _V4L2Driver.calls = []
    cam = CameraSource("2?width=1280&height=720&fps=30&fourcc=MJPG", opener=_V4L2Driver)
    with pytest.warns(EdgeharWarning, match=r"did not take width 1280 \(got 640\), height 720 \(got 480\)$"):
        assert cam.open() == (480, 640, 3)
    cam.stop()
    # the pixel format first (it decides which sizes exist), then the size, then the rate
    assert [p for p, _ in _V4L2Driver.calls] == [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH,
                                                 cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS]
    assert _V4L2Driver.calls[0][1] == cv2.VideoWriter_fourcc(*"MJPG") and cam.fps == 30


@pytest.mark.parametrize("spec, message", [
    ("0?widht=640", "unknown option 'widht' (known: fourcc, width, height, fps)"),
    ("0?width=-5", "width='-5' must be a positive number"),
    ("0?fps=fast", "fps='fast' must be a positive number"),
    ("0?fourcc=MJPEG", "fourcc='MJPEG' must be 4 characters"),
])
def test_bad_camera_index_options_are_one_line(spec, message):
    with pytest.raises(CameraError) as exc:
        CameraSource(spec, opener=_V4L2Driver).open()
    assert str(exc.value) == f"camera {spec!r}: {message}" + (", e.g. MJPG or YUYV" if "fourcc" in spec else "")
