"""replay://: a recorded session comes back through the device layer as a device would send it."""

import time

import numpy as np
import pytest

from edgehar.firmware_bridge.device import DeviceHub
from edgehar.firmware_bridge.session import write_session
from edgehar.simulator.world import generate_recording, make_subject
from edgehar.firmware_bridge.transport import DeviceNotFoundError


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    rec = generate_recording(make_subject(3, seed=0), [("neutral", 1.5), ("hammer", 1.5)], seed=11)
    return write_session(tmp_path_factory.mktemp("replay") / "s03", rec), rec


def replay(url, wait=15.0):
    got = []
    hub = DeviceHub({"imu": url}, lambda name, t, v: got.append((t.copy(), v.copy())))
    hub.start()
    end = time.monotonic() + wait
    while hub.health()["imu"].state != "down" and time.monotonic() < end:
        time.sleep(0.02)
    health = hub.health()["imu"]
    hub.stop()
    return np.concatenate([t for t, _ in got]), np.concatenate([v for _, v in got]), health


def test_replay_as_fast_as_possible_gives_back_the_recording(session):
    folder, rec = session
    t, v, health = replay(f"replay://{folder}?stream=imu&speed=0")
    s = rec.series["imu"]
    assert len(t) == len(s.timestamps) and health.lost_blocks == 0 and health.crc_errors == 0
    peak = np.abs(s.values).max(axis=0)
    assert np.all(np.abs(v - s.values) <= peak / 32767 + 1e-4)  # int16 quantisation of each channel's range
    # times keep the recorded spacing (within the recording's own ~1 ms sample jitter)
    np.testing.assert_allclose(t - t[0], s.timestamps - s.timestamps[0], atol=2e-3)
    assert health.device.startswith("imu replay")


def test_replay_in_real_time_is_paced(session):
    folder, rec = session
    start = time.monotonic()
    t, _, _ = replay(f"replay://{folder}?stream=imu&speed=4")
    took = time.monotonic() - start
    duration = rec.series["imu"].timestamps[-1] - rec.series["imu"].timestamps[0]
    assert took >= duration / 4 * 0.9  # not faster than asked
    assert len(t) == len(rec.series["imu"].timestamps)


def test_missing_stream_names_the_ones_there(session):
    folder, _ = session
    with pytest.raises(DeviceNotFoundError) as exc:
        DeviceHub({"imu": f"replay://{folder}?stream=emg"}, lambda *a: None).start()
    assert "emg" in str(exc.value) and "glove" in str(exc.value) and "imu" in str(exc.value)


def test_a_non_finite_sample_is_dropped_counted_and_does_not_flatten_its_channel(session, tmp_path):
    """Issue: a NaN in a session CSV was accepted by read_session, and replay:// then
    scaled that channel by a NaN peak (gyro_z -8.5..6.0 came back as +-1.0)."""
    import shutil
    import warnings

    from edgehar.firmware_bridge.session import SessionRepairWarning, read_session

    folder, rec = session
    bad = tmp_path / "s03-nan"
    shutil.copytree(folder, bad)
    lines = (bad / "imu.csv").read_text().splitlines(keepends=True)
    for row, column, text in ((11, -1, "nan"), (21, 2, "inf")):  # rows 12 and 22 of the file, samples 10 and 20
        cells = lines[row].rstrip("\n").split(",")
        cells[column] = text
        lines[row] = ",".join(cells) + "\n"
    (bad / "imu.csv").write_text("".join(lines))
    with pytest.warns(SessionRepairWarning, match=r"dropped 2 of \d+ rows with non-finite values .*first at row 12"):
        back = read_session(bad)
    s = rec.series["imu"]
    assert len(back.series["imu"].timestamps) == len(s.timestamps) - 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SessionRepairWarning)  # said once above; here the replay thread reads it
        t, v, health = replay(f"replay://{bad}?stream=imu&speed=0")
    assert len(t) == len(s.timestamps) - 2 and np.isfinite(v).all()
    keep = np.ones(len(s.timestamps), bool)
    keep[[10, 20]] = False
    peak = np.abs(s.values[keep]).max(axis=0)
    assert np.all(np.abs(v - s.values[keep]) <= peak / 32767 + 1e-4)  # every channel keeps its range
