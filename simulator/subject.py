"""Per-subject parameters: what makes one person's recordings unlike another's.

Cross-subject evaluation is the honest test for wearables, so the world varies what
really varies between people: hand size (how far the flex sensors read for the same
grip), tempo, how big their movements are, how the glove and strap sit (mounting
rotation, sensor bias), sensor noise, what the camera sees (glove colour, camera
placement, lighting) and how often their other arm gets in the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Subject:
    """One simulated person wearing one glove, one wrist IMU and a chest camera."""

    subject_id: int
    name: str  # "s03": the subject string sessions carry
    hand_size: float  # 1 = average; scales the drawn hand and the flex sensor gain
    tempo: float  # multiplies every activity's cycle rate (0.8 .. 1.2)
    motion_amp: float  # multiplies movement amplitudes
    flex_gain: tuple[float, ...]  # per finger: sensor reading per unit of true bend
    flex_offset: tuple[float, ...]  # per finger: reading at a straight finger
    pressure_gain: float
    glove_acc_bias: tuple[float, float, float]  # g
    glove_gyro_bias: tuple[float, float, float]  # deg/s
    imu_acc_bias: tuple[float, float, float]  # g
    imu_gyro_bias: tuple[float, float, float]  # deg/s
    glove_mount_rpy: tuple[float, float, float]  # deg: how the glove's board sits on the hand
    imu_mount_rpy: tuple[float, float, float]  # deg: how the strap sits on the wrist
    acc_noise: float  # g, white noise std
    gyro_noise: float  # deg/s
    flex_noise: float
    pressure_noise: float
    glove_color: tuple[int, int, int]  # BGR
    sleeve_color: tuple[int, int, int]  # BGR
    table_tint: tuple[int, int, int]  # BGR added to the workbench colour
    camera_offset: tuple[float, float]  # px: where the chest camera points
    brightness: float  # mean image gain
    image_noise: float  # std of pixel noise, grey levels
    occlusion_rate: float  # occlusion events per second


def _tup(a: np.ndarray, digits: int = 4) -> tuple:
    return tuple(round(float(x), digits) for x in np.atleast_1d(a))


def make_subject(subject_id: int, seed: int) -> Subject:
    """A reproducible subject: the same (subject_id, seed) always gives the same person."""
    rng = np.random.default_rng([seed, subject_id, 0x5B])
    hand_size = float(np.clip(rng.normal(1.0, 0.08), 0.85, 1.15))
    gain = np.clip(rng.normal(0.95 + 0.5 * (hand_size - 1.0), 0.06, 5), 0.75, 1.2)
    glove = rng.integers(25, 90, 3) + np.array([rng.integers(0, 60), 0, 0])  # dark, sometimes bluish
    sleeve = rng.integers(40, 200, 3)
    return Subject(
        subject_id=subject_id,
        name=f"s{subject_id:02d}",
        hand_size=round(hand_size, 4),
        tempo=round(float(rng.uniform(0.8, 1.2)), 4),
        motion_amp=round(float(rng.uniform(0.8, 1.2)), 4),
        flex_gain=_tup(gain),
        flex_offset=_tup(rng.normal(0.0, 0.03, 5)),
        pressure_gain=round(float(rng.uniform(0.8, 1.15)), 4),
        glove_acc_bias=_tup(rng.normal(0, 0.02, 3)),
        glove_gyro_bias=_tup(rng.normal(0, 1.5, 3)),
        imu_acc_bias=_tup(rng.normal(0, 0.02, 3)),
        imu_gyro_bias=_tup(rng.normal(0, 1.5, 3)),
        glove_mount_rpy=_tup(rng.normal(0, 6, 3)),
        imu_mount_rpy=_tup(rng.normal(0, 8, 3)),
        acc_noise=round(float(rng.uniform(0.008, 0.03)), 4),
        gyro_noise=round(float(rng.uniform(0.5, 2.5)), 4),
        flex_noise=round(float(rng.uniform(0.004, 0.015)), 4),
        pressure_noise=round(float(rng.uniform(0.005, 0.02)), 4),
        glove_color=tuple(int(c) for c in glove),
        sleeve_color=tuple(int(c) for c in sleeve),
        table_tint=tuple(int(c) for c in rng.integers(-20, 21, 3)),
        camera_offset=_tup(rng.normal(0, 4, 2), 2),
        brightness=round(float(rng.uniform(0.8, 1.15)), 4),
        image_noise=round(float(rng.uniform(1.5, 5.0)), 3),
        occlusion_rate=round(float(rng.uniform(0.02, 0.08)), 4),
    )
