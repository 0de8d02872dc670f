import threading

import numpy as np

from edgehar.app.ringbuffer import FrameRing, SensorRing


def test_window_returns_exactly_the_time_range_in_order():
    ring = SensorRing(("a", "b"), capacity=50)
    t = np.arange(30) / 10.0
    for i in range(0, 30, 4):  # blocks of 4, like device packets
        ring.append(t[i : i + 4], np.stack([t[i : i + 4], -t[i : i + 4]], axis=1))
    w = ring.window(1.0, 2.0)
    np.testing.assert_allclose(w.timestamps, t[10:20])
    np.testing.assert_allclose(w.values[:, 1], -t[10:20], rtol=1e-6)
    assert w.channels == ("a", "b")


def test_wraps_and_keeps_only_the_newest():
    ring = SensorRing(("a",), capacity=8)
    t = np.arange(20, dtype=float)
    ring.append(t[:5], t[:5, None])
    ring.append(t[5:], t[5:, None])  # wraps several times
    assert len(ring) == 8
    w = ring.window(-1, 100)
    np.testing.assert_array_equal(w.timestamps, t[-8:])
    assert ring.latest_time() == 19.0


def test_concurrent_writer_reads_are_consistent():
    ring = SensorRing(("v",), capacity=16)
    done = threading.Event()

    def writer():
        for i in range(2000):
            ring.append(np.array([i * 0.01]), np.array([[i]], np.float32))
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    while not done.is_set():
        w = ring.window(0, 100)
        # every read is consistent: sorted timestamps, each value matches its time
        assert np.all(np.diff(w.timestamps) > 0)
        np.testing.assert_array_equal(w.values[:, 0], np.rint(w.timestamps / 0.01))
    th.join()
    assert len(ring.window(0, 100).timestamps) == 16


def _transform(crop=4, resize=None):
    from edgehar.contract.preprocess.frames import FrameTransform

    return FrameTransform(resize or crop, crop, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_frames_are_reduced_on_arrival_whatever_the_camera_size():
    """Issue 19: the frame ring kept full camera frames (about 500 MB at 720p) and the
    frames stage resized them every hop."""
    transform = _transform(crop=8, resize=10)
    ring = FrameRing(transform, capacity=6)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (720, 1280, 3), np.uint8) for _ in range(9)]
    for i, f in enumerate(frames):
        ring.append(i * 0.1, f)
    assert ring._rows.nbytes == 2 * 6 * 8 * 8 * 3  # the ring's memory is the model's, not the camera's
    w = ring.window(0.35, 10)
    assert w.reduced and w.frames.shape == (5, 8, 8, 3)
    for k, i in enumerate(range(4, 9)):
        np.testing.assert_array_equal(w.frames[k], transform.reduce(frames[i]))


def test_a_frame_window_is_a_view_that_holds_until_the_ring_laps_it():
    """The window is not copied (a hop copies only the frames it samples); its rows stay
    as they were while fewer rows are appended than lie before it in the ring."""
    ring = FrameRing(_transform(), capacity=8)
    value = lambda i: np.full((4, 4, 3), i, np.uint8)
    for i in range(11):  # wrapped: the newest 8 are 3..10
        ring.append(float(i), value(i))
    w = ring.window(7.0, 11.0)  # 7..10: four rows with four older ones (3..6) before them
    assert np.shares_memory(w.frames, ring._rows)
    for i in range(11, 15):  # four more laps over 3..6 only
        ring.append(float(i), value(i))
    np.testing.assert_array_equal(w.frames[:, 0, 0, 0], [7, 8, 9, 10])
    np.testing.assert_array_equal(w.timestamps, [7, 8, 9, 10])


def test_the_frame_ring_holds_two_windows_of_a_camera_faster_than_the_bundle():
    """A 60 fps camera under a 30 fps bundle: two windows of its frames, not one (a one-window
    ring would overwrite the hop's window view while it is read)."""
    from live_helpers import sim_manifest

    from edgehar.app.live import make_rings

    m = sim_manifest(window_s=3.0)
    assert make_rings(m, camera=True)["camera"].capacity == 180  # 30 fps x 3 s x 2
    assert make_rings(m, camera=True, camera_fps=60.0)["camera"].capacity == 360
    assert make_rings(m, camera=True, camera_fps=15.0)["camera"].capacity == 180  # never below the bundle's
