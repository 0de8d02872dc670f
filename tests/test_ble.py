"""BleTransport through the real, unmodified bleak against an emulated BlueZ on a private bus.

No adapter and no radio: bleak talks D-Bus to simulator.devices.bluez.FakeBlueZ, and a
simulated glove (sim.ble_peripheral.BlePeripheral) notifies one protocol frame per
notification, faster than real time (paced only by the bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

import pytest

from edgehar.firmware_bridge import protocol
from edgehar.simulator.devices.ble_peripheral import BlePeripheral, BleSimulation
from edgehar.simulator.devices.bluez import FakeBlueZ
from edgehar.firmware_bridge.transport import ConnectionLost, DeviceNotFoundError, TransportError, open_transport

TIMEOUT_S = 30.0


def run(coro):
    """Each test gets its own event loop, so bleak builds a fresh BlueZ manager on the test's bus."""

    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT_S)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def peripherals(bus_address, kinds=("glove",)):
    async with FakeBlueZ(bus_address) as bluez:
        made = [BlePeripheral(bluez, kind, seed=i) for i, kind in enumerate(kinds)]
        try:
            yield made
        finally:
            for p in made:
                await p.close()


def relative(seqs, first):
    """Sequence numbers counted from `first` (the firmware starts anywhere and wraps at 2**16)."""
    return [(s - first) % (1 << 16) for s in seqs]


class Reader:
    """Consumes a transport like the device layer does: chunks -> FrameDecoder -> messages."""

    def __init__(self, transport, decoder=None):
        self.transport = transport
        self.decoder = decoder or protocol.FrameDecoder()
        self.chunks = []
        self.messages = []
        self.arrived = asyncio.Event()

    @property
    def blocks(self):
        return [m for m in self.messages if isinstance(m, protocol.SampleBlock)]

    async def consume(self):
        """Until the link drops (returns the ConnectionLost) or the transport closes (returns None)."""
        try:
            async for chunk in self.transport:
                self.chunks.append(chunk)
                self.messages += self.decoder.feed(chunk.data)
                self.arrived.set()
        except ConnectionLost as exc:
            return exc
        return None

    async def wait_blocks(self, n):
        while len(self.blocks) < n:
            self.arrived.clear()
            await self.arrived.wait()


def test_scan_by_service_connect_and_stream_1000_blocks_in_order(private_system_bus):
    n = 1200

    async def main():
        async with peripherals(private_system_bus) as (glove,):
            transport = open_transport(f"ble://service={protocol.SERVICE_UUID}?scan_s=5")
            await transport.connect()
            try:
                assert transport.device.address == glove.address
                assert transport.payload_size == protocol.BLE_PAYLOAD_BYTES  # from the MTU, not mtu_size's 23
                reader = Reader(transport)
                consumer = asyncio.create_task(reader.consume())
                await glove.wait_subscribed()
                seq0 = glove.firmware.seq
                await glove.pump(n)
                await reader.wait_blocks(n)
            finally:
                await transport.close()
            assert await consumer is None  # close() ends the iteration quietly
            return reader, seq0

    reader, seq0 = run(main())
    assert relative([b.seq for b in reader.blocks], seq0) == list(range(n))
    assert reader.decoder.stats.gaps == reader.decoder.stats.lost_blocks == reader.decoder.stats.crc_errors == 0
    # one whole frame per notification (blocks and the firmware's status messages), within the 244-byte payload
    assert len(reader.chunks) == len(reader.messages) > n
    assert all(c.data.endswith(b"\x00") and c.data.count(0) == 1 for c in reader.chunks)
    assert max(len(c.data) for c in reader.chunks) <= protocol.BLE_PAYLOAD_BYTES
    t = [c.t_host for c in reader.chunks]
    assert t == sorted(t)
    assert reader.blocks[0].raw.shape == (protocol.samples_per_block(12), 12)  # the glove's 12 channels


def test_link_drop_raises_connection_lost_then_reconnect_resubscribes_and_counts_the_gap(private_system_bus):
    before, during, after = 300, 37, 300

    async def main():
        async with peripherals(private_system_bus) as (glove,):
            transport = open_transport("ble://")  # default: scan for protocol.SERVICE_UUID
            decoder = protocol.FrameDecoder()  # one decoder across the reconnect, like DeviceStream
            await transport.connect()
            first = Reader(transport, decoder)
            consumer = asyncio.create_task(first.consume())
            await glove.wait_subscribed()
            seq0 = glove.firmware.seq
            await glove.pump(before)
            await first.wait_blocks(before)

            glove.device.drop_link()  # supervision timeout: the glove walked out of range
            lost = await consumer
            assert isinstance(lost, ConnectionLost)
            assert await glove.pump(during) == 0  # nobody subscribed: these blocks are gone
            assert glove.dropped_blocks == during

            glove.device.come_back()
            await transport.connect()  # what DeviceStream does on ConnectionLost: scan, connect, subscribe
            assert glove.subscribed  # subscriptions do not survive a disconnect; connect() made a new one
            second = Reader(transport, decoder)
            consumer = asyncio.create_task(second.consume())
            await glove.pump(after)
            await second.wait_blocks(after)
            await transport.close()
            assert await consumer is None
            return first, second, transport, glove, seq0

    first, second, transport, glove, seq0 = run(main())
    assert relative([b.seq for b in first.blocks], seq0) == list(range(before))
    assert relative([b.seq for b in second.blocks], seq0) == list(range(before + during, before + during + after))
    stats = second.decoder.stats
    assert (stats.gaps, stats.lost_blocks) == (1, during)
    assert transport.connections == glove.device.connections == 2


def test_send_writes_the_command_characteristic_and_the_device_answers(private_system_bus):
    async def main():
        async with peripherals(private_system_bus) as (glove,):
            async with open_transport("ble://name=edgehar-glove?scan_s=5") as transport:
                reader = Reader(transport)
                consumer = asyncio.create_task(reader.consume())
                await glove.wait_subscribed()
                await transport.send(protocol.SEND_DESCRIPTOR_FRAME)
                while not any(isinstance(m, protocol.DeviceDescriptor) for m in reader.messages):
                    reader.arrived.clear()
                    await reader.arrived.wait()
            await consumer
            return reader, glove

    reader, glove = run(main())
    assert glove.firmware.stats.commands == 1
    (descriptor,) = [m for m in reader.messages if isinstance(m, protocol.DeviceDescriptor)]
    assert descriptor == glove.firmware.descriptor and len(descriptor.channels) == 12
    assert len(protocol.encode_frame(descriptor)) > protocol.BLE_PAYLOAD_BYTES  # it spanned notifications


@pytest.mark.parametrize("selector", ["address", "name"])
def test_scan_selects_by_address_and_by_name(private_system_bus, selector):
    async def main():
        async with peripherals(private_system_bus, ("glove", "imu")) as (glove, imu):
            url = f"ble://{imu.address.lower()}" if selector == "address" else f"ble://name={imu.name}"
            async with open_transport(url + "?scan_s=5") as transport:
                await imu.wait_subscribed()
                return transport.device.address, transport.device.name, glove.subscribed, imu.address

    address, name, glove_subscribed, imu_address = run(main())
    assert (address, name) == (imu_address, "edgehar-imu")
    assert not glove_subscribed


def test_unknown_name_fails_listing_what_the_scan_found(private_system_bus):
    async def main():
        async with peripherals(private_system_bus) as (glove,):
            transport = open_transport("ble://name=Nope?scan_s=0.3")
            with pytest.raises(DeviceNotFoundError) as err:
                await transport.connect()
            return err.value, glove

    err, glove = run(main())
    assert err.url == "ble://name=Nope?scan_s=0.3"
    assert len(err.found) == 1 and err.found[0].startswith(f"edgehar-glove ({glove.address}")
    assert "'Nope'" in str(err) and "edgehar-glove" in str(err)
    assert glove.device.connections == 0


def test_a_bus_without_bluez_is_reported_as_such(private_system_bus):
    async def main():
        with pytest.raises(TransportError, match=r"BlueZ \(org.bluez\) is not on the D-Bus system bus"):
            await open_transport("ble://name=Glove?scan_s=0.2").connect()

    run(main())


@pytest.mark.parametrize("url, fragment", [
    ("ble://12:34", "not a Bluetooth address"),
    ("ble://colour=red", "expected ble://"),
    ("ble://service=1234", "not a 128-bit UUID"),
    ("ble://name=Glove?scan_s=0", "scan_s"),
    ("ble://name=Glove?timeout=3", "unknown option"),
])
def test_bad_urls_fail_before_any_bluetooth(url, fragment):
    with pytest.raises(TransportError, match=fragment):
        open_transport(url)


def test_import_and_construction_need_no_bluetooth_stack():
    code = ("import sys; from edgehar.firmware_bridge.transport import open_transport; "
            "t = open_transport('ble://name=Glove'); "
            "assert not any(m == 'bleak' or m.startswith('bleak.') for m in sys.modules), 'bleak imported'")
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/socket")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_background_simulation_serves_a_process_level_demo(monkeypatch):
    """BleSimulation (what an in-process `--transport ble` demo uses): real-rate streaming from a thread."""
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    with BleSimulation("glove", speed=20.0) as sim:
        assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == sim.bus.address

        async def main():
            async with open_transport(sim.urls["glove"] + "?scan_s=5") as transport:
                reader = Reader(transport)
                consumer = asyncio.create_task(reader.consume())
                await reader.wait_blocks(20)
            await consumer
            return reader

        reader = run(main())
    assert "DBUS_SYSTEM_BUS_ADDRESS" not in os.environ
    seqs = [b.seq for b in reader.blocks]
    assert relative(seqs, seqs[0]) == list(range(len(seqs)))


def test_device_hub_rides_out_a_ble_link_drop(monkeypatch):
    """The in-process demo path: DeviceHub (its own loop/thread) on BLE to a BleSimulation
    (another thread); the peripheral disappears for 5 s, the stream reconnects by itself,
    samples resume and the outage is in health."""
    from edgehar.firmware_bridge.device import DeviceHub
    from edgehar.firmware_bridge.health import CONNECTED

    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    received = []

    def sink(name, t_host, values):
        received.append((name, t_host, values))

    def wait(cond, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    with BleSimulation("glove", speed=4.0) as sim:
        with DeviceHub({"glove": sim.urls["glove"] + "?scan_s=5"}, sink, clock=sim.clock) as hub:
            wait(lambda: len(received) >= 10)
            refused_before = sim.peripherals["glove"].dropped_blocks  # made before the first subscription
            sim.drop_link("glove")
            wait(lambda: hub.health()["glove"].outages == 1)
            t_seen_down = sim.clock()
            n_down = len(received)
            time.sleep(5.0 / 4.0)  # the peripheral is gone for 5 s of its (4x) clock
            t_back = sim.clock()
            sim.come_back("glove")
            wait(lambda: hub.health()["glove"].state == CONNECTED and len(received) >= n_down + 10)
            health = hub.health()["glove"]
            dropped = sim.peripherals["glove"].dropped_blocks - refused_before  # before the hub stops listening
    assert health.outages == 1 and health.device.startswith("glove")
    assert health.outage_s >= t_back - t_seen_down - 1e-3 >= 4.9  # the gap is in health, on the hub's clock
    assert sim.peripherals["glove"].device.connections == 2
    # the blocks the link refused while down show up as lost, across the reconnect
    assert health.lost_blocks == dropped > 0 and health.gaps == 1
    assert all(v.shape[1] == 12 for _, _, v in received)
    t = np.concatenate([t for _, t, _ in received])
    assert np.all(np.diff(t) > 0)  # sample times stay ordered across the reconnect
