"""`replay://SESSION_DIR?stream=glove&speed=1`: a recorded session played back as wire frames.

One sensor stream of a session folder (docs/session-format.md) is re-encoded exactly
as a device would send it: a DeviceDescriptor first (channel names and units from
meta.json, int16 scales from each channel's recorded peak), then SampleBlocks whose
u32 µs counters come from the recorded times. Blocks are released when their last
sample's time has come, `speed` x real time; `speed=0` releases them as fast as the
consumer takes them. Replays at speed != 1 do not pace like the device did, so the
transport says `realtime = False` and the device layer keeps the recorded spacing
from the first block instead of fitting a clock.

Options: stream (default: the session's only sensor stream, else required),
speed (default 1), offset_s (device counter at the first sample, default 0; the
counter wraps at 2**32 µs like a device's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from ..protocol import (
    MessageType,
    FrameDecoder,
    HostCommand,
    SampleBlock,
    descriptor_from_channels,
    encode_frame,
    samples_per_block,
)
from ..session import SessionError, read_session
from ..transport import Chunk, DeviceNotFoundError, DeviceURL, Transport, TransportError

U32 = 1 << 32


class ReplayTransport(Transport):
    """Frames of one recorded sensor stream, paced like the recording (x speed)."""

    def __init__(self, url: DeviceURL):
        super().__init__(url)
        self.folder = Path(url.target)
        self.stream = url.option("stream")
        self.speed = url.number("speed", 1.0)
        if self.speed < 0:
            raise TransportError(url.url, f"speed={self.speed:g} must be >= 0 (0 = as fast as possible)")
        self.offset_us = int(round(url.number("offset_s", 0.0) * 1e6))
        self.realtime = self.speed == 1.0
        self._frames: list[tuple[float, bytes]] | None = None  # (recorded time of last sample, frame)
        self._descriptor_frame = b""
        self._commands = FrameDecoder()
        self._resend = asyncio.Event()
        self._closed = False

    async def connect(self) -> None:
        if self._frames is not None:
            return
        meta_streams = self._sensor_streams()
        if self.stream is None:
            if len(meta_streams) != 1:
                raise TransportError(self.url.url, f"say which stream to replay: ?stream=NAME, one of {meta_streams}")
            self.stream = meta_streams[0]
        if self.stream not in meta_streams:
            raise DeviceNotFoundError(self.url.url, f"session has no sensor stream {self.stream!r}", meta_streams)
        try:
            session = await asyncio.get_running_loop().run_in_executor(None, lambda: read_session(self.folder, streams=(self.stream,)))
        except SessionError as exc:
            raise TransportError(self.url.url, str(exc)) from None
        series = session.series[self.stream]
        info = session.meta["streams"][self.stream]
        values = np.asarray(series.values, np.float64)
        peaks = np.abs(values).max(axis=0) if len(values) else np.ones(values.shape[1])
        peaks = np.where(peaks > 0, peaks, 1.0)
        d = descriptor_from_channels(
            self.stream, "replay", float(info["rate_hz"]), series.channels, info.get("units", [""] * len(series.channels)),
            [(-p, p) for p in peaks], device_id=f"replay:{session.meta.get('session_id', self.folder.name)}",
        )
        self._descriptor_frame = encode_frame(d)
        scales = np.asarray(d.scales, np.float64)
        raw = np.clip(np.rint(values / scales), -32767, 32767).astype(np.int16)
        t = series.timestamps
        k = samples_per_block(len(series.channels))
        frames = []
        for j, i in enumerate(range(0, len(t), k)):
            t_us = (int(round((t[i] - t[0]) * 1e6)) + self.offset_us) % U32
            frames.append((float(t[min(i + k, len(t)) - 1]), encode_frame(SampleBlock(j % (1 << 16), t_us, raw[i : i + k]))))
        self._frames = frames

    def _sensor_streams(self) -> list[str]:
        import json

        try:
            meta = json.loads((self.folder / "meta.json").read_text())
            return [name for name, s in meta["streams"].items() if s.get("kind") == "sensor"]
        except FileNotFoundError:
            raise DeviceNotFoundError(self.url.url, f"no session folder {self.folder} (no meta.json)") from None
        except (ValueError, KeyError, AttributeError) as exc:
            raise TransportError(self.url.url, f"{self.folder / 'meta.json'} is not a session's meta.json ({exc})") from None

    async def chunks(self) -> AsyncIterator[Chunk]:
        if self._frames is None:
            raise TransportError(self.url.url, "not connected; call connect() first")
        clock = self.clock
        yield Chunk(clock(), self._descriptor_frame)
        if not self._frames:
            return
        t0 = self._frames[0][0]
        start = clock()
        for i, (t_rec, frame) in enumerate(self._frames):
            if self._closed:
                return
            if self._resend.is_set():
                self._resend.clear()
                yield Chunk(clock(), self._descriptor_frame)
            if self.speed > 0:
                wait = start + (t_rec - t0) / self.speed - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif i % 64 == 0:
                await asyncio.sleep(0)  # as fast as possible, but let the loop breathe
            yield Chunk(clock(), frame)

    async def send(self, data: bytes) -> None:
        for msg in self._commands.feed(data):
            if isinstance(msg, HostCommand) and msg.command == MessageType.SEND_DESCRIPTOR:
                self._resend.set()

    async def close(self) -> None:
        self._closed = True
