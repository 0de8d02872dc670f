"""Segment sampling: one set of times, read by every stream on its own clock."""

from __future__ import annotations

import numpy as np
import pytest

from edgehar.contract.preprocess.sampling import SegmentSampler, has_sample, nearest_frames, sensor_windows

T0, T1 = 10.0, 13.0  # observation window inside a longer recording


def clock_stream(rate_hz: float, start: float = 0.0, stop: float = 20.0, jitter: float = 0.0, seed: int = 0):
    """Timestamps (T,) and values (T, 2) whose first column IS the timestamp."""
    ts = np.arange(start, stop, 1.0 / rate_hz)
    if jitter:
        ts = np.sort(ts + np.random.default_rng(seed).uniform(-jitter, jitter, ts.shape) / rate_hz)
    return ts, np.stack([ts, -ts], axis=1)


def test_eval_times_are_segment_centres() -> None:
    times = SegmentSampler(3, train=False).times(T0, T1)
    np.testing.assert_allclose(times, [10.5, 11.5, 12.5])
    np.testing.assert_array_equal(times, SegmentSampler(3, train=False, seed=9).times(T0, T1))


def test_train_times_random_inside_their_segments() -> None:
    sampler = SegmentSampler(4, train=True, seed=1)
    draws = np.stack([sampler.times(T0, T1) for _ in range(200)])  # (200, 4)
    edges = np.linspace(T0, T1, 5)
    assert ((draws >= edges[:-1]) & (draws < edges[1:])).all()
    # They vary and cover each segment, not one fixed offset.
    spread = draws.max(axis=0) - draws.min(axis=0)
    assert (spread > 0.9 * 0.75).all()


def test_dense_times_are_one_segment_long_clip() -> None:
    """Dense sampling (the MMTSA paper's contrast): N evenly spaced times inside one clip of a
    segment's length, centred in eval, anywhere in the window in training."""
    times = SegmentSampler(3, train=False, dense=True).times(T0, T1)
    np.testing.assert_allclose(times, [11.0 + 1 / 6, 11.5, 12.0 - 1 / 6])  # the centre clip [11, 12)
    sampler = SegmentSampler(3, train=True, seed=2, dense=True)
    draws = np.stack([sampler.times(T0, T1) for _ in range(200)])  # (200, 3)
    np.testing.assert_allclose(np.diff(draws, axis=1), 1 / 3)  # evenly spaced, a third of a segment apart
    assert (draws >= T0).all() and (draws < T1).all()
    # clips reach both ends of the window (the first time sits half a spacing, 1/6 s, into its clip)
    assert draws[:, 0].min() < T0 + 0.25 and draws[:, -1].max() > T1 - 0.25


def test_manifest_sampling_picks_the_sampler() -> None:
    from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec

    m = Manifest(streams=(StreamSpec("imu", "sensor", 50.0, ("ax",)),), modalities=(ModalitySpec("imu", "imu", "gaf", ("ax",)),),
                 labels=("a", "b"), sampling="dense")
    assert SegmentSampler.for_manifest(m, train=False).dense
    assert not SegmentSampler.for_manifest(Manifest.from_dict({**m.to_dict(), "sampling": "sparse"}), train=False).dense


def test_seed_reproducible() -> None:
    a = [SegmentSampler(3, train=True, seed=7).times(T0, T1) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    b = SegmentSampler(3, train=True, seed=8).times(T0, T1)
    assert not np.allclose(a[0], b)


@pytest.mark.parametrize("train", [False, True])
def test_modalities_aligned_across_rates(train: bool) -> None:
    """Glove 100 Hz, IMU 50 Hz, camera 30 fps: every window centre and every frame is
    within half a period of the one sampled time."""
    sampler = SegmentSampler(3, train=train, seed=3)
    for _ in range(20):
        times = sampler.times(T0, T1)
        for rate, k in [(100.0, 32), (50.0, 16)]:
            ts, values = clock_stream(rate)
            w = sensor_windows(ts, values, times, k, T0, T1)  # (N, 2, K)
            assert w.shape == (3, 2, k) and w.dtype == np.float32
            # Windows can be flush with the window edge only within K/2 samples of it.
            inner = (times - T0 > k / 2 / rate) & (T1 - times > k / 2 / rate)
            centre = w[:, 0, k // 2]
            assert (np.abs(centre - times)[inner] <= 0.5 / rate + 1e-6).all()
            np.testing.assert_allclose(w[:, 1], -w[:, 0])  # columns kept together
        ft, _ = clock_stream(30.0)
        idx = nearest_frames(ft, times, T0, T1)
        assert (np.abs(ft[idx] - times) <= 0.5 / 30.0 + 1e-9).all()


def test_windows_clamped_inside_observation_window() -> None:
    ts, values = clock_stream(50.0)
    k = 40
    times = np.array([T0, T0 + 0.01, 11.5, T1 - 0.01])
    w = sensor_windows(ts, values, times, k, T0, T1)[:, 0]  # (4, K) timestamps
    np.testing.assert_allclose(w[0], ts[(ts >= T0)][:k])  # flush with the start
    np.testing.assert_allclose(w[1], w[0])
    np.testing.assert_allclose(w[3], ts[(ts < T1)][-k:])  # flush with the end
    assert (w >= T0).all() and (w < T1).all()
    assert (np.diff(w, axis=1) > 0).all()  # consecutive samples, no repeats


def test_window_bounds_hold_at_array_edges() -> None:
    ts, values = clock_stream(50.0, start=10.2, stop=12.9)  # recording shorter than the window
    w = sensor_windows(ts, values, np.array([T0, 11.5, T1 - 1e-3]), 32, T0, T1)[:, 0]
    np.testing.assert_allclose(w[0], ts[:32])
    np.testing.assert_allclose(w[2], ts[-32:])


def test_fewer_samples_than_k_pads_with_edges() -> None:
    ts = np.array([10.1, 10.2, 10.3, 13.5])  # 3 samples inside [10, 13)
    values = np.array([[1.0], [2.0], [3.0], [99.0]])
    w = sensor_windows(ts, values, np.array([10.5, 12.5]), 8, T0, T1)[:, 0]  # (2, 8)
    # 8 - 3 = 5 pads: 2 before, 3 after, all samples inside the window kept in order.
    np.testing.assert_array_equal(w, [[1, 1, 1, 2, 3, 3, 3, 3]] * 2)


def test_no_sample_in_window_raises() -> None:
    ts, values = clock_stream(50.0, start=0.0, stop=5.0)
    with pytest.raises(ValueError, match="no sample"):
        sensor_windows(ts, values, np.array([11.0]), 8, T0, T1)


def test_has_sample_is_half_open() -> None:
    ts = np.array([1.0, 2.0, 3.0])
    assert has_sample(ts, 2.0, 2.5)  # t0 included
    assert not has_sample(ts, 2.5, 3.0)  # t1 excluded
    assert not has_sample(ts, 3.5, 9.0)
    assert not has_sample(np.empty(0), 0.0, 9.0)


def test_irregular_timestamps() -> None:
    ts, values = clock_stream(50.0, jitter=0.45, seed=2)
    times = SegmentSampler(5, train=True, seed=4).times(T0, T1)
    w = sensor_windows(ts, values, times, 16, T0, T1)
    inside = ts[(ts >= T0) & (ts < T1)]
    nearest = inside[np.abs(inside[None, :] - times[:, None]).argmin(axis=1)]  # brute force
    np.testing.assert_allclose(w[:, 0, 8], nearest)
    ft = np.sort(np.random.default_rng(5).uniform(9.0, 14.0, 90))  # dropped / bunched frames
    idx = nearest_frames(ft, times, T0, T1)
    np.testing.assert_array_equal(idx, np.abs(ft[None, :] - times[:, None]).argmin(axis=1))


def test_nearest_frames_prefers_frames_inside_window() -> None:
    ft = np.array([9.99, 10.2, 12.9, 13.0])
    times = np.array([10.0, 12.99])
    np.testing.assert_array_equal(nearest_frames(ft, times), [0, 3])  # unbounded: plain nearest
    np.testing.assert_array_equal(nearest_frames(ft, times, T0, T1), [1, 2])
    # No frame inside: fall back to the nearest overall.
    np.testing.assert_array_equal(nearest_frames(np.array([7.0, 14.0]), times, T0, T1), [0, 1])


def test_ties_go_to_the_earlier_sample_and_frame() -> None:
    """Guards the documented tie-break: a time exactly between two samples (or frames)
    takes the earlier one, for sensor windows and frames alike."""
    ts = np.array([10.0, 10.5, 11.0, 11.5, 12.0, 12.5])
    values = np.stack([ts, -ts], axis=1)
    times = np.array([10.25, 11.75])  # each exactly halfway between two stamps
    np.testing.assert_array_equal(nearest_frames(ts, times, T0, T1), [0, 3])
    centre = sensor_windows(ts, values, times, k=1, t0=T0, t1=T1)[:, 0, 0]  # K = 1: the nearest sample itself
    np.testing.assert_array_equal(centre, [10.0, 11.5])
