"""The one function that turns time-stamped streams into model inputs.

Training (over recorded sessions) and the live app (over ring buffers) both call
`build_inputs`, with every constant read from the bundle manifest, so what the model
saw in training is exactly what it sees on the device.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..manifest import SENSOR_TYPES, Manifest, ModalitySpec
from .frames import FrameTransform
from .gaf import gaf_images, grey_images, grey_to_input, rescale
from .sampling import SegmentSampler, has_sample, nearest_frames, sensor_windows
from ..series import FrameSeries, SensorSeries


@dataclass(frozen=True)
class ModelInputs:
    """Inputs for one observation window, one entry per manifest modality, in order."""

    arrays: tuple[np.ndarray, ...]  # float32, manifest.input_shapes()[i], no batch axis
    present: tuple[bool, ...]  # False: stream missing or silent in the window; array is zeros
    times: np.ndarray  # (N,) the sampled times every modality was read at
    timings: dict[str, float] = field(default_factory=dict)  # seconds: "sampling", "gaf", "frames"


def build_inputs(
    manifest: Manifest,
    series: Mapping[str, SensorSeries | FrameSeries | None],
    t0: float,
    t1: float,
    sampler: SegmentSampler,
    frame_transform: FrameTransform | None = None,
) -> ModelInputs:
    """Sample N aligned times in [t0, t1) and build every modality's input at those times.

    A modality whose stream is absent from `series`, None, or has no sample inside
    [t0, t1) gets an all-zero array and present=False: models are trained with
    modality dropout as zeros, so a dropped device degrades the prediction instead of
    stopping it. frame_transform defaults to the manifest's.
    """
    if sampler.num_segments != manifest.num_segments:
        raise ValueError(f"sampler draws {sampler.num_segments} segments, manifest wants {manifest.num_segments}")
    timings = {"sampling": 0.0, "gaf": 0.0, "frames": 0.0}
    tic = time.perf_counter()
    times = sampler.times(t0, t1)  # (N,)
    timings["sampling"] += time.perf_counter() - tic

    arrays, present = [], []
    for m, shape in zip(manifest.modalities, manifest.input_shapes()):
        s = series.get(m.stream)
        if m.type in SENSOR_TYPES:
            arr = _sensor_input(manifest, m, s, times, t0, t1, timings)
        else:
            frame_transform = frame_transform or FrameTransform.from_manifest(manifest)
            arr = _frame_input(m, s, times, t0, t1, frame_transform, timings)
        present.append(arr is not None)
        arrays.append(np.zeros(shape, dtype=np.float32) if arr is None else arr)
        assert arrays[-1].shape == shape, f"{m.name}: built {arrays[-1].shape}, manifest says {shape}"
    return ModelInputs(tuple(arrays), tuple(present), times, timings)


def _has_sample(m: ModalitySpec, s: SensorSeries | FrameSeries | None, kind: type, t0: float, t1: float) -> bool:
    """Whether the modality's stream has a sample in [t0, t1): an absent or silent stream
    becomes a zero input. A stream of the wrong kind is the caller's bug, not a dropout."""
    if s is None:
        return False
    if not isinstance(s, kind):
        raise TypeError(f"modality {m.name!r} needs a {kind.__name__} for stream {m.stream!r}, got {type(s).__name__}")
    return has_sample(s.timestamps, t0, t1)


def _sensor_input(
    manifest: Manifest,
    m: ModalitySpec,
    s: SensorSeries | FrameSeries | None,
    times: np.ndarray,
    t0: float,
    t1: float,
    timings: dict[str, float],
) -> np.ndarray | None:
    """(N, C, S, S) GAF images ("gaf"; S = manifest.gaf_side()) or (N, C, K) windows rescaled to
    [-1, 1] ("series") of the modality's channels, or None if the stream is silent. Both
    scale the same way (manifest.gaf_scaling), so the two types differ only in the imaging
    step. The manifest's window_bounds and gaf_grey pick the edge recipe or MMTSA's paper mode."""
    tic = time.perf_counter()
    if not _has_sample(m, s, SensorSeries, t0, t1):
        return None
    in_segments = manifest.window_bounds == "segment"
    windows = sensor_windows(s.timestamps, s.select(m.channels), times, manifest.gaf_k, t0, t1, in_segments)  # (N, C, K)
    timings["sampling"] += time.perf_counter() - tic
    tic = time.perf_counter()
    lo = hi = None
    if manifest.gaf_scaling == "range":
        lo, hi = np.asarray(m.ranges, dtype=np.float64).T  # (C,) each
    if m.type == "series":
        images = rescale(windows, lo, hi).astype(np.float32)  # (N, C, K)
    elif manifest.gaf_grey == "uint8":  # MMTSA eq. 5, truncated to 8 bits as the official code does
        images = grey_to_input(grey_images(windows, manifest.gaf_kind, lo, hi, manifest.gaf_side()))  # (N, C, S, S)
    else:
        images = gaf_images(windows, manifest.gaf_kind, lo, hi, out="float32", out_size=manifest.gaf_size or None)  # (N, C, S, S)
    timings["gaf"] += time.perf_counter() - tic  # the "gaf" stage: sensor windows -> model input
    return images


def _frame_input(
    m: ModalitySpec,
    s: SensorSeries | FrameSeries | None,
    times: np.ndarray,
    t0: float,
    t1: float,
    transform: FrameTransform,
    timings: dict[str, float],
) -> np.ndarray | None:
    """(N, 3, crop, crop) transformed frames nearest the times, or None if no frame in the window."""
    tic = time.perf_counter()
    if not _has_sample(m, s, FrameSeries, t0, t1):
        return None
    idx = nearest_frames(s.timestamps, times, t0, t1)  # (N,)
    timings["sampling"] += time.perf_counter() - tic
    tic = time.perf_counter()
    frames = s.frames[idx]  # (N, H, W, 3): a copy of the N sampled frames only
    images = transform.normalise(frames) if s.reduced else transform(frames)  # (N, 3, crop, crop)
    timings["frames"] += time.perf_counter() - tic
    return images

