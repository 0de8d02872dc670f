"""`sim://glove` / `sim://imu`: simulated firmware in-process, its bytes in real time.

Options: drift_ppm, offset_s (device clock), loss, corrupt (per-block probabilities),
seed, subject (the simulated person), block (samples per block), format
(binary|csv), speed (x real time; != 1 means arrival times do not pace the samples,
so `realtime` is False and the device layer keeps the device's own spacing).
The same `SimulatedFirmware` and `FirmwarePlayer` back `edgehar simulate --serial`;
here the bytes go into a queue instead of a pty.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..datasheet import STREAM_SPECS
from ...firmware_bridge.transport import Chunk, DeviceNotFoundError, DeviceURL, Transport, TransportError

_END = object()


class SimTransport(Transport):
    """A simulated glove or IMU, played from its own simulated world."""

    def __init__(self, url: DeviceURL):
        super().__init__(url)
        self.kind = url.target.strip("/")
        if self.kind not in STREAM_SPECS:
            raise DeviceNotFoundError(url.url, f"no simulated device {self.kind!r}", sorted(STREAM_SPECS))
        known = {"drift_ppm", "offset_s", "loss", "corrupt", "seed", "subject", "block", "format", "speed", "rate"}
        unknown = sorted(set(url.options) - known)
        if unknown:
            raise TransportError(url.url, f"unknown option(s) {unknown}; known: {sorted(known)}")
        for p in ("loss", "corrupt"):
            if not 0 <= url.number(p, 0.0) <= 1:
                raise TransportError(url.url, f"{p} must be a probability in [0, 1]")
        self.speed = url.number("speed", 1.0)
        if self.speed <= 0:
            raise TransportError(url.url, f"speed={self.speed:g} must be > 0")
        self.realtime = self.speed == 1.0
        self._player = None
        self.firmware = None
        self._queue: asyncio.Queue | None = None

    async def connect(self) -> None:
        from .firmware import FirmwarePlayer, SimulatedFirmware

        if self._player is not None:
            return
        u = self.url
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        self._queue = queue
        clock = self.clock

        def write(data: bytes) -> bool:  # firmware thread: timestamp and enqueue
            try:
                loop.call_soon_threadsafe(queue.put_nowait, Chunk(clock(), data))
            except RuntimeError:  # loop closed
                return False
            return True

        seed = int(u.number("seed", 0))
        drift = u.options.get("drift_ppm")
        offset = u.options.get("offset_s")
        self.firmware = SimulatedFirmware(
            self.kind, write, seed=seed,
            drift_ppm=None if drift is None else u.number("drift_ppm", 0.0),
            offset_s=None if offset is None else u.number("offset_s", 0.0),
            loss=u.number("loss", 0.0), corrupt=u.number("corrupt", 0.0),
            block_samples=int(u.number("block", 0)) or None,
            fmt=u.option("format", "binary", allowed=("binary", "csv")),
        )
        self._player = FirmwarePlayer([self.firmware], subject=int(u.number("subject", 0)), seed=seed, speed=self.speed)
        self._player.start()

    async def chunks(self) -> AsyncIterator[Chunk]:
        if self._queue is None:
            raise TransportError(self.url.url, "not connected; call connect() first")
        while True:
            # asyncio.wait, not wait_for: before Python 3.12, wait_for swallows a cancellation
            # that arrives as the queue hands over an item (CPython gh-86296), and the
            # stream then never stops (DeviceHub.stop timed out)
            getter = asyncio.ensure_future(self._queue.get())
            try:
                await asyncio.wait({getter}, timeout=1.0)
            finally:
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                player = self._player
                if player is not None and player.error is not None:
                    raise TransportError(self.url.url, f"the simulated device crashed: {player.error!r}") from player.error
                continue
            item = getter.result()
            if item is _END:
                return
            yield item

    async def send(self, data: bytes) -> None:
        if self.firmware is not None:
            self.firmware.receive(data)

    async def close(self) -> None:
        player, self._player = self._player, None
        if player is not None:
            await asyncio.get_running_loop().run_in_executor(None, player.stop)
            self._queue.put_nowait(_END)
