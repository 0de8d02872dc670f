"""Frame transform: geometry, channel order and normalisation on known pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.contract.preprocess.frames import FrameTransform


def test_uniform_colour_is_rgb_normalised() -> None:
    frames = np.zeros((2, 48, 64, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 128, 255  # B, G, R
    frames[1] = 51
    out = FrameTransform(resize=24, crop=16, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 0.1))(frames)
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.float32 and out.flags.c_contiguous
    expected_rgb = (np.array([255, 128, 10]) / 255.0 - [0.5, 0.4, 0.3]) / [0.5, 0.25, 0.1]
    np.testing.assert_allclose(out[0], np.broadcast_to(expected_rgb[:, None, None], (3, 16, 16)), atol=1e-5)
    np.testing.assert_allclose(out[1, 0], (0.2 - 0.5) / 0.5, atol=1e-5)


def test_short_side_resize_then_centre_crop() -> None:
    # 40 x 80 frame, left half black, right half white, one red column at x = 40..43.
    frame = np.zeros((40, 80, 3), dtype=np.uint8)
    frame[:, 40:] = 255
    frame[:, 40:44] = (0, 0, 255)  # BGR red
    t = FrameTransform(resize=20, crop=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = t(frame[None])[0]  # (3, 20, 20)
    # Short side 40 -> 20 gives 20 x 40 (INTER_AREA 2x2 averages); the crop keeps x 10..29
    # of the resized image, i.e. x 20..59 of the original: black | red (2 px) | white.
    ref = cv2.resize(frame, (40, 20), interpolation=cv2.INTER_AREA)[:, 10:30, ::-1] / 255.0  # RGB
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(out[:, 5, 0], [0, 0, 0])
    np.testing.assert_allclose(out[:, 5, 10], [1, 0, 0])  # red lands in R, first channel
    np.testing.assert_allclose(out[:, 5, 19], [1, 1, 1])


def test_upscale_and_portrait() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (30, 12, 3), dtype=np.uint8)  # portrait, smaller than resize
    out = FrameTransform(resize=24, crop=24, mean=(0, 0, 0), std=(1, 1, 1))(frame[None])[0]
    big = cv2.resize(frame, (24, 60), interpolation=cv2.INTER_LINEAR)  # short side 12 -> 24
    np.testing.assert_allclose(out, big[18:42, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_from_manifest_reads_every_constant() -> None:
    m = Manifest(
        streams=(StreamSpec("camera", "camera", 30.0),),
        modalities=(ModalitySpec("rgb", "camera", "frames"),),
        labels=("a", "b"),
        frame_resize=40,
        frame_crop=32,
        frame_mean=(0.1, 0.2, 0.3),
        frame_std=(0.4, 0.5, 0.6),
    )
    frames = np.full((3, 50, 60, 3), 200, dtype=np.uint8)
    out = FrameTransform.from_manifest(m)(frames)
    assert out.shape == (3,) + m.input_shapes()[0][1:]
    expected = (200 / 255.0 - np.array([0.1, 0.2, 0.3])) / [0.4, 0.5, 0.6]
    np.testing.assert_allclose(out[:, :, 7, 9], np.broadcast_to(expected, (3, 3)), atol=1e-5)


def test_rejects_crop_larger_than_resize() -> None:
    with pytest.raises(ValueError, match="crop"):
        FrameTransform(resize=32, crop=40, mean=(0, 0, 0), std=(1, 1, 1))
