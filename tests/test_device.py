"""The device layer on its own: sim:// devices, an injected flaky transport, health, errors."""

import asyncio

import numpy as np
import pytest

from edgehar.contract.manifest import StreamSpec
from edgehar.firmware_bridge.device import DescriptorMismatchError, DeviceHub, SinkError
from edgehar.firmware_bridge.protocol import SampleBlock, encode_frame
from edgehar.simulator.datasheet import IMU_CHANNELS
from edgehar.simulator.devices.firmware import sim_descriptor
from edgehar.firmware_bridge.transport import (
    Chunk, ConnectionLost, DeviceNotFoundError, DeviceURL, Transport, register_transport,
)
from waiting import wait_for


def test_sim_devices_stream_with_their_own_clocks():
    got = {"glove": 0, "imu": 0}

    def sink(name, t, v):
        assert t.shape == (v.shape[0],) and v.dtype == np.float32
        got[name] += len(t)

    hub = DeviceHub({"glove": "sim://glove?drift_ppm=50&seed=1", "imu": "sim://imu?drift_ppm=-50&seed=2"}, sink,
                    expect={"imu": StreamSpec("imu", "sensor", 100.0, ("acc_z", "gyro_x"))})
    hub.start()
    try:
        assert wait_for(lambda: min(got.values()) >= 150, 10)
        h = hub.health()
    finally:
        hub.stop()
    assert h["glove"].state == h["imu"].state == "connected"
    assert h["glove"].device != h["imu"].device
    assert 80 < h["imu"].rate_hz < 120


def test_unknown_sim_device_fails_at_start():
    with pytest.raises(DeviceNotFoundError) as exc:
        DeviceHub({"x": "sim://emg"}, lambda *a: None).start()
    assert "emg" in str(exc.value) and "glove" in str(exc.value)


def test_wrong_rate_is_refused_with_both_rates():
    with pytest.raises(DescriptorMismatchError, match=r"200 Hz.*100 Hz|100 Hz.*200 Hz"):
        DeviceHub({"imu": "sim://imu"}, lambda *a: None, expect={"imu": StreamSpec("imu", "sensor", 200.0, IMU_CHANNELS)}).start()


def test_a_failing_sink_stops_the_stream_with_the_reason():
    def sink(name, t, v):
        raise KeyError("no ring for imu")

    hub = DeviceHub({"imu": "sim://imu"}, sink)
    hub.start()
    try:
        assert wait_for(lambda: hub.health()["imu"].state == "failed", 5)
        with pytest.raises(SinkError, match="no ring for imu"):
            hub.raise_if_failed()
    finally:
        hub.stop()


class FlakyTransport(Transport):
    """Sends a descriptor and 10 blocks, then drops the link; the first reconnect finds no device."""

    connects = 0
    attempts = 0

    async def connect(self):
        FlakyTransport.attempts += 1
        if FlakyTransport.attempts == 2:
            raise DeviceNotFoundError(self.url.url, "not there yet")
        FlakyTransport.connects += 1

    async def close(self):
        pass

    async def chunks(self):
        d = sim_descriptor("imu", "FLAKY-1")
        yield Chunk(self.clock(), encode_frame(d))
        base = (FlakyTransport.connects - 1) * 10
        for k in range(10):
            i = base + k
            await asyncio.sleep(0.005)
            raw = np.full((2, 6), i, np.int16)
            yield Chunk(self.clock(), encode_frame(SampleBlock(i, i * 20_000, raw)))
        if FlakyTransport.connects < 3:
            raise ConnectionLost(self.url.url, "cable pulled")


def test_reconnects_with_backoff_and_counts_outages():
    register_transport("flaky", FlakyTransport)
    got = []
    hub = DeviceHub({"imu": "flaky://x"}, lambda name, t, v: got.append(v[:, 0].copy()))
    hub.start()
    try:
        assert wait_for(lambda: hub.health()["imu"].state == "down", 10)  # third connection ends the stream
        h = hub.health()["imu"]
    finally:
        hub.stop()
    assert FlakyTransport.connects == 3 and FlakyTransport.attempts == 4
    assert h.outages == 2 and h.outage_s > 0.05
    values = np.concatenate(got) / sim_descriptor("imu").scales[0]
    np.testing.assert_allclose(values, np.repeat(np.arange(30), 2), atol=1e-3)  # nothing lost outside the outages
    assert "not there yet" in h.last_error or "cable pulled" in h.last_error or "ended" in h.last_error


class BacklogTransport(Transport):
    """A device that dumps seconds of buffered blocks in one read, then streams live.

    Arrival times are the transport's to give (`Chunk.t_host`), so the timeline is
    fabricated, not waited for: `backlog_s` of blocks arrive at one host instant (a
    device flushing its buffer on connect, or after a USB hub hiccup when `gap_first`),
    then `live_s` of blocks arrive as they are made, with 0-5 ms of latency. Class
    attributes configure it, set per test."""

    t0_us = 0
    backlog_s = 2.0
    live_s = 20.0
    gap_first = False  # True: 5 s of live blocks, silence for backlog_s, then the dump
    sent = 0

    async def connect(self):
        pass

    async def close(self):
        pass

    async def chunks(self):
        cls = type(self)
        rng = np.random.default_rng(cls.t0_us % 1000)
        d = sim_descriptor("imu", "BACKLOG-1")
        yield Chunk(1000.0, encode_frame(d))
        dt, per = 1.0 / float(d.rate_hz), 2  # 2 samples a block: one block every 20 ms
        n_live0 = int(5.0 / (per * dt)) if cls.gap_first else 0
        n_back = int(cls.backlog_s / (per * dt))
        n_live = int(cls.live_s / (per * dt))
        host0 = 1000.0  # host time of device time t0
        for k in range(n_live0 + n_back + n_live):
            t_dev = k * per * dt  # device seconds of the block's first sample since t0
            if k < n_live0 or k >= n_live0 + n_back:
                arrival = host0 + t_dev + (per - 1) * dt + rng.uniform(0, 0.005)
            else:  # the backlog: every block at the instant the dump is read
                arrival = host0 + (n_live0 + n_back) * per * dt
            us = (cls.t0_us + round(t_dev * 1e6)) % 2**32
            raw = np.full((per, len(d.channels)), k % 30000, np.int16)
            cls.sent += per
            yield Chunk(arrival, encode_frame(SampleBlock(k % 65536, us, raw)))


@pytest.mark.parametrize("gap_first", [False, True], ids=["dump-on-connect", "dump-after-a-silence"])
@pytest.mark.parametrize("backlog_s", [2.0, 10.0])
@pytest.mark.parametrize("t0_us", [0, 2**31, 2**32 - 3_000_000], ids=["t0=0", "t0=2^31", "t0=wrap-3s"])
def test_a_backlog_read_at_once_keeps_the_stream_and_its_clock_sane(t0_us, backlog_s, gap_first):
    """Issue: a read holding >= 2 s of blocks (one arrival time for all) made the clock
    fit's slope exactly -1 and the stream died of ZeroDivisionError; near -1 it reported
    1e6..1e21 ppm. Now: every sample is delivered at increasing times, the stream ends
    normally, drift stays within +-1000 ppm (or the clock says it is unlocked), and once
    live data has run the spacing is the nominal 10 ms within 5 %."""
    from edgehar.firmware_bridge.device import DeviceStream

    BacklogTransport.t0_us, BacklogTransport.backlog_s, BacklogTransport.gap_first = t0_us, backlog_s, gap_first
    BacklogTransport.sent = 0
    times = []
    stream = DeviceStream("imu", "backlog://x", lambda name, t, v: times.append(t.copy()),
                          transport_factory=lambda url: BacklogTransport(DeviceURL.parse(url)), reconnect=False)
    asyncio.run(stream.run())  # returns when the transport ends; raises on a fatal error
    h = stream.health.snapshot(2000.0)
    t = np.concatenate(times)
    assert h.state == "down" and stream.error is None, h
    assert len(t) == BacklogTransport.sent == h.samples
    assert np.all(np.diff(t) > 0)
    assert h.drift_ppm is None or abs(h.drift_ppm) <= 1000 or not h.clock_ready, h
    spacing = np.diff(t[-500:])  # the last 5 s, live
    assert np.all(np.abs(spacing / 0.01 - 1) <= 0.05), (spacing.min(), spacing.max())


class FirehoseTransport(Transport):
    """Blocks ready without end: its chunk iterator never suspends (a backlog that does not stop)."""

    pause_s = 0.0  # between blocks; 0: never suspends
    samples = 2  # per block

    async def connect(self):
        pass

    async def close(self):
        pass

    async def chunks(self):
        d = sim_descriptor("imu", type(self).__name__.upper())
        yield Chunk(self.clock(), encode_frame(d))
        step_us = int(1e6 * self.samples / 100)  # the descriptor's 100 Hz
        for k in range(10**9):
            if self.pause_s:
                await asyncio.sleep(self.pause_s)
            raw = np.full((self.samples, len(d.channels)), 1, np.int16)
            yield Chunk(self.clock(), encode_frame(SampleBlock(k % 65536, (k * step_us) % 2**32, raw)))


class PacedTransport(FirehoseTransport):
    """A device on the event loop itself (as serial and BLE are): one block every 10 ms."""

    pause_s = 0.01
    samples = 1


def test_stop_returns_while_a_stream_works_through_a_backlog():
    """Issue: DeviceHub.stop() raised TimeoutError after 10 s while its consumer worked
    through a backlog without yielding to the event loop.

    The other stream runs on the hub's loop, as serial and BLE devices do (a sim:// device
    plays from its own thread, which the firehose starves of the GIL instead). The hub is
    stopped whatever happens: a firehose left running slows every later test (a CI run
    once timed out behind one)."""
    register_transport("firehose", FirehoseTransport)
    register_transport("paced", PacedTransport)
    got = []
    with DeviceHub({"imu": "firehose://x", "glove": "paced://y"}, lambda name, t, v: got.append(name)) as hub:
        # the paced stream is not starved: it keeps its turn on the loop
        assert wait_for(lambda: got.count("imu") > 1000 and got.count("glove") >= 20, 30)
    assert all(h.state != "connected" for h in hub.health().values())  # stop() returned and closed both


class CsvCutTransport(Transport):
    """CSV text joined mid-line and cut mid-line: a port opened while the device talks,
    then unplugged while it talks."""

    async def connect(self):
        pass

    async def close(self):
        pass

    async def chunks(self):
        yield Chunk(1.0, b"5,0.25\n")  # the end of a line sent before the port opened
        for i in range(5):
            yield Chunk(1.0 + 0.01 * i, f"{i}.5,{i}.25\n".encode())
        yield Chunk(1.1, b"7.5,")  # the start of a line never finished


def test_csv_lines_cut_at_either_end_are_counted_in_health():
    """Issue: the cut-off tail of a CSV stream and the skipped first line were counted
    nowhere in stream health."""
    from edgehar.firmware_bridge.device import DeviceStream

    got = []
    stream = DeviceStream("imu", "csvcut://x?format=csv&channels=a,b&rate=100", lambda n, t, v: got.append(v.copy()),
                          transport_factory=lambda url: CsvCutTransport(DeviceURL.parse(url)), reconnect=False)
    asyncio.run(stream.run())
    h = stream.health.snapshot()
    assert h.cut_lines == 2 and h.malformed == 0 and h.samples == 5, h
    np.testing.assert_allclose(np.concatenate(got)[:, 0], np.arange(5) + 0.5)


def test_bad_csv_urls_and_decoder_inputs_are_refused_clearly():
    """Issue: CSV `channels=a,a` was accepted; FrameDecoder.feed(5) was taken as five zero bytes."""
    from edgehar.firmware_bridge.device import DeviceStream
    from edgehar.firmware_bridge.protocol import FrameDecoder
    from edgehar.firmware_bridge.transport import TransportError

    for url, message in (("serial:///dev/x?format=csv&channels=a,a&rate=100", r"channel names must be distinct, \['a'\] repeat"),
                         ("serial:///dev/x?format=csv&channels=a,b&rate=inf", "rate='inf' is not a finite number")):
        with pytest.raises(TransportError, match=message):
            DeviceStream("imu", url, lambda *a: None)
    with pytest.raises(TypeError, match="takes bytes, bytearray or memoryview, got int"):
        FrameDecoder().feed(5)


class OverRateTransport(Transport):
    """An IMU that declares 100 Hz but sends at 1 kHz for 2 s (a wrong output data rate),
    block headers stamped with the true device time; 2 ms transport latency."""

    async def connect(self):
        pass

    async def close(self):
        pass

    async def chunks(self):
        d = sim_descriptor("imu", "OVERRATE-1")
        yield Chunk(1000.0, encode_frame(d))
        t, k = 0.0, 0
        while t < 20.0:
            rate = 1000.0 if 8.0 <= t < 10.0 else 100.0
            raw = np.full((2, len(d.channels)), k % 30000, np.int16)
            yield Chunk(1000.0 + t + 1 / rate + 0.002, encode_frame(SampleBlock(k % 65536, round(t * 1e6), raw)))
            t, k = t + 2 / rate, k + 1


def test_a_device_sending_ten_times_its_rate_loses_the_excess_not_the_clock():
    """Issue: a device over its declared rate made its blocks overlap in device time; the
    never-back rule pushed every later sample ~3 s into the future for good, and the clock
    fit learned ~900 ppm of drift. Now the overlapping samples are dropped and counted,
    such blocks stay out of the clock fit, and times after the burst are exact again."""
    from edgehar.firmware_bridge.device import DeviceStream

    got = []
    stream = DeviceStream("imu", "overrate://x", lambda n, t, v: got.append(t.copy()),
                          transport_factory=lambda url: OverRateTransport(DeviceURL.parse(url)), reconnect=False)
    asyncio.run(stream.run())
    h = stream.health.snapshot()
    t = np.concatenate(got)
    assert stream.error is None and h.state == "down" and h.last_error == "the device stream ended"
    assert np.all(np.diff(t) > 0)
    assert 1500 < h.excess_samples < 1800 and abs(h.drift_ppm) < 1.0, h  # 2000 sent in the burst, ~200 fit the 100 Hz grid
    after = t[t > 1000.0 + 10.5]  # 100 Hz again: on the device's grid + 2 ms latency
    np.testing.assert_allclose(after - 1000.002, np.round((after - 1000.002) * 100) / 100, atol=1e-6)
    assert t[-1] == pytest.approx(1000.0 + 19.99 + 0.002, abs=1e-6)


def test_the_measured_rate_keeps_only_its_window_of_blocks():
    """The rate is read every view frame: blocks older than its window are dropped as they
    arrive, and the rate over the window is unchanged by the dropping."""
    from edgehar.firmware_bridge.health import RATE_WINDOW_S, HealthTracker

    h = HealthTracker("imu", "sim://imu")
    for i in range(3000):  # 60 s of 10-sample blocks at 500 Hz
        h.add_samples(i * 0.02, 10)
    assert h.rate_hz() == pytest.approx(500.0)
    assert len(h._rate) == round(RATE_WINDOW_S / 0.02) + 1 and h._rate_n == sum(n for _, n in h._rate)
    for i in range(3000, 3100):  # the rate drops to 250 Hz: 5-sample blocks; after 2 s, a mix over the 5 s
        h.add_samples(i * 0.02, 5)
    # the 5 s window: 151 blocks of 10 and 100 of 5, the first block's samples not counted
    assert len(h._rate) == 251 and h.rate_hz() == pytest.approx((150 * 10 + 100 * 5) / 5.0)
    tiny = HealthTracker("glove", "sim://glove")  # more blocks in the window than the bound: the oldest go
    for i in range(5000):
        tiny.add_samples(i * 0.0005, 1)
    assert len(tiny._rate) == tiny._rate.maxlen and tiny._rate_n == tiny._rate.maxlen
    assert tiny.rate_hz() == pytest.approx(2000.0)
