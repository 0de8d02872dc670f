"""Simulated glove / IMU firmware: the simulated world's samples as wire-protocol bytes.

`SimulatedFirmware` is what a real device's firmware does, minus the sensors: it
quantises samples to int16 with its descriptor's scales (from the datasheet in
simulator/datasheet.py), cuts them into blocks, stamps each block with its own drifting u32
microsecond counter, numbers them, frames them (protocol.encode_frame) and writes the
bytes somewhere. It answers SEND_DESCRIPTOR / SEND_STATUS, sends a DeviceStatus with a
slowly falling battery every `status_every_s`, and can lose blocks (seq still
advances) or corrupt them (one flipped byte: the CRC catches it).

A `BlockPlayer` (player.py) drives it: the player cuts a simulated world's
stream into the firmware's blocks and calls `emit_block` when a block's last sample
exists on the player's clock. `PtyFirmware` couples a firmware to a pseudo-terminal so
the host reads it through `serial://PATH`; `pty_devices` makes the demo rig's ones.
`FirmwarePlayer` plays a fresh world through firmwares in (optionally accelerated)
real time; `serve_serial()` puts one on a pty (`edgehar simulate glove --serial`).

Time: the firmware's device clock is
    device_s(t) = offset_s + (1 + drift_ppm * 1e-6) * t        (t = host seconds)
wrapped to u32 µs. A block's counter value is taken at its first sample; the other
samples are at 1/rate device seconds apart, so their true host times are
t_first + i / (rate * (1 + drift)). `history` keeps those true times for tests and
benchmarks.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...firmware_bridge.protocol import (
    DeviceDescriptor,
    DeviceStatus,
    FLAG_OVERFLOW,
    FrameDecoder,
    HostCommand,
    MessageType,
    SampleBlock,
    cobs_encode,
    crc16,
    descriptor_from_channels,
    encode_frame,
    encode_message,
    samples_per_block,
)
from ..datasheet import STREAM_RATES, STREAM_SPECS
from ..world import SimulatedWorld, make_subject
from .player import BlockPlayer

FIRMWARE_VERSION = "sim-1.0.0"
U32 = 1 << 32
BATTERY_DRAIN_PCT_PER_H = 8.0  # a glove lasts ~12 h


def sim_descriptor(kind: str, device_id: str = "") -> DeviceDescriptor:
    """The descriptor of a simulated device, from its datasheet (names, units, ranges -> int16 scales)."""
    if kind not in STREAM_SPECS:
        raise ValueError(f"no simulated sensor device {kind!r}; known: {sorted(STREAM_SPECS)}")
    specs = STREAM_SPECS[kind]
    return descriptor_from_channels(
        kind, FIRMWARE_VERSION, STREAM_RATES[kind], [c.name for c in specs], [c.unit for c in specs],
        [(c.lo, c.hi) for c in specs], device_id=device_id,
    )


@dataclass
class SentBlock:
    """What the firmware sent (or meant to): the ground truth for tests and benchmarks."""

    seq: int
    t_true: np.ndarray  # (n,) host seconds the samples were really taken
    t_device_us: int  # u32 counter of the first sample
    values: np.ndarray  # (n, C) float32 physical values after int16 quantisation
    fate: str  # "sent", "lost" (dropped by `loss`), "corrupt" (one byte flipped), "overflow" (link full)
    t_written: float = 0.0  # host seconds the bytes were handed to the link


@dataclass
class FirmwareStats:
    blocks: int = 0  # blocks cut (seq advanced)
    sent: int = 0  # written intact
    lost: int = 0  # dropped on purpose (`loss`)
    corrupt: int = 0  # written with one byte flipped (`corrupt`)
    overflow: int = 0  # the link refused the bytes (nobody reading, buffer full)
    descriptors: int = 0
    statuses: int = 0
    commands: int = 0  # host commands received


class SimulatedFirmware:
    """One simulated device ("glove" or "imu") writing wire frames (or CSV lines) to `write`.

    `write(bytes) -> bool | None` returns False when the link could not take the bytes
    (counted as overflow); anything else counts as written.
    """

    def __init__(
        self,
        kind: str,
        write: Callable[[bytes], object],
        *,
        seed: int = 0,
        drift_ppm: float | None = None,  # None: random in ±80 ppm
        offset_s: float | None = None,  # device counter at host t = 0; None: random over the u32 range
        loss: float = 0.0,  # probability a block is dropped (seq still advances)
        corrupt: float = 0.0,  # probability a block is written with one byte flipped
        block_samples: int | None = None,  # None: as many as fit one BLE notification
        status_every_s: float = 10.0,  # host seconds between DeviceStatus messages
        battery_pct: float | None = None,  # start charge; None: random 60..100
        fmt: str = "binary",  # "binary" (wire protocol) or "csv" (text lines: ms timestamp, values)
        device_id: str | None = None,
        history: int | None = None,  # keep the last `history` SentBlocks (None: keep none)
        clock: Callable[[], float] = time.monotonic,  # host clock for t_written (a player's, if faster)
    ):
        if fmt not in ("binary", "csv"):
            raise ValueError(f"fmt must be 'binary' or 'csv', got {fmt!r}")
        rng = np.random.default_rng([seed, 0xF1F0, sum(map(ord, kind))])
        self.kind = kind
        self.fmt = fmt
        self.device_id = device_id if device_id is not None else f"SIM-{kind.upper()}-{seed:04d}"
        self.descriptor = sim_descriptor(kind, self.device_id)
        self.rate_hz = float(self.descriptor.rate_hz)
        self._scales = np.asarray(self.descriptor.scales, np.float64)
        self.block_samples = block_samples or samples_per_block(len(self.descriptor.channels))
        self.drift = (float(rng.uniform(-80, 80)) if drift_ppm is None else float(drift_ppm)) * 1e-6
        self.offset_s = float(rng.uniform(0, U32 * 1e-6)) if offset_s is None else float(offset_s)
        self.loss, self.corrupt = float(loss), float(corrupt)
        self.status_every_s = status_every_s
        self.battery = float(rng.uniform(60, 100)) if battery_pct is None else float(battery_pct)
        self.seq = int(rng.integers(0, 1 << 16))
        self.stats = FirmwareStats()
        self.history: deque[SentBlock] | None = deque(maxlen=history) if history else None
        self._write = write
        self.clock = clock
        self._rng = rng
        self._commands = FrameDecoder()
        self._last_status: float | None = None
        self._last_t: float | None = None
        self._overflowed = False
        self._lock = threading.Lock()  # emit_block() and receive() may come from different threads

    # -- clock -----------------------------------------------------------------------------
    def device_us(self, t_host: float) -> int:
        """The u32 µs counter at host time t_host."""
        return int(np.floor((self.offset_s + (1.0 + self.drift) * t_host) * 1e6)) % U32

    # -- host -> device --------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes from the host (the back channel): answers SEND_DESCRIPTOR and SEND_STATUS."""
        for msg in self._commands.feed(data):
            if isinstance(msg, HostCommand):
                self.stats.commands += 1
                if msg.command == MessageType.SEND_DESCRIPTOR:
                    self.send_descriptor()
                elif msg.command == MessageType.SEND_STATUS:
                    self.send_status()

    # -- device -> host --------------------------------------------------------------------
    def boot(self) -> None:
        """What a device sends after power-up: a delimiter, then its descriptor."""
        if self.fmt == "binary":
            self._emit(b"\x00")
        self.send_descriptor()

    def send_descriptor(self) -> None:
        if self.fmt != "binary":
            return
        with self._lock:
            self.stats.descriptors += 1
            self._emit(encode_frame(self.descriptor))

    def send_status(self, t_host: float | None = None) -> None:
        if self.fmt != "binary":
            return
        with self._lock:
            self._status(t_host if t_host is not None else (self._last_t or 0.0))

    def _status(self, t: float) -> None:
        if self._last_status is not None:
            self.battery = max(0.0, self.battery - BATTERY_DRAIN_PCT_PER_H * (t - self._last_status) / 3600)
        self._last_status = t
        self.stats.statuses += 1
        flags = FLAG_OVERFLOW if self._overflowed else 0
        self._overflowed = False
        self._emit(encode_frame(DeviceStatus(int(round(self.battery)), flags)))

    def block_due(self, timestamps: np.ndarray) -> float:
        """Host time the last sample of a block starting at timestamps[0] is really taken."""
        return float(timestamps[0]) + (len(timestamps) - 1) / (self.rate_hz * (1.0 + self.drift))

    def emit_block(self, timestamps: np.ndarray, values: np.ndarray) -> SentBlock:
        """Cut one block from samples taken at host times `timestamps` (n,) and write it."""
        with self._lock:
            t0 = float(timestamps[0])
            n = len(timestamps)
            t_us = self.device_us(t0)
            true = t0 + np.arange(n) / (self.rate_hz * (1.0 + self.drift))
            raw = np.clip(np.rint(np.asarray(values, np.float64) / self._scales), -32767, 32767).astype(np.int16)
            seq = self.seq
            self.seq = (self.seq + 1) % (1 << 16)
            self.stats.blocks += 1
            fate = "sent"
            if self.loss and self._rng.random() < self.loss:
                fate = "lost"
            elif self.fmt == "binary":
                payload = encode_message(SampleBlock(seq, t_us, raw))
                body = bytearray(payload + crc16(payload).to_bytes(2, "big"))
                if self.corrupt and self._rng.random() < self.corrupt:
                    i = int(self._rng.integers(0, len(body)))
                    body[i] ^= int(self._rng.integers(1, 256))  # one byte, before COBS: the CRC always sees it
                    fate = "corrupt"
                if not self._emit(cobs_encode(bytes(body)) + b"\x00"):
                    fate = "overflow"
            else:
                lines = "".join(
                    f"{((t_us + round(i * 1e6 / self.rate_hz)) % U32) / 1000:.3f},"
                    + ",".join(f"{x:.6g}" for x in row) + "\n"
                    for i, row in enumerate(raw * self._scales)
                )
                if not self._emit(lines.encode()):
                    fate = "overflow"
            setattr(self.stats, fate, getattr(self.stats, fate) + 1)
            block = SentBlock(seq, true, t_us, (raw * self._scales).astype(np.float32), fate, self.clock())
            if self.history is not None:
                self.history.append(block)
            self._last_t = float(timestamps[-1])
            if self.fmt == "binary" and (self._last_status is None or self._last_t - self._last_status >= self.status_every_s):
                self._status(self._last_t)
            return block

    def _emit(self, data: bytes) -> bool:
        ok = self._write(data) is not False
        if not ok:
            self._overflowed = True
        return ok


# --------------------------------------------------------------------------- pseudo-terminals


class PtyPort:
    """A pseudo-terminal standing in for a USB serial device; the host opens `path`.

    The master side is ours: `write()` never blocks (bytes the host does not read fill
    the pty buffer, then writes are refused and counted by the firmware as overflow);
    `on_receive(bytes)` gets what the host writes, from a small reader thread. `link`
    (optional) is a symlink kept pointing at the current slave, so a test can unplug
    (`close()`) and replug (`reopen()`) a device under one stable path.
    """

    def __init__(self, on_receive: Callable[[bytes], None] | None = None, link: str | os.PathLike | None = None):
        self.on_receive = on_receive
        self.link = Path(link) if link is not None else None
        self._master = -1
        self._slave = -1
        self.slave_path = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wlock = threading.Lock()
        self.reopen()

    @property
    def path(self) -> str:
        """What the host opens: the stable link if there is one, else the slave device."""
        return str(self.link) if self.link is not None else self.slave_path

    def reopen(self) -> None:
        """(Re)create the pty ("plug the device in"); re-points `link`."""
        self.close()
        master, slave = os.openpty()
        tty.setraw(slave)  # binary-safe: no echo, no CR/LF translation, no signals
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.slave_path)
            os.replace(tmp, self.link)
        self._stop = threading.Event()
        if self.on_receive is not None:
            self._thread = threading.Thread(target=self._read_loop, args=(master, self._stop), name="pty-firmware-rx", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Close the pty ("unplug"): the host's reads fail; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
            self._thread = None
        with self._wlock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1
        if self.link is not None and self.link.is_symlink():
            self.link.unlink(missing_ok=True)

    def write(self, data: bytes) -> bool:
        """Write all of `data` or nothing useful: False when unplugged or the buffer is full."""
        with self._wlock:
            if self._master < 0:
                return False
            view = memoryview(data)
            deadline = None
            while view:
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    # a partial frame already went out; finish it briefly, else give up (the host resyncs)
                    if len(view) == len(data):
                        return False
                    deadline = deadline or time.monotonic() + 0.05
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.0005)
                except OSError:
                    return False
            return True

    def _read_loop(self, fd: int, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(fd, 4096)
            except (OSError, ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                return
            if data and self.on_receive is not None:
                self.on_receive(data)

    def __enter__(self) -> "PtyPort":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PtyFirmware:
    """A simulated device on a pty: firmware + port, wired both ways.

        dev = PtyFirmware("glove", seed=0)       # dev.path -> "/dev/pts/N" for serial://
        dev.boot()                               # descriptor now (a host may connect later)
        ... a BlockPlayer plays the world into dev.firmware
        dev.close()
    """

    def __init__(self, kind: str, link: str | os.PathLike | None = None, **firmware_options):
        self.firmware = SimulatedFirmware(kind, lambda data: self.port.write(data), **firmware_options)
        self.port = PtyPort(on_receive=self.firmware.receive, link=link)

    @property
    def path(self) -> str:
        return self.port.path

    def boot(self) -> None:
        self.firmware.boot()

    def close(self) -> None:
        self.port.close()


def pty_devices(kinds: Sequence[str] = ("glove", "imu"), seed: int = 0, link_dir: str | os.PathLike | None = None,
                **firmware_options) -> dict[str, PtyFirmware]:
    """One booted PtyFirmware per kind (seeds seed, seed+1, ...): the demo rig's simulated
    serial devices. With `link_dir`, each is reached through the stable link
    `link_dir/KIND`, so it can be unplugged (`port.close()`) and replugged under one path."""
    devices = {}
    for i, kind in enumerate(kinds):
        link = None if link_dir is None else Path(link_dir) / kind
        devices[kind] = PtyFirmware(kind, link=link, seed=seed + i, **firmware_options)
        devices[kind].boot()
    return devices


# --------------------------------------------------------------------------- standalone player


class FirmwarePlayer(BlockPlayer):
    """A fresh simulated world (person `subject`) played through firmwares in real time (x `speed`).

    The firmwares stamp what they write with the player's clock (accelerated when
    speed > 1, which the host side must then use too) and boot when it starts.
    """

    def __init__(self, firmwares: Sequence[SimulatedFirmware], *, subject: int = 0, seed: int = 0, speed: float = 1.0):
        super().__init__(SimulatedWorld(make_subject(subject, seed=seed), seed=seed), firmwares, speed=speed)
        for fw in firmwares:
            fw.clock = self.clock

    def start(self) -> float:
        for fw in self.sinks:
            fw.boot()
        return super().start()


def serve_serial(
    kind: str,
    *,
    seed: int = 0,
    subject: int = 0,
    link: str | os.PathLike | None = None,
    on_ready: Callable[[str], None] | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    **firmware_options,
) -> FirmwareStats:
    """Run one simulated device on a new pty until `stop` is set, `seconds` pass or Ctrl-C.

    Backs `edgehar simulate glove --serial`: `on_ready(path)` is called with the port a
    host should open (`serial://PATH`) once the device is streaming. firmware_options go
    to SimulatedFirmware (drift_ppm, offset_s, loss, corrupt, fmt, block_samples...).
    Returns the firmware's counters.
    """
    device = PtyFirmware(kind, link=link, seed=seed, **firmware_options)
    port, firmware = device.port, device.firmware
    player = FirmwarePlayer([firmware], subject=subject, seed=seed)
    stop = stop or threading.Event()
    try:
        player.start()
        if on_ready is not None:
            on_ready(port.path)
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stop.is_set() and player.error is None:
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                break
            stop.wait(left)
    except KeyboardInterrupt:
        pass
    finally:
        player.stop()
        port.close()
    if player.error is not None:
        raise player.error
    return firmware.stats
