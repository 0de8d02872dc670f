"""The serial path end to end over real pseudo-terminals: simulated firmware -> pty ->
pyserial -> decoder -> clock mapping -> sink. No hardware, nothing skipped."""

import numpy as np
import pytest

from edgehar.contract.manifest import StreamSpec
from edgehar.firmware_bridge.device import DescriptorMismatchError, DeviceHub
from edgehar.simulator.datasheet import GLOVE_CHANNELS, IMU_CHANNELS
from edgehar.simulator.devices.firmware import FirmwarePlayer, PtyFirmware, serve_serial
from edgehar.firmware_bridge.transport import DeviceNotFoundError, TransportError, open_transport
from waiting import wait_for

GLOVE = StreamSpec("glove", "sensor", 100.0, GLOVE_CHANNELS)
IMU = StreamSpec("imu", "sensor", 100.0, IMU_CHANNELS)


class Collect:
    """A sink that keeps everything (called from the hub's thread)."""

    def __init__(self):
        self.blocks = {}

    def __call__(self, name, t, values):
        self.blocks.setdefault(name, []).append((t.copy(), values.copy()))

    def times(self, name):
        return np.concatenate([t for t, _ in self.blocks.get(name, [])]) if name in self.blocks else np.zeros(0)

    def values(self, name):
        return np.concatenate([v for _, v in self.blocks[name]])


def sent(fw, fates=("sent",)):
    return [b for b in fw.history if b.fate in fates]


@pytest.fixture
def devices():
    made = []

    def make(kind, **options):
        dev = PtyFirmware(kind, history=100_000, **options)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.close()


def sent_samples(fw) -> int:
    return sum(len(b.t_true) for b in fw.history if b.fate == "sent")


def delivered_all(hub, devs, short=0, timeout=15.0):
    """Wait until the hub has delivered every sample the (stopped) devices sent, less
    `short` each: the event the count and clock checks wait on, instead of a sleep that
    a busy machine outlasts."""
    want = {name: sent_samples(d.firmware) - short for name, d in devs.items()}
    return wait_for(lambda: all(hub.health()[n].samples >= k for n, k in want.items()), timeout, interval=0.05)


def run_streams(devs, seconds, speed=1.0, expect=None, **hub_kw):
    """Play the devices' world for `seconds` of player time into a hub; returns (sink, hub health, player)."""
    player = FirmwarePlayer([d.firmware for d in devs.values()], speed=speed)
    sink = Collect()
    hub = DeviceHub({name: f"serial://{d.path}?baud=921600" for name, d in devs.items()}, sink, expect=expect,
                    clock=player.clock, **hub_kw)
    hub.start()
    player.start()
    try:
        player.wait(seconds)
    finally:
        player.stop()
        delivered_all(hub, devs)  # the host has read what was still in flight
        health = hub.health()
        hub.stop()
    assert player.error is None
    return sink, health, player


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
def test_binary_end_to_end_values_order_count_and_clock(devices):
    glove, imu = devices("glove", seed=1, drift_ppm=90.0), devices("imu", seed=2, drift_ppm=-70.0)
    # 11 s at real rate: clock accuracy is judged on what arrives after 10 s. Not faster: the
    # pty's minimum latency cannot be observed by any clock fit (latency is one-sided), and at
    # 2x it counts double in device time -- under CPU load that floor alone reached 0.75 ms.
    sink, health, _ = run_streams({"glove": glove, "imu": imu}, 11.0, speed=1.0, expect={"glove": GLOVE, "imu": IMU})
    for name, dev in (("glove", glove), ("imu", imu)):
        blocks = sent(dev.firmware)
        truth_t = np.concatenate([b.t_true for b in blocks])
        truth_v = np.concatenate([b.values for b in blocks])
        t, v = sink.times(name), sink.values(name)
        assert len(t) == len(truth_t), f"{name}: {len(t)} samples delivered, {len(truth_t)} sent"
        assert np.all(np.diff(t) > 0), f"{name}: sample times not increasing"
        np.testing.assert_allclose(v, truth_v, rtol=0, atol=1e-6)  # exactly what the firmware quantised
        err = np.abs(t - truth_t)[truth_t >= truth_t[0] + 10.0]
        assert len(err) and err.max() <= 1e-3, f"{name}: mapping error {err.max() * 1e3:.3f} ms after 10 s"
        h = health[name]
        assert h.state == "connected" and h.lost_blocks == 0 and h.crc_errors == 0 and h.clock_ready
        assert h.battery_pct is not None and h.device.startswith(name)
    # values are the world's, within int16 quantisation of the datasheet ranges
    scales = np.asarray(glove.firmware.descriptor.scales)
    assert np.all(np.abs(sink.values("glove")) <= 32767 * scales + 1e-6)


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
def test_csv_lines_over_the_pty(devices):
    imu = devices("imu", seed=3, fmt="csv")
    channels = ",".join(IMU_CHANNELS)
    player = FirmwarePlayer([imu.firmware], speed=4.0)
    sink = Collect()
    hub = DeviceHub({"imu": f"serial://{imu.path}?format=csv&channels={channels}&rate=100"}, sink,
                    expect={"imu": StreamSpec("imu", "sensor", 100.0, ("gyro_z", "acc_x"))}, clock=player.clock)
    hub.start()
    player.start()
    player.wait(3.0)
    player.stop()
    delivered_all(hub, {"imu": imu}, short=1)  # the first line may be cut, see below
    hub.stop()
    blocks = sent(imu.firmware)
    truth = np.concatenate([b.values for b in blocks])[:, [5, 0]]  # the expected order: gyro_z, acc_x
    got = sink.values("imu")
    # the first line may be cut (a port opened mid-stream): it is skipped, the rest arrive
    assert len(truth) - 1 <= len(got) <= len(truth)
    np.testing.assert_allclose(got, truth[len(truth) - len(got):], rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(sink.times("imu")) > 0)


def test_nonexistent_port_and_unknown_scheme_are_one_line_errors(tmp_path):
    missing = tmp_path / "ttyNOPE"
    with pytest.raises(DeviceNotFoundError) as exc:
        DeviceHub({"glove": f"serial://{missing}"}, Collect()).start()
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(TransportError) as exc:
        open_transport("bluetooth://glove")
    assert "unknown scheme 'bluetooth'" in str(exc.value) and "serial" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_descriptor_disagreeing_with_expect_is_a_clear_error(devices):
    imu = devices("imu", seed=4)
    imu.boot()
    wrong = StreamSpec("imu", "sensor", 50.0, ("acc_x", "mag_x"))
    with pytest.raises(DescriptorMismatchError) as exc:
        DeviceHub({"imu": f"serial://{imu.path}"}, Collect(), expect={"imu": wrong}).start()
    msg = str(exc.value)
    assert "mag_x" in msg and "50 Hz" in msg and "100 Hz" in msg and "acc_x" in msg and "\n" not in msg


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
def test_device_disappears_and_comes_back(tmp_path):
    link = tmp_path / "ttyGLOVE"  # a stable path, like a udev rule's /dev/glove
    dev = PtyFirmware("glove", link=link, seed=5, history=100_000)
    player = FirmwarePlayer([dev.firmware])
    sink = Collect()
    hub = DeviceHub({"glove": f"serial://{link}"}, sink, clock=player.clock)
    try:
        hub.start()
        player.start()
        player.wait(1.5)
        t_unplug = player.clock()
        had = sink.times("glove")
        t_had = had[-1] if len(had) else -np.inf  # delivered before the unplug: what was read, not in flight
        dev.port.close()  # unplugged: the host's read fails, the path vanishes
        t_closed = player.clock()
        assert wait_for(lambda: hub.health()["glove"].state == "reconnecting", 10)
        t_seen_down = player.clock()
        player.wait(0.7)
        t_replug = player.clock()
        dev.port.reopen()  # plugged in again: a new pty behind the same path
        assert wait_for(lambda: hub.health()["glove"].state == "connected", 15)
        t_reconnected = player.clock()
        player.wait(1.5)
    finally:
        player.stop()
        last = max((b.t_true[-1] for b in dev.firmware.history if b.fate == "sent"), default=None)
        # the host has read the newest block the device sent (not a sleep)
        wait_for(lambda: last is None or (len(t := sink.times("glove")) and t[-1] >= last - 2e-3), 15, interval=0.05)
        health = hub.health()["glove"]
        hub.stop()
        dev.close()
    assert health.outages == 1
    # the gap shows, bounded by what the test saw on the hub's own clock (the player's):
    # it began before the test saw "reconnecting" and ended after the replug, before "connected"
    assert t_replug - t_seen_down - 1e-3 <= health.outage_s <= t_reconnected - t_unplug + 1e-3, health
    # Every block the host had read before the unplug, and every block written after the
    # test saw it connected again, arrived -- found by its values (time mapping is not
    # what is checked here). Not required: blocks in flight when the pty closed, and what
    # the device wrote after the replug before the host opened the port (pyserial's
    # open() flushes input, as a real port does). The bounds are events the test saw.
    got = sink.values("glove")
    sent_blocks = [b for b in dev.firmware.history if b.fate == "sent"]
    ok = [b for b in sent_blocks if b.t_true[-1] <= t_had or b.t_written > t_reconnected]
    assert any(b.t_written > t_reconnected for b in ok)
    for b in ok:
        found = (np.abs(got[None, :, :] - b.values[:, None, :]) <= 1e-6).all(axis=2).any(axis=1)
        assert found.all(), f"block {b.seq} written at {b.t_written:.3f} was lost"
    # the firmware saw the port gone: whatever it wrote between the close and the reopen was refused
    closed = [b for b in dev.firmware.history if t_closed < b.t_written < t_replug]
    assert closed and all(b.fate == "overflow" for b in closed), [(b.t_written, b.fate) for b in closed]


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
def test_loss_counts_lost_blocks_exactly(devices):
    glove = devices("glove", seed=6, loss=0.15)
    _, health, _ = run_streams({"glove": glove}, 4.0, speed=4.0)
    hist = list(glove.firmware.history)
    last = max(i for i, b in enumerate(hist) if b.fate == "sent")
    lost = sum(b.fate == "lost" for b in hist[:last])  # trailing losses cannot be seen
    assert lost > 3
    assert health["glove"].lost_blocks == lost
    assert health["glove"].samples == sum(len(b.t_true) for b in hist if b.fate == "sent")


def test_corruption_counts_crc_errors_and_the_stream_continues(devices):
    imu = devices("imu", seed=7, corrupt=0.3)
    _, health, _ = run_streams({"imu": imu}, 6.0, speed=4.0)
    stats = imu.firmware.stats
    assert stats.corrupt > 3
    h = health["imu"]
    assert h.crc_errors == stats.corrupt
    assert h.samples == sum(len(b.t_true) for b in imu.firmware.history if b.fate == "sent")
    assert h.state == "connected"


def test_serve_serial_reports_its_port_and_streams(tmp_path):
    import threading

    paths = []
    stop = threading.Event()
    sink = Collect()

    def ready(path):
        paths.append(path)
        hub = DeviceHub({"imu": f"serial://{path}"}, sink)
        hub.start()
        wait_for(lambda: len(sink.times("imu")) > 10, 15)
        hub.stop()
        stop.set()

    stats = serve_serial("imu", on_ready=ready, stop=stop, seconds=10)
    assert paths and paths[0].startswith("/dev/")
    assert stats.sent > 0 and len(sink.times("imu")) > 10
