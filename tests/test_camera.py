"""The camera thread: newest frame with its time, clear errors, reconnect after a loss.
The camera is replaced at the seam by a video file, or an injected capture."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edgehar.app.camera import CameraError, CameraSource, camera_kind, has_gstreamer


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
