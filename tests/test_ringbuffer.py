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


def test_frames_and_concurrent_writer():
    ring = FrameRing((4, 4, 3), capacity=16)
    done = threading.Event()

    def writer():
        for i in range(500):
            ring.append(i * 0.01, np.full((4, 4, 3), i % 256, np.uint8))
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    while not done.is_set():
        w = ring.window(0, 10)
        # every read is consistent: sorted timestamps, frame value matches its time
        assert np.all(np.diff(w.timestamps) > 0)
        if len(w.timestamps):
            idx = np.rint(w.timestamps / 0.01).astype(int) % 256
            assert np.all(w.frames[:, 0, 0, 0] == idx)
    th.join()
    assert len(ring.window(0, 10).timestamps) == 16
