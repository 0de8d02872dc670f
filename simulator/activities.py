"""The activities, each built from three shared parts: motion, grip and look.

An activity is not a blob of parameters but three generators:

- `Motion`: where the hand is and how the wrist moves (drives the wrist IMU, the
  glove's accelerometer/gyro and where the camera sees the hand);
- `Grip`: finger bend and thumb pressure as the glove feels them;
- `Look`: what the camera sees in the hand (tool) and which finger pose it draws.

Fusion matters by construction because pair members share generator *objects*
(not look-alike numbers): screwdriver and hex_key share one Motion and one Grip, so
their glove and IMU signals have the same distribution and, for the same seed, are
identical; plug_cable and unplug_cable share one Motion and one Look, so their
frames are identical for the same seed. Each part draws from its own child random
generator, so a member's own part never shifts the others' draws.

For glove-only pairs the fingers are wrapped around the connector / part and hidden
behind it in the egocentric view, so the camera draws the pair's common hold
(`Look.shown`), not the bend the glove measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .signals import draw_drift, drift, shape, since_wrap
from .subject import Subject


@dataclass(frozen=True)
class Motion:
    """Wrist/hand movement: a site on the bench plus periodic and wandering parts."""

    site: tuple[float, float]  # palm position in the image at z = BASE_Z, (u, v) in 0..1
    z: float  # m above the bench
    freq_hz: float  # cycle rate at tempo 1
    pos_shape: tuple[str, str, str]  # x (right), y (forward), z (up)
    pos_amp: tuple[float, float, float]  # m
    rpy_base: tuple[float, float, float]  # deg: roll (about the forearm), pitch, yaw
    rpy_shape: tuple[str, str, str]
    rpy_amp: tuple[float, float, float]  # deg
    flexion_shape: str  # wrist flexion: the hand (glove) pitches against the wrist (IMU)
    flexion_amp: float  # deg
    drift_pos: float = 0.004  # m
    drift_rpy: float = 3.0  # deg
    impact_g: float = 0.0  # spike when the phase wraps through pi (a tool strike)
    contact: str = "none"  # shape of fingertip contact with the panel (lights the button)


@dataclass(frozen=True)
class Grip:
    """Finger bend (true, 0..1) and thumb pressure, locked to the motion's phase."""

    base: tuple[float, float, float, float, float]  # thumb .. pinky
    mod: tuple[float, float, float, float, float]
    mod_shape: str
    pressure_base: float
    pressure_amp: float
    pressure_shape: str
    drift_flex: float = 0.03


@dataclass(frozen=True)
class Look:
    """What the camera sees: the object in the hand and the finger pose it draws."""

    tool: str | None  # a name render.py knows, or None for an empty hand
    shown: Grip | None = None  # None: draw the bend the glove measures


BASE_Z = 0.05  # m: the height at which a Motion's site is given

REST = Motion((0.5, 0.86), 0.04, 0.2, ("none",) * 3, (0, 0, 0), (0, -5, 0), ("none",) * 3, (0, 0, 0), "none", 0.0, drift_pos=0.012, drift_rpy=4.0)
TAP = Motion((0.2, 0.38), 0.06, 1.1, ("none", "pulse", "pulse"), (0, 0.015, -0.03), (0, -15, 0), ("none", "pulse", "none"), (0, 10, 0), "pulse", 12.0, contact="pulse")
CABLE = Motion((0.82, 0.36), 0.07, 0.6, ("none", "sin", "cos"), (0, 0.035, 0.008), (0, -10, 0), ("sin", "sin", "none"), (4, 6, 0), "sin", 5.0)
PART = Motion((0.5, 0.36), 0.07, 0.8, ("cos", "sin", "none"), (0.008, 0.008, 0), (0, -10, 0), ("sin", "none", "sin"), (8, 0, 25), "cos", 6.0)
TWIST = Motion((0.64, 0.78), 0.06, 1.2, ("none",) * 3, (0, 0, 0), (0, -20, 0), ("saw_up", "none", "none"), (55, 0, 0), "sin", 4.0, drift_pos=0.003)
SWING = Motion((0.33, 0.78), 0.10, 1.3, ("none", "saw_up", "saw_up"), (0, -0.02, 0.06), (0, 5, 0), ("none", "saw_up", "none"), (0, 35, 0), "saw_up", 15.0, impact_g=2.5)

RELAXED = Grip((0.2, 0.15, 0.2, 0.25, 0.3), (0,) * 5, "none", 0.02, 0.0, "none", drift_flex=0.04)
POINT = Grip((0.45, 0.12, 0.75, 0.78, 0.72), (0.05, 0.15, 0, 0, 0), "pulse", 0.08, 0.05, "pulse")
PINCH_PUSH = Grip((0.5, 0.55, 0.3, 0.25, 0.2), (0.12, 0.15, 0.03, 0, 0), "pulse", 0.15, 0.55, "pulse")
GRIP_PULL = Grip((0.55, 0.62, 0.62, 0.55, 0.45), (0.1, 0.12, 0.15, 0.15, 0.12), "pulse_back", 0.15, 0.5, "pulse_back")
TRIPOD_TIGHTEN = Grip((0.5, 0.5, 0.45, 0.3, 0.3), (0.12, 0.12, 0.1, 0, 0), "saw_up", 0.4, 0.3, "saw_up")
LEVER_PULL = Grip((0.55, 0.6, 0.35, 0.5, 0.5), (0.12, 0.12, 0.05, 0.08, 0.08), "saw_down", 0.35, 0.3, "saw_down")
POWER_TWIST = Grip((0.6, 0.72, 0.78, 0.78, 0.74), (-0.08, -0.1, -0.1, -0.08, -0.06), "pulse_back", 0.55, -0.3, "pulse_back")
HAMMER_GRIP = Grip((0.62, 0.8, 0.84, 0.84, 0.8), (0.06,) * 5, "pulse_back", 0.5, 0.35, "pulse_back")

CABLE_HOLD = Grip((0.55, 0.6, 0.45, 0.4, 0.35), (0,) * 5, "none", 0.0, 0.0, "none", drift_flex=0.04)
PART_HOLD = Grip((0.52, 0.55, 0.42, 0.4, 0.4), (0,) * 5, "none", 0.0, 0.0, "none", drift_flex=0.04)
CONNECTOR = Look("connector", CABLE_HOLD)
CAP = Look("cap", PART_HOLD)


@dataclass(frozen=True)
class Activity:
    name: str
    motion: Motion
    grip: Grip
    look: Look
    reverse: bool = False  # performed backwards: every phase-locked signal runs in reverse order


_ACTIVITIES = (
    Activity("neutral", REST, RELAXED, Look(None)),
    Activity("press_button", TAP, POINT, Look(None)),
    Activity("plug_cable", CABLE, PINCH_PUSH, CONNECTOR),
    Activity("unplug_cable", CABLE, GRIP_PULL, CONNECTOR),
    Activity("screwdriver", TWIST, POWER_TWIST, Look("screwdriver")),
    Activity("hex_key", TWIST, POWER_TWIST, Look("hex_key")),
    Activity("hammer", SWING, HAMMER_GRIP, Look("hammer")),
    Activity("mallet", SWING, HAMMER_GRIP, Look("mallet")),
    Activity("assemble", PART, TRIPOD_TIGHTEN, CAP),
    Activity("disassemble", PART, LEVER_PULL, CAP),
)
ACTIVITY_MODELS: dict[str, Activity] = {a.name: a for a in _ACTIVITIES}
ACTIVITIES: tuple[str, ...] = tuple(ACTIVITY_MODELS)

# Pairs told apart by one modality only; derived from the shared parts so they cannot drift.
GLOVE_ONLY_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (a.name, b.name) for i, a in enumerate(_ACTIVITIES) for b in _ACTIVITIES[i + 1 :] if a.motion is b.motion and a.look is b.look
)
CAMERA_ONLY_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (a.name, b.name) for i, a in enumerate(_ACTIVITIES) for b in _ACTIVITIES[i + 1 :] if a.motion is b.motion and a.grip is b.grip
)


# The nuisance preset's temporal-order pairs (simulator/nuisance.py, `reversed_pairs`): the
# second member is the first one played backwards -- the same grip on the same part in the
# same hand pose, but unscrewing turns the other way with the pressure dropping off where
# screwing builds it up, and unplugging squeezes on the pull where plugging squeezes on the
# push. Nothing but the order of the sub-steps tells them apart.
REVERSED: dict[str, Activity] = {
    "disassemble": Activity("disassemble", PART, TRIPOD_TIGHTEN, CAP, reverse=True),
    "unplug_cable": Activity("unplug_cable", CABLE, PINCH_PUSH, CONNECTOR, reverse=True),
}


def activity_model(name: str, reversed_pairs: bool = False) -> Activity:
    """The model of an activity by name; unknown names fail with the known ones.

    reversed_pairs: the temporal-order variants of REVERSED replace their default models."""
    if reversed_pairs and name in REVERSED:
        return REVERSED[name]
    try:
        return ACTIVITY_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown activity {name!r}; known: {', '.join(ACTIVITIES)}") from None


class Bout:
    """One performance of an activity by a subject: trial-to-trial variation drawn once.

    `start`/`end` are the labelled interval; the bout's signals are defined for all t,
    and the timeline crossfades neighbouring bouts around each boundary.
    """

    def __init__(self, activity: str, start: float, end: float, subject: Subject, seed: np.random.SeedSequence,
                 reversed_pairs: bool = False):
        self.activity, self.start, self.end = activity, start, end
        model = activity_model(activity, reversed_pairs)
        self.motion, self.grip, self.look = model.motion, model.grip, model.look
        self.direction = -1.0 if model.reverse else 1.0
        rm, rg, rl = (np.random.default_rng(s) for s in seed.spawn(3))
        m = self.motion
        # motion: tempo and size vary by subject and by trial
        self.freq = m.freq_hz * subject.tempo * rm.uniform(0.9, 1.1)
        self.phase0 = rm.uniform(0, 2 * np.pi)
        self.amp = subject.motion_amp * rm.uniform(0.85, 1.15)
        self.site = np.array(m.site) + rm.normal(0, 0.015, 2)
        self.z = m.z + rm.normal(0, 0.005)
        self.rpy_base = np.array(m.rpy_base) + rm.normal(0, 4, 3)
        self.wobble = draw_drift(rm, 1, 0.3)
        self.pos_drift = draw_drift(rm, 3, m.drift_pos)
        self.rpy_drift = draw_drift(rm, 3, m.drift_rpy)
        self.grip_draw = self._draw_grip(self.grip, rg)
        self.shown_draw = self._draw_grip(self.look.shown, rl) if self.look.shown else None

    @staticmethod
    def _draw_grip(g: Grip, rng: np.random.Generator) -> dict:
        return {
            "base": np.array(g.base) + rng.normal(0, 0.04, 5),
            "mod": np.array(g.mod) * rng.uniform(0.8, 1.2),
            "pressure_base": g.pressure_base * rng.uniform(0.8, 1.2),
            "pressure_amp": g.pressure_amp * rng.uniform(0.8, 1.2),
            "drift": draw_drift(rng, 6, g.drift_flex, 0.1, 0.6),
        }

    def phase(self, t: np.ndarray) -> np.ndarray:
        """The cycle's phase at t; a reversed activity runs it backwards, which plays every
        phase-locked shape (motion, grip, pressure) in reverse order (the start phase is
        uniform, so no other statistic changes)."""
        phi = 2 * np.pi * self.freq * (t - self.start) + self.phase0 + drift(t, self.wobble)[:, 0]
        return phi if self.direction > 0 else -phi

    def eval(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Latent state at times t: pose (m, rad), finger bend, pressure, impacts, contact."""
        m, phi = self.motion, self.phase(t)
        x = (self.site[0] - 0.5) * 0.6
        y = (1 - self.site[1]) * 0.45
        pos = np.stack([shape(s, phi) * a for s, a in zip(m.pos_shape, m.pos_amp)], -1) * self.amp
        pos += np.array([x, y, self.z]) + drift(t, self.pos_drift)
        rpy_deg = self.rpy_base + np.stack([shape(s, phi) * a for s, a in zip(m.rpy_shape, m.rpy_amp)], -1) * self.amp
        rpy_deg += drift(t, self.rpy_drift)
        flexion = np.deg2rad(shape(m.flexion_shape, phi) * m.flexion_amp * self.amp)
        impact = np.zeros_like(t)
        if m.impact_g:
            tau = since_wrap(phi, np.pi, self.freq)
            impact = m.impact_g * self.amp * np.exp(-tau / 0.012) * np.cos(2 * np.pi * 35 * tau)
        flex, pressure = self._grip_eval(self.grip, self.grip_draw, phi, t)
        shown = flex if self.shown_draw is None else self._grip_eval(self.look.shown, self.shown_draw, phi, t)[0]
        return {
            "pos": pos,
            "rpy": np.deg2rad(rpy_deg),
            "flexion": flexion,
            "impact": impact,
            "contact": shape(m.contact, phi),
            "flex": flex,
            "pressure": pressure,
            "shown": shown,
        }

    @staticmethod
    def _grip_eval(g: Grip, d: dict, phi: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wander = drift(t, d["drift"])
        flex = d["base"] + shape(g.mod_shape, phi)[:, None] * d["mod"] + wander[:, :5]
        pressure = d["pressure_base"] + shape(g.pressure_shape, phi) * d["pressure_amp"] + 0.5 * wander[:, 5]
        return np.clip(flex, 0.0, 1.0), np.clip(pressure, 0.0, 1.0)
