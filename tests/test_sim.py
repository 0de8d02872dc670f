"""The simulated world: determinism, device properties, realism knobs and the pair construction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgehar.contract.series import FrameSeries, SensorSeries
from edgehar.simulator.datasheet import CAMERA_FPS, FRAME_HEIGHT, FRAME_WIDTH, GLOVE_RATE_HZ, GLOVE_SPECS, IMU_RATE_HZ
from edgehar.simulator.world import (
    ACTIVITIES,
    CAMERA_ONLY_PAIRS,
    GLOVE_CHANNELS,
    GLOVE_ONLY_PAIRS,
    IMU_CHANNELS,
    SimulatedWorld,
    generate_recording,
    make_subject,
    subject_split,
)

SUBJECT = make_subject(1, seed=0)


@pytest.fixture(scope="module")
def tour():
    """Every activity once, 3 s each: the recording most tests look at."""
    return generate_recording(SUBJECT, [(a, 3.0) for a in ACTIVITIES], seed=7)


def test_activities_and_pairs_are_declared():
    assert len(ACTIVITIES) >= 8 and len(set(ACTIVITIES)) == len(ACTIVITIES)
    assert set(GLOVE_ONLY_PAIRS) == {("plug_cable", "unplug_cable"), ("assemble", "disassemble")}
    assert set(CAMERA_ONLY_PAIRS) == {("screwdriver", "hex_key"), ("hammer", "mallet")}


def test_same_seed_same_recording_other_seed_differs():
    schedule = [("hammer", 1.5), ("plug_cable", 1.5)]
    a, b = (generate_recording(SUBJECT, schedule, seed=3) for _ in range(2))
    c = generate_recording(SUBJECT, schedule, seed=4)
    for name in ("glove", "imu"):
        np.testing.assert_array_equal(a.series[name].values, b.series[name].values)
        np.testing.assert_array_equal(a.series[name].timestamps, b.series[name].timestamps)
        assert not np.array_equal(a.series[name].values[:100], c.series[name].values[:100])
    np.testing.assert_array_equal(a.series["camera"].frames, b.series["camera"].frames)
    assert make_subject(2, 0) == make_subject(2, 0) != make_subject(3, 0)


def test_streams_have_device_shapes_rates_and_ranges(tour):
    glove, imu, cam = tour.series["glove"], tour.series["imu"], tour.series["camera"]
    assert isinstance(glove, SensorSeries) and isinstance(imu, SensorSeries) and isinstance(cam, FrameSeries)
    assert glove.channels == GLOVE_CHANNELS and imu.channels == IMU_CHANNELS
    assert glove.values.dtype == np.float32 and glove.timestamps.dtype == np.float64
    assert cam.frames.shape[1:] == (FRAME_HEIGHT, FRAME_WIDTH, 3) and cam.frames.dtype == np.uint8
    duration = 3.0 * len(ACTIVITIES)
    for s, rate in ((glove, GLOVE_RATE_HZ), (imu, IMU_RATE_HZ), (cam, CAMERA_FPS)):
        assert abs(len(s.timestamps) - duration * rate) <= 0.01 * duration * rate
        assert np.all(np.diff(s.timestamps) > 0)
        assert 0 <= s.timestamps[0] < 0.05 and s.timestamps[-1] < duration
    for i, spec in enumerate(GLOVE_SPECS):
        assert spec.lo <= glove.values[:, i].min() and glove.values[:, i].max() <= spec.hi
    assert tour.labels == [(3.0 * i, 3.0 * (i + 1), a) for i, a in enumerate(ACTIVITIES)]


def test_streams_are_not_sample_aligned(tour):
    g, i, c = (tour.series[k].timestamps for k in ("glove", "imu", "camera"))
    assert len({round(g[0], 6), round(i[0], 6), round(c[0], 6)}) == 3
    assert not np.allclose(g[:1000], i[:1000], atol=1e-4)
    assert np.std(np.diff(g)) > 0  # host timestamps jitter


def test_gravity_in_accelerometers_at_rest():
    rec = generate_recording(SUBJECT, [("neutral", 4.0)], seed=0)
    for name in ("glove", "imu"):
        acc = rec.series[name].select(("acc_x", "acc_y", "acc_z"))
        assert np.linalg.norm(acc, axis=1).mean() == pytest.approx(1.0, abs=0.05)


def test_activities_leave_their_mark_on_sensors(tour):
    """A few physical facts a person would check on a plot."""
    g = tour.series["glove"]

    def during(act, cols):
        (s, e) = next((s, e) for s, e, a in tour.labels if a == act)
        m = (g.timestamps > s + 0.8) & (g.timestamps < e - 0.8)
        return g.select(cols)[m]

    flex = GLOVE_CHANNELS[:5]
    assert during("hammer", flex).mean() > during("neutral", flex).mean() + 0.3  # a fist, not a resting hand
    assert np.abs(during("hammer", ("acc_x", "acc_y", "acc_z"))).max() > 1.5  # strikes jolt
    assert during("screwdriver", ("gyro_x",)).std() > 5 * during("neutral", ("gyro_x",)).std()  # twisting
    assert during("plug_cable", ("pressure_thumb",)).max() > 0.4 > during("neutral", ("pressure_thumb",)).max()


@pytest.mark.parametrize("a, b", CAMERA_ONLY_PAIRS)
def test_camera_only_pairs_share_glove_and_imu(a, b):
    ra = generate_recording(SUBJECT, [("neutral", 1.0), (a, 2.0)], seed=11)
    rb = generate_recording(SUBJECT, [("neutral", 1.0), (b, 2.0)], seed=11)
    for name in ("glove", "imu"):
        np.testing.assert_array_equal(ra.series[name].values, rb.series[name].values)
    late = ra.series["camera"].timestamps > 1.6
    changed = np.abs(ra.series["camera"].frames[late].astype(int) - rb.series["camera"].frames[late]).max(-1) > 60
    assert changed.mean(axis=(1, 2)).min() > 0.004  # a different tool in every frame: > 75 px of 19200


@pytest.mark.parametrize("a, b", GLOVE_ONLY_PAIRS)
def test_glove_only_pairs_share_camera_and_imu(a, b):
    ra = generate_recording(SUBJECT, [("neutral", 1.0), (a, 2.0)], seed=12)
    rb = generate_recording(SUBJECT, [("neutral", 1.0), (b, 2.0)], seed=12)
    np.testing.assert_array_equal(ra.series["camera"].frames, rb.series["camera"].frames)
    np.testing.assert_array_equal(ra.series["imu"].values, rb.series["imu"].values)
    ga, gb = ra.series["glove"], rb.series["glove"]
    np.testing.assert_array_equal(ga.select(("acc_x", "gyro_z")), gb.select(("acc_x", "gyro_z")))
    late = ga.timestamps > 1.6
    fingers = GLOVE_CHANNELS[:5] + ("pressure_thumb",)
    assert np.abs(ga.select(fingers)[late] - gb.select(fingers)[late]).mean() > 0.03


def test_camera_only_pair_tools_differ_at_64px():
    """The model sees 64x64 frames: the two tools must still differ there, beyond noise."""
    ra = generate_recording(SUBJECT, [("screwdriver", 2.0)], seed=5)
    rb = generate_recording(SUBJECT, [("hex_key", 2.0)], seed=5)
    small = [np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in r.series["camera"].frames]).astype(int) for r in (ra, rb)]
    changed = (np.abs(small[0] - small[1]).max(-1) > 40).sum(axis=(1, 2))
    assert changed.min() >= 20  # pixels of 64x64 where one tool shows and the other does not


def test_subjects_differ():
    a, b = (generate_recording(make_subject(i, 0), [("hammer", 3.0)], seed=1) for i in (0, 1))
    flex = GLOVE_CHANNELS[1:5]
    assert abs(a.series["glove"].select(flex).mean() - b.series["glove"].select(flex).mean()) > 0.005
    assert not np.array_equal(a.series["camera"].frames[0], b.series["camera"].frames[0])


def test_transitions_are_smooth():
    rec = generate_recording(SUBJECT, [("neutral", 2.0), ("hammer", 2.0)], seed=2)
    g = rec.series["glove"]
    idx = GLOVE_CHANNELS.index("flex_middle")
    step = np.abs(np.diff(g.values[:, idx]))
    assert step.max() < 0.1  # no jump at the boundary, only noise-sized steps
    before, after = g.values[g.timestamps < 1.2, idx].mean(), g.values[g.timestamps > 2.8, idx].mean()
    assert after - before > 0.3


def test_live_world_continues_time_and_state():
    world = SimulatedWorld(SUBJECT, seed=9)
    chunks = [world.next_chunk(0.5) for _ in range(40)]
    assert world.time == pytest.approx(20.0)
    for name in ("glove", "imu", "camera"):
        t = np.concatenate([c.series[name].timestamps for c in chunks])
        assert np.all(np.diff(t) > 0) and t[-1] > 19.9
        rate = {"glove": GLOVE_RATE_HZ, "imu": IMU_RATE_HZ, "camera": CAMERA_FPS}[name]
        assert abs(len(t) - 20 * rate) <= 0.01 * 20 * rate
    flex = np.concatenate([c.series["glove"].select(("flex_middle",))[:, 0] for c in chunks])
    assert np.abs(np.diff(flex)).max() < 0.1  # no seams at chunk boundaries
    labels = [lab for c in chunks for lab in c.labels]
    acts = [a for _, _, a in labels]
    assert len(set(acts)) >= 2 and all(a in ACTIVITIES for a in acts)
    assert all(0.0 <= s < e <= 20.0 + 1e-9 for s, e, _ in labels)


def test_live_chunks_match_one_long_chunk_in_latent_signal():
    """Chunking is a cut in time, not a restart: the signal without noise is identical."""
    a, b = SimulatedWorld(SUBJECT, seed=4), SimulatedWorld(SUBJECT, seed=4)
    whole = a.next_chunk(4.0).series["imu"]
    parts = [b.next_chunk(1.0).series["imu"] for _ in range(4)]
    t = np.concatenate([p.timestamps for p in parts])
    v = np.concatenate([p.values for p in parts])
    assert len(t) == len(whole.timestamps)
    gyro = IMU_CHANNELS.index("gyro_x")
    assert np.abs(v[:, gyro] - whole.values[:, gyro]).mean() < 4 * SUBJECT.gyro_noise


def test_subject_split_is_cross_subject_and_seeded():
    split = subject_split(list(range(10)), seed=0)
    counts = {s: list(split.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 2, "test": 2}
    assert split == subject_split(list(range(10)), seed=0) != subject_split(list(range(10)), seed=1)


def test_bad_input_fails_with_the_known_names():
    with pytest.raises(KeyError, match="press_button"):
        generate_recording(SUBJECT, [("juggling", 1.0)], seed=0)
    with pytest.raises(ValueError, match="duration"):
        generate_recording(SUBJECT, [("hammer", 0.0)], seed=0)


def test_truth_is_the_activity_covering_most_of_the_window_whatever_the_label_pieces():
    """The player receives labels in chunk-sized pieces. Regression: it named the activity
    with the largest single piece, so with 0.25 s pieces a window across a change was
    given the earlier activity (the demo's truth lagged ~1 s: 85.6% agreement, 96.5% now)."""
    from edgehar.simulator.devices.player import BlockPlayer
    from edgehar.simulator.world import SimulatedWorld, make_subject

    player = BlockPlayer(SimulatedWorld(make_subject(1, seed=0), seed=0), [])
    pieces = [(a / 4, (a + 1) / 4, "hammer" if a < 4 else "mallet") for a in range(12)]  # hammer 0-1 s, mallet 1-3 s
    player._labels = pieces
    assert player.truth(0.0, 3.0) == "mallet"
    assert player.truth(0.0, 1.5) == "hammer"
    assert player.truth(0.5, 1.0) == "hammer" and player.truth(5.0, 6.0) is None
