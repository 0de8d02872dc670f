"""Where the simulated IMUs are worn, and how each one's pose follows the body's motion.

The world's latent state is the working (right) arm: the wrist's position and the
forearm's roll / pitch / yaw over time (activities.py). An IMU elsewhere on the body
rides on its own segment, so its signal is not a copy of the wrist's:

| placement | where it sits                 | what it feels                                               |
|-----------|-------------------------------|-------------------------------------------------------------|
| wrist     | right wrist (the default IMU) | the forearm's whole motion; a strike's jolt, damped          |
| forearm   | 12 cm up the right forearm    | the same forearm, but lever-arm (tangential and centripetal) accelerations of its own and half the wrist's roll (pronation twists the forearm's far end); a weaker jolt |
| chest     | strap on the sternum          | the torso leaning and turning a little with each reach, breathing and posture sway; its board stands upright, so gravity reads on x |
| ankle     | outside of the right shank    | posture sway and weight shifts, barely any arm motion; its board faces sideways, so gravity reads on y |

Each subject wears each IMU a little differently (mounting rotation around the
nominal one, sensor bias: `Fitting`), drawn like the wrist IMU's in subject.py. The
sway is a closed-form wander of absolute time (signals.drift), like every latent
signal, so chunks of the live world still join without a seam.

`SensorLayout` says which IMUs a simulated person wears and how fast glove and IMUs
sample; the default (one wrist IMU, 100 Hz) is the world the shipped bundles and the
default data set were made from, and renders bit for bit as it did before layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..contract.manifest import imu_stream
from .datasheet import IMU_RATE_HZ
from .signals import draw_drift, drift, rotation
from .subject import Subject


@dataclass(frozen=True)
class Placement:
    """One place on the body an IMU can be worn, and how that segment follows the arm."""

    name: str  # "wrist", "forearm", ...: what a layout lists
    where: str  # device info in the session's meta.json: "right wrist", ...
    lever_m: tuple[float, float, float]  # sensor offset from the wrist in the forearm's frame (x: towards the hand)
    follow: float  # share of the wrist's movement the segment makes (1: it rides on the forearm)
    turn: tuple[float, float, float]  # share of the forearm's roll, pitch, yaw the segment turns through
    impact: float  # share of a tool strike's jolt that reaches it
    mount_deg: tuple[float, float, float]  # nominal board rotation on the segment (roll, pitch, yaw)
    sway_m: float = 0.0  # the segment's own slow wander (posture, breathing), m
    sway_deg: float = 0.0  # ... and its own slow tilt, deg


PLACEMENTS: dict[str, Placement] = {
    p.name: p
    for p in (
        Placement("wrist", "right wrist", (0.0, 0.0, 0.0), 1.0, (1.0, 1.0, 1.0), 0.6, (0.0, 0.0, 0.0)),
        Placement("forearm", "right forearm", (-0.12, 0.0, 0.0), 1.0, (0.5, 1.0, 1.0), 0.4, (0.0, 0.0, 0.0)),
        Placement("chest", "chest", (0.0, 0.0, 0.0), 0.12, (0.1, 0.15, 0.25), 0.1, (0.0, -90.0, 0.0), sway_m=0.004, sway_deg=1.5),
        Placement("ankle", "right ankle", (0.0, 0.0, 0.0), 0.0, (0.0, 0.03, 0.0), 0.02, (90.0, 0.0, 0.0), sway_m=0.002, sway_deg=1.0),
    )
}


def strap_moved(placement: Placement, slide_m: float) -> Placement:
    """The placement with its strap `slide_m` further up the forearm (a loose or badly
    placed strap; nuisance.py): a lever arm of its own and less of the wrist's roll, which
    falls linearly to the forearm placement's half at 12 cm."""
    x, y, z = placement.lever_m
    roll = placement.turn[0] * (1 - 0.5 * slide_m / 0.12)
    return replace(placement, lever_m=(x - slide_m, y, z), turn=(roll, *placement.turn[1:]))


@dataclass(frozen=True)
class Fitting:
    """How one subject wears one IMU: board rotation, sensor biases, the segment's own sway."""

    mount_rpy: tuple[float, float, float]  # deg
    acc_bias: tuple[float, float, float]  # g
    gyro_bias: tuple[float, float, float]  # deg/s
    sway_pos: np.ndarray | None = None  # drift parameters (signals.draw_drift), None: no sway
    sway_rpy: np.ndarray | None = None

    @classmethod
    def wrist_of(cls, subject: Subject) -> "Fitting":
        """The default wrist IMU, as the subject's own parameters describe it."""
        return cls(subject.imu_mount_rpy, subject.imu_acc_bias, subject.imu_gyro_bias)

    @classmethod
    def draw(cls, placement: Placement, rng: np.random.Generator) -> "Fitting":
        """A fresh fitting around the placement's nominal mount (spreads as in subject.py)."""
        mount = tuple(float(m) for m in np.array(placement.mount_deg) + rng.normal(0, 8, 3))
        acc_bias = tuple(float(b) for b in rng.normal(0, 0.02, 3))
        gyro_bias = tuple(float(b) for b in rng.normal(0, 1.5, 3))
        if not (placement.sway_m or placement.sway_deg):
            return cls(mount, acc_bias, gyro_bias)
        return cls(mount, acc_bias, gyro_bias, draw_drift(rng, 3, placement.sway_m, 0.05, 0.5),
                   draw_drift(rng, 3, placement.sway_deg, 0.05, 0.5))


def segment_pose(state: dict, t: np.ndarray, placement: Placement, fitting: Fitting) -> tuple[np.ndarray, np.ndarray]:
    """(position m (n, 3), roll/pitch/yaw rad (n, 3)) of the IMU's segment at times t (n,)."""
    rpy = state["rpy"] * np.array(placement.turn)
    pos = state["pos"] * placement.follow
    if any(placement.lever_m):  # a point up the forearm: the forearm's rotation swings it
        pos = pos + rotation(rpy) @ np.array(placement.lever_m)
    if fitting.sway_pos is not None:
        pos = pos + drift(t, fitting.sway_pos)
        rpy = rpy + np.deg2rad(drift(t, fitting.sway_rpy))
    return pos, rpy


@dataclass(frozen=True)
class SensorLayout:
    """Which IMUs the simulated person wears, in stream order, and the glove's and IMUs' rate.

    The k-th placement is stream `imu_stream(k)` ("imu", "imu2", ...), the names `edgehar
    live --imu URL --imu URL` gives its devices. Camera frames stay at the datasheet's rate.
    """

    imus: tuple[str, ...] = ("wrist",)
    rate_hz: float = IMU_RATE_HZ  # glove and every IMU (the datasheet gives both 100 Hz)

    def __post_init__(self) -> None:
        unknown = [p for p in self.imus if p not in PLACEMENTS]
        if unknown:
            raise KeyError(f"unknown IMU placement {unknown[0]!r}; known: {', '.join(PLACEMENTS)}")
        if not self.imus or len(set(self.imus)) != len(self.imus):
            raise ValueError(f"IMU placements must be one or more, each once; got {list(self.imus)}")
        if not self.rate_hz > 0:
            raise ValueError(f"sensor rate must be > 0 Hz, got {self.rate_hz}")

    def imu_streams(self) -> dict[str, Placement]:
        """Stream name -> placement, in stream order."""
        return {imu_stream(k): PLACEMENTS[p] for k, p in enumerate(self.imus)}
