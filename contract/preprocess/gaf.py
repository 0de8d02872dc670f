"""Gramian Angular Fields (MMTSA sec. 3.1) for batches of short sensor windows.

Only the K-sample windows picked by the segment sampler are imaged, never a field over
a whole recording: the image is K x K, so its cost grows with K², not with the
recording length.

Every GAF is a rank-2 matrix. With x̃ the window rescaled to [-1, 1] and
s = sqrt(1 - x̃²) (cos and sin of the polar angle φ = arccos x̃):

    GASF = cos(φi + φj) = x̃ x̃ᵀ - s sᵀ
    GADF = sin(φi - φj) = s x̃ᵀ - x̃ sᵀ          (pyts' sign convention)

so an image is one small matrix product of (K, 2) factors. A bilinear resize is linear
and separable, resize(G) = R G Rᵀ with R the (S, K) 1-D interpolation matrix, so the
resized image is (R u)(R v)ᵀ: it is built at the output size directly, never at K x K
first. A uint8 mapping a·G + b is affine and folds into a third rank-1 term, so even
the uint8 image comes out of one matmul plus a cast.

This module is numpy only (no torch; OpenCV only for `grey_images`' 8-bit resize, imported
there) so the deploy-only install can run it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

KINDS = ("summation", "difference")
OUTPUTS = ("float32", "uint8_fixed", "uint8_minmax")


def rescale(windows: np.ndarray, lo: np.ndarray | float | None = None, hi: np.ndarray | float | None = None) -> np.ndarray:
    """Map each (..., c) window onto [-1, 1] (paper eq. 1), in float64.

    With lo/hi None the range is the window's own min/max (as the official code via
    pyts' MinMaxScaler). Otherwise lo/hi broadcast to (..., C) (calibrated sensor
    ranges, or min/max of the whole observation window) and values outside are clipped.

    A window with max == min (or a caller range with hi == lo) maps to 0, i.e. angle
    π/2: the midpoint, so a flat signal looks the same whatever its level. (pyts maps
    it to -1 instead; that choice would make a flat signal look like a signal pinned at
    its minimum.) GASF of such a window is -1 everywhere, GADF 0.
    """
    x = np.asarray(windows, dtype=np.float64)  # (..., C, K)
    if lo is None and hi is None:
        lo_, hi_ = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)  # (..., C, 1)
    elif lo is None or hi is None:
        raise ValueError("give both lo and hi, or neither")
    else:
        lo_ = np.asarray(lo, dtype=np.float64)[..., None]  # (..., C, 1)
        hi_ = np.asarray(hi, dtype=np.float64)[..., None]
    span = hi_ - lo_
    # float64 here because sqrt(1 - x̃²) amplifies rounding near |x̃| = 1 (slope
    # 1/sqrt(2δ)); these arrays are only (..., C, K), so it costs nothing.
    # a flat range divides by infinity: 0 with no masking pass
    scaled = (2.0 * x - hi_ - lo_) / np.where(span == 0, np.inf, span)
    # in place, np.minimum/np.maximum rather than np.clip (whose per-call overhead in
    # numpy 2 exceeds the work on arrays this small)
    return np.maximum(np.minimum(scaled, 1.0, out=scaled), -1.0, out=scaled)


@lru_cache(maxsize=32)
def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left tap, right tap and right weight, (dst,) each, of cv2 INTER_LINEAR src -> dst.

    OpenCV's rule: source coordinate (d + 0.5)·src/dst - 0.5, clamped to the first /
    last sample at the edges, no antialiasing when shrinking.
    """
    f = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(f).astype(np.int64)
    w = np.where(i0 < 0, 0.0, f - i0)
    i0 = np.clip(i0, 0, src - 1)
    w = np.where(i0 >= src - 1, 0.0, w)
    return i0, np.minimum(i0 + 1, src - 1), w


def resize_linear(x: np.ndarray, size: int) -> np.ndarray:
    """Resize (..., K) -> (..., size) along the last axis exactly as cv2.resize INTER_LINEAR.

    Done by hand because cv2 resizes 2-D images only, and the rank-2 trick needs the
    1-D factors resized: resize(u vᵀ) = resize(u) resize(v)ᵀ. Two taps per output
    sample (a gather), cheaper than a dense (size, K) matrix product.
    """
    i0, i1, w = _linear_taps(x.shape[-1], int(size))
    return x[..., i0] * (1.0 - w) + x[..., i1] * w


def gaf_images(
    windows: np.ndarray,
    kind: str = "summation",
    lo: np.ndarray | float | None = None,
    hi: np.ndarray | float | None = None,
    out: str = "float32",
    out_size: int | None = None,
) -> np.ndarray:
    """GAF images of windows (..., C, K) -> (..., C, S, S), S = out_size or K.

    kind: "summation" (GASF) or "difference" (GADF), same values as pyts
      `GramianAngularField(image_size=K, sample_range=(-1, 1), method=kind)`.
    lo, hi: rescale range broadcastable to (..., C); None = per-window min/max. See
      `rescale` for clipping and for flat windows.
    out: "float32" in [-1, 1];
      "uint8_fixed": round((G + 1)·127.5), one fixed mapping, comparable across windows;
      "uint8_minmax": the official MMTSA mapping, (G - min G)/(max G - min G)·255 per
      (..., c) image (min / max of the K x K image), a flat image -> 0.
      Rounding is half up on float32 values, so an exact .5 tie may land one grey
      level either side.
    out_size: the image bilinearly resized to S x S, equal to cv2.resize(INTER_LINEAR)
      of the float K x K image, computed without ever forming the K x K image. uint8
      outputs map that resized image with the K x K image's min / max; this matches
      the official order (uint8 first, then cv2.resize) within 1 grey level.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    if out not in OUTPUTS:
        raise ValueError(f"out {out!r} is not one of {OUTPUTS}")
    xs = rescale(windows, lo, hi)  # (..., C, K), cos φ
    sn = np.sqrt(np.maximum(1.0 - xs * xs, 0.0))  # (..., C, K), sin φ (|x̃| <= 1)
    a = b = None
    if out != "float32":
        a, b = _uint8_affine(xs, kind, out)  # (..., C, 1) each: byte = a·G + b, from the K x K image
    cs = np.stack([xs, sn], axis=-2)  # (..., C, 2, K)
    if out_size is not None and out_size != xs.shape[-1]:
        cs = resize_linear(cs, out_size)  # (..., C, 2, S): every factor is a mix of these two rows
    c, s = cs[..., 0, :], cs[..., 1, :]  # (..., C, S)
    if kind == "summation":
        u, v = [c, -s], [c, s]  # G = x̃ x̃ᵀ - s sᵀ
    else:
        u, v = [s, -c], [c, s]  # G = s x̃ᵀ - x̃ sᵀ
    if a is not None:
        # a·G + b + 0.5 = Σ (a·u_t) v_tᵀ + (b + 0.5)·1 1ᵀ, so the truncating cast at the
        # end rounds half up without a separate pass over the big image.
        u = [a * t for t in u] + [np.broadcast_to(b + 0.5, c.shape)]
        v = v + [np.ones_like(c)]
    fu, fv = np.stack(u, axis=-2), np.stack(v, axis=-2)  # (..., C, r, S)
    fu = np.swapaxes(fu, -1, -2).astype(np.float32)  # (..., C, S, r)
    img = np.matmul(fu, fv.astype(np.float32))  # (..., C, S, S)
    if out == "float32":
        return img
    # G stays inside its [min, max] (bilinear weights are convex), so the values lie in
    # [0.5, 255.5] up to float rounding: the truncating cast needs no clip pass.
    return img.astype(np.uint8)


def grey_images(
    windows: np.ndarray,
    kind: str = "summation",
    lo: np.ndarray | float | None = None,
    hi: np.ndarray | float | None = None,
    size: int | None = None,
) -> np.ndarray:
    """MMTSA eq. 5 as the official code computes it: (..., C, K) windows -> (..., C, S, S) uint8.

    Each K x K GAF (float64) is mapped by its own min and max to (G - min) / (max - min) · 255
    and cast to uint8 by truncation, as numpy's astype and PIL's `Image.fromarray` of such
    an array do (the paper writes × 256; 255 keeps the maximum inside 8 bits, as the code
    does). A flat image (max == min) is all 0. With `size`, the 8-bit image is then resized
    to S x S with cv2.resize INTER_LINEAR, the official order (grey levels first, then the
    resize to 224). This is the reference path, not the rank-2 fast one of `gaf_images`:
    the truncation must see the exact K x K values, and the images are small until resized.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    x = rescale(windows, lo, hi)  # (..., C, K), cos φ
    s = np.sqrt(np.maximum(1.0 - x * x, 0.0))  # sin φ
    if kind == "summation":
        g = x[..., :, None] * x[..., None, :] - s[..., :, None] * s[..., None, :]  # cos(φi + φj)
    else:
        g = s[..., :, None] * x[..., None, :] - x[..., :, None] * s[..., None, :]  # sin(φi - φj)
    g_min, g_max = g.min(axis=(-2, -1), keepdims=True), g.max(axis=(-2, -1), keepdims=True)
    span = g_max - g_min
    grey = ((g - g_min) * (255.0 / np.where(span > 0, span, np.inf))).astype(np.uint8)  # truncates
    k = grey.shape[-1]
    if not size or size == k:
        return grey
    import cv2  # lazily: OpenCV is optional in a deploy-only install, and only this resize needs it

    flat = grey.reshape(-1, k, k).transpose(1, 2, 0)  # (K, K, M): cv2 resizes channels together
    # cv2's Python binding takes at most 128 channels per image
    parts = [cv2.resize(np.ascontiguousarray(flat[..., i : i + 128]), (size, size), interpolation=cv2.INTER_LINEAR)
             for i in range(0, flat.shape[-1], 128)]
    out = np.concatenate([p.reshape(size, size, -1) for p in parts], axis=-1)  # (S, S, M)
    return out.transpose(2, 0, 1).reshape(*grey.shape[:-2], size, size)


def grey_to_input(grey: np.ndarray) -> np.ndarray:
    """8-bit grey images as model input: float32 grey / 127.5 - 1, the same [-1, 1] span
    as the float field (0 -> -1, 255 -> 1)."""
    return grey.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def _uint8_affine(xs: np.ndarray, kind: str, out: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), each (..., C, 1), such that the uint8 value of G is round(a·G + b)."""
    if out == "uint8_fixed":
        a = np.full(xs.shape[:-1] + (1,), 127.5)
        return a, a
    g_min, g_max = gaf_extrema(xs, kind)  # (..., C, 1)
    span = g_max - g_min
    flat = span <= 0
    a = np.where(flat, 0.0, 255.0 / np.where(flat, 1.0, span))
    return a, -a * g_min


def gaf_extrema(xs: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max, (..., C, 1) each, of the K x K GAF without forming it.

    xs: (..., C, K) rescaled windows. With φ = arccos x̃ in [0, π]
    and one row i fixed, G[i, j] is unimodal in φj, so its extreme over the samples is
    at one of the two samples bracketing the continuous optimum:
    - GASF = cos(φi + φj): min at φj = π - φi, i.e. x̃j = -x̃i. Its max is on the
      diagonal, 2x̃² - 1 (cos falls then rises on [0, 2π]: extreme sums win).
    - GADF = sin(φi - φj): max at φj = φi - π/2, i.e. x̃j = sin φi, when φi >= π/2;
      else at the largest x̃j. Antisymmetric, so min = -max.
    One sorted search over all rows finds the brackets: O(K log K) per image instead
    of K², which keeps the uint8_minmax output as cheap as the others.
    """
    k = xs.shape[-1]
    srt = np.sort(xs.reshape(-1, k), axis=-1)  # (B, K) x̃ ascending
    if kind == "summation":
        xi = np.ascontiguousarray(srt[:, ::-1])  # rows i by descending x̃: targets -x̃i ascend
        g_min = _bracket_extreme(srt, xi, -xi, kind, np.min)
        g_max = (2.0 * xs * xs - 1.0).max(axis=-1, keepdims=True)
        return g_min.reshape(g_max.shape), g_max
    si = np.sqrt(np.clip(1.0 - srt * srt, 0.0, 1.0))  # ascends while x̃ <= 0
    g_max = _bracket_extreme(srt, srt, np.where(srt <= 0.0, si, 2.0), kind, np.max)
    g_max = g_max.reshape(xs.shape[:-1] + (1,))
    return -g_max, g_max


def _bracket_extreme(srt: np.ndarray, xi: np.ndarray, target: np.ndarray, kind: str, pick) -> np.ndarray:
    """pick (np.min / np.max) per row of G[i, j] over i and the two x̃j bracketing target[i].

    srt: (B, K) sorted x̃ per image; xi, target: (B, K), target ascending per row.
    """
    n, k = srt.shape
    # One 1-D searchsorted for all rows: shift row b by 4·b (x̃ in [-1, 1], targets in
    # [-1, 2]), which keeps the flattened keys sorted and the rows apart; sorted
    # queries keep the binary searches cache-friendly.
    shift = 4.0 * np.arange(n)[:, None]  # (B, 1)
    keys = srt + shift  # (B, K)
    pos = np.searchsorted(keys.ravel(), (target + shift).ravel()).reshape(n, k)  # flat positions
    first = np.arange(0, n * k, k)[:, None]  # (B, 1) flat index of each row's first sample
    flat = srt.ravel()
    xj = np.stack([flat[np.clip(pos - 1, first, first + k - 1)], flat[np.minimum(pos, first + k - 1)]], axis=-1)  # (B, K, 2)
    sj = np.sqrt(np.clip(1.0 - xj * xj, 0.0, 1.0))
    xi = xi[..., None]  # (B, K, 1)
    si = np.sqrt(np.clip(1.0 - xi * xi, 0.0, 1.0))
    g = xi * xj - si * sj if kind == "summation" else si * xj - xi * sj  # (B, K, 2)
    return pick(g.reshape(n, -1), axis=-1)  # (B,)
