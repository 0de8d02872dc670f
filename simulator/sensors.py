"""Measurement models: latent pose -> what the glove and the IMU chips report.

The accelerometer reads specific force in its own frame (gravity included, so a
resting hand reads about +1 g on its up axis), the gyro reads body angular rate.
Both come from the pose by finite differences at t -/+ H_DIFF, so they are exactly
consistent with where the camera draws the hand. Then each subject's mounting
rotation, bias, gain, noise and the chip's saturation and ADC steps are applied.
"""

from __future__ import annotations

import numpy as np

from .datasheet import GLOVE_SPECS, IMU_SPECS
from .placements import PLACEMENTS, Fitting, Placement, segment_pose
from .signals import rotation
from .subject import Subject

H_DIFF = 0.004  # s: finite-difference step for velocities and accelerations
ADC_STEP = 1 / 4095  # flex and pressure are read through a 12-bit ADC
G = 9.81


def _inertial(pos: np.ndarray, rpy: np.ndarray, impact: np.ndarray, mount_rpy: tuple) -> tuple[np.ndarray, np.ndarray]:
    """True (acc in g, gyro in deg/s) from pose at (t - h, t, t + h), each stacked (3, n, ...)."""
    a_world = (pos[2] - 2 * pos[1] + pos[0]) / (H_DIFF**2) / G
    a_world[:, 2] += 1.0 + impact  # specific force: the bench pushes up at 1 g; strikes jolt
    mount = rotation(np.deg2rad(np.array(mount_rpy))[None])[0]
    rot = [rotation(x) @ mount for x in rpy]  # sensor -> world
    acc = np.einsum("nji,nj->ni", rot[1], a_world)
    w = np.einsum("nki,nkj->nij", rot[1], (rot[2] - rot[0]) / (2 * H_DIFF))  # R^T dR/dt = [omega]x
    gyro = np.degrees(np.stack([w[:, 2, 1], w[:, 0, 2], w[:, 1, 0]], -1))
    return acc, gyro


def _clip(values: np.ndarray, specs) -> np.ndarray:
    lo = np.array([c.lo for c in specs])
    hi = np.array([c.hi for c in specs])
    return np.clip(values, lo, hi).astype(np.float32)


def measure_glove(state3: list[dict], subject: Subject, rng: np.random.Generator) -> np.ndarray:
    """Glove samples (n, 12) in GLOVE_CHANNELS order from states at t - h, t, t + h."""
    pos = np.stack([s["pos"] for s in state3])
    rpy = np.stack([s["rpy"] + np.stack([0 * s["flexion"], s["flexion"], 0 * s["flexion"]], -1) for s in state3])
    mid = state3[1]
    acc, gyro = _inertial(pos, rpy, mid["impact"], subject.glove_mount_rpy)
    n = len(acc)
    flex = np.array(subject.flex_offset) + np.array(subject.flex_gain) * mid["flex"] + rng.normal(0, subject.flex_noise, (n, 5))
    pressure = subject.pressure_gain * mid["pressure"] + rng.normal(0, subject.pressure_noise, n)
    acc = acc + np.array(subject.glove_acc_bias) + rng.normal(0, subject.acc_noise, (n, 3))
    gyro = gyro + np.array(subject.glove_gyro_bias) + rng.normal(0, subject.gyro_noise, (n, 3))
    flex, pressure = np.round(flex / ADC_STEP) * ADC_STEP, np.round(pressure / ADC_STEP) * ADC_STEP
    return _clip(np.column_stack([flex, acc, gyro, pressure]), GLOVE_SPECS)


def measure_imu(state3: list[dict], t3: list[np.ndarray], subject: Subject, rng: np.random.Generator,
                placement: Placement = PLACEMENTS["wrist"], fitting: Fitting | None = None) -> np.ndarray:
    """IMU samples (n, 6) in IMU_CHANNELS order from states at times t - h, t, t + h.

    The default is the wrist IMU (the forearm, without wrist flexion, worn as the
    subject's own parameters say); another placement moves with its own segment
    (placements.py). Same chip, so the same noise and saturation wherever it is worn."""
    fitting = fitting or Fitting.wrist_of(subject)
    poses = [segment_pose(s, t, placement, fitting) for s, t in zip(state3, t3)]
    pos = np.stack([p for p, _ in poses])
    rpy = np.stack([r for _, r in poses])
    acc, gyro = _inertial(pos, rpy, placement.impact * state3[1]["impact"], fitting.mount_rpy)  # a damped jolt
    n = len(acc)
    acc = acc + np.array(fitting.acc_bias) + rng.normal(0, subject.acc_noise, (n, 3))
    gyro = gyro + np.array(fitting.gyro_bias) + rng.normal(0, subject.gyro_noise, (n, 3))
    return _clip(np.column_stack([acc, gyro]), IMU_SPECS)
