"""A simulated glove / wrist IMU as a BLE peripheral on the emulated BlueZ.

The peripheral is `firmware.SimulatedFirmware` (the same firmware the serial sim
runs) behind a GATT server: it advertises protocol.SERVICE_UUID as `edgehar-glove` /
`edgehar-imu`, notifies the data characteristic with one encoded SampleBlock frame per
notification (blocks are sized to the 244-byte payload of a 247-byte ATT MTU; a longer
frame such as a 12-channel descriptor goes out in consecutive payload-sized
notifications, which the host's stream decoder reassembles), and hands whatever the
host writes to the command characteristic to the firmware (SEND_DESCRIPTOR and
SEND_STATUS are answered on the data characteristic).

Like real firmware it samples on its own clock whether or not anyone listens: what it
makes while no central is subscribed (before the first connection, link down) is
refused by the link and counted (`firmware.stats.overflow`), so after a reconnect the
host sees a sequence gap of exactly that many blocks.

Three ways to run it:

* `serve_ble("glove", on_ready=print)` blocks, for `edgehar simulate glove --ble`:
  a private bus, a FakeBlueZ, the peripheral(s) fed by a `FirmwarePlayer` playing one
  simulated world in real time; on_ready gets a `BleSimInfo` whose str() says what a
  second shell must export (DBUS_SYSTEM_BUS_ADDRESS=...) and which URL to open.
* `BleSimulation(("glove", "imu"))`, the same in a background thread of this process,
  pointing this process's DBUS_SYSTEM_BUS_ADDRESS at it (restored on exit): an
  in-process `--transport ble` demo. With `player=False` the demo rig plays its own
  world into the firmwares (`sim.firmwares`) with its BlockPlayer.
* `BlePeripheral(bluez, "glove")` on a FakeBlueZ you run (tests): `await p.pump(n)`
  makes n blocks as fast as the bus takes them.
"""

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...firmware_bridge import protocol
from .bluez import CharSpec, FakeBlueZ, FakeDevice, PrivateBus, ServiceSpec
from ..datasheet import STREAM_SPECS
from .firmware import FirmwarePlayer, SimulatedFirmware

log = logging.getLogger(__name__)

DEFAULT_ADDRESSES = {"glove": "C0:DE:4A:00:00:01", "imu": "C0:DE:4A:00:00:02"}  # random static addresses
MANUFACTURER_ID = 0xFFFF  # the "no company" test id; the payload names the kind
DEFAULT_MTU = protocol.BLE_PAYLOAD_BYTES + 3


def default_name(kind: str) -> str:
    return f"edgehar-{kind}"


@dataclass(frozen=True)
class PeripheralInfo:
    """How a central finds one simulated peripheral."""

    kind: str
    name: str
    address: str

    @property
    def url(self) -> str:
        return f"ble://name={self.name}"


class BlePeripheral:
    """One simulated device on a running FakeBlueZ. Construct it inside the FakeBlueZ's loop.

    `firmware` is its SimulatedFirmware (options via **firmware_options: seed, drift_ppm,
    loss, corrupt, history...); whatever thread drives the firmware, `write()` hands the
    bytes to the loop, where they are notified in order, paced by the bus.
    """

    def __init__(self, bluez: FakeBlueZ, kind: str = "glove", *, name: str | None = None, address: str | None = None,
                 mtu: int = DEFAULT_MTU, **firmware_options):
        if kind not in STREAM_SPECS:
            raise ValueError(f"unknown device kind {kind!r}; expected one of {sorted(STREAM_SPECS)}")
        self.bluez = bluez
        self.kind = kind
        self.name = name or default_name(kind)
        self.address = (address or DEFAULT_ADDRESSES.get(kind) or "C0:DE:4A:00:00:FF").upper()
        n_channels = len(STREAM_SPECS[kind])
        firmware_options.setdefault("block_samples", protocol.samples_per_block(n_channels, mtu - 3))
        self.firmware = SimulatedFirmware(kind, self.write, **firmware_options)
        self.device: FakeDevice = bluez.add_device(
            self.address, self.name,
            [ServiceSpec(protocol.SERVICE_UUID, [CharSpec(protocol.DATA_CHAR_UUID, ("notify",)),
                                                 CharSpec(protocol.COMMAND_CHAR_UUID, ("write", "write-without-response"))])],
            manufacturer_data={MANUFACTURER_ID: f"edgehar:{kind}".encode()}, mtu=mtu)
        self.device.on_write = self._on_write
        self.device.on_notify_state = self._on_notify_state
        self.notifications = 0  # notifications sent
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._link_up = False  # mirrors "a central is subscribed to data", readable from any thread
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sender = asyncio.create_task(self._send_loop())
        self._t_next = 0.0  # pump(): host time of the next synthetic sample
        self._phase = np.random.default_rng(0).uniform(0, 2 * math.pi, n_channels)

    @property
    def info(self) -> PeripheralInfo:
        return PeripheralInfo(self.kind, self.name, self.address)

    @property
    def subscribed(self) -> bool:
        return self.device.notifying(protocol.DATA_CHAR_UUID)

    @property
    def dropped_blocks(self) -> int:
        """Blocks the firmware made that the link refused (nobody subscribed)."""
        return self.firmware.stats.overflow

    async def close(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender

    # ---- firmware -> link ----------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """The firmware's link (any thread): False, and nothing sent, unless a central is subscribed."""
        if not self._link_up:
            return False
        if threading.get_ident() == self._loop_thread:
            self._enqueue(bytes(data))
        else:
            self._loop.call_soon_threadsafe(self._enqueue, bytes(data))
        return True

    def _enqueue(self, data: bytes) -> None:
        self._idle.clear()
        self._outbox.put_nowait(data)

    async def _send_loop(self) -> None:
        size = self.device.mtu - 3
        while True:
            if self._outbox.empty():
                self._idle.set()
            frame = await self._outbox.get()
            await self.bluez.drain()  # pace on the bus, as a connection interval paces a radio
            for i in range(0, len(frame), size):  # one notification unless the frame is longer
                if not self.device.notify(protocol.DATA_CHAR_UUID, frame[i:i + size]):
                    break  # the link went down with this frame in flight: lost
                self.notifications += 1

    async def flushed(self) -> None:
        """Wait until everything the firmware wrote has been notified (or lost)."""
        await asyncio.sleep(0)
        await self._idle.wait()

    # ---- link -> firmware ----------------------------------------------------------

    def _on_write(self, uuid: str, value: bytes) -> None:
        if uuid == protocol.COMMAND_CHAR_UUID:
            self._loop.call_soon(self.firmware.receive, value)  # answer after the write is acknowledged

    def _on_notify_state(self, uuid: str, on: bool) -> None:
        if uuid == protocol.DATA_CHAR_UUID:
            self._link_up = on

    async def wait_subscribed(self, timeout_s: float | None = 10.0) -> None:
        await self.device.wait_for(lambda d: d.notifying(protocol.DATA_CHAR_UUID), timeout_s)

    # ---- driving the firmware directly (tests) --------------------------------------

    async def pump(self, n_blocks: int) -> int:
        """Make n blocks of smooth synthetic samples, as fast as the bus takes them.

        Returns how many the link accepted (the others are counted as dropped).
        """
        fw = self.firmware
        k, rate = fw.block_samples, fw.rate_hz
        peak = np.array([max(abs(c.lo), abs(c.hi)) for c in STREAM_SPECS[self.kind]], np.float32)
        sent0 = fw.stats.sent
        for _ in range(n_blocks):
            t = self._t_next + np.arange(k) / rate  # (k,) s
            values = 0.4 * peak * np.sin(2 * math.pi * 0.5 * t[:, None] + self._phase)  # (k, C)
            fw.emit_block(t, values.astype(np.float32))
            self._t_next = float(t[-1]) + 1.0 / rate
            await self.flushed()
        return fw.stats.sent - sent0


# --------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------


@dataclass
class BleSimInfo:
    """What `serve_ble` / `BleSimulation` tell their caller once the peripherals advertise."""

    bus_address: str
    peripherals: list[PeripheralInfo] = field(default_factory=list)

    @property
    def export_line(self) -> str:
        return f"export DBUS_SYSTEM_BUS_ADDRESS='{self.bus_address}'"

    def __str__(self) -> str:
        lines = ["emulated BlueZ on a private D-Bus bus; in the shell that runs the host side:",
                 f"  {self.export_line}"]
        lines += [f"  {p.kind}: {p.name} ({p.address})  ->  --{p.kind} {p.url}" for p in self.peripherals]
        return "\n".join(lines)


def _kinds(kind: str | Sequence[str]) -> list[str]:
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for k in kinds:
        if k not in STREAM_SPECS:
            raise ValueError(f"unknown device kind {k!r}; expected one of {sorted(STREAM_SPECS)}")
    return kinds


async def _serve(bus_address: str, kinds: list[str], *, speed: float, seed: int, subject: int, player: bool,
                 duration_s: float | None, on_ready: Callable[[BleSimInfo], None] | None,
                 on_started: Callable[[dict[str, BlePeripheral], FirmwarePlayer | None], None] | None = None,
                 **firmware_options) -> None:
    async with FakeBlueZ(bus_address) as bluez:
        peripherals = {k: BlePeripheral(bluez, k, seed=seed, **firmware_options) for k in kinds}
        play = FirmwarePlayer([p.firmware for p in peripherals.values()], subject=subject, seed=seed, speed=speed) \
            if player else None
        try:
            if play is not None:
                play.start()
            if on_started is not None:
                on_started(peripherals, play)
            if on_ready is not None:
                on_ready(BleSimInfo(bus_address, [p.info for p in peripherals.values()]))
            loop = asyncio.get_running_loop()
            deadline = None if duration_s is None else loop.time() + duration_s
            while deadline is None or loop.time() < deadline:
                if play is not None and play.error is not None:
                    raise play.error
                await asyncio.sleep(0.2 if deadline is None else min(0.2, max(0.0, deadline - loop.time())))
        finally:
            if play is not None:
                await asyncio.to_thread(play.stop)
            for p in peripherals.values():
                await p.close()


def serve_ble(kind: str | Sequence[str] = "glove", *, speed: float = 1.0, seed: int = 0, subject: int = 0,
              duration_s: float | None = None, on_ready: Callable[[BleSimInfo], None] | None = None,
              **firmware_options) -> None:
    """Run simulated BLE peripherals on a private bus until Ctrl-C / SIGTERM (or duration_s).

    Backs `edgehar simulate glove --ble`: print the BleSimInfo given to on_ready, it
    says what to export in the shell of the host side. firmware_options go to
    SimulatedFirmware (drift_ppm, loss, corrupt, ...).
    """
    kinds = _kinds(kind)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread: no handler
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await _serve(bus.address, kinds, speed=speed, seed=seed, subject=subject, player=True,
                         duration_s=duration_s, on_ready=on_ready, **firmware_options)

    with PrivateBus() as bus:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())


class BleSimulation:
    """Simulated BLE peripherals in a background thread of this process.

        with BleSimulation(("glove", "imu")) as sim:   # sets DBUS_SYSTEM_BUS_ADDRESS
            transport = open_transport(sim.urls["glove"])
            ...
            sim.drop_link("glove"); sim.come_back("glove")

    player=True plays their own simulated world in real time (x speed); player=False
    leaves the firmwares (`sim.firmwares`) to the caller's player.
    """

    def __init__(self, kind: str | Sequence[str] = "glove", *, speed: float = 1.0, seed: int = 0, subject: int = 0,
                 player: bool = True, set_env: bool = True, **firmware_options):
        self.kinds = _kinds(kind)
        self.options = dict(speed=speed, seed=seed, subject=subject, player=player, **firmware_options)
        self.set_env = set_env
        self.bus = PrivateBus()
        self.info: BleSimInfo | None = None
        self.peripherals: dict[str, BlePeripheral] = {}
        self.player: FirmwarePlayer | None = None  # with player=True: the world's clock is player.clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._old_env: str | None = None
        self._env_set = False

    @property
    def urls(self) -> dict[str, str]:
        return {p.kind: p.url for p in (self.info.peripherals if self.info else [])}

    def clock(self) -> float:
        """The simulated world's clock (accelerated when speed > 1); a host side must use it too."""
        return self.player.clock() if self.player is not None else time.monotonic()

    @property
    def firmwares(self) -> dict[str, SimulatedFirmware]:
        return {k: p.firmware for k, p in self.peripherals.items()}

    def start(self) -> "BleSimulation":
        address = self.bus.start()
        ready = threading.Event()

        def on_ready(info: BleSimInfo) -> None:
            self.info = info
            ready.set()

        def on_started(peripherals: dict[str, BlePeripheral], player: FirmwarePlayer | None) -> None:
            self.peripherals = peripherals
            self.player = player

        async def body() -> None:
            self._task = asyncio.current_task()
            await _serve(address, self.kinds, duration_s=None, on_ready=on_ready, on_started=on_started,
                         **self.options)

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(body())
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # reported by start()
                self._error = exc
                log.exception("BLE simulation failed")
            finally:
                ready.set()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="ble-sim", daemon=True)
        self._thread.start()
        if not ready.wait(15) or self._error is not None or self.info is None:
            error = self._error
            self.stop()
            raise RuntimeError(f"BLE simulation did not start: {error!r}")
        if self.set_env:
            self._old_env = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
            self._env_set = True
        return self

    def call(self, fn: Callable[[], object]) -> object:
        """Run fn() on the simulation's loop (thread-safe) and return its result."""
        assert self._loop is not None, "not started"

        async def wrapper() -> object:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def drop_link(self, kind: str, out_of_range: bool = True) -> None:
        """The device's link drops (supervision timeout); it stays unreachable until come_back()."""
        self.call(lambda: self.peripherals[kind].device.drop_link(out_of_range))

    def come_back(self, kind: str) -> None:
        self.call(lambda: self.peripherals[kind].device.come_back())

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.bus.stop()
        if self._env_set:
            self._env_set = False
            if self._old_env is not None:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self._old_env
            else:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)

    def __enter__(self) -> "BleSimulation":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
