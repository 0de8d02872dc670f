"""build_inputs: manifest order and shapes, modality dropout as zeros, one set of times."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from pyts.image import GramianAngularField

from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.contract.preprocess.frames import FrameTransform
from edgehar.contract.preprocess.inputs import build_inputs
from edgehar.contract.preprocess.sampling import SegmentSampler
from edgehar.contract.series import FrameSeries, SensorSeries

T0, T1 = 4.0, 7.0
GLOVE_CH = ("f1", "f2", "f3", "ax")
IMU_CH = ("ax", "ay", "az", "gx")


def make_manifest(scaling: str = "window", kind: str = "summation") -> Manifest:
    # "range" scaling with lo = 2·t0 - t1, hi = t1 maps a channel equal to its timestamp
    # onto x̃ = (t - t0)/(t1 - t0) in [0, 1): the GASF diagonal 2x̃² - 1 then tells which
    # time each pixel came from.
    ranges = ((2 * T0 - T1, T1),) * 3
    return Manifest(
        streams=(
            StreamSpec("glove", "sensor", 100.0, GLOVE_CH),
            StreamSpec("camera", "camera", 30.0),
            StreamSpec("imu", "sensor", 50.0, IMU_CH),
        ),
        modalities=(
            ModalitySpec("glove", "glove", "gaf", ("f2", "f1", "f3"), ranges),  # not column order
            ModalitySpec("rgb", "camera", "frames"),
            ModalitySpec("imu", "imu", "gaf", ("ax", "ay", "az"), ranges),
        ),
        labels=("rest", "wave"),
        window_s=T1 - T0,
        num_segments=3,
        gaf_k=16,
        gaf_kind=kind,
        gaf_scaling=scaling,
        frame_resize=20,
        frame_crop=16,
        frame_mean=(0.0, 0.0, 0.0),
        frame_std=(1.0, 1.0, 1.0),
    )


def clock_sensor(rate_hz: float, channels: tuple[str, ...], seed: int = 0) -> SensorSeries:
    """Columns named f1 / ax equal the timestamp; the others are noise."""
    ts = np.arange(0.0, 10.0, 1.0 / rate_hz)
    values = np.random.default_rng(seed).standard_normal((ts.size, len(channels))).astype(np.float32)
    for c in ("f1", "ax"):
        if c in channels:
            values[:, channels.index(c)] = ts
    return SensorSeries(ts, values, channels)


def indexed_camera(rate_hz: float = 30.0) -> FrameSeries:
    """Frame i is uniformly grey level i, so the transformed pixel tells which frame it is."""
    ts = np.arange(0.0, 250 / rate_hz, 1.0 / rate_hz)  # 250 frames, grey levels 0..249
    frames = np.broadcast_to(np.arange(ts.size, dtype=np.uint8)[:, None, None, None], (ts.size, 24, 32, 3)).copy()
    return FrameSeries(ts, frames)


def all_series() -> dict[str, SensorSeries | FrameSeries | None]:
    return {"glove": clock_sensor(100.0, GLOVE_CH), "camera": indexed_camera(), "imu": clock_sensor(50.0, IMU_CH, seed=1)}


def test_shapes_dtypes_and_order() -> None:
    m = make_manifest()
    x = build_inputs(m, all_series(), T0, T1, SegmentSampler(3, train=False))
    assert len(x.arrays) == 3 and x.present == (True, True, True)
    for arr, shape in zip(x.arrays, m.input_shapes()):
        assert arr.shape == shape and arr.dtype == np.float32
    assert [a.shape for a in x.arrays] == [(3, 3, 16, 16), (3, 3, 16, 16), (3, 3, 16, 16)]
    np.testing.assert_allclose(x.times, [4.5, 5.5, 6.5])
    assert set(x.timings) == {"sampling", "gaf", "frames"} and all(v >= 0 for v in x.timings.values())
    assert x.timings["gaf"] > 0 and x.timings["frames"] > 0


def test_window_scaling_images_the_right_channels() -> None:
    m = make_manifest("window", "difference")
    s = all_series()
    x = build_inputs(m, s, T0, T1, SegmentSampler(3, train=False))
    glove = x.arrays[0]  # (N, C, K, K), channels (f2, f1, f3)
    ts, v = s["glove"].timestamps, s["glove"].values
    gaf = GramianAngularField(image_size=16, sample_range=(-1, 1), method="difference")
    for i, t in enumerate(x.times):
        j = int(np.abs(ts - t).argmin())
        window = v[j - 8 : j + 8][:, [1, 0, 2]].T  # (C, K), the K samples around t
        np.testing.assert_allclose(glove[i], gaf.fit_transform(window), atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_frames_and_gaf_windows_share_the_sampled_times(train: bool) -> None:
    m = make_manifest("range")
    sampler = SegmentSampler(3, train=train, seed=11)
    for _ in range(10):
        x = build_inputs(m, all_series(), T0, T1, sampler)
        for arr, rate, ch in [(x.arrays[0], 100.0, 1), (x.arrays[2], 50.0, 0)]:  # f1 / ax = time
            diag = np.diagonal(arr[:, ch], axis1=-2, axis2=-1)  # (N, K) = 2x̃² - 1
            t_decoded = T0 + np.sqrt((diag + 1) / 2) * (T1 - T0)  # (N, K) sample times
            k = m.gaf_k
            inner = (x.times - T0 > k / 2 / rate) & (T1 - x.times > k / 2 / rate)
            assert (np.abs(t_decoded[:, k // 2] - x.times)[inner] < 0.5 / rate + 1e-4).all()
            assert (t_decoded >= T0 - 1e-4).all() and (t_decoded < T1).all()
        frame_index = np.rint(x.arrays[1][:, 0, 8, 8] * 255).astype(int)  # grey level = frame index
        assert (np.abs(frame_index / 30.0 - x.times) <= 0.5 / 30.0 + 1e-6).all()


def test_missing_or_silent_streams_become_zeros() -> None:
    m = make_manifest()
    s = all_series()
    full = build_inputs(m, s, T0, T1, SegmentSampler(3, train=False))
    s["camera"] = None
    glove = s["glove"]
    s["glove"] = SensorSeries(glove.timestamps + 100.0, glove.values, glove.channels)  # nothing in [t0, t1)
    del s["imu"]
    x = build_inputs(m, s, T0, T1, SegmentSampler(3, train=False))
    assert x.present == (False, False, False)
    for arr, shape in zip(x.arrays, m.input_shapes()):
        assert arr.shape == shape and arr.dtype == np.float32 and not arr.any()
    # Dropping one stream leaves the others exactly as they were.
    y = build_inputs(m, {**all_series(), "imu": None}, T0, T1, SegmentSampler(3, train=False))
    assert y.present == (True, True, False)
    np.testing.assert_array_equal(y.arrays[0], full.arrays[0])
    np.testing.assert_array_equal(y.arrays[1], full.arrays[1])


def test_explicit_frame_transform_is_used() -> None:
    m = make_manifest()
    t = FrameTransform(resize=20, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = build_inputs(m, all_series(), T0, T1, SegmentSampler(3, train=False), frame_transform=t)
    default = build_inputs(m, all_series(), T0, T1, SegmentSampler(3, train=False))
    np.testing.assert_allclose(x.arrays[1], (default.arrays[1] - 0.5) / 0.5, atol=1e-6)


def test_rejects_wrong_series_type_and_segment_count() -> None:
    m = make_manifest()
    s = all_series()
    with pytest.raises(TypeError, match="FrameSeries"):
        build_inputs(m, {**s, "camera": s["imu"]}, T0, T1, SegmentSampler(3, train=False))
    with pytest.raises(ValueError, match="segments"):
        build_inputs(replace(m, num_segments=4), s, T0, T1, SegmentSampler(3, train=False))


@pytest.mark.parametrize("size", [(120, 160), (480, 640), (720, 1280), (1080, 1920), (1080, 1080)])
def test_live_frames_reduced_on_arrival_equal_the_training_path_bit_for_bit(size) -> None:
    """Issue 19: the live frame ring reduces each frame on arrival and the hop only
    normalises the sampled ones; the model must get exactly what the training path
    (FrameTransform on whole frames) gives, at any camera size."""
    from edgehar.app.live import make_rings

    m = make_manifest()
    h, w = size
    ts = np.arange(0.0, 8.0, 1.0 / 30.0)
    rng = np.random.default_rng(h * w)
    base = rng.integers(0, 256, (ts.size, 12, 16, 3), np.uint8)  # smooth-ish content, upscaled
    frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in base])
    ring = make_rings(m, camera=True)["camera"]
    for t, f in zip(ts, frames):
        ring.append(float(t), f)
    sampler = SegmentSampler(3, train=False)
    live = build_inputs(m, {"camera": ring.window(T0, T1)}, T0, T1, sampler)
    offline = build_inputs(m, {"camera": FrameSeries(ts, frames)}, T0, T1, sampler)
    rgb = m.modality_names().index("rgb")
    assert live.present[rgb] and np.array_equal(live.arrays[rgb], offline.arrays[rgb])
