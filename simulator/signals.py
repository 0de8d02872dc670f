"""Closed-form signal pieces the simulated world is built from.

Every latent signal of the world is a function of absolute time (sums of sinusoids,
periodic shapes of a phase), never a state stepped sample by sample. That is what
lets the live world cut time into chunks of any length with no seam at the cuts, and
lets each stream be sampled at its own, jittered instants.
"""

from __future__ import annotations

import numpy as np


def draw_drift(rng: np.random.Generator, dims: int, amp: float, fmin: float = 0.05, fmax: float = 0.4, k: int = 3) -> np.ndarray:
    """Parameters of a smooth random wander: (dims, k, 3) rows of (freq_hz, phase, amplitude)."""
    freqs = rng.uniform(fmin, fmax, (dims, k))
    phases = rng.uniform(0.0, 2 * np.pi, (dims, k))
    amps = rng.normal(0.0, amp / np.sqrt(k), (dims, k))
    return np.stack([freqs, phases, amps], axis=-1)


def drift(t: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Evaluate a wander drawn by `draw_drift` at times t: (n, dims)."""
    f, ph, a = params[..., 0], params[..., 1], params[..., 2]  # (dims, k)
    return np.einsum("dk,ndk->nd", a, np.sin(2 * np.pi * f[None] * t[:, None, None] + ph[None]))


def _saw(phi: np.ndarray) -> np.ndarray:
    """Smooth rising sawtooth in about [-1, 1]: slow rise, fast drop at phi = pi (mod 2 pi)."""
    return (2 / np.pi) * (np.sin(phi) - np.sin(2 * phi) / 2 + np.sin(3 * phi) / 3) / 0.93


SHAPES = {
    "none": lambda phi: np.zeros_like(phi),
    "sin": np.sin,
    "cos": np.cos,
    # narrow pulse (0..1) at phi = 0 mod 2 pi: a tap, a push, a squeeze
    "pulse": lambda phi: ((1 + np.cos(phi)) / 2) ** 4,
    # the same pulse half a cycle later: squeeze on the way back
    "pulse_back": lambda phi: ((1 - np.cos(phi)) / 2) ** 4,
    "saw_up": _saw,
    "saw_down": lambda phi: -_saw(phi),
}


def shape(name: str, phi: np.ndarray) -> np.ndarray:
    """A periodic shape of the phase by name; unknown names fail with the known ones."""
    try:
        return SHAPES[name](phi)
    except KeyError:
        raise KeyError(f"unknown shape {name!r}; known: {sorted(SHAPES)}") from None


def since_wrap(phi: np.ndarray, at: float, freq_hz: float) -> np.ndarray:
    """Seconds since the phase last passed `at` (mod 2 pi): timing of impacts."""
    return np.mod(phi - at, 2 * np.pi) / (2 * np.pi * freq_hz)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, C1-smooth in between: crossfades between activities."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def rotation(rpy: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) body -> world from roll, pitch, yaw (n, 3) in rad, ZYX order."""
    r, p, y = rpy[:, 0], rpy[:, 1], rpy[:, 2]
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            np.stack([-sp, cp * sr, cp * cr], -1),
        ],
        -2,
    )
