"""The simulated world: seeded, synchronised glove + wrist IMU + chest camera recordings.

It stands in for hardware everywhere: datasets for training, the live demo, tests.
A subject (`make_subject`) performs a schedule of activities; each performance (a
`Bout`, see activities.py) draws its own tempo, size, placement and grip variation;
neighbouring bouts crossfade over ~1 s; the glove, the IMU and the camera sample the
same latent hand at their own, jittered instants on their own clocks.

Fusion matters by construction. Pair members share generator objects, so:

| pair                        | glove          | wrist IMU | camera         | shared parts            |
|-----------------------------|----------------|-----------|----------------|-------------------------|
| plug_cable / unplug_cable   | differ         | same      | same           | Motion CABLE, Look CONNECTOR |
| assemble / disassemble      | differ         | same      | same           | Motion PART, Look CAP   |
| screwdriver / hex_key       | same           | same      | differ         | Motion TWIST, Grip POWER_TWIST |
| hammer / mallet             | same           | same      | differ         | Motion SWING, Grip HAMMER_GRIP |
| every other pair            | differ         | differ    | differ         | none (overlap from subject and trial variation) |

"same" means same distribution, and for the same seed identical values (frames, or
glove/IMU samples). How they differ: plug = pinch (thumb+index) squeezing on the
push, unplug = whole-hand grip squeezing on the pull; assemble = tripod grip with
pressure building over each turn, disassemble = lever grip with pressure falling;
screwdriver = red/yellow handle with a long grey shaft, hex_key = thin blue L;
hammer = brown handle with a small grey head, mallet = pale handle with a big black
head. `GLOVE_ONLY_PAIRS` and `CAMERA_ONLY_PAIRS` are derived from the shared objects.

Streams: glove 100 Hz, imu 100 Hz (wrist), camera 30 fps 160x120 BGR (datasheet.py). Each
stream starts at its own small offset, runs at its own slightly wrong rate (ppm
skew) and has timestamp jitter; the camera occasionally drops a frame. A
`SensorLayout` (placements.py) adds IMUs elsewhere on the body (streams imu2, imu3, ...)
and runs glove and IMUs at another rate (e.g. 1 kHz): what a cost benchmark over
sensor count and rate needs (benchmarks/live_path.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..contract.series import FrameSeries, SensorSeries

from ..firmware_bridge.session import Recording, write_session
from .activities import ACTIVITIES, CAMERA_ONLY_PAIRS, GLOVE_ONLY_PAIRS, Bout, activity_model
from .nuisance import Nuisance
from .datasheet import CAMERA_FPS, FRAME_HEIGHT, FRAME_WIDTH, GLOVE_CHANNELS, IMU_CHANNELS, IMU_RATE_HZ, STREAM_RATES, STREAM_SPECS
from .placements import PLACEMENTS, Fitting, Placement, SensorLayout, strap_moved
from .render import Camera
from .sensors import H_DIFF, measure_glove, measure_imu
from .signals import smoothstep
from .subject import Subject, make_subject

__all__ = [
    "ACTIVITIES",
    "CAMERA_ONLY_PAIRS",
    "Nuisance",
    "GLOVE_CHANNELS",
    "GLOVE_ONLY_PAIRS",
    "IMU_CHANNELS",
    "Recording",
    "SensorLayout",
    "SimulatedWorld",
    "Subject",
    "generate_dataset",
    "generate_recording",
    "make_subject",
    "subject_split",
]

RAMP_S = (0.6, 1.2)  # s: how long a change of activity takes
# Timestamp jitter (std). A sensor sampling faster than the datasheet's 100 Hz keeps the same
# 3 % of its period: a 1 kHz stamp jitters 0.03 ms, not 0.3 ms (a third of its period, which
# would reorder samples).
SENSOR_JITTER_S = 0.0003
CAMERA_JITTER_S = 0.0015
CAMERA_DROP_P = 0.002  # chance a frame is lost
DEVICE_INFO = {
    "glove": {"model": "sim-glove", "transport": "sim"},
    "camera": {"model": "sim-chest-camera", "pixel_format": "BGR"},
}


def _imu_info(placement: Placement) -> dict:
    return {"model": "sim-imu", "placement": placement.where, "transport": "sim"}


@dataclass
class _Imu:
    """One worn IMU: its stream, where it sits, how this subject wears it, its clock and noise."""

    stream: str
    placement: Placement
    fitting: Fitting
    clock: _Clock
    rng: np.random.Generator


class _Clock:
    """A stream's own sampling clock: start offset, rate skew, timestamp jitter, drops."""

    def __init__(self, name: str, rng: np.random.Generator, rate_hz: float, jitter_s: float):
        self.name = name
        self.rate_hz = rate_hz
        self.jitter = jitter_s
        self.offset = float(rng.uniform(0.0, 0.04 if name == "camera" else 0.02))
        self.skew_ppm = float(rng.normal(0, 40))
        self.period = (1 + self.skew_ppm * 1e-6) / rate_hz

    def sample(self, t0: float, t1: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(true sampling instants, host timestamps) of the samples falling in [t0, t1)."""
        k0 = max(0.0, np.ceil((t0 - self.offset) / self.period))
        true = self.offset + np.arange(k0, np.ceil((t1 - self.offset) / self.period)) * self.period
        if self.name == "camera":
            true = true[rng.random(len(true)) >= CAMERA_DROP_P]
        jitter = self.jitter
        stamps = np.maximum.accumulate(true + np.clip(rng.normal(0, jitter, len(true)), -3 * jitter, 3 * jitter))
        return true, stamps


class _Occlusions:
    """Occlusion events on absolute time: the other arm over the hand, or a look-away pan."""

    def __init__(self, rate: float):
        self.rate = rate
        self.events: list[tuple[float, float, int, float, float]] = []  # start, dur, kind, ox, oy
        self.until = 0.0

    def extend(self, t_end: float, rng: np.random.Generator) -> None:
        while self.until < t_end:
            start = self.until + rng.exponential(1 / self.rate)
            dur = rng.uniform(0.4, 1.5)
            if rng.random() < 0.7:  # arm: lands near the palm; the tool reaching forward stays visible
                kind, ox, oy = 0, rng.normal(-4, 5), rng.normal(8, 4)
            else:  # look-away: the scene slides 20-45 px
                a = rng.uniform(0, 2 * np.pi)
                kind, ox, oy = 1, 32 * np.cos(a) * rng.uniform(0.6, 1.4), 32 * np.sin(a) * rng.uniform(0.6, 1.4)
            self.events.append((start, dur, kind, ox, oy))
            self.until = start + dur

    def at(self, t: np.ndarray) -> np.ndarray:
        """(n, 5) rows of (arm, look_away, ox, oy, envelope 0..1) at times t."""
        out = np.zeros((len(t), 5))
        for start, dur, kind, ox, oy in self.events:
            m = (t >= start) & (t < start + dur)
            if m.any():
                out[m, kind] = 1
                out[m, 2:4] = ox, oy
                out[m, 4] = np.sqrt(np.sin(np.pi * (t[m] - start) / dur))  # slides in, stays, slides out
        return out

    def forget(self, before: float) -> None:
        """Drop events that ended before `before` (keeps an endless live world bounded)."""
        self.events = [e for e in self.events if e[0] + e[1] >= before]


class _Engine:
    """Bouts on a timeline plus the devices (glove, the layout's IMUs, camera); renders any
    [t0, t1) on demand.

    The glove, the first IMU and the camera draw from the generators the world always had,
    in the same order; every further IMU draws its clock, fitting and noise from a child
    generator of its own, so adding IMUs never shifts the others' draws (and the default
    layout renders as it did before layouts existed). A `Nuisance` draws from generators of
    its own too (nuisance.py), so without one the world renders as it did before them."""

    def __init__(self, subject: Subject, seed: int, layout: SensorLayout = SensorLayout(), nuisance: Nuisance = Nuisance()):
        self.subject, self.seed = subject, seed
        self.nuisance = nuisance
        self.nz = nuisance.draw(seed) if nuisance.active else None
        ss = np.random.SeedSequence(seed)
        bout_ss, clock_ss, sensor_ss, camera_ss, occl_ss, self.schedule_ss = ss.spawn(6)
        self.bout_seeds = bout_ss
        self.bouts: list[Bout] = []
        self.ramps: list[float] = []  # ramps[i]: width of the crossfade into bouts[i]
        clock_rng = np.random.default_rng(clock_ss)
        jitter = SENSOR_JITTER_S * min(1.0, IMU_RATE_HZ / layout.rate_hz)
        self.glove_clock = _Clock("glove", clock_rng, layout.rate_hz, jitter)
        (first, placement), *more = layout.imu_streams().items()
        first_clock = _Clock(first, clock_rng, layout.rate_hz, jitter)
        self.camera_clock = _Clock("camera", clock_rng, CAMERA_FPS, CAMERA_JITTER_S)
        self.sensor_rng = np.random.default_rng(sensor_ss)
        own = [np.random.default_rng(s) for s in ss.spawn(len(layout.imus))]  # one per IMU; the first's fits a non-wrist placement
        wrist = placement is PLACEMENTS["wrist"]
        fitting = Fitting.wrist_of(subject) if wrist else Fitting.draw(placement, own[0])
        if wrist and self.nz is not None and self.nz.strap_slide_m > 0:
            placement = strap_moved(placement, self.nz.strap_slide_m)
        self.imus = [_Imu(first, placement, fitting, first_clock, self.sensor_rng)]
        for (name, placement), rng in zip(more, own[1:]):
            self.imus.append(_Imu(name, placement, Fitting.draw(placement, rng), _Clock(name, rng, layout.rate_hz, jitter), rng))
        camera_rng = np.random.default_rng(camera_ss)
        self.camera = Camera(subject, camera_rng)
        if self.nz is not None:
            self.camera.tilt_deg, self.camera.zoom = self.nz.camera_tilt_deg, self.nz.camera_zoom
        self.camera_rng = camera_rng
        self.occlusions = _Occlusions(subject.occlusion_rate)
        self.occl_rng = np.random.default_rng(occl_ss)

    def add_bout(self, activity: str, duration: float, ramp_rng: np.random.Generator) -> None:
        start = self.bouts[-1].end if self.bouts else 0.0
        bout = Bout(activity, start, start + duration, self.subject, self.bout_seeds.spawn(1)[0], self.nuisance.reversed_pairs)
        prev = self.bouts[-1] if self.bouts else None
        ramp = 0.0 if prev is None else min(ramp_rng.uniform(*RAMP_S), 0.4 * duration, 0.4 * (prev.end - prev.start))
        self.bouts.append(bout)
        self.ramps.append(ramp)

    def _rise(self, i: int, t: np.ndarray) -> np.ndarray:
        if i >= len(self.bouts):
            return np.zeros_like(t)
        if self.ramps[i] == 0.0:
            return np.ones_like(t)
        return smoothstep((t - self.bouts[i].start) / self.ramps[i] + 0.5)

    def state(self, t: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Latent state at times t, crossfaded between bouts, and the dominant bout per time."""
        out: dict[str, np.ndarray] = {}
        best_w = np.full(len(t), -1.0)
        best = np.zeros(len(t), int)
        tmin, tmax = t.min(), t.max()
        for i, b in enumerate(self.bouts):
            lo = b.start - self.ramps[i] / 2
            hi = b.end + (self.ramps[i + 1] / 2 if i + 1 < len(self.bouts) else np.inf)
            if hi < tmin or lo > tmax:
                continue
            w = self._rise(i, t) - self._rise(i + 1, t)
            m = w > 0
            if not m.any():
                continue
            part = b.eval(t[m])
            for k, v in part.items():
                acc = out.setdefault(k, np.zeros((len(t), *v.shape[1:])))
                acc[m] += (w[m] * v.T).T
            take = m & (w > best_w)
            best[take], best_w[take] = i, w[take]
        return out, best

    def render(self, t0: float, t1: float) -> Recording:
        """All three streams and the labels for [t0, t1); the bouts must cover it."""
        sub = self.subject
        self.occlusions.extend(t1, self.occl_rng)
        series: dict[str, SensorSeries | FrameSeries] = {
            "glove": self._sensor(self.glove_clock, self.sensor_rng, t0, t1, GLOVE_CHANNELS,
                                  lambda st3, t3, rng: measure_glove(st3, sub, rng))
        }
        for imu in self.imus:
            series[imu.stream] = self._sensor(imu.clock, imu.rng, t0, t1, IMU_CHANNELS,
                                              lambda st3, t3, rng, imu=imu: measure_imu(st3, t3, sub, rng, imu.placement, imu.fitting))
        true, stamps = self.camera_clock.sample(t0, t1, self.camera_rng)
        if len(true):
            st, dom = self.state(true)
            tools = [self.bouts[j].look.tool for j in dom]
            lighting = self.nz.light(true) if self.nz is not None else None
            frames = self.camera.render(true, st, tools, self.occlusions.at(true), self.camera_rng, lighting)
        else:
            frames = np.zeros((0, *self.camera.background.shape), np.uint8)
        series["camera"] = FrameSeries(stamps, frames)
        labels = [(max(b.start, t0), min(b.end, t1), b.activity) for b in self.bouts if b.end > t0 and b.start < t1]
        return Recording(series=series, labels=labels, subject=sub.name, meta=self.meta())

    def _sensor(self, clock: _Clock, rng: np.random.Generator, t0: float, t1: float, channels: tuple[str, ...],
                measure: Callable[[list[dict], list[np.ndarray], np.random.Generator], np.ndarray]) -> SensorSeries:
        """One sensor stream over [t0, t1): its clock's samples, measured from the state at t -/+ h."""
        true, stamps = clock.sample(t0, t1, rng)
        if self.nz is not None:  # packet loss: a burst of samples never arrives
            kept = ~self.nz.lost(clock.name, true)
            true, stamps = true[kept], stamps[kept]
        n = len(true)
        if n:
            t3 = [true - H_DIFF, true, true + H_DIFF]
            st, _ = self.state(np.concatenate(t3))
            values = measure([{k: v[j * n : (j + 1) * n] for k, v in st.items()} for j in range(3)], t3, rng)
        else:
            values = np.zeros((0, len(channels)), np.float32)
        return SensorSeries(stamps, values, channels)

    def meta(self) -> dict:
        devices = [("glove", self.glove_clock, DEVICE_INFO["glove"], STREAM_SPECS["glove"])]
        devices += [(imu.stream, imu.clock, _imu_info(imu.placement), STREAM_SPECS["imu"]) for imu in self.imus]
        devices.append(("camera", self.camera_clock, DEVICE_INFO["camera"], None))
        streams = {}
        for name, clock, info, specs in devices:
            entry = {"rate_hz": clock.rate_hz, "device": {**info, "start_offset_s": round(clock.offset, 6), "skew_ppm": round(clock.skew_ppm, 2)}}
            if specs is not None:
                entry["units"] = [c.unit for c in specs]
            streams[name] = entry
        meta = {"streams": streams, "generator": "edgehar.simulator", "seed": self.seed, "subject_params": asdict(self.subject)}
        if self.nz is not None:
            meta["nuisance"] = self.nz.meta()
        return meta


def _check_schedule(schedule: Sequence[tuple[str, float]]) -> None:
    """Known activities (KeyError naming the known ones) and durations > 0 (ValueError)."""
    for activity, duration in schedule:
        activity_model(activity)
        if duration <= 0:
            raise ValueError(f"bout of {activity!r} has duration {duration}; must be > 0")


def generate_recording(subject: Subject, schedule: list[tuple[str, float]], seed: int,
                       layout: SensorLayout = SensorLayout(), nuisance: Nuisance = Nuisance()) -> Recording:
    """One continuous recording performing `schedule` [(activity, seconds), ...] in order.

    Labels are the schedule's intervals; the hand changes activity over ~1 s centred on
    each boundary. Same (subject, schedule, seed, layout, nuisance) -> identical recording.
    `nuisance` makes it harder (simulator/nuisance.py); the subject's own spreads are
    widened by the caller (`Nuisance.subject`), as `generate_dataset` does.
    """
    _check_schedule(schedule)
    engine = _Engine(subject, seed, layout, nuisance)
    ramp_rng = np.random.default_rng(engine.schedule_ss)
    for activity, duration in schedule:
        engine.add_bout(activity, float(duration), ramp_rng)
    rec = engine.render(0.0, engine.bouts[-1].end)
    rec.meta["schedule"] = [[a, float(d)] for a, d in schedule]
    return rec


class SimulatedWorld:
    """An unbounded live recording: each `next_chunk` continues time and state seamlessly.

    The world picks its own schedule (random activities, never the same twice in a
    row, bouts of `bout_s` seconds), so a live demo sees realistic changes of activity.
    Chunks cut time at [t, t + seconds); every latent signal is a function of absolute
    time, so two chunks of 1 s equal one chunk of 2 s up to the sensor noise draws.
    """

    streams: dict[str, float] = STREAM_RATES  # the sim devices it provides: name -> nominal rate
    frame_shape: tuple[int, int, int] = (FRAME_HEIGHT, FRAME_WIDTH, 3)

    def __init__(self, subject: Subject, seed: int = 0, bout_s: tuple[float, float] = (6.0, 12.0), activities: tuple[str, ...] = ACTIVITIES):
        for a in activities:
            activity_model(a)
        self._engine = _Engine(subject, seed)
        self._rng = np.random.default_rng(self._engine.schedule_ss)
        self.bout_s = bout_s
        self.activities = activities
        self.time = 0.0  # s: where the next chunk starts

    def follow(self, protocol: Sequence[tuple[str, float]]) -> None:
        """Do these (activity, seconds) next, in order, before picking bouts of its own.

        Bouts are appended after the ones already planned, so called before the first
        chunk the person starts with them (what `edgehar record --simulate --protocol`
        records). "rest" is the neutral activity; an unknown one raises KeyError naming
        the known ones.
        """
        steps = [("neutral" if activity == "rest" else activity, float(seconds)) for activity, seconds in protocol]
        _check_schedule(steps)
        for activity, seconds in steps:
            self._engine.add_bout(activity, seconds, self._rng)

    def next_chunk(self, seconds: float) -> Recording:
        """The next `seconds` of all streams; timestamps continue from the previous chunk."""
        if seconds <= 0:
            raise ValueError(f"chunk length must be > 0, got {seconds}")
        e, t1 = self._engine, self.time + seconds
        while not e.bouts or e.bouts[-1].start - e.ramps[-1] / 2 < t1:  # the next change must be planned
            choices = [a for a in self.activities if not e.bouts or a != e.bouts[-1].activity] or list(self.activities)
            e.add_bout(str(self._rng.choice(choices)), float(self._rng.uniform(*self.bout_s)), self._rng)
        rec = e.render(self.time, t1)
        while len(e.bouts) > 2 and e.bouts[1].end + 2.0 < t1:  # forget bouts that can no longer matter
            del e.bouts[0], e.ramps[0]
        e.occlusions.forget(t1)
        self.time = t1
        return rec


def subject_split(subject_ids: list[int], seed: int = 0) -> dict[int, str]:
    """Cross-subject split: 20 % test, 20 % val (at least one each from 3 subjects), rest train.

    Shuffled by seed, so e.g. 10 subjects -> 6 train / 2 val / 2 test; never mixes a
    subject across splits.
    """
    ids = [int(i) for i in subject_ids]
    order = np.random.default_rng([seed, 0x5717]).permutation(len(ids))
    n_hold = max(1, round(len(ids) / 5)) if len(ids) >= 3 else 0
    split = {}
    for rank, j in enumerate(order):
        split[ids[j]] = "test" if rank < n_hold else "val" if rank < 2 * n_hold else "train"
    return split


def _write_subject(args: tuple) -> Path:
    out_dir, subject_id, repeats, bout_s, seed, split, layout, nuisance = args
    subject = nuisance.subject(make_subject(subject_id, seed))
    rng = np.random.default_rng([seed, subject_id, 0x5C4E])
    schedule = [(str(a), bout_s) for a in rng.permutation(np.repeat(ACTIVITIES, nuisance.repeats(ACTIVITIES, repeats)))]
    rec = generate_recording(subject, schedule, seed=int(np.random.SeedSequence([seed, subject_id]).generate_state(1)[0]), layout=layout,
                             nuisance=nuisance)
    rec.meta.update(session_id=f"sim-{subject.name}", split=split, start_time="2024-01-01T00:00:00+00:00")
    return write_session(Path(out_dir) / subject.name, rec)


def generate_dataset(out_dir: Path | str, subjects: int = 10, repeats: int = 3, bout_s: float = 8.0, seed: int = 0,
                     progress: bool = True, layout: SensorLayout = SensorLayout(), nuisance: Nuisance = Nuisance()) -> list[Path]:
    """One session per subject (every activity `repeats` times, shuffled) under out_dir/sNN.

    `nuisance` (simulator/nuisance.py; `PRESETS["sim-hard"]`) widens the subjects' spreads,
    adds packet loss, camera pose, lighting and more occlusion, plays one member of two
    pairs backwards and, with `imbalance`, draws fewer bouts of some activities.

    Each session's meta.json carries "split" from `subject_split(range(subjects), seed)`.
    Subjects are generated in parallel processes, one per CPU core. `layout` picks the
    worn IMUs and the sensor rate; the same subjects and activities whatever it is.
    """
    split = subject_split(list(range(subjects)), seed)
    jobs = [(str(out_dir), i, repeats, bout_s, seed, split[i], layout, nuisance) for i in range(subjects)]
    with ProcessPoolExecutor(max_workers=min(subjects, os.cpu_count() or 1)) as pool:
        results = pool.map(_write_subject, jobs)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=subjects, desc="subjects", unit="session")
        return list(results)
