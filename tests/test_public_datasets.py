"""The public data set loaders read fixtures written in each set's distributed layout.

Each fixture is written by the test itself: tiny videos through cv2.VideoWriter, UTD-MHAD's
inertial .mat files through scipy.io.savemat, MMAct's and the egocentric set's CSVs as
their files hold them. The checks are what a user relies on: which streams at which
rates, which labels, subjects and split each clip lands in, what is left out, and the
one-line error for a folder that does not fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgehar.models.datasets import DataError, load_data
from edgehar.models.public_datasets import (
    EGOCENTRIC_CHANNELS,
    MAX_LOADED_FPS,
    UTD_MHAD_ACTIONS,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Decoded frames are cached under EDGEHAR_HOME: keep each test's to itself."""
    monkeypatch.setenv("EDGEHAR_HOME", str(tmp_path / "home"))


def _video(path: Path, seconds: float, fps: float, colour: int, size=(32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(round(seconds * fps)):
        frame = np.full((size[1], size[0], 3), colour, np.uint8)
        frame[:, : (i % size[0]) + 1] = 255 - colour  # moves, so the frames differ
        writer.write(frame)
    writer.release()


def _signal(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.sin(np.arange(rows)[:, None] / 5.0 + seed) + 0.1 * rng.standard_normal((rows, cols))).astype(np.float64)


# --- UTD-MHAD ---------------------------------------------------------------------------

def _utd_mhad(root: Path) -> Path:
    """Actions a1, a2 by subjects 1-8, one trial each (2.2 s of inertial, 2 s of 30 fps
    video), plus a1_s1_t2 with no video (the real set lacks 3 of its 864 clips)."""
    from scipy.io import savemat

    for action in (1, 2):
        for subject in range(1, 9):
            stem = f"a{action}_s{subject}_t1"
            # the RGB videos are distributed in parts (RGB-part1.zip ...), unpacked as they come
            _video(root / f"RGB-part{action}" / f"{stem}_color.avi", 2.0, 30.0, 60 * action)
            (root / "Inertial").mkdir(parents=True, exist_ok=True)
            savemat(str(root / "Inertial" / f"{stem}_inertial.mat"), {"d_iner": _signal(110, 6, action)})
    savemat(str(root / "Inertial" / "a1_s1_t2_inertial.mat"), {"d_iner": _signal(110, 6, 1)})
    (root / "Depth").mkdir()  # present in a full copy, not read
    return root


@pytest.fixture
def utd_mhad(tmp_path):
    return _utd_mhad(tmp_path / "UTD-MHAD")


def test_utd_mhad_streams_rates_labels_and_odd_even_split(utd_mhad, capsys):
    data = load_data(f"utd-mhad:{utd_mhad}", frame_resize=16)
    assert "left out 1 clips that lack their RGB or inertial file" in capsys.readouterr().err
    assert [(s.name, s.kind, s.rate_hz, s.channels) for s in data.streams] == [
        ("camera", "camera", 30.0, ()),
        ("imu", "sensor", 50.0, ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")),
    ]
    assert [(m.name, m.stream, m.type) for m in data.modalities] == [
        ("rgb", "camera", "frames"), ("acc", "imu", "gaf"), ("gyro", "imu", "gaf")]
    assert data.labels == UTD_MHAD_ACTIONS[:2] == ("swipe_left", "swipe_right")
    assert len(data.recordings) == 16
    splits = {r.subject: r.split for r in data.recordings}
    assert splits == {"s1": "train", "s3": "train", "s5": "train", "s7": "val",
                      "s2": "test", "s4": "test", "s6": "test", "s8": "test"}
    rec = next(r for r in data.recordings if r.subject == "s3" and r.labels[0][2] == "swipe_right")
    imu, cam = rec.series["imu"], rec.series["camera"]
    assert imu.values.shape == (110, 6) and np.allclose(np.diff(imu.timestamps), 1 / 50)
    # 30 fps thinned to at most MAX_LOADED_FPS, the short side shrunk to 16 px
    step = round(30 / MAX_LOADED_FPS)
    assert cam.frames.shape == (60 // step, 16, 21, 3) and np.allclose(np.diff(cam.timestamps), step / 30)
    # the clip is labelled over the span both streams cover (video 2.0 s, inertial 2.2 s)
    assert rec.labels == [(0.0, pytest.approx(2.0), "swipe_right")]


def test_utd_mhad_frames_are_decoded_once_and_memory_mapped(utd_mhad, tmp_path):
    load_data(f"utd-mhad:{utd_mhad}", frame_resize=16)
    cached = sorted((tmp_path / "home" / "frames").glob("*.npy"))
    assert len(cached) == 16
    again = load_data(f"utd-mhad:{utd_mhad}", frame_resize=16)
    assert isinstance(again.recordings[0].series["camera"].frames, np.memmap)
    assert sorted((tmp_path / "home" / "frames").glob("*.npy")) == cached


def test_utd_mhad_inertial_alone_is_a_sensor_only_data_set(utd_mhad):
    import shutil

    shutil.rmtree(utd_mhad / "RGB-part1")
    shutil.rmtree(utd_mhad / "RGB-part2")
    data = load_data(f"utd-mhad:{utd_mhad}")
    assert [s.name for s in data.streams] == ["imu"] and [m.name for m in data.modalities] == ["acc", "gyro"]
    assert len(data.recordings) == 17  # a1_s1_t2 now counts: nothing to pair it with


def test_utd_mhad_mat_without_d_iner_is_named(utd_mhad):
    from scipy.io import savemat

    savemat(str(utd_mhad / "Inertial" / "a2_s8_t1_inertial.mat"), {"inertial": _signal(110, 6, 0)})
    with pytest.raises(DataError, match="a2_s8_t1_inertial.mat' has no variable 'd_iner'"):
        load_data(f"utd-mhad:{utd_mhad}")


def test_train_on_the_utd_mhad_fixture_writes_a_bundle(utd_mhad, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "edgehar.cli", "train", "--data", f"utd-mhad:{utd_mhad}", "--model", "mmtsa_tiny",
         "--epochs", "1", "--windows-per-bout", "1", "--threads", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "EDGEHAR_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["metrics"]["data"] == f"utd-mhad:{utd_mhad.resolve()}"
    assert [s["name"] for s in manifest["streams"]] == ["camera", "imu"]
    assert manifest["labels"] == ["swipe_left", "swipe_right"]
    assert manifest["window_s"] == 1.5
    # the even subjects' 8 clips, each 2.0 s: one 1.5 s window fits each (the stride is 0.75 s)
    assert manifest["metrics"]["test_windows"] == 8


# --- MMAct ------------------------------------------------------------------------------

MMACT_SENSOR_FOLDERS = {"acc_phone_clip": 100, "acc_watch_clip": 100, "gyro_clip": 50, "orientation_clip": 50}


def _mmact_clip(root: Path, subject: int, scene: int, session: int, action: str, views=("cam1",),
                empty: str | None = None) -> None:
    """One trimmed clip: 3 s of each sensor (timestamp column as a date-time string, as the
    loader must not depend on its format) and a 3 s 30 fps video per camera view."""
    rel = Path(f"subject{subject}", f"scene{scene}", f"session{session}")
    for folder, rate in MMACT_SENSOR_FOLDERS.items():
        # a clip's name may differ in case between the sensor folders
        path = root / "Sensor_trimmed" / folder / rel / f"{action.lower() if folder == 'gyro_clip' else action}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder == empty:
            path.write_text("")
            continue
        xyz = 9.80665 * _signal(3 * rate, 3, subject)
        # the time as the files hold it, the fraction sometimes missing: the loader must not rely on it
        times = [f"20180823_14:47:{i / rate:06.3f}" if i % 7 else f"20180823_14:47:{i // rate:02.0f}" for i in range(len(xyz))]
        path.write_text("".join(f"{t},{x:.5f},{y:.5f},{z:.5f}\n" for t, (x, y, z) in zip(times, xyz)))
    for cam in views:
        _video(root / "Video_trimmed" / f"subject{subject}" / cam / f"scene{scene}" / f"session{session}" / f"{action}.mp4",
               3.0, 30.0, 40 + 10 * subject)


@pytest.fixture
def mmact(tmp_path):
    root = tmp_path / "MMAct"
    _mmact_clip(root, 1, 1, 1, "walking", views=("cam1", "cam2"))
    _mmact_clip(root, 1, 3, 2, "using_phone")  # scene 3: the desk class
    _mmact_clip(root, 16, 1, 4, "Carrying_light")  # capitalised in some copies
    _mmact_clip(root, 17, 2, 5, "walking")
    _mmact_clip(root, 20, 1, 3, "using_phone")
    _mmact_clip(root, 18, 1, 1, "walking", empty="gyro_clip")  # an empty sensor file: left out
    return root


def test_mmact_streams_rates_labels_and_cross_subject_split(mmact, capsys):
    data = load_data(f"mmact:{mmact}", frame_resize=16)
    assert "left out 1 clips that lack a sensor file, have an empty one, or have no video" in capsys.readouterr().err
    assert [(s.name, s.kind, s.rate_hz) for s in data.streams] == [
        ("camera", "camera", 30.0), ("phone_acc", "sensor", 100.0), ("watch_acc", "sensor", 100.0),
        ("gyro", "sensor", 50.0), ("orientation", "sensor", 50.0)]
    assert data.streams[1].channels == ("acc_x", "acc_y", "acc_z")
    assert data.streams[3].channels == ("gyro_x", "gyro_y", "gyro_z")
    assert data.streams[4].channels == ("azimuth", "pitch", "roll")
    assert [m.name for m in data.modalities] == ["rgb", "phone_acc", "watch_acc", "gyro", "orientation"]
    assert data.labels == ("using_phone", "walking", "using_phone_desk", "carrying_light")  # MMAct's class order
    got = sorted((r.subject, r.labels[0][2], r.split) for r in data.recordings)
    assert got == [
        ("subject1", "using_phone_desk", "train"),
        ("subject1", "walking", "train"), ("subject1", "walking", "train"),  # two camera views
        ("subject16", "carrying_light", "val"),
        ("subject17", "walking", "test"),
        ("subject20", "using_phone", "test"),
    ]
    rec = next(r for r in data.recordings if r.subject == "subject17")
    assert rec.series["phone_acc"].values.shape == (300, 3) and rec.series["gyro"].values.shape == (150, 3)
    # accelerometers in g (the files hold m/s^2), the other sensors as recorded
    assert np.allclose(rec.series["phone_acc"].values, _signal(300, 3, 17), atol=1e-4)
    assert np.allclose(rec.series["gyro"].values, 9.80665 * _signal(150, 3, 17), atol=1e-4)
    assert np.allclose(np.diff(rec.series["gyro"].timestamps), 1 / 50)
    assert rec.labels[0][1] == pytest.approx(3.0)


def test_mmact_cross_session_split(mmact):
    data = load_data(f"mmact-session:{mmact}", frame_resize=16)
    assert data.name == "mmact-session"
    assert sorted((r.subject, r.split) for r in data.recordings if r.series.get("camera") is not None) == [
        ("subject1", "train"), ("subject1", "train"), ("subject1", "train"),
        ("subject16", "val"),  # session 4
        ("subject17", "test"),  # session 5
        ("subject20", "train"),  # session 3
    ]


def test_mmact_action_outside_the_37_classes_is_named(mmact):
    _mmact_clip(mmact, 2, 1, 1, "Dancing", views=())
    with pytest.raises(DataError, match=r"Dancing.csv' names action 'Dancing', not one of the 37 MMAct classes"):
        load_data(f"mmact:{mmact}")


@pytest.mark.parametrize("sensors", ["acc_phone_clip", "trimmed/sensors/acc_phone_clip"])
def test_mmact_other_sensor_folders_and_no_video(tmp_path, mmact, sensors):
    """The sensor .tar.gz archives unpack to acc_phone_clip/ ... in ROOT itself; the MMAct
    challenge's example reads trimmed/sensors/acc_phone_clip/ ..."""
    import shutil

    root = tmp_path / "copy"
    for folder in MMACT_SENSOR_FOLDERS:
        target = root / Path(sensors).parent / folder
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(mmact / "Sensor_trimmed" / folder, target)
    data = load_data(f"mmact:{root}")
    assert "camera" not in [s.name for s in data.streams]
    assert len(data.recordings) == 5  # one per clip, no views; the empty-gyro clip still out


# --- Multimodal Egocentric Activity --------------------------------------------------------

@pytest.fixture
def egocentric(tmp_path):
    """act01 and act17, five 6 s sequences each: 19-column CSVs at 10 Hz named as the set
    names them (sensor/act01seq01.csv); videos under two naming schemes, act01's as
    video/act01seq01.avi, act17's as video/act17/seq_01.avi; act17seq05 has no video."""
    root = tmp_path / "multimodal_egocentric"
    (root / "sensor").mkdir(parents=True)
    for act in (1, 17):
        for seq in range(1, 6):
            stem = f"act{act:02d}seq{seq:02d}"
            values = _signal(60, len(EGOCENTRIC_CHANNELS), act)
            np.savetxt(root / "sensor" / f"{stem}.csv", values, delimiter=",", fmt="%.5f")
            video = root / "video" / (f"{stem}.avi" if act == 1 else f"act{act}/seq_{seq:02d}.avi")
            if stem != "act17seq05":
                _video(video, 6.0, 10.0, 8 * act)
    return root


def test_egocentric_streams_labels_and_sequence_split(egocentric, capsys):
    data = load_data(f"egocentric:{egocentric}", frame_resize=16)
    assert "left out 1 sequences" in capsys.readouterr().err
    assert [(s.name, s.kind, s.rate_hz) for s in data.streams] == [("camera", "camera", 10.0), ("glass", "sensor", 10.0)]
    assert data.streams[1].channels == EGOCENTRIC_CHANNELS and len(EGOCENTRIC_CHANNELS) == 19
    assert [m.name for m in data.modalities] == ["rgb", "acc", "gravity", "gyro", "linear_acc", "magnetic", "rotation"]
    assert next(m for m in data.modalities if m.name == "gyro").channels == ("gyro_x", "gyro_y", "gyro_z")
    assert data.labels == ("walking", "running")
    got = {(r.subject, r.split) for r in data.recordings}
    assert got == {("act01seq01", "train"), ("act01seq02", "train"), ("act01seq03", "train"),
                   ("act01seq04", "val"), ("act01seq05", "test"),
                   ("act17seq01", "train"), ("act17seq02", "train"), ("act17seq03", "train"), ("act17seq04", "val")}
    rec = next(r for r in data.recordings if r.subject == "act01seq05")
    assert rec.series["glass"].values.shape == (60, 19) and rec.series["camera"].frames.shape[0] == 60
    assert rec.labels == [(0.0, pytest.approx(6.0), "walking")]


def test_egocentric_csv_with_a_header_row_reads_the_same(egocentric):
    path = egocentric / "sensor" / "act01seq01.csv"
    path.write_text(",".join(EGOCENTRIC_CHANNELS) + "\n" + path.read_text())
    rec = next(r for r in load_data(f"egocentric:{egocentric}").recordings if r.subject == "act01seq01")
    assert rec.series["glass"].values.shape == (60, 19)


def test_egocentric_sequence_with_too_few_columns_is_left_out_and_counted(egocentric, capsys):
    np.savetxt(egocentric / "sensor" / "act01seq02.csv", _signal(60, 18, 1), delimiter=",", fmt="%.5f")
    data = load_data(f"egocentric:{egocentric}", frame_resize=16)
    assert "left out 2 sequences" in capsys.readouterr().err  # act01seq02 and the one without video
    assert "act01seq02" not in {r.subject for r in data.recordings}


# --- what does not fit --------------------------------------------------------------------

@pytest.mark.parametrize("name, expect", [
    ("utd-mhad", "utd-mhad: no RGB/a<action>_s<subject>_t<trial>_color.avi or Inertial/"),
    ("mmact", "mmact: no Sensor_trimmed/acc_phone_clip/, sensors/acc_phone_clip/ or acc_phone_clip/ folder under"),
    ("egocentric", "egocentric: no act<NN>seq<MM>.csv sensor files under"),
])
def test_a_folder_in_another_layout_is_one_line_naming_what_is_missing(tmp_path, name, expect):
    (tmp_path / "wrong" / "stuff").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "edgehar.cli", "train", "--data", f"{name}:{tmp_path / 'wrong'}",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_path_that_is_not_a_folder_is_named(tmp_path):
    with pytest.raises(DataError, match=r"utd-mhad: '.*nowhere' is not a folder \(expected the unpacked utd-mhad data set\)"):
        load_data(f"utd-mhad:{tmp_path / 'nowhere'}")
