"""Sensor layouts of the simulated world: more IMUs on the body and faster sensors,
without touching the default world the shipped bundles and the default data set come from."""

from __future__ import annotations

import numpy as np
import pytest

from edgehar.contract.series import SensorSeries
from edgehar.simulator.datasheet import CAMERA_FPS, IMU_CHANNELS
from edgehar.simulator.world import SensorLayout, generate_recording, make_subject

SUBJECT = make_subject(1, seed=0)
ALL = ("wrist", "forearm", "chest", "ankle")


def _acc_gyro(rec, stream):
    v = rec.series[stream].values
    return v[:, :3], v[:, 3:]


def test_extra_imus_leave_glove_wrist_imu_camera_and_labels_as_the_default_world_has_them():
    schedule = [("hammer", 2.0), ("plug_cable", 2.0)]
    default = generate_recording(SUBJECT, schedule, seed=3)
    more = generate_recording(SUBJECT, schedule, seed=3, layout=SensorLayout(ALL))
    assert list(default.series) == ["glove", "imu", "camera"] and list(default.meta["streams"]) == ["glove", "imu", "camera"]
    assert list(more.series) == ["glove", "imu", "imu2", "imu3", "imu4", "camera"]
    for name in ("glove", "imu"):
        np.testing.assert_array_equal(default.series[name].values, more.series[name].values)
        np.testing.assert_array_equal(default.series[name].timestamps, more.series[name].timestamps)
    np.testing.assert_array_equal(default.series["camera"].frames, more.series["camera"].frames)
    assert default.labels == more.labels
    assert {k: more.meta["streams"][k] for k in default.meta["streams"]} == default.meta["streams"]
    assert default.meta["streams"]["imu"]["device"]["placement"] == "right wrist"


def test_each_imu_is_its_own_device_at_the_layout_rate_and_the_camera_keeps_its_own():
    rec = generate_recording(SUBJECT, [("screwdriver", 3.0)], seed=1, layout=SensorLayout(ALL, rate_hz=1000.0))
    placements = [rec.meta["streams"][s]["device"]["placement"] for s in ("imu", "imu2", "imu3", "imu4")]
    assert placements == ["right wrist", "right forearm", "chest", "right ankle"]
    starts = set()
    for name in ("glove", "imu", "imu2", "imu3", "imu4"):
        s = rec.series[name]
        assert isinstance(s, SensorSeries) and rec.meta["streams"][name]["rate_hz"] == 1000.0
        assert abs(len(s.timestamps) - 3000) <= 30 and np.all(np.diff(s.timestamps) > 0)  # jitter scaled to the period
        starts.add(round(float(s.timestamps[0]), 6))
        if name != "glove":
            assert s.channels == IMU_CHANNELS
    assert len(starts) == 5  # own clocks: not sample-aligned
    assert abs(len(rec.series["camera"].timestamps) - 3 * CAMERA_FPS) <= 2


def test_at_rest_every_imu_reads_one_g_on_the_axis_its_board_faces():
    rec = generate_recording(SUBJECT, [("neutral", 3.0)], seed=0, layout=SensorLayout(ALL))
    for stream, axis in (("imu", 2), ("imu2", 2), ("imu3", 0), ("imu4", 1)):  # wrist/forearm flat, chest upright, ankle sideways
        acc, _ = _acc_gyro(rec, stream)
        assert np.linalg.norm(acc, axis=1).mean() == pytest.approx(1.0, abs=0.05), stream
        assert np.abs(acc.mean(0)).argmax() == axis, stream


def test_a_hammer_swing_reaches_each_placement_as_its_body_segment_would_feel_it():
    rec = generate_recording(SUBJECT, [("hammer", 4.0)], seed=2, layout=SensorLayout(ALL))
    swing = {s: _acc_gyro(rec, s)[1].std(0).max() for s in ("imu", "imu2", "imu3", "imu4")}  # deg/s, the swinging axis
    assert swing["imu"] > 100 and swing["imu2"] > 100  # both ride on the forearm
    assert 3 * swing["imu3"] < swing["imu"]  # the torso leans a little with each blow
    assert 2 * swing["imu4"] < swing["imu3"]  # the ankle barely moves
    wrist, forearm = _acc_gyro(rec, "imu")[0], _acc_gyro(rec, "imu2")[0]
    # not a copy: up the forearm the lever arm adds accelerations of its own
    assert np.abs(forearm - wrist).mean() > 5 * SUBJECT.acc_noise


@pytest.mark.parametrize("layout, match", [
    (dict(imus=("wrist", "elbow")), "unknown IMU placement 'elbow'; known: wrist, forearm, chest, ankle"),
    (dict(imus=("wrist", "wrist")), "each once"),
    (dict(imus=()), "one or more"),
    (dict(rate_hz=0.0), "rate must be > 0"),
])
def test_a_bad_layout_says_what_is_wrong(layout, match):
    with pytest.raises((KeyError, ValueError), match=match):
        SensorLayout(**layout)


def test_simulate_dataset_writes_the_layout_and_names_a_bad_placement(tmp_path, capsys):
    import json

    from edgehar.cli import main

    assert main(["simulate", "dataset", "--out", str(tmp_path / "bad"), "--imus", "wrist,elbow"]) == 2
    assert "unknown IMU placement 'elbow'; known: wrist, forearm, chest, ankle" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["simulate", "dataset", "--out", str(tmp_path), "--subjects", "1", "--repeats", "1",
                 "--imus", "chest,wrist", "--rate", "250"]) == 0
    streams = json.loads((tmp_path / "s00" / "meta.json").read_text())["streams"]
    assert {k: (s["rate_hz"], s["device"].get("placement")) for k, s in streams.items()} == {
        "glove": (250.0, None), "imu": (250.0, "chest"), "imu2": (250.0, "right wrist"), "camera": (30.0, None)}
