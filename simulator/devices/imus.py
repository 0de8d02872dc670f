"""Off-the-shelf IMUs as their makers document them: the devices the shipped profiles read.

Each model turns physical values into the bytes its maker's document specifies
(WitMotion's BLE 5.0 and WT901C serial protocols, the Nano 33 BLE Service sketch),
written here from those documents and NOT from the profile files, so a test that
decodes these bytes through a profile checks the profile against the document rather
than against itself. A model also makes the bad packets a real link shows (a cut
notification, a flipped byte under a checksum) and reports the values it sent exactly
as it quantized them, for a test to compare with what the host decoded.

    BleImu(bluez, WitMotionBle(), rate_hz=100, bad_every=25)   # on a FakeBlueZ (tests)
    SerialImu(WitMotionSerial(), rate_hz=100, link=path)         # on a pseudo-terminal
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .bluez import CharSpec, FakeBlueZ, FakeDevice, ServiceSpec
from .firmware import PtyPort

# (channel, unit) of the physical values every model below is fed, in this order
MOTION_CHANNELS = (("acc_x", "g"), ("acc_y", "g"), ("acc_z", "g"), ("gyro_x", "deg/s"), ("gyro_y", "deg/s"),
                   ("gyro_z", "deg/s"), ("roll", "deg"), ("pitch", "deg"), ("yaw", "deg"))


def motion(t: float) -> np.ndarray:
    """(9,) a wrist turning and swinging at time t: acceleration g, angular velocity deg/s, angles deg.
    The frequencies share no short period (100 s), so a value is never sent twice in a test."""
    w = 2 * math.pi * np.array([0.71, 1.13, 0.53, 0.97, 1.31, 0.61, 0.43, 0.83, 0.37])
    amp = np.array([1.5, 1.2, 0.8, 250.0, 400.0, 180.0, 60.0, 45.0, 170.0])
    bias = np.array([0.0, 0.0, 1.0, 0, 0, 0, 0, 0, 0])
    return bias + amp * np.sin(w * t + np.arange(9))


Notification = tuple[str, bytes]  # (source: BLE characteristic UUID, "" on serial; bytes)


class ImuModel:
    """One device's byte layout. `encode(values)` -> (values as sent, packets);
    `bad(values)` -> packets that break the layout; the values of a sample sent with
    bad packets never reach a correct host."""

    name: str  # what it advertises / how it is called
    channels: tuple[str, ...]  # of the values reported as sent

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, list[Notification]]:
        raise NotImplementedError

    def bad(self, values: np.ndarray) -> list[Notification]:
        raise NotImplementedError


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int64)


# WitMotion's documented scales (BLE 5.0 protocol and WT901C manual): raw / 32768 * range
WIT_ACC_G, WIT_GYRO_DPS, WIT_ANGLE_DEG = 16.0 / 32768, 2000.0 / 32768, 180.0 / 32768
WIT_SCALES = np.array([WIT_ACC_G] * 3 + [WIT_GYRO_DPS] * 3 + [WIT_ANGLE_DEG] * 3)


class WitMotionBle(ImuModel):
    """WT901BLECL / BWT901BLECL5.0: service FFE5, notify FFE4, write FFE9; one 20-byte
    0x55 0x61 packet per notification, 9 int16 little endian, no checksum."""

    name = "WT901BLE67"
    channels = tuple(c for c, _ in MOTION_CHANNELS)
    SERVICE = "0000ffe5-0000-1000-8000-00805f9a34fb"
    NOTIFY = "0000ffe4-0000-1000-8000-00805f9a34fb"
    WRITE = "0000ffe9-0000-1000-8000-00805f9a34fb"
    gatt = [ServiceSpec(SERVICE, [CharSpec(NOTIFY, ("notify",)), CharSpec(WRITE, ("write-without-response", "write"))])]

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, list[Notification]]:
        raw = _int16(values / WIT_SCALES)
        return raw * WIT_SCALES, [(self.NOTIFY, struct.pack("<BB9h", 0x55, 0x61, *raw))]

    def bad(self, values: np.ndarray) -> list[Notification]:
        good = self.encode(values)[1][0][1]
        # a notification cut short, then one of bytes that start no packet
        return [(self.NOTIFY, good[:13]), (self.NOTIFY, bytes(range(0xA0, 0xB4)))]


class WitMotionSerial(ImuModel):
    """WT901C: per sample 0x55 0x51 (acc + temperature), 0x55 0x52 (gyro + voltage), 0x55 0x53
    (angles + version), 11 bytes each, the last the low byte of the sum of the ten before."""

    name = "WT901C"
    channels = tuple(c for c, _ in MOTION_CHANNELS) + ("temperature",)
    TEMPERATURE_C = 23.45
    VOLTAGE_RAW = 412  # 0x52's fourth word (voltage, in 0.01 V)
    VERSION_RAW = 0x1234  # 0x53's fourth word

    @staticmethod
    def packet(flag: int, words: np.ndarray) -> bytes:
        body = struct.pack("<BB4h", 0x55, flag, *(int(w) for w in words))
        return body + bytes([sum(body) & 0xFF])

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, list[Notification]]:
        raw = _int16(values / WIT_SCALES)
        temp = int(round(self.TEMPERATURE_C * 100))
        data = (self.packet(0x51, [*raw[0:3], temp]) + self.packet(0x52, [*raw[3:6], self.VOLTAGE_RAW])
                + self.packet(0x53, [*raw[6:9], self.VERSION_RAW]))
        return np.append(raw * WIT_SCALES, temp / 100), [("", data)]

    def bad(self, values: np.ndarray) -> list[Notification]:
        data = bytearray(self.encode(values)[1][0][1])
        data[5] ^= 0x40  # a flipped bit in the acceleration packet: its SUM no longer adds up
        return [("", bytes(data))]


class Nano33Ble(ImuModel):
    """Nano 33 BLE Service sketch: service e905de3e-0000-..., acceleration on ...-3001-... and
    gyroscope on ...-3002-..., each notification 3 float32 little endian (g, deg/s)."""

    name = "Nano33BLESense-1A2B"
    channels = tuple(c for c, _ in MOTION_CHANNELS[:6])
    SERVICE = "e905de3e-0000-44de-92c4-bb6e04fb0212"
    ACC = "e905de3e-3001-44de-92c4-bb6e04fb0212"
    GYRO = "e905de3e-3002-44de-92c4-bb6e04fb0212"
    gatt = [ServiceSpec(SERVICE, [CharSpec("e905de3e-1001-44de-92c4-bb6e04fb0212", ("read",), struct.pack("<I", 1)),
                                  CharSpec(ACC, ("notify",)), CharSpec(GYRO, ("notify",))])]

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, list[Notification]]:
        sent = values[:6].astype(np.float32)
        return sent.astype(np.float64), [(self.ACC, struct.pack("<3f", *sent[:3])),
                                         (self.GYRO, struct.pack("<3f", *sent[3:]))]

    def bad(self, values: np.ndarray) -> list[Notification]:
        acc, gyro = self.encode(values)[1]
        return [(acc[0], acc[1][:10]), gyro]  # a cut acceleration value: that sample is incomplete


@dataclass
class SentLog:
    """What a device sent intact: (device seconds, values as quantized) per sample."""

    t: list[float] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    bad_samples: int = 0  # samples sent as bad packets

    def array(self) -> np.ndarray:
        return np.array(self.values)


class BleImu:
    """A model as a BLE peripheral on a running FakeBlueZ, streaming `motion` in real time.

    Construct inside the FakeBlueZ's loop; every `bad_every`-th sample goes out as the
    model's bad packets. While no central is subscribed the samples are lost, as on a
    real device; `device.drop_link()` / `device.come_back()` take it out of range and back.
    """

    def __init__(self, bluez: FakeBlueZ, model: ImuModel, rate_hz: float, *, address: str = "D4:5E:4A:00:00:01",
                 bad_every: int = 0):
        self.model, self.rate_hz, self.bad_every = model, float(rate_hz), bad_every
        self.device: FakeDevice = bluez.add_device(address, model.name, model.gatt)
        self.bluez = bluez
        self.sent = SentLog()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            await asyncio.sleep(max(0.0, t0 + k / self.rate_hz - loop.time()))
            t = k / self.rate_hz
            values = motion(t)
            if self.bad_every and k % self.bad_every == self.bad_every - 1:
                packets, sent = self.model.bad(values), None
            else:
                sent, packets = self.model.encode(values)
            delivered = True
            for char, data in packets:
                await self.bluez.drain()
                delivered = self.device.notify(char, data) and delivered
            if delivered and sent is not None:
                self.sent.t.append(t)
                self.sent.values.append(sent)
            elif delivered:
                self.sent.bad_samples += 1
            k += 1

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class SerialImu:
    """A model on a pseudo-terminal, streaming `motion` in real time from a thread.

    `path` is what serial:// opens (`link`, when given, is a stable symlink to it);
    `unplug()` / `replug()` close and recreate the pty under the same link.
    """

    def __init__(self, model: ImuModel, rate_hz: float, *, bad_every: int = 0, link: str | None = None):
        self.model, self.rate_hz, self.bad_every = model, float(rate_hz), bad_every
        self.port = PtyPort(link=link)
        self.sent = SentLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"imu-{model.name}", daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.port.path

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stop.wait(max(0.0, t0 + k / self.rate_hz - time.monotonic())):
            t = k / self.rate_hz
            values = motion(t)
            if self.bad_every and k % self.bad_every == self.bad_every - 1:
                if self.port.write(self.model.bad(values)[0][1]):
                    self.sent.bad_samples += 1
            else:
                sent, packets = self.model.encode(values)
                if self.port.write(packets[0][1]):
                    self.sent.t.append(t)
                    self.sent.values.append(sent)
            k += 1

    def unplug(self) -> None:
        self.port.close()

    def replug(self) -> None:
        self.port.reopen()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.port.close()
