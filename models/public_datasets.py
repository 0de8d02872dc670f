"""The papers' public data sets, read from the folders their owners distribute.

`--data utd-mhad:PATH`, `--data mmact:PATH` (cross-subject), `--data mmact-session:PATH`
(cross-session) and `--data egocentric:PATH` turn a downloaded copy into the same
`LabelledData` the trainer reads for simulated or recorded sessions: one recording per
trimmed clip, labelled over its whole length, with the video as a camera stream and each
sensor file as a sensor stream at its real rate. Stream and channel names follow the
live app's (`camera`, `imu`, `acc_x` ...), so a bundle trained here names streams a live
rig can feed. Where to download each set, the layout expected and the split:
docs/datasets.md.

Video frames are decoded once, shrunk to the manifest's resize side and thinned to at
most `MAX_LOADED_FPS`, then kept as .npy files under the cache folder and memory-mapped,
so a set of tens of thousands of clips does not have to fit in RAM and later runs skip
the decoding. A segment's frame is the one nearest its time (contract/preprocess), at
most half a kept-frame period (33 ms) away from the full-rate frame.

Where a detail of a layout could not be checked against the data itself (no copy is on
this machine), the loader's docstring says so; the error for a folder that does not fit
names what is missing and what was expected.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..contract.manifest import ModalitySpec, StreamSpec
from ..contract.series import FrameSeries, SensorSeries
from ..firmware_bridge.session import SessionError, read_video
from .labelled import DataError, LabelledData, LabelledRecording, cache_dir, recording_span

# Frames kept per second of video at load; the nearest kept frame stands in for a segment's time.
MAX_LOADED_FPS = 15.0
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
IMU_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
XYZ = ("x", "y", "z")


def is_public_source(source: str) -> bool:
    """True for `name:PATH` with a name of PUBLIC_SOURCES."""
    return source.split(":", 1)[0] in PUBLIC_SOURCES and ":" in source


def load_public(source: str, frame_resize: int | None, progress: bool = True) -> LabelledData:
    """`name:PATH` -> that data set's LabelledData (see PUBLIC_SOURCES); `progress` shows
    a bar over the clips (the first load decodes every video)."""
    name, path = source.split(":", 1)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: {str(root)!r} is not a folder (expected the unpacked {name} data set)")
    return PUBLIC_SOURCES[name](root, frame_resize, progress)


# --- UTD-MHAD -------------------------------------------------------------------------

UTD_MHAD_ACTIONS = (
    "swipe_left", "swipe_right", "wave", "clap", "throw", "arm_cross", "basketball_shoot", "draw_x",
    "draw_circle_cw", "draw_circle_ccw", "draw_triangle", "bowling", "boxing", "baseball_swing",
    "tennis_swing", "arm_curl", "tennis_serve", "push", "knock", "catch", "pickup_throw", "jog",
    "walk", "sit_to_stand", "stand_to_sit", "lunge", "squat",
)  # actions a1 ... a27, in the data set's order
UTD_MHAD_RATE_HZ = 50.0
UTD_MHAD_VAL_SUBJECT = 7
_UTD_NAME = re.compile(r"a(\d+)_s(\d+)_t(\d+)_(color|inertial)\.(avi|mat)")


def load_utd_mhad(root: Path, frame_resize: int | None, progress: bool = False) -> LabelledData:
    """UTD-MHAD (Chen, Jafari, Kehtarnavaz 2015; https://www.utdallas.edu/~kehtar/UTD-MHAD.html).

    Layout, as the page's archives unpack (one file per action a1-a27, subject s1-s8,
    trial t1-t4; 861 of the 864 exist, as public loaders of the set count them):
        ROOT/RGB/a1_s1_t1_color.avi            Kinect colour video, 640x480, ~30 fps
        ROOT/Inertial/a1_s1_t1_inertial.mat    MATLAB v5, variable d_iner: (T, 6) at 50 Hz,
                                               acc x/y/z in g, gyro x/y/z in deg/s
    The RGB videos also come split over RGB-part1.zip, RGB-part2.zip ...: every folder
    whose name starts with RGB (or Inertial) is searched, at any depth, so the parts can
    stay as they unpack. Depth/ and Skeleton/ may sit beside them and are not read. The wearable sensor is on
    the right wrist for a1-a21 and the right thigh for a22-a27 (the page); it is one
    stream, `imu`, either way. Either folder alone gives a one-modality data set; with
    both, a clip that lacks one of its files is left out and
    counted on stderr. Video and inertial start together (the set is synchronised); each
    clip's recording ends where the shorter stream ends.

    Split: the standard cross-subject protocol tests on the even subjects (2, 4, 6, 8)
    and trains on the odd ones. The trainer keeps its best epoch by validation accuracy,
    which needs subjects it never trains on, so subject 7 is held out for validation and
    1, 3, 5 train: the test set is the standard one, the training set a subject smaller.
    Window: 1.5 s, for clips of a few seconds. The real clips' lengths could not be
    checked here: a clip shorter than the window cannot be evaluated, the trainer counts
    such clips on stderr, and --window sets a shorter one.
    """
    found: dict[str, dict[tuple[int, int, int], Path]] = {"color": {}, "inertial": {}}
    for folder, kind in (("RGB", "color"), ("Inertial", "inertial")):
        for p in sorted(root.glob(f"{folder}*/**/a*_s*_t*_{kind}.*")):  # RGB/, RGB-part1/, ...
            m = _UTD_NAME.fullmatch(p.name)
            if m:
                found[kind][(int(m[1]), int(m[2]), int(m[3]))] = p
    if not found["color"] and not found["inertial"]:
        raise DataError(f"utd-mhad: no RGB/a<action>_s<subject>_t<trial>_color.avi or "
                        f"Inertial/a<action>_s<subject>_t<trial>_inertial.mat files under {str(root)!r}")
    kinds = [k for k in ("color", "inertial") if found[k]]
    keys = sorted(set.intersection(*(set(found[k]) for k in kinds)))
    _note_dropped("utd-mhad", len(set.union(*(set(found[k]) for k in kinds))) - len(keys), "clips that lack their RGB or inertial file")
    bad = [a for a, _, _ in keys if not 1 <= a <= len(UTD_MHAD_ACTIONS)]
    if bad:
        raise DataError(f"utd-mhad: action a{bad[0]} is not one of a1 ... a{len(UTD_MHAD_ACTIONS)}")
    recordings, fps = [], None
    for action, subject, trial in _bar(keys, "utd-mhad", progress):
        series: dict[str, SensorSeries | FrameSeries] = {}
        if found["color"]:
            series["camera"], clip_fps = clip_frames(found["color"][(action, subject, trial)], frame_resize)
            fps = fps or clip_fps
        if found["inertial"]:
            series["imu"] = _utd_inertial(found["inertial"][(action, subject, trial)])
        split = "test" if subject % 2 == 0 else "val" if subject == UTD_MHAD_VAL_SUBJECT else "train"
        recordings.append(_whole_clip(series, UTD_MHAD_ACTIONS[action - 1], f"s{subject}", split))
    streams = ([StreamSpec("camera", "camera", fps)] if fps else []) + (
        [StreamSpec("imu", "sensor", UTD_MHAD_RATE_HZ, IMU_CHANNELS)] if found["inertial"] else [])
    modalities = ([ModalitySpec("rgb", "camera", "frames")] if fps else []) + ([
        ModalitySpec("acc", "imu", "gaf", IMU_CHANNELS[:3]),
        ModalitySpec("gyro", "imu", "gaf", IMU_CHANNELS[3:]),
    ] if found["inertial"] else [])
    labels = tuple(a for a in UTD_MHAD_ACTIONS if any(r.labels[0][2] == a for r in recordings))
    return LabelledData("utd-mhad", recordings, tuple(streams), tuple(modalities), labels, window_s=1.5)


def _utd_inertial(path: Path) -> SensorSeries:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("utd-mhad needs scipy to read .mat files: pip install 'edgehar[train]'") from None
    try:
        values = loadmat(str(path))["d_iner"]
    except KeyError:
        raise DataError(f"utd-mhad: {str(path)!r} has no variable 'd_iner' (expected UTD-MHAD inertial data)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"utd-mhad: cannot read {str(path)!r} as a MATLAB file: {exc}") from None
    if values.ndim != 2 or values.shape[1] != 6 or len(values) < 2:
        raise DataError(f"utd-mhad: {str(path)!r} holds d_iner of shape {values.shape}, expected (samples, 6)")
    return _sensor(values, UTD_MHAD_RATE_HZ, IMU_CHANNELS)


# --- MMAct ------------------------------------------------------------------------------

MMACT_ACTIONS = (
    "carrying", "checking_time", "closing", "crouching", "entering", "exiting", "fall", "jumping", "kicking",
    "loitering", "looking_around", "opening", "picking_up", "pointing", "pulling", "pushing", "running",
    "setting_down", "standing", "talking", "talking_on_phone", "throwing", "transferring_object", "using_phone",
    "walking", "waving_hand", "drinking", "pocket_in", "pocket_out", "sitting", "sitting_down", "standing_up",
    "talking_on_phone_desk", "using_pc", "using_phone_desk", "carrying_heavy", "carrying_light",
)  # the 37 classes, in the MMTSA authors' class order
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
# (folder of the distributed sensor clips, stream name, rate Hz, channels, factor to our units)
MMACT_SENSORS = (
    ("acc_phone_clip", "phone_acc", 100.0, ("acc_x", "acc_y", "acc_z"), 1 / STANDARD_GRAVITY),  # m/s^2 -> g
    ("acc_watch_clip", "watch_acc", 100.0, ("acc_x", "acc_y", "acc_z"), 1 / STANDARD_GRAVITY),  # m/s^2 -> g
    ("gyro_clip", "gyro", 50.0, ("gyro_x", "gyro_y", "gyro_z"), 1.0),  # as recorded
    ("orientation_clip", "orientation", 50.0, ("azimuth", "pitch", "roll"), 1.0),  # as recorded
)
MMACT_TEST_SUBJECTS = (17, 18, 19, 20)
MMACT_VAL_SUBJECT = 16
MMACT_TEST_SESSION, MMACT_VAL_SESSION = 5, 4


def load_mmact(root: Path, frame_resize: int | None, progress: bool = False, by: str = "subject") -> LabelledData:
    """MMAct, trimmed clips (Kong et al., ICCV 2019; https://mmact19.github.io/2019/).

    Layout, as the MMTSA authors' preprocessing reads it (github.com/thuhci/MMTSA,
    data_preprocess/MMAct_frame_extraction.py and MMAct_train_val_split.py):
        ROOT/Video_trimmed/subject<N>/cam<K>/scene<M>/session<S>/<action>.mp4
        ROOT/Sensor_trimmed/acc_phone_clip/subject<N>/scene<M>/session<S>/<action>.csv
                            acc_watch_clip/  gyro_clip/  orientation_clip/   (same tree)
    The sensor folders are also found in ROOT/sensors/ (the MMAct challenge's example
    script reads trimmed/sensors/) or directly in ROOT (as their .tar.gz archives unpack),
    the videos also in ROOT/RGB/; ROOT may be the folder holding trimmed/. A sensor CSV
    has no header: a time (`%Y%m%d_%H:%M:%S.%f`, Tokyo time, not always with the
    fraction), then three values. Rates as the MMTSA code and the challenge's example
    use them: phone and watch accelerometer 100 Hz, gyroscope 50 Hz, orientation 50 Hz
    (the challenge's example estimates orientation's rate from its first and last time
    instead). Samples are placed at index / rate; the time column is not read, its
    second-only entries would misplace them. Accelerometers are recorded in m/s^2 (the
    challenge's example divides by 9.8) and converted to g, the unit of the live IMUs;
    gyroscope and orientation (azimuth, pitch, roll) are kept as recorded (Android's
    rad/s and degrees, presumably: not checked against the files). In scene 3
    `using_phone` and `talking_on_phone` are the separate classes `using_phone_desk`
    and `talking_on_phone_desk` (the authors' code), giving 37; file names differ in
    case between copies (`Carrying_light`), so names are lower-cased.
    Each camera view of a clip is one recording with the clip's sensor data, as the
    authors' split does. A clip missing a sensor file, or with an empty one, is left out
    and counted on stderr. Without a video folder the set is sensor-only.

    Splits: `by="subject"` (cross-subject, the authors' code: subjects 17-20 test) or
    `by="session"` (cross-session, the authors' code: session 5 test). Validation holds
    out subject 16 / session 4 from training, for the trainer's best-epoch choice. Window:
    2 s, the sensor window the MMTSA code images per segment.
    """
    if (root / "trimmed").is_dir():
        root = root / "trimmed"
    sensor_root = next((r for r in (root / "Sensor_trimmed", root / "sensors", root) if (r / MMACT_SENSORS[0][0]).is_dir()), None)
    if sensor_root is None:
        raise DataError(f"mmact: no Sensor_trimmed/acc_phone_clip/, sensors/acc_phone_clip/ or acc_phone_clip/ folder under {str(root)!r} "
                        "(expected the MMAct trimmed layout, e.g. Sensor_trimmed/acc_phone_clip/subject1/scene1/session1/walking.csv)")
    # clip key "subject1/scene1/session1/walking" -> file, per sensor folder; lower-cased
    # because a clip's file name may differ in case between folders (`Carrying_light`)
    files = {folder: _sensor_clips(sensor_root / folder) for folder, *_ in MMACT_SENSORS}
    clips = sorted(files[MMACT_SENSORS[0][0]])
    if not clips:
        raise DataError(f"mmact: no subject<N>/scene<M>/session<S>/<action>.csv files under {str(sensor_root / MMACT_SENSORS[0][0])!r}")
    videos: dict[str, list[Path]] = {}
    video_root = next((r for r in (root / "Video_trimmed", root / "RGB") if r.is_dir()), None)
    for v in sorted(video_root.glob("subject*/cam*/scene*/session*/*")) if video_root else []:
        if v.suffix.lower() in VIDEO_SUFFIXES:
            subject, _cam, scene, session = v.relative_to(video_root).parts[:4]
            videos.setdefault(f"{subject}/{scene}/{session}/{v.stem}".lower(), []).append(v)
    test, val = (MMACT_TEST_SUBJECTS, MMACT_VAL_SUBJECT) if by == "subject" else ((MMACT_TEST_SESSION,), MMACT_VAL_SESSION)
    recordings, fps, dropped = [], None, 0
    for clip in _bar(clips, "mmact", progress):
        subject, scene, session, action = clip.split("/")
        label = _mmact_label(action, scene, files[MMACT_SENSORS[0][0]][clip])
        sensors = {}
        for folder, stream, rate, channels, factor in MMACT_SENSORS:
            values = _numeric_csv(files[folder][clip], usecols=(1, 2, 3)) if clip in files[folder] else None
            if values is None or len(values) < 2:
                break
            sensors[stream] = _sensor(values * factor, rate, channels)
        views = videos.get(clip, []) if videos else [None]
        if len(sensors) < len(MMACT_SENSORS) or not views:
            dropped += 1
            continue
        number = _number(subject if by == "subject" else session)
        split = "test" if number in test else "val" if number == val else "train"
        for view in views:
            series: dict[str, SensorSeries | FrameSeries] = dict(sensors)
            if view is not None:
                series["camera"], clip_fps = clip_frames(view, frame_resize)
                fps = fps or clip_fps
            recordings.append(_whole_clip(series, label, subject, split))
    _note_dropped("mmact", dropped, "clips that lack a sensor file, have an empty one, or have no video")
    if not recordings:
        raise DataError(f"mmact: no clip under {str(root)!r} has all four sensor files"
                        + (" and a video" if videos else ""))
    streams = ([StreamSpec("camera", "camera", fps)] if fps else []) + [
        StreamSpec(stream, "sensor", rate, channels) for _, stream, rate, channels, _ in MMACT_SENSORS]
    modalities = ([ModalitySpec("rgb", "camera", "frames")] if fps else []) + [
        ModalitySpec(stream, stream, "gaf", channels) for _, stream, _, channels, _ in MMACT_SENSORS]
    labels = tuple(a for a in MMACT_ACTIONS if any(r.labels[0][2] == a for r in recordings))
    return LabelledData(f"mmact-{by}", recordings, tuple(streams), tuple(modalities), labels, window_s=2.0)


def _mmact_label(action: str, scene: str, path: Path) -> str:
    """The class of a clip named `action` (lower-cased) in `scene`."""
    name = action
    if scene == "scene3" and name in ("using_phone", "talking_on_phone"):
        name += "_desk"
    if name not in MMACT_ACTIONS:
        raise DataError(f"mmact: {str(path)!r} names action {path.stem!r}, not one of the 37 MMAct classes")
    return name


def _sensor_clips(folder: Path) -> dict[str, Path]:
    """subject<N>/scene<M>/session<S>/<action>.csv under `folder`, by lower-cased
    "subject<N>/scene<M>/session<S>/<action>"."""
    return {p.relative_to(folder).with_suffix("").as_posix().lower(): p
            for p in sorted(folder.glob("subject*/scene*/session*/*.csv"))}


# --- Multimodal Egocentric Activity ---------------------------------------------------------

EGOCENTRIC_ACTIVITIES = (
    "walking", "walking_upstairs", "walking_downstairs", "riding_elevator_up", "riding_elevator_down",
    "riding_escalator_up", "riding_escalator_down", "sitting", "eating", "drinking", "texting", "phone_calls",
    "working_on_pc", "reading", "writing_sentences", "organizing_files", "running", "push_ups", "sit_ups", "cycling",
)  # act01 ... act20
EGOCENTRIC_RATE_HZ = 10.0
# The 19 columns of a sensor file: (modality, channel names, unit as Android reports it).
EGOCENTRIC_SENSORS = (
    ("acc", tuple(f"acc_{a}" for a in XYZ)),  # m/s^2
    ("gravity", tuple(f"gravity_{a}" for a in XYZ)),  # m/s^2
    ("gyro", tuple(f"gyro_{a}" for a in XYZ)),  # rad/s
    ("linear_acc", tuple(f"linear_acc_{a}" for a in XYZ)),  # m/s^2
    ("magnetic", tuple(f"magnetic_{a}" for a in XYZ)),  # uT
    ("rotation", ("rotation_x", "rotation_y", "rotation_z", "rotation_w")),  # unit quaternion part
)
EGOCENTRIC_CHANNELS = tuple(c for _, chans in EGOCENTRIC_SENSORS for c in chans)
_EGO_ACT, _EGO_SEQ = re.compile(r"act(\d+)"), re.compile(r"seq_?(\d+)")


def load_egocentric(root: Path, frame_resize: int | None, progress: bool = False) -> LabelledData:
    """Multimodal Egocentric Activity (Song et al., ICASSP 2016, arXiv:1601.06603):
    Google Glass video + the glass's sensors, 20 activities, 15 s sequences.

    Layout. What could be checked (public code that reads the set, e.g. by the DataEgo
    authors): the sensor files are header-less CSVs named by activity and sequence,
    `sensor/act03seq08.csv`, 150 rows (15 s at 10 Hz, the MMTSA code's rate for the set)
    of 19 columns: accelerometer, gravity, gyroscope, linear acceleration, magnetic
    field (x, y, z each) and rotation vector (x, y, z, w), in Android's units, kept as
    recorded. What could not (the archive was not reachable from here): where and under
    what names the videos sit. The loader takes every `act<NN>seq<MM>.csv` anywhere
    under ROOT and pairs it with the video (.mp4, .avi, .mov or .mkv) anywhere under
    ROOT whose path names the same activity and sequence: `act03seq08.mp4`,
    `act03/seq08.avi`, `act03/seq_08.mp4` all pair with `act03seq08.csv`. A sequence
    without its video is left out and counted on stderr; with no video at all the set is
    sensor-only.

    Split. The paper's protocol is leave-one-subject-out, but no subject identity could
    be found in the distributed names, so this loader cannot reproduce it: it splits by
    sequence instead, per activity in sequence order, every fifth sequence (5th, 10th,
    ...) to test and the one before it to validation (6 / 2 / 2 of every 10).
    Each sequence is its own `subject` unit, so no sequence is in two splits. Window: 5 s
    of the 15 s sequence.
    """
    csvs = sorted((key, p) for p in root.rglob("act*.csv") if (key := _ego_key(p.stem)))
    if not csvs:
        raise DataError(f"egocentric: no act<NN>seq<MM>.csv sensor files under {str(root)!r} "
                        "(expected the Multimodal Egocentric Activity set: sensor/act01seq01.csv ...)")
    videos = {key: p for p in sorted(root.rglob("*"))
              if p.suffix.lower() in VIDEO_SUFFIXES and (key := _ego_key(p.relative_to(root).with_suffix("").as_posix()))}
    per_activity: dict[int, int] = {}
    recordings, fps, dropped = [], None, 0
    for (act, seq), path in _bar(csvs, "egocentric", progress):
        if not 1 <= act <= len(EGOCENTRIC_ACTIVITIES):
            raise DataError(f"egocentric: {str(path)!r} names activity act{act:02d}, not one of act01 ... act20")
        values = _numeric_csv(path, usecols=tuple(range(len(EGOCENTRIC_CHANNELS))))
        if values is None or len(values) < 2 or (videos and (act, seq) not in videos):
            dropped += 1
            continue
        series: dict[str, SensorSeries | FrameSeries] = {"glass": _sensor(values, EGOCENTRIC_RATE_HZ, EGOCENTRIC_CHANNELS)}
        if videos:
            series["camera"], clip_fps = clip_frames(videos[act, seq], frame_resize)
            fps = fps or clip_fps
        i = per_activity[act] = per_activity.get(act, 0) + 1
        split = "test" if i % 5 == 0 else "val" if i % 5 == 4 else "train"
        recordings.append(_whole_clip(series, EGOCENTRIC_ACTIVITIES[act - 1], f"act{act:02d}seq{seq:02d}", split))
    _note_dropped("egocentric", dropped, f"sequences without {len(EGOCENTRIC_CHANNELS)} readable sensor columns or a video")
    if not recordings:
        raise DataError(f"egocentric: no sequence under {str(root)!r} has a readable sensor file"
                        + (" and a video" if videos else ""))
    streams = ([StreamSpec("camera", "camera", fps)] if fps else []) + [
        StreamSpec("glass", "sensor", EGOCENTRIC_RATE_HZ, EGOCENTRIC_CHANNELS)]
    modalities = ([ModalitySpec("rgb", "camera", "frames")] if fps else []) + [
        ModalitySpec(name, "glass", "gaf", chans) for name, chans in EGOCENTRIC_SENSORS]
    labels = tuple(a for a in EGOCENTRIC_ACTIVITIES if any(r.labels[0][2] == a for r in recordings))
    return LabelledData("egocentric", recordings, tuple(streams), tuple(modalities), labels, window_s=5.0)


# --- shared ------------------------------------------------------------------------------

# name -> loader(root, frame_resize, progress)
PUBLIC_SOURCES: dict[str, Callable[[Path, int | None, bool], LabelledData]] = {
    "utd-mhad": load_utd_mhad,
    "mmact": load_mmact,
    "mmact-session": lambda root, frame_resize, progress: load_mmact(root, frame_resize, progress, by="session"),
    "egocentric": load_egocentric,
}


def clip_frames(path: Path, short_side: int | None) -> tuple[FrameSeries, float]:
    """A video's frames (short side shrunk to `short_side`, at most MAX_LOADED_FPS) and its
    frame rate. Decoded once into the cache folder, memory-mapped on every later load."""
    cap = cv2.VideoCapture(str(path))
    fps, w, h = (cap.get(p) for p in (cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    if not (fps > 0 and w > 0 and h > 0):
        raise DataError(f"{str(path)!r}: OpenCV cannot read a frame rate and size from this video")
    scale = short_side / min(w, h) if short_side else 1.0
    size = (round(w * scale), round(h * scale)) if scale < 1 else None
    step = max(1, round(fps / MAX_LOADED_FPS))
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}|{step}".encode()).hexdigest()
    cached = cache_dir() / "frames" / f"{key}.npy"
    if not cached.is_file():
        try:
            frames = read_video(path, size, step)
        except SessionError as exc:
            raise DataError(str(exc)) from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, frames)
        tmp.replace(cached)  # atomic: a concurrent or interrupted run never reads half a file
    frames = np.load(cached, mmap_mode="r")
    return FrameSeries(np.arange(len(frames)) * step / fps, frames), round(fps, 3)


def _numeric_csv(path: Path, usecols: tuple[int, ...]) -> np.ndarray | None:
    """The given columns as float32 rows; rows that are not all numbers (a header) or
    lack a column are dropped, so a file with fewer columns reads as no rows. None if
    the file is missing or empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with warnings.catch_warnings():  # genfromtxt's per-row ConversionWarning: the caller counts what it leaves out
        warnings.simplefilter("ignore", UserWarning)
        try:
            values = np.genfromtxt(path, delimiter=",", usecols=usecols, dtype=np.float32, ndmin=2, invalid_raise=False)
        except ValueError:
            return None
    return values[np.isfinite(values).all(axis=1)]


def _sensor(values: np.ndarray, rate: float, channels: tuple[str, ...]) -> SensorSeries:
    return SensorSeries(np.arange(len(values)) / rate, np.ascontiguousarray(values, dtype=np.float32), channels)


def _whole_clip(series: dict[str, SensorSeries | FrameSeries], label: str, subject: str, split: str) -> LabelledRecording:
    """A trimmed clip: one bout of its action over the span every stream covers."""
    rec = LabelledRecording(series, [], subject, split)
    rec.labels.append((0.0, recording_span(rec)[1], label))
    return rec


def _bar(items: list, name: str, progress: bool) -> Iterable:
    return tqdm(items, desc=f"load {name}", unit="clip", disable=not progress, leave=False)


def _ego_key(name: str) -> tuple[int, int] | None:
    """(activity, sequence) named in a path: "act03seq08", "act03/seq_08" -> (3, 8)."""
    act, seq = _EGO_ACT.findall(name), _EGO_SEQ.findall(name)
    return (int(act[-1]), int(seq[-1])) if act and seq else None


def _number(part: str) -> int:
    """subject12 -> 12."""
    digits = re.search(r"\d+", part)
    return int(digits[0]) if digits else -1


def _note_dropped(name: str, count: int, what: str) -> None:
    if count:
        print(f"edgehar: {name}: left out {count} {what}", file=sys.stderr)
