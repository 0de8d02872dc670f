"""Camera frames -> normalised RGB tensors for the frame branch, numpy + OpenCV only.

Resize the short side, centre-crop a square, BGR -> RGB, /255, (x - mean) / std, CHW.
Every constant comes from the bundle manifest (`FrameTransform.from_manifest`), so
training and the live app cannot drift apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..manifest import Manifest


class FrameTransform:
    """(N, H, W, 3) uint8 BGR frames -> (N, 3, crop, crop) float32 normalised RGB."""

    def __init__(self, resize: int, crop: int, mean: tuple[float, float, float], std: tuple[float, float, float]):
        if not 0 < crop <= resize:
            raise ValueError(f"crop {crop} must be in (0, resize={resize}]")
        self.resize = resize
        self.crop = crop
        # (x/255 - mean)/std of every possible byte, per RGB channel: normalising is then
        # one table lookup per pixel that also writes the channel-first output, instead
        # of a float conversion, a multiply, an add and a transpose pass.
        levels = np.arange(256, dtype=np.float64) / 255.0  # (256,)
        mean_, std_ = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self._table = ((levels[None, :] - mean_[:, None]) / std_[:, None]).astype(np.float32)  # (3, 256) RGB

    @classmethod
    def from_manifest(cls, m: Manifest) -> "FrameTransform":
        return cls(m.frame_resize, m.frame_crop, m.frame_mean, m.frame_std)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (N, H, W, 3), got {frames.shape}"
        # cv2.resize takes one image at a time; N is the handful of sampled frames.
        return self.normalise(np.stack([self.reduce(frame) for frame in frames]))

    def reduce(self, frame: np.ndarray) -> np.ndarray:
        """One (H, W, 3) BGR frame -> the (crop, crop, 3) BGR square the model sees.

        The live app calls this once per captured frame, on arrival (the camera thread),
        and keeps only the result: what a hop then costs does not grow with the camera's
        resolution. `normalise` finishes the job on the frames a window samples.
        """
        return self._crop(self._resize(frame))

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """(N, crop, crop, 3) uint8 BGR from `reduce` -> (N, 3, crop, crop) float32 RGB."""
        crops = np.asarray(crops)
        assert crops.shape[1:] == (self.crop, self.crop, 3), f"reduced frames must be (N, {self.crop}, {self.crop}, 3), got {crops.shape}"
        out = np.empty((crops.shape[0], 3, self.crop, self.crop), dtype=np.float32)  # (N, 3, crop, crop)
        for c in range(3):  # RGB channel c is BGR channel 2 - c
            np.take(self._table[c], crops[..., 2 - c], out=out[:, c])
        return out

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        """Short side -> self.resize; INTER_AREA when shrinking (no aliasing), else linear."""
        h, w = frame.shape[:2]
        s = self.resize / min(h, w)
        size = (max(self.resize, round(w * s)), max(self.resize, round(h * s)))  # cv2 wants (w, h)
        if size == (w, h):
            return frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

    def _crop(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        top, left = (h - self.crop) // 2, (w - self.crop) // 2
        return frame[top : top + self.crop, left : left + self.crop]
