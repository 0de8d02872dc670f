"""The on-disk session: round trip, plain-file readability, window labels and error messages."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from edgehar.firmware_bridge.session import SessionError, label_at, read_session, window_label, write_session
from edgehar.simulator.world import ACTIVITIES, generate_dataset, generate_recording, make_subject


@pytest.fixture(scope="module")
def recording():
    rec = generate_recording(make_subject(4, 0), [("neutral", 1.5), ("screwdriver", 1.5), ("plug_cable", 1.0)], seed=3)
    rec.meta.update(session_id="t-1", split="val", start_time="2024-05-01T10:00:00+00:00")
    return rec


@pytest.fixture(scope="module")
def folder(recording, tmp_path_factory):
    return write_session(tmp_path_factory.mktemp("sessions") / "s04", recording)


def test_round_trip_equals(recording, folder):
    back = read_session(folder)
    assert back.subject == recording.subject == "s04" and back.labels == recording.labels
    assert back.meta["split"] == "val" and back.meta["session_id"] == "t-1" and back.folder == folder
    for name in ("glove", "imu"):
        a, b = recording.series[name], back.series[name]
        assert b.channels == a.channels and b.values.dtype == np.float32
        np.testing.assert_allclose(b.timestamps, a.timestamps, atol=1e-6)
        np.testing.assert_allclose(b.values, a.values, rtol=1e-6, atol=1e-6)
    a, b = recording.series["camera"], back.series["camera"]
    assert b.frames.shape == a.frames.shape
    np.testing.assert_allclose(b.timestamps, a.timestamps, atol=1e-6)
    assert np.abs(b.frames.astype(int) - a.frames).mean() < 8  # lossy codec, same pictures
    assert np.abs(b.frames.astype(int) - np.roll(a.frames, 15, axis=0)).mean() > np.abs(b.frames.astype(int) - a.frames).mean()


def test_folder_is_readable_without_edgehar(recording, folder):
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "edgehar-session" and meta["version"] == 1
    assert meta["streams"]["glove"]["units"][0] == "bend 0..1" and meta["streams"]["camera"]["fps"] == 30.0
    with open(folder / "glove.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["t", *recording.series["glove"].channels]
    assert len(rows) - 1 == len(recording.series["glove"].timestamps)
    with open(folder / "labels.csv") as fh:
        assert next(csv.reader(fh)) == ["start", "end", "activity"]


def test_streams_subset_and_frame_resize(folder):
    back = read_session(folder, streams=("camera",), frame_size=(64, 64))
    assert set(back.series) == {"camera"} and back.series["camera"].frames.shape[1:] == (64, 64, 3)


def test_window_labels():
    labels = [(0.0, 2.0, "neutral"), (2.0, 5.0, "hammer")]
    assert label_at(labels, 1.99) == "neutral" and label_at(labels, 2.0) == "hammer" and label_at(labels, 5.0) is None
    assert window_label(labels, 0.5, 3.0) == "neutral"
    assert window_label(labels, 1.0, 3.5) == "hammer"
    assert window_label(labels, 6.0, 7.0) is None


def _broken(folder, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(folder, copy)
    return copy


def _edit_meta(folder, fn):
    meta = json.loads((folder / "meta.json").read_text())
    fn(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def _drop_last_row(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


@pytest.mark.parametrize(
    "breakage, file, message",
    [
        (lambda f: (f / "meta.json").unlink(), "meta.json", "missing file"),
        (lambda f: (f / "meta.json").write_text("{oops"), "meta.json", "not valid JSON"),
        (lambda f: _edit_meta(f, lambda m: m.update(version=99)), "meta.json", "version 99"),
        (lambda f: _edit_meta(f, lambda m: m["streams"]["imu"].pop("channels")), "meta.json", "missing key streams.imu.channels"),
        (lambda f: (f / "imu.csv").unlink(), "imu.csv", "missing file"),
        (lambda f: (f / "glove.csv").write_text("time,a,b\n1,2,3\n"), "glove.csv", "bad header"),
        (lambda f: (f / "imu.csv").write_text((f / "imu.csv").read_text() + "1.0,x,2,3,4,5,6\n"), "imu.csv", "not numeric"),
        (lambda f: _drop_last_row(f / "camera_timestamps.csv"), "camera.mp4", "frames decoded but camera_timestamps.csv has"),
        (lambda f: (f / "camera.mp4").write_bytes(b"not a video"), "camera.mp4", "OpenCV cannot open"),
        (lambda f: (f / "labels.csv").write_text("start,end\n"), "labels.csv", "bad header"),
    ],
)
def test_errors_name_the_file_and_the_problem(folder, tmp_path, breakage, file, message):
    broken = _broken(folder, tmp_path)
    breakage(broken)
    with pytest.raises(SessionError, match=message) as err:
        read_session(broken)
    assert err.value.path.name == file and "\n" not in str(err.value)


def test_writer_needs_stream_rates(recording, tmp_path):
    rec = type(recording)(series=recording.series, labels=recording.labels, subject="x", meta={})
    with pytest.raises(SessionError, match="streams.glove.rate_hz"):
        write_session(tmp_path / "s", rec)


def test_generate_dataset_writes_split_sessions(tmp_path):
    paths = generate_dataset(tmp_path, subjects=3, repeats=1, bout_s=1.0, seed=1, progress=False)
    assert [p.name for p in paths] == ["s00", "s01", "s02"]
    sessions = [read_session(p, streams=("glove",)) for p in paths]
    assert sorted(s.meta["split"] for s in sessions) == ["test", "train", "val"]
    for s in sessions:
        assert sorted(a for _, _, a in s.labels) == sorted(ACTIVITIES)  # each activity once, shuffled
        assert s.series["glove"].timestamps[-1] == pytest.approx(len(ACTIVITIES) * 1.0, abs=0.02)
    assert [a for _, _, a in sessions[0].labels] != [a for _, _, a in sessions[1].labels]
