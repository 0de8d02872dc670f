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
    Chunk, ConnectionLost, DeviceNotFoundError, Transport, register_transport,
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
    assert h["glove"]["state"] == h["imu"]["state"] == "connected"
    assert h["glove"]["device"] != h["imu"]["device"]
    assert 80 < h["imu"]["rate_hz"] < 120


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
        assert wait_for(lambda: hub.health()["imu"]["state"] == "failed", 5)
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
        assert wait_for(lambda: hub.health()["imu"]["state"] == "down", 10)  # third connection ends the stream
        h = hub.health()["imu"]
    finally:
        hub.stop()
    assert FlakyTransport.connects == 3 and FlakyTransport.attempts == 4
    assert h["outages"] == 2 and h["outage_s"] > 0.05
    values = np.concatenate(got) / sim_descriptor("imu").scales[0]
    np.testing.assert_allclose(values, np.repeat(np.arange(30), 2), atol=1e-3)  # nothing lost outside the outages
    assert "not there yet" in h["last_error"] or "cable pulled" in h["last_error"] or "ended" in h["last_error"]
