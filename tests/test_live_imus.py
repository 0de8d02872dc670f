"""`edgehar live` with several IMUs: repeated --imu and --device NAME=URL give the bundle's
streams imu, imu2, ... (the names the simulator's sensor layouts and the trainer use)."""

from __future__ import annotations

import json

import pytest

from edgehar.simulator.world import SensorLayout, generate_dataset
from live_helpers import tiny_bundle


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One simulated subject wearing a wrist and an ankle IMU (each activity for 1 s)."""
    folder = tmp_path_factory.mktemp("imus")
    return generate_dataset(folder, subjects=1, repeats=1, bout_s=1.0, seed=2, progress=False,
                            layout=SensorLayout(("wrist", "ankle")))[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundles"), streams=("camera", "glove", "imu", "imu2"))


def _replay(session, stream):
    return f"replay://{session}?stream={stream}"


def _live(capfd, bundle, session, *devices):
    from edgehar.cli import main

    rc = main(["live", "--headless", "--model", str(bundle), "--camera", str(session / "camera.mp4"),
               "--glove", _replay(session, "glove"), *devices])
    return rc, capfd.readouterr()


def test_two_imus_given_by_repeating_imu_each_feed_their_own_stream(bundle, session, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("DISPLAY", "")
    log = tmp_path / "live.jsonl"
    rc, out = _live(capfd, bundle, session, "--imu", _replay(session, "imu"), "--imu", _replay(session, "imu2"),
                    "--seconds", "2.5", "--json", str(log))
    assert rc == 0, out.err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines and {"imu", "imu2"} <= set(lines[-1]["age_ms"])
    assert {k: lines[-1]["streams"][k]["state"] for k in ("imu", "imu2")} == {"imu": "connected", "imu2": "connected"}


def test_device_name_url_gives_a_further_imu_and_a_missing_one_says_how_to_give_it(bundle, session, capfd):
    rc, out = _live(capfd, bundle, session, "--imu", _replay(session, "imu"), "--device", f"imu2={_replay(session, 'imu2')}",
                    "--check")
    assert rc == 0 and "imu2: imu2 replay" in out.out, out.err
    rc, out = _live(capfd, bundle, session, "--imu", _replay(session, "imu"), "--check")
    assert rc == 2 and ("the bundle reads stream 'imu2' but no device was given for it (--imu URL once per IMU "
                        "(stream 'imu2' is --imu number 2) or --device imu2=URL") in out.err
