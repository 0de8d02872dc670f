"""The device layer: URL -> transport -> decoder -> clock mapping -> sink(name, t_host, values).

`DeviceStream` runs one device on asyncio: it opens the transport chosen by the URL
(`open_transport`), feeds its chunks to the stream's framer, chosen once from the URL:
`_BinaryFramer` (format=binary, the default: a `FrameDecoder`, the device describes
itself when asked), `_CsvFramer` (format=csv: a `CsvLineDecoder`, the URL options
describe the device) or `_ProfileFramer` (profile=NAME: a `PacketDecoder`, the device
profile describes it, so the rest of the app sees it as it sees a wire-v1 device). It checks what the device says against what the
model expects, maps device time to host time with a `ClockMapper` (never arrival
time), and calls

    sink(name, t_host (n,) float64, values (n, C) float32)     # C in the expected order

The transport's reader only timestamps and enqueues; decoding happens here, in the
consumer. When the link drops (`ConnectionLost`) the stream is marked down and
reconnects with exponential backoff (capped at ~2 s), asks for the descriptor again
and keeps its clock fit if the same device answers. `HealthTracker` counts it all;
`DeviceStream.info()` says what the device described (channels, units, rate, fields).

`DeviceHub` runs several streams (glove + IMU, each with its own clock) on an asyncio
loop in a background thread for the synchronous app:

    hub = DeviceHub({"glove": "serial:///dev/ttyACM0", "imu": "ble://name=IMU"}, sink,
                    expect={s.name: s for s in manifest.streams})
    hub.start()          # raises DeviceNotFoundError / DescriptorMismatchError at once
    ... hub.health() -> {"glove": StreamHealth(...), ...}; hub.raise_if_failed()
    hub.stop()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .clock import ClockMapper, DeviceClock
from .csvlines import CsvLineDecoder
from .packets import PacketDecoder
from .profiles import load_profile
from .health import CONNECTED, DOWN, FAILED, RECONNECTING, HealthTracker, StreamHealth
from .protocol import SEND_DESCRIPTOR_FRAME, DeviceDescriptor, DeviceStatus, FrameDecoder, ProtocolError, SampleBlock
from .sink import Sink
from .transport import Chunk, ConnectionLost, DeviceURL, Transport, TransportError, open_transport
from ..errors import EdgeharError

RATE_TOLERANCE = 0.05  # a device's nominal rate may differ this much (relative) from the expected one
BACKOFF_FIRST_S = 0.05
BACKOFF_CAP_S = 2.0
DESCRIPTOR_RETRY_S = 1.0  # ask again this often while blocks arrive without a known descriptor
_DECODER_COUNTERS = ("frames", "lost_blocks", "gaps", "crc_errors", "resyncs", "malformed")


@dataclass(frozen=True)
class DeviceInfo:
    """What a device said about itself: its descriptor, or a CSV device's URL options."""

    channels: tuple[str, ...]
    units: tuple[str, ...]  # "" where unknown (CSV)
    rate_hz: float
    device: dict[str, str] = field(default_factory=dict)  # kind, firmware, device_id (when described), url


class DescriptorMismatchError(TransportError):
    """The device is not what the model expects (channels missing, other rate); not retried."""


class SinkError(EdgeharError):
    """The sink raised; the stream stops (the app's bug, not the device's)."""


def _expected(expect: Any) -> tuple[tuple[str, ...] | None, float | None]:
    """(channels, rate_hz) from a StreamSpec-like object or a dict; None where not given."""
    if expect is None:
        return None, None
    get = expect.get if isinstance(expect, Mapping) else lambda k, d=None: getattr(expect, k, d)
    channels = get("channels", None)
    rate = get("rate_hz", None)
    return (tuple(channels) if channels else None), (float(rate) if rate else None)


def check_device(url: str, device_channels: tuple[str, ...], device_rate: float, expect: Any, what: str = "device") -> None:
    """Raise DescriptorMismatchError unless every expected channel is present and the rate is within 5 %."""
    channels, rate = _expected(expect)
    problems = []
    if channels:
        missing = [c for c in channels if c not in device_channels]
        if missing:
            problems.append(f"missing channel(s) {missing}")
    if rate and abs(device_rate - rate) > RATE_TOLERANCE * rate:
        problems.append(f"rate {device_rate:g} Hz is not within {RATE_TOLERANCE:.0%} of {rate:g} Hz")
    if problems:
        raise DescriptorMismatchError(
            url, f"{what} sends {list(device_channels)} at {device_rate:g} Hz, but the model expects "
            f"{list(channels or device_channels)} at {rate or device_rate:g} Hz: {'; '.join(problems)}")


class DeviceStream:
    """One device: connect, decode, check, map time, deliver; reconnect when the link drops."""

    def __init__(
        self,
        name: str,
        url: str,
        sink: Sink,
        expect: Any = None,  # StreamSpec-like: .channels, .rate_hz (a manifest stream)
        clock: Callable[[], float] = time.monotonic,
        reconnect: bool = True,
        transport_factory: Callable[[str], Transport] = open_transport,
        clock_mapper: Callable[[], ClockMapper] = ClockMapper,
    ):
        self.name, self.url, self.sink, self.expect = name, url, sink, expect
        self.clock = clock
        self.reconnect = reconnect
        self._factory = transport_factory
        self._new_mapper = clock_mapper
        parsed = DeviceURL.parse(url)
        if "profile" in parsed.options and "format" in parsed.options:
            raise TransportError(url, "give format= or profile=, not both: a profile says how the bytes are framed")
        self.format = "profile" if "profile" in parsed.options else \
            parsed.option("format", "binary", allowed=("binary", "csv"))
        self.health = HealthTracker(name, url)
        self.mapper = clock_mapper()
        self._dclock = DeviceClock()
        self.descriptor: DeviceDescriptor | None = None
        self._last_arrival: float | None = None
        self._anchor: tuple[float, float] | None = None  # (device s, host s) for transports that do not pace
        self.ready = threading.Event()  # set once the device is connected and described
        self.error: BaseException | None = None
        framers = {"binary": _BinaryFramer, "csv": _CsvFramer, "profile": _ProfileFramer}
        self._framer: _Framer = framers[self.format](self, parsed)

    def info(self) -> DeviceInfo | None:
        """What the device described (channels, units, rate, device fields); None until it did."""
        return self._framer.info()

    # -- main loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Stream until cancelled, or a fatal error (raised; also kept in `self.error`)."""
        attempt = 0
        ever_connected = False
        try:
            while True:
                transport = self._factory(self.url)
                transport.clock = self.clock
                try:
                    await transport.connect()
                except TransportError as exc:
                    if not ever_connected or not self.reconnect:
                        raise
                    self.health.last_error = str(exc)
                    attempt += 1
                    await asyncio.sleep(min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** attempt))
                    continue
                attempt = 0
                ever_connected = True
                self._framer.new_connection()
                self._last_t_dev = self._pending_point = None  # a device that restarted may count from anywhere
                self.health.set_state(CONNECTED, self.clock())
                try:
                    await self._framer.greet(transport)
                    async for chunk in transport:
                        self._framer.feed(chunk, transport)
                        self._fold()
                        if self._want_descriptor:
                            await self._ask_descriptor(transport)
                        # A transport with data ready never suspends; yield once per chunk so a
                        # backlog cannot starve the other streams or stop()'s cancellation.
                        await asyncio.sleep(0)
                    lost = None  # the transport ended by itself (a replay finished)
                except ConnectionLost as exc:
                    lost = exc
                finally:
                    self._fold(finished=True)
                    await transport.close()
                    self._resume_seq = self._last_seq  # the next connection's first block shows the outage
                if lost is None:
                    self.health.set_state(DOWN, self.clock(), "the device stream ended")
                    return
                if not self.reconnect:
                    self.health.set_state(DOWN, self.clock(), str(lost), lost=True)
                    raise lost
                self.health.set_state(RECONNECTING, self.clock(), str(lost))
                await asyncio.sleep(BACKOFF_FIRST_S)
        except asyncio.CancelledError:
            if self.health.state != FAILED:
                self.health.set_state(DOWN, self.clock())
            raise
        except BaseException as exc:
            self.error = exc
            self.health.set_state(FAILED, self.clock(), str(exc))
            self.ready.set()
            raise

    async def _ask_descriptor(self, transport: Transport, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._asked_descriptor >= DESCRIPTOR_RETRY_S:
            self._asked_descriptor = now
            await transport.send(SEND_DESCRIPTOR_FRAME)
        self._want_descriptor = False

    _want_descriptor = False
    _asked_descriptor = -1e9
    _last_seq: int | None = None  # sequence number of the last block delivered
    _last_t_host: float | None = None  # host time of the last sample delivered
    _last_t_dev: float | None = None  # device time of the last sample delivered (this connection)
    _pending_point: tuple[float, float] | None = None  # the last block's clock point, not yet fitted
    _resume_seq: int | None = None  # set when a connection ends: compare the next one's first block
    # device seconds (unwrapped counter) of the samples being delivered; a sink may read it
    # during its call, e.g. a recorder that keeps device time beside host time
    last_t_device: np.ndarray | None = None

    # -- consumer: decode (the framer), check, map, deliver -------------------------------------
    def _fold(self, finished: bool = False) -> None:
        self.health.decoder_counters(self._framer.counters(finished), finished)
        fit = self.mapper.fit()  # host = offset + (1 + s) device  ->  device clock fast by 1/(1+s) - 1
        self.health.drift_ppm = None if fit is None else (1.0 / (1.0 + fit.drift) - 1.0) * 1e6
        self.health.clock_ready = self.mapper.ready

    def _on_descriptor(self, d: DeviceDescriptor) -> None:
        check_device(self.url, d.names, float(d.rate_hz), self.expect, what=f"device {d.kind!r} ({d.device_id or 'no id'})")
        old = self.descriptor
        same = old is not None and (old.kind, old.device_id, old.names) == (d.kind, d.device_id, d.names)
        if old is not None and not same:  # another device on this URL: its clock is another clock
            self._resume_seq = None
            self.mapper.reset()
            self._dclock.reset()
            self._anchor = None
        self.descriptor = d
        self.health.device = " ".join(x for x in (d.kind, d.firmware, d.device_id) if x)
        self.ready.set()

    def _on_block(self, block: SampleBlock, t_arrival: float, transport: Transport) -> None:
        d = self.descriptor
        if d is None or block.raw.shape[1] != len(d.channels):
            self.health.undescribed_blocks += 1
            self._want_descriptor = True
            return
        if self._resume_seq is not None:
            # Blocks sent while the link was down: a fresh decoder cannot see them, the
            # sequence number can (a device that restarted jumps back, > half the range).
            missed = (block.seq - self._resume_seq) % 65536 - 1
            if 0 < missed < 32768:
                self.health.count_outage_loss(missed)
            self._resume_seq = None
        self._last_seq = block.seq
        n = block.raw.shape[0]
        t_dev = self._dclock.unwrap(block.t_device_us, self._host_elapsed(t_arrival)) + np.arange(n) / float(d.rate_hz)
        self._deliver(t_dev, t_arrival, transport, block.values(d), d.names)

    def _host_elapsed(self, t_arrival: float) -> float | None:
        """Host seconds since the previous chunk with samples arrived (None for the first)."""
        elapsed = None if self._last_arrival is None else t_arrival - self._last_arrival
        self._last_arrival = t_arrival
        return elapsed

    def _drop_excess(self, t_dev: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Drop the samples of a device sending faster than it declared; (t_dev, values, fit).

        Device times are the block's first-sample counter plus the declared spacing. A
        device that sends faster (a wrong output data rate, a firmware bug) starts each
        block inside the previous one's span, and the samples cannot be placed: kept,
        they would overlap, the never-back rule would push every later sample further
        into the future, and the clock fit would learn the error as drift. So samples
        that do not come after the last one delivered are dropped and counted
        (`excess_samples`), and such a block is left out of the clock fit (`fit`
        False). A jump back of more than a second is a clock matter (restart, wrap),
        not excess, and passes.
        """
        last = self._last_t_dev
        if last is None or t_dev[0] < last - 1.0:
            self._last_t_dev = float(t_dev[-1])
            return t_dev, values, True
        info = self._framer.info()
        fresh = t_dev > last + (0.5 / info.rate_hz if info is not None else 0.0)  # half a declared period
        if fresh.all():
            self._last_t_dev = float(t_dev[-1])
            return t_dev, values, True
        self.health.excess_samples += int((~fresh).sum())
        if fresh.any():
            self._last_t_dev = float(t_dev[fresh][-1])
        return t_dev[fresh], values[fresh], False

    def _map(self, t_dev: np.ndarray, t_arrival: float, transport: Transport, fit: bool = True) -> np.ndarray:
        """Host times of device times t_dev, the last of which arrived at t_arrival (a
        point for the clock fit unless `fit` is False)."""
        if not getattr(transport, "realtime", True):  # unpaced source: keep device spacing from the first block
            if self._anchor is None:
                self._anchor = (float(t_dev[-1]), t_arrival)
            return self._anchor[1] + (t_dev - self._anchor[0])
        point = (float(t_dev[-1]), t_arrival)
        if not fit:  # this block overlaps the one before: neither says anything about the clock
            self._pending_point = None
        elif self.mapper.fit() is None:
            self.mapper.add(*point)  # the first block: something to map with
        else:
            # a block's point joins the fit once the next block shows it kept to its rate
            # (the first block of an over-rate burst looks regular until the second)
            if self._pending_point is not None:
                self.mapper.add(*self._pending_point)
            self._pending_point = point
        return self.mapper.to_host(t_dev)

    def _deliver(self, t_dev: np.ndarray, t_arrival: float, transport: Transport, values: np.ndarray,
                 names: tuple[str, ...]) -> None:
        """Map device times to host times and hand the expected channels, in order, to the sink."""
        channels, _ = _expected(self.expect)
        if channels:
            values = values[:, [names.index(c) for c in channels]]
        t_dev, values, fit = self._drop_excess(t_dev, values)
        if not len(t_dev):
            return
        t_host = self._map(t_dev, t_arrival, transport, fit)
        # Consumers index by time (ring buffers bisect), so delivered times never go back:
        # a re-fit of the clock that would place this block before the last sample
        # delivered shifts the block forward instead (by at most the fit's correction).
        if self._last_t_host is not None and t_host[0] <= self._last_t_host:
            t_host = t_host + (self._last_t_host + 1e-6 - t_host[0])
        self._last_t_host = float(t_host[-1])
        self.last_t_device = t_dev
        try:
            self.sink(self.name, t_host, values.astype(np.float32, copy=False))
        except Exception as exc:
            raise SinkError(f"{self.name}: the sink raised {type(exc).__name__}: {exc}") from exc
        self.health.add_samples(float(t_host[-1]), len(t_host))


class _Framer:
    """How one stream's bytes become samples: chosen once per stream from the URL's format."""

    def new_connection(self) -> None:
        """A fresh decoder for a new connection (its counters fold into the totals)."""
        raise NotImplementedError

    async def greet(self, transport: Transport) -> None:
        """What to send once connected, before reading."""

    def feed(self, chunk: Chunk, transport: Transport) -> None:
        """Decode a chunk and deliver its samples through the stream."""
        raise NotImplementedError

    def counters(self, finished: bool = False) -> dict[str, int]:
        """The current connection's decoder counters, by health field (`finished`: the
        connection has ended, so what is still buffered will never complete)."""
        raise NotImplementedError

    def info(self) -> DeviceInfo | None:
        raise NotImplementedError


class _BinaryFramer(_Framer):
    """The binary wire protocol: the device describes itself when asked (docs/wire-protocol.md)."""

    def __init__(self, stream: DeviceStream, parsed: DeviceURL):
        self.stream = stream
        self.decoder = FrameDecoder()

    def new_connection(self) -> None:
        self.decoder = FrameDecoder()

    async def greet(self, transport: Transport) -> None:
        await self.stream._ask_descriptor(transport, force=True)

    def feed(self, chunk: Chunk, transport: Transport) -> None:
        s = self.stream
        for msg in self.decoder.feed(chunk.data):
            if isinstance(msg, SampleBlock):
                s._on_block(msg, chunk.t_host, transport)
            elif isinstance(msg, DeviceDescriptor):
                s._on_descriptor(msg)
            elif isinstance(msg, DeviceStatus):
                s.health.battery_pct = msg.battery_pct
                s.health.status_flags = msg.flags

    def counters(self, finished: bool = False) -> dict[str, int]:
        return {k: getattr(self.decoder.stats, k) for k in _DECODER_COUNTERS}

    def info(self) -> DeviceInfo | None:
        d = self.stream.descriptor
        if d is None:
            return None
        return DeviceInfo(tuple(d.names), tuple(c.unit for c in d.channels), float(d.rate_hz),
                          {"kind": d.kind, "firmware": d.firmware, "device_id": d.device_id, "url": self.stream.url})


class _CsvFramer(_Framer):
    """Plain-text sample lines (csvlines.py): the URL (or the model's stream) names the
    channels and the rate, so the stream is described as soon as it connects."""

    def __init__(self, stream: DeviceStream, parsed: DeviceURL):
        self.stream = stream
        exp_channels, exp_rate = _expected(stream.expect)
        text = parsed.option("channels")
        channels = tuple(c.strip() for c in text.split(",") if c.strip()) if text else exp_channels
        rate = parsed.number("rate", exp_rate or 0.0) or None
        if not channels or not rate:
            raise TransportError(stream.url, "format=csv needs the channel names and rate: add "
                                 "channels=a,b,c&rate=HZ to the URL, or pass the stream the model expects")
        check_device(stream.url, channels, rate, stream.expect, what="the CSV device (as configured)")
        self.channels, self.rate_hz = channels, float(rate)
        try:  # the decoder checks its channels (distinct names); said here with the URL
            self.decoder = CsvLineDecoder(channels, rate)
        except ProtocolError as exc:
            raise TransportError(stream.url, str(exc)) from None
        self._count = 0  # samples so far: device time of lines without a timestamp column

    def new_connection(self) -> None:
        self.decoder = CsvLineDecoder(self.channels, self.rate_hz)

    async def greet(self, transport: Transport) -> None:
        self.stream.ready.set()  # described by its URL: nothing to ask

    def feed(self, chunk: Chunk, transport: Transport) -> None:
        samples = self.decoder.feed(chunk.data)
        if not samples:
            return
        s, n = self.stream, len(samples)
        host_elapsed = s._host_elapsed(chunk.t_host)
        if samples[0].t_device_us is None:  # no timestamp column: count samples at the nominal rate
            t_dev = (self._count + np.arange(n)) / self.rate_hz
        else:
            t_dev = np.array([s._dclock.unwrap(x.t_device_us, host_elapsed if i == 0 else None)
                              for i, x in enumerate(samples)])
        self._count += n
        s._deliver(t_dev, chunk.t_host, transport, np.stack([x.values for x in samples]), self.channels)

    def counters(self, finished: bool = False) -> dict[str, int]:
        st = self.decoder.stats
        cut_tail = int(finished and self.decoder.pending_bytes > 0)
        return {"frames": st.lines, "malformed": st.malformed + st.oversize, "cut_lines": st.skipped_first + cut_tail}

    def info(self) -> DeviceInfo:
        return DeviceInfo(self.channels, ("",) * len(self.channels), self.rate_hz, {"url": self.stream.url})


class _ProfileFramer(_Framer):
    """A device that is not wire v1, read through its profile (profiles.py, packets.py): the
    profile names the channels, units and scales, so the stream is described as soon as it
    connects, and the URL's rate= (default: the profile's) is the device's output rate.

    Device time is the profile's counter field, unwrapped, where it has one (a skip in it
    counts the samples lost); else sample slots at the nominal rate, which the clock fit
    maps to the arrivals. A dropped incomplete sample keeps its slot, and after a
    reconnect the slots resume at the host time that passed.
    """

    def __init__(self, stream: DeviceStream, parsed: DeviceURL):
        self.stream = stream
        self.profile = profile = load_profile(parsed.options["profile"])
        self.rate_hz = parsed.number("rate", profile.rate_hz)
        if not self.rate_hz > 0:
            raise TransportError(stream.url, f"rate={parsed.options.get('rate')!r} must be > 0")
        self.descriptor = profile.descriptor(self.rate_hz)
        check_device(stream.url, self.descriptor.names, self.rate_hz, stream.expect,
                     what=f"profile {profile.name!r} (at {self.rate_hz:g} Hz)")
        stream.health.device = f"{profile.kind} profile {profile.name}"
        self.decoder = PacketDecoder(profile)
        self._counter = DeviceClock(1 << profile.counter_bits, profile.tick_s) \
            if profile.time_source == "counter" else None
        self._count = 0  # sample slots so far (device time without a counter)
        self._last_arrival: float | None = None  # host arrival of the last samples delivered
        self._resumed = False  # the first samples after a reconnect are still to come
        self._last_t_dev: float | None = None  # counter time of the last sample (any connection)
        self._lost = self._loss_events = 0  # counter skips, this connection

    def new_connection(self) -> None:
        self.decoder = PacketDecoder(self.profile)
        self._lost = self._loss_events = 0
        self._resumed = self._last_arrival is not None

    async def greet(self, transport: Transport) -> None:
        self.stream.ready.set()  # described by its profile: nothing to ask

    def feed(self, chunk: Chunk, transport: Transport) -> None:
        dropped = self.decoder.stats.incomplete
        samples = self.decoder.feed(chunk.data, chunk.source)
        if not samples:
            return
        s, n = self.stream, len(samples)
        if self._counter is None:
            skip = self.decoder.stats.incomplete - dropped
            if self._resumed:  # the device sampled on while the link was down
                skip = max(skip, round((chunk.t_host - self._last_arrival) * self.rate_hz) - n)
            t_dev = (self._count + skip + np.arange(n)) / self.rate_hz
            self._count += skip + n
        else:
            elapsed = s._host_elapsed(chunk.t_host)
            t_dev = np.array([self._counter.unwrap(x.counter, elapsed if i == 0 else None)
                              for i, x in enumerate(samples)])
            steps = np.diff(t_dev, prepend=t_dev[0] if self._last_t_dev is None else self._last_t_dev)
            missed = np.rint(steps * self.rate_hz) - 1
            self._lost += int(missed[missed > 0].sum())
            self._loss_events += int((missed > 0).sum())
            self._last_t_dev = float(t_dev[-1])
        self._resumed = False
        self._last_arrival = chunk.t_host
        s._deliver(t_dev, chunk.t_host, transport, np.stack([x.values for x in samples]), self.descriptor.names)

    def counters(self, finished: bool = False) -> dict[str, int]:
        st = self.decoder.stats
        return {"frames": st.packets, "crc_errors": st.crc_errors, "malformed": st.malformed, "resyncs": st.resyncs,
                "lost_blocks": st.incomplete + self._lost, "gaps": st.incomplete + self._loss_events}

    def info(self) -> DeviceInfo:
        p = self.profile
        return DeviceInfo(self.descriptor.names, tuple(c.unit for c in self.descriptor.channels), self.rate_hz,
                          {"kind": p.kind, "profile": p.name, "source": p.source, "url": self.stream.url})


class DeviceHub:
    """Several DeviceStreams on one asyncio loop in a background thread, for synchronous apps."""

    def __init__(
        self,
        urls: Mapping[str, str],  # stream name -> device URL
        sink: Sink,
        expect: Mapping[str, Any] | None = None,  # stream name -> StreamSpec-like (e.g. manifest streams)
        clock: Callable[[], float] = time.monotonic,
        reconnect: bool = True,
    ):
        expect = expect or {}
        self.streams = {name: DeviceStream(name, url, sink, expect.get(name), clock=clock, reconnect=reconnect)
                        for name, url in urls.items()}
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: dict[str, asyncio.Task] = {}

    def start(self, wait_s: float = 5.0) -> None:
        """Start every stream; wait up to wait_s for each to connect and describe itself.

        A stream that fails meanwhile (no such device, wrong device) stops the hub and
        its error is raised here. A device that is slow to describe itself is not an error.
        """
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="device-hub", daemon=True)
        self._thread.start()
        async def spawn() -> dict[str, asyncio.Task]:
            return {name: asyncio.ensure_future(s.run()) for name, s in self.streams.items()}

        self._tasks = asyncio.run_coroutine_threadsafe(spawn(), loop).result()
        deadline = time.monotonic() + wait_s
        for stream in self.streams.values():
            stream.ready.wait(max(0.0, deadline - time.monotonic()))
        try:
            self.raise_if_failed()
        except BaseException:
            self.stop()
            raise

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the streams run on (in the hub's thread), None until started."""
        return self._loop

    def errors(self) -> dict[str, BaseException]:
        """Streams that stopped with an error."""
        return {name: s.error for name, s in self.streams.items() if s.error is not None}

    def raise_if_failed(self) -> None:
        for err in self.errors().values():
            raise err

    def health(self) -> dict[str, StreamHealth]:
        now = self.clock()
        return {name: s.health.snapshot(now) for name, s in self.streams.items()}

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        tasks = list(self._tasks.values())

        async def cancel() -> None:  # let every stream close its transport before the loop stops
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
            self._tasks.clear()

    def __enter__(self) -> "DeviceHub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
