"""Plain-text sample lines: the convention of DIY gloves and Edge Impulse's data forwarder.

One line per sample, numbers separated by `,`, tab or `;` (or by spaces alone),
optionally preceded by a device timestamp in **milliseconds** (Arduino `millis()`,
decimals allowed). The timestamp is converted to µs and wrapped at 2**32 like the
binary protocol's `t_device_us`, so one clock-mapping code path serves both.
Spec: docs/wire-protocol.md, "Plain-text lines".

Pure, incremental, no I/O, like `protocol.FrameDecoder`: `feed(bytes)` in, samples
out; never raises on any input, and any chunking gives the same samples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from edgehar.firmware_bridge.protocol import ChannelInfo, DeviceDescriptor, ProtocolError

MAX_LINE_BYTES = 1024  # a longer line is discarded up to the next "\n"
_U32 = 1 << 32
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")  # no "nan", "inf", "1_000", hex
_SEP = re.compile(r"\s*[,;\t]\s*")


@dataclass(frozen=True, eq=False)
class CsvSample:
    """One decoded line."""

    t_device_us: int | None  # device ms counter * 1000, wrapped to uint32; None without a timestamp column
    values: np.ndarray  # (C,) float32, channel order as given to the decoder


@dataclass
class CsvStats:
    """What a CsvLineDecoder has seen; every complete non-empty line lands in one of lines / malformed / oversize."""

    lines: int = 0  # good lines, each decoded into one CsvSample
    malformed: int = 0  # wrong column count, non-numbers, non-finite numbers, negative timestamp, not ASCII
    oversize: int = 0  # lines over max_line bytes (discarded up to the next "\n")
    bytes: int = 0  # bytes fed
    skipped_first: int = 0  # 1 once the (possibly cut) first line has been dropped


class CsvLineDecoder:
    """Incremental decoder of text sample lines for `channels` at nominal `rate_hz`.

    timestamp_column: True = a leading ms timestamp column, False = values only,
    None = decide from the first good line (C columns -> False, C + 1 -> True) and
    keep that decision. skip_first_line drops everything up to the first "\\n": a port
    opened mid-stream starts mid-line, and a cut line can still parse.
    """

    def __init__(self, channels: tuple[str, ...], rate_hz: float, timestamp_column: bool | None = None, *,
                 skip_first_line: bool = True, max_line: int = MAX_LINE_BYTES) -> None:
        channels = tuple(channels)
        if not channels:
            raise ProtocolError("CsvLineDecoder needs at least one channel name", channels)
        if len(set(channels)) != len(channels):
            dup = sorted({c for c in channels if channels.count(c) > 1})
            raise ProtocolError(f"channel names must be distinct, {dup} repeat in {list(channels)}", channels)
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ProtocolError(f"rate_hz must be finite and > 0, got {rate_hz!r}", rate_hz)
        self.channels = channels
        self.rate_hz = float(rate_hz)
        self.timestamp_column = timestamp_column  # None until auto-detected
        self.max_line = max_line
        self.stats = CsvStats()
        self._skipping = skip_first_line
        self._pending = b""
        self._discarding = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of a line not yet ended by "\n": when the stream ends here, a cut line."""
        return len(self._pending)

    @property
    def descriptor(self) -> DeviceDescriptor:
        """A descriptor for uniformity with binary devices: text values are physical (scale 1, unit unknown)."""
        return DeviceDescriptor("csv", "", self.rate_hz, tuple(ChannelInfo(n, "", 1.0) for n in self.channels))

    def feed(self, data: bytes) -> list[CsvSample]:
        """Samples completed by `data`, in order. Never raises."""
        if not data:
            return []
        data = bytes(data)
        self.stats.bytes += len(data)
        lines = data.split(b"\n")
        tail = lines.pop()
        out: list[CsvSample] = []
        if lines:
            if self._discarding or self._skipping:
                if self._skipping:
                    self.stats.skipped_first = 1
                lines[0] = b""
                self._discarding = self._skipping = False
            elif self._pending:
                lines[0] = self._pending + lines[0]
            self._pending = b""
            for line in lines:
                self._line(line, out)
        if self._discarding:
            return out
        pending = self._pending + tail if self._pending else tail
        if len(pending) > self.max_line:
            if not self._skipping:  # the skipped first line is not counted, however long
                self.stats.oversize += 1
            self._discarding = True
            pending = b""
        self._pending = pending
        return out

    def _line(self, line: bytes, out: list[CsvSample]) -> None:
        st = self.stats
        if len(line) > self.max_line:
            st.oversize += 1
            return
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            st.malformed += 1
            return
        if not text:
            return  # blank lines are not samples and not errors
        text = text.rstrip(",;\t ")
        fields = _SEP.split(text) if re.search(r"[,;\t]", text) else text.split()
        if not all(_NUMBER.fullmatch(f) for f in fields):
            st.malformed += 1
            return
        c = len(self.channels)
        has_t = self.timestamp_column
        if has_t is None:
            if len(fields) not in (c, c + 1):
                st.malformed += 1
                return
            has_t = len(fields) == c + 1  # locked below, once the line proves valid
        if len(fields) != c + has_t:
            st.malformed += 1
            return
        values = np.array([float(f) for f in fields[has_t:]], dtype=np.float64)
        if not np.isfinite(values).all() or np.abs(values).max() > np.finfo(np.float32).max:
            st.malformed += 1
            return
        t_us = None
        if has_t:
            ms = float(fields[0])
            if not (math.isfinite(ms) and ms >= 0):
                st.malformed += 1
                return
            t_us = round(ms * 1000.0) % _U32
        if self.timestamp_column is None:
            self.timestamp_column = has_t
        st.lines += 1
        out.append(CsvSample(t_us, values.astype(np.float32)))
