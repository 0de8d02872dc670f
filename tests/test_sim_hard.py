"""The `sim-hard` preset: every nuisance factor is there, and the default world is untouched."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgehar.simulator.activities import ACTIVITIES, REVERSED, Bout, activity_model
from edgehar.simulator.nuisance import PRESETS, Nuisance
from edgehar.simulator.world import generate_dataset, generate_recording, make_subject

HARD = PRESETS["sim-hard"]


def test_default_data_set_is_byte_identical_to_before_nuisance_factors(tmp_path):
    # sha256 of the sensor CSVs, labels and meta.json of this tiny data set, taken from the
    # generator before simulator/nuisance.py existed: the default `sim` data set (and every
    # bundle trained on it) must not move. The mp4 is left out (its bytes are the codec's).
    generate_dataset(tmp_path, subjects=3, repeats=1, bout_s=2.0, seed=0, progress=False)
    h = hashlib.sha256()
    for p in sorted(tmp_path.glob("*/*")):
        if p.suffix in (".csv", ".json"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    assert h.hexdigest() == "57a5db057976a757cd36cfaea10b6bc5cb51169f786f82c9e2eb93c0cd17c95f"


def test_no_nuisance_is_inert():
    sub = make_subject(3, 0)
    assert Nuisance().subject(sub) is sub and not Nuisance().active
    assert Nuisance().repeats(ACTIVITIES, 3) == [3] * len(ACTIVITIES)
    assert activity_model("disassemble") is not REVERSED["disassemble"]


def test_subjects_spread_wider():
    base = [make_subject(i, 0) for i in range(20)]
    hard = [HARD.subject(s) for s in base]
    spread = lambda subs, key: np.std([getattr(s, key) for s in subs])  # noqa: E731
    for key in ("tempo", "motion_amp", "acc_noise", "occlusion_rate", "brightness"):
        assert spread(hard, key) > 1.4 * spread(base, key), key
    assert np.std([s.imu_mount_rpy for s in hard]) > 2 * np.std([s.imu_mount_rpy for s in base])


def test_hard_recording_has_packet_loss_camera_pose_and_lighting_episodes():
    sub = HARD.subject(make_subject(1, 0))
    schedule = [("screwdriver", 30.0), ("neutral", 30.0)]
    plain = generate_recording(sub, schedule, seed=5)
    hard = generate_recording(sub, schedule, seed=5, nuisance=HARD)
    for stream in ("glove", "imu"):
        gaps = np.diff(hard.series[stream].timestamps)
        assert gaps.max() > 0.03 and np.diff(plain.series[stream].timestamps).max() < 0.02  # bursts of lost samples
        assert 0.01 < 1 - len(gaps) / len(np.diff(plain.series[stream].timestamps)) < 0.2
    info = hard.meta["nuisance"]
    assert info["strength"] == 1.0 and info["camera_zoom"] != 1.0 and info["camera_tilt_deg"] != 0.0
    assert "nuisance" not in plain.meta
    # lighting episodes and the camera pose change what every frame looks like
    brightness = hard.series["camera"].frames.mean(axis=(1, 2, 3))
    assert not np.array_equal(hard.series["camera"].frames[:10], plain.series["camera"].frames[:10])
    assert brightness.max() - brightness.min() > 10


def _pressure(activity: str, reversed_pairs: bool) -> np.ndarray:
    bout = Bout(activity, 0.0, 20.0, make_subject(0, 0), np.random.SeedSequence(7), reversed_pairs)
    return bout.eval(np.arange(0, 20, 0.01))["pressure"]


def test_reversed_pairs_differ_only_in_temporal_order():
    for a, b in (("assemble", "disassemble"), ("plug_cable", "unplug_cable")):
        fwd, rev = activity_model(a), activity_model(b, reversed_pairs=True)
        assert (fwd.motion, fwd.grip, fwd.look) == (rev.motion, rev.grip, rev.look) and rev.reverse
    # assemble's pressure builds slowly and lets go at once; played backwards, disassemble
    # grabs at once and eases off slowly: same values, opposite order
    up, down = np.diff(_pressure("assemble", True)), np.diff(_pressure("disassemble", True))
    assert -up.min() > 2 * up.max()
    assert down.max() > 2 * -down.min()
    assert abs(np.sort(_pressure("assemble", True)).mean() - np.sort(_pressure("disassemble", True)).mean()) < 0.05


def test_imbalanced_data_set_draws_fewer_bouts_of_rare_activities(tmp_path):
    generate_dataset(tmp_path, subjects=3, repeats=3, bout_s=1.0, seed=0, progress=False, nuisance=HARD)
    counts: dict[str, int] = {}
    for line in (tmp_path / "s00" / "labels.csv").read_text().splitlines()[1:]:
        counts[line.split(",")[2]] = counts.get(line.split(",")[2], 0) + 1
    assert counts == dict(zip(ACTIVITIES, HARD.repeats(ACTIVITIES, 3)))
    assert counts["neutral"] == 6 and counts["mallet"] == 1
    meta = json.loads(Path(tmp_path, "s00", "meta.json").read_text())
    assert meta["extra"]["nuisance"]["reversed_pairs"] is True


def test_bad_strength_is_named():
    with pytest.raises(ValueError, match="strength must be a number >= 0, got -1"):
        Nuisance(strength=-1)
