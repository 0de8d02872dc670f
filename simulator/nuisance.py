"""Nuisance factors: what makes real recordings harder than the default simulated world.

The default world (`sim`) is clean enough that every fused model scores 95-100 %, so an
ablation reads "no difference". `Nuisance` adds, on top of the same subjects and
activities, the factors that make real multimodal HAR data sets hard; the `sim-hard`
preset (`PRESETS`) turns all of them on together at one `strength`. None of them is aimed
at a model or a modality: each is a physical effect a real glove, IMU or chest camera
meets, with a size a real one could have at strength 1.

| factor | generator | at strength s (sim-hard: s = 1) |
|---|---|---|
| amplitude / speed between people | `subject()` widens each subject's tempo and movement size about the average | tempo 0.8-1.2 -> 1 ± 0.2 (1 + s); size likewise |
| sensor placement per subject | `subject()` widens how the glove board and wrist strap are rotated; `draw()` slides the wrist strap up the forearm | mount rotation std ×(1 + 1.5 s); strap 0-6 s cm up the forearm (lever-arm accelerations, less of the wrist's roll) |
| sensor noise | `subject()` scales every white-noise level (acc, gyro, flex, pressure) | ×(1 + 2 s) |
| packet loss | `Recordings.lost()` drops bursts of glove / IMU samples (a missed BLE connection event, an RF fade): the stream has a gap | 0.3 s bursts a second, each 40-400 ms: ~6 % of samples at s = 1 |
| camera viewpoint | `subject()` widens where the chest camera points; `draw()` gives each recording a camera tilt and zoom (strap height, body shape) | offset ×(1 + 3 s); tilt std 8 s deg; zoom 1 ± 0.15 s |
| lighting | `subject()` widens the exposure spread; `Recordings.light()` adds episodes of a light switched or a shadow cast | brightness spread ×(1 + s); 0.05 s episodes a second, 2-10 s long, gain ×0.45-1.6 |
| occlusion episodes | `subject()` raises the rate of the world's own occlusions (the other arm, a look away) | ×(1 + 4 s) |
| temporal order | `reversed_pairs`: disassemble is assemble played backwards, unplug is plug backwards (activities.py `REVERSED`) | same grip, same motion, same look: only the order of the sub-steps differs |
| class imbalance | `imbalance`: bouts per activity follow `IMBALANCE` (idle and buttons common, the mallet rare) | 6 : 1 between the most and least frequent class with 3 repeats |

All draws come from generators of their own (seeded by the recording's seed), so a
`Nuisance()` of strength 0 leaves the default world bit for bit as it was.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from .subject import Subject

# Relative number of bouts per activity with `imbalance` (× repeats, rounded, at least 1):
# a workbench session is mostly idling and pressing buttons; tools come out less often
# and the mallet least. The order is the activities' practical frequency, not anything
# a model finds easy or hard.
IMBALANCE = {
    "neutral": 2.0, "press_button": 5 / 3, "plug_cable": 4 / 3, "screwdriver": 4 / 3, "unplug_cable": 1.0,
    "assemble": 1.0, "disassemble": 2 / 3, "hex_key": 2 / 3, "hammer": 2 / 3, "mallet": 1 / 3,
}


@dataclass(frozen=True)
class Nuisance:
    """How much harder than the default world a simulated recording is."""

    strength: float = 0.0  # scales every continuous factor of the table above; 0: none
    reversed_pairs: bool = False  # assemble/disassemble and plug/unplug told apart only by temporal order
    imbalance: bool = False  # bouts per activity follow IMBALANCE

    def __post_init__(self) -> None:
        if not (self.strength >= 0 and np.isfinite(self.strength)):
            raise ValueError(f"nuisance strength must be a number >= 0, got {self.strength!r}")

    @property
    def active(self) -> bool:
        return self.strength > 0 or self.reversed_pairs or self.imbalance

    def subject(self, sub: Subject) -> Subject:
        """The subject with its person-to-person spreads widened about the average."""
        s = self.strength
        if s == 0:
            return sub

        def widen(x: tuple | float, centre: float, by: float):
            if isinstance(x, tuple):
                return tuple(round(centre + (v - centre) * by, 4) for v in x)
            return round(centre + (x - centre) * by, 4)

        noise = 1 + 2 * s
        return replace(
            sub,
            tempo=widen(sub.tempo, 1.0, 1 + s),
            motion_amp=widen(sub.motion_amp, 1.0, 1 + s),
            glove_mount_rpy=widen(sub.glove_mount_rpy, 0.0, 1 + 1.5 * s),
            imu_mount_rpy=widen(sub.imu_mount_rpy, 0.0, 1 + 1.5 * s),
            acc_noise=round(sub.acc_noise * noise, 4),
            gyro_noise=round(sub.gyro_noise * noise, 4),
            flex_noise=round(sub.flex_noise * noise, 4),
            pressure_noise=round(sub.pressure_noise * noise, 4),
            camera_offset=widen(sub.camera_offset, 0.0, 1 + 3 * s),
            brightness=widen(sub.brightness, 0.975, 1 + s),
            occlusion_rate=round(sub.occlusion_rate * (1 + 4 * s), 4),
        )

    def repeats(self, activities: tuple[str, ...], repeats: int) -> list[int]:
        """Bouts of each activity in a data set session (`repeats` each without imbalance)."""
        if not self.imbalance:
            return [repeats] * len(activities)
        return [max(1, round(repeats * IMBALANCE.get(a, 1.0))) for a in activities]

    def draw(self, seed: int) -> "Recordings":
        """This recording's own nuisance draws (strap, camera pose, lighting and loss events)."""
        return Recordings(self, np.random.SeedSequence([seed, 0x4A2D]))

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Nuisance] = {
    "sim": Nuisance(),
    "sim-hard": Nuisance(strength=1.0, reversed_pairs=True, imbalance=True),
}


def _events(rng: np.random.Generator, rate: float, dur: tuple[float, float], t_end: float, start: float = 0.0) -> list[tuple[float, float]]:
    """(start, duration) of a Poisson train of episodes over [start, t_end)."""
    out, t = [], start
    while rate > 0:
        t += rng.exponential(1 / rate)
        if t >= t_end:
            break
        d = float(rng.uniform(*dur))
        out.append((t, d))
        t += d
    return out


class Recordings:
    """One recording's nuisance draws; every stream draws from a child generator of its own."""

    LOSS_RATE = 0.3  # loss bursts per second per sensor stream at strength 1
    LOSS_S = (0.04, 0.4)  # s: burst length
    LIGHT_RATE = 0.05  # lighting episodes per second at strength 1
    LIGHT_S = (2.0, 10.0)  # s: episode length
    LIGHT_GAIN = (0.45, 1.6)  # image gain during an episode (shadow .. lamp switched on)

    def __init__(self, nuisance: Nuisance, ss: np.random.SeedSequence):
        self.nuisance = nuisance
        s = nuisance.strength
        pose_ss, self._light_ss, self._loss_ss = ss.spawn(3)
        rng = np.random.default_rng(pose_ss)
        self.strap_slide_m = float(rng.uniform(0.0, 0.06 * s))  # wrist strap up the forearm
        self.camera_tilt_deg = float(rng.normal(0.0, 8.0 * s))
        self.camera_zoom = float(1 + rng.uniform(-0.15, 0.15) * s)
        self._light: list[tuple[float, float, float]] = []  # start, duration, gain
        self._light_rng = np.random.default_rng(self._light_ss)
        self._light_until = 0.0
        self._loss: dict[str, tuple[np.random.Generator, list[tuple[float, float]], list[float]]] = {}

    def light(self, t: np.ndarray) -> np.ndarray:
        """Image gain (n,) at frame times t: 1 outside lighting episodes, ramped in and out over 0.3 s."""
        t_end = float(t.max()) + 1.0 if len(t) else 0.0
        if t_end > self._light_until:
            s = self.nuisance.strength
            for start, d in _events(self._light_rng, self.LIGHT_RATE * s, self.LIGHT_S, t_end, self._light_until):
                self._light.append((start, d, float(self._light_rng.uniform(*self.LIGHT_GAIN))))
            self._light_until = t_end
        gain = np.ones(len(t))
        for start, d, g in self._light:
            ramp = np.clip(np.minimum(t - start, start + d - t) / 0.3, 0.0, 1.0)
            gain *= 1 + (g - 1) * ramp
        return gain

    def lost(self, stream: str, t: np.ndarray) -> np.ndarray:
        """Mask (n,) of the samples at times t that a loss burst of `stream` swallows."""
        if stream not in self._loss:
            self._loss[stream] = (np.random.default_rng([*self._loss_ss.generate_state(2), zlib.crc32(stream.encode())]), [], [0.0])
        rng, events, until = self._loss[stream]
        t_end = float(t.max()) + 1.0 if len(t) else 0.0
        if t_end > until[0]:
            events += _events(rng, self.LOSS_RATE * self.nuisance.strength, self.LOSS_S, t_end, until[0])
            until[0] = t_end
        mask = np.zeros(len(t), bool)
        for start, d in events:
            mask |= (t >= start) & (t < start + d)
        return mask

    def meta(self) -> dict:
        """What this recording drew, for its meta.json."""
        return {**self.nuisance.to_dict(), "strap_slide_m": round(self.strap_slide_m, 4),
                "camera_tilt_deg": round(self.camera_tilt_deg, 3), "camera_zoom": round(self.camera_zoom, 4)}
