"""MMTSA's paper input mode: eq. 5 grey levels, per-sensor images, image size, eq. 6 windows;
and the edge recipe (the default) exactly as before."""

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.contract.preprocess.gaf import gaf_images, grey_images, grey_to_input
from edgehar.contract.preprocess.inputs import build_inputs
from edgehar.contract.preprocess.sampling import SegmentSampler, sensor_windows
from edgehar.contract.series import SensorSeries
from edgehar.models.recipes import RECIPES, split_sensors

CHANNELS = ("flex_a", "flex_b", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "pressure")


def test_eq5_grey_levels_match_a_hand_computation_with_truncation():
    x = [0.0, 1.0, 2.0, 4.0]  # min-max rescaled to -1, -0.5, 0, 1
    s = [-1.0, -0.5, 0.0, 1.0]
    g = [[a * b - math.sqrt(1 - a * a) * math.sqrt(1 - b * b) for b in s] for a in s]  # cos(phi_i + phi_j)
    lo, hi = min(map(min, g)), max(map(max, g))
    exact = [[(v - lo) / (hi - lo) * 255 for v in row] for row in g]
    want = np.array([[math.floor(v) for v in row] for row in exact], np.uint8)
    got = grey_images(np.array([x]), "summation")[0]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    # truncation, not rounding: G spans [-1, 1] here, and G(-0.5, -0.5) = 0.25 - 0.75 = -0.5
    # sits at 0.5 / 2 * 255 = 63.75, which truncates to 63 (rounding would give 64)
    assert (lo, hi) == (-1.0, 1.0) and exact[1][1] == pytest.approx(63.75) and got[1, 1] == 63
    # a flat window is one grey level (0), not a division by zero
    assert (grey_images(np.ones((1, 8)), "summation") == 0).all()


def test_grey_images_resize_as_8_bit_images_and_feed_minus_one_to_one():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 32))  # (N, C, K)
    small = grey_images(w, "difference")
    big = grey_images(w, "difference", size=224)  # (N, C, 224, 224)
    assert big.shape == (3, 3, 224, 224) and big.dtype == np.uint8
    want = cv2.resize(small[1, 2], (224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(big[1, 2], want)
    x = grey_to_input(np.array([0, 255], np.uint8))
    assert x.dtype == np.float32 and x.tolist() == [-1.0, 1.0]


def test_windows_stay_inside_their_segment_with_eq6_bounds():
    ts = np.arange(0, 3, 0.01)  # 100 Hz over a 3 s window, N = 3 segments of 1 s
    values = ts[:, None].astype(np.float32)  # the sample's own time
    times = np.array([0.99, 1.01, 2.995])  # near the segment edges
    inside = sensor_windows(ts, values, times, 32, 0.0, 3.0, in_segments=True)[:, 0, :]  # (N, K)
    for i, win in enumerate(inside):
        assert (win >= i - 1e-6).all() and (win < i + 1).all(), (i, win.min(), win.max())
        assert np.all(np.diff(win) > 0)  # K consecutive samples
    straddle = sensor_windows(ts, values, times, 32, 0.0, 3.0)[:, 0, :]
    assert straddle[0].max() > 1.0 and straddle[1].min() < 1.0  # the edge recipe lets them cross
    # a segment with fewer than K samples is used whole, edge padded, still inside
    sparse = sensor_windows(ts[::4], values[::4], times, 32, 0.0, 3.0, in_segments=True)[:, 0, :]
    assert all((w >= i - 1e-6).all() and (w < i + 1).all() for i, w in enumerate(sparse))


def _manifest(**kw) -> Manifest:
    stream = StreamSpec("glove", "sensor", 100.0, CHANNELS)
    return Manifest(streams=(stream,), modalities=(ModalitySpec("glove", "glove", "gaf", CHANNELS),), labels=("a", "b"), **kw)


def test_paper_mode_shapes_at_224():
    m = replace(_manifest(), modalities=split_sensors(_manifest().modalities), gaf_size=224, gaf_grey="uint8", window_bounds="segment")
    assert [(x.name, len(x.channels)) for x in m.modalities] == [
        ("glove_flex", 2), ("glove_acc", 3), ("glove_gyro", 3), ("glove_pressure", 1)]
    ts = np.arange(0, 3, 0.01)
    series = {"glove": SensorSeries(ts, np.random.default_rng(1).normal(size=(len(ts), len(CHANNELS))).astype(np.float32), CHANNELS)}
    built = build_inputs(m, series, 0.0, 3.0, SegmentSampler(3, train=True, seed=0))
    assert [a.shape for a in built.arrays] == [(3, 2, 224, 224), (3, 3, 224, 224), (3, 3, 224, 224), (3, 1, 224, 224)]
    assert list(m.input_shapes()) == [a.shape for a in built.arrays]
    assert all(a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1 for a in built.arrays)
    # 8-bit levels: every value is a grey level / 127.5 - 1
    levels = (built.arrays[1] + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_default_manifest_builds_exactly_the_edge_inputs_and_old_manifests_load():
    m = _manifest()
    assert (m.gaf_size, m.gaf_grey, m.window_bounds) == (0, "float", "window") and m.input_shapes() == ((3, 9, 32, 32),)
    old = m.to_dict()
    for key in ("gaf_size", "gaf_grey", "window_bounds"):
        del old[key]
    assert Manifest.from_dict(old) == m  # a manifest written before these fields
    ts = np.arange(0, 3, 0.01)
    vals = np.random.default_rng(2).normal(size=(len(ts), len(CHANNELS))).astype(np.float32)
    built = build_inputs(m, {"glove": SensorSeries(ts, vals, CHANNELS)}, 0.0, 3.0, SegmentSampler(3, train=False))
    times = SegmentSampler(3, train=False).times(0.0, 3.0)
    want = gaf_images(sensor_windows(ts, vals, times, 32, 0.0, 3.0), "summation", out="float32")
    np.testing.assert_array_equal(built.arrays[0], want)


def test_the_paper_recipe_sets_every_option():
    paper = RECIPES["paper"]
    assert (paper.sensor_images, paper.gaf_size, paper.gaf_grey, paper.window_bounds) == ("sensor", 224, "uint8", "segment")
    assert paper.model_config["width"] > 0.5  # wider than the edge backbone
    assert RECIPES["edge"].model_config == {} and RECIPES["edge"].gaf_size == 0


def test_split_sensors_keeps_ranges_with_their_channels():
    mod = ModalitySpec("imu", "imu", "gaf", ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
                       tuple((float(i), float(i + 1)) for i in range(6)))
    acc, gyro = split_sensors((mod,))
    assert (acc.name, gyro.name) == ("imu_acc", "imu_gyro") and gyro.ranges == ((3.0, 4.0), (4.0, 5.0), (5.0, 6.0))
    one = ModalitySpec("acc", "watch", "gaf", ("acc_x", "acc_y", "acc_z"))
    assert split_sensors((one,)) == (one,)  # already one sensor: unchanged name
