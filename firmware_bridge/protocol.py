"""edgehar wire protocol, version 1: glove/IMU firmware <-> host. Pure bytes, no I/O.

The same bytes travel over serial and inside BLE notifications (docs/wire-protocol.md
is the spec a firmware author implements from; its test vectors are checked by
tests/test_protocol.py, so this module and the page cannot drift apart).

    frame   = COBS(payload || crc16_be(payload)) || 0x00
    payload = version u8 | type u8 | body (little-endian)

`FrameDecoder` is incremental like pyserial's framers: `feed(bytes)` in, messages out,
never raises, linear time, and any chunking of the stream gives the same messages.
"""

from __future__ import annotations

import binascii
import enum
import math
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from edgehar.errors import EdgeharError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 512  # hard cap on one encoded frame (COBS bytes before the 0x00 delimiter)
BLE_PAYLOAD_BYTES = 244  # one BLE notification at ATT MTU 247 (BLE 4.2+ data length extension)

# edgehar's own 128-bit GATT UUIDs (random base d6a4xxxx-2f71-4bf1-bae3-01178961b416).
SERVICE_UUID = "d6a40001-2f71-4bf1-bae3-01178961b416"  # advertised; scan filter
DATA_CHAR_UUID = "d6a40002-2f71-4bf1-bae3-01178961b416"  # notify: device -> host frames
COMMAND_CHAR_UUID = "d6a40003-2f71-4bf1-bae3-01178961b416"  # write (without response): host -> device frames


class MessageType(enum.IntEnum):
    """Byte 1 of every payload."""

    DESCRIPTOR = 0x01  # device -> host: what the channels are
    SAMPLES = 0x02  # device -> host: a block of int16 samples
    STATUS = 0x03  # device -> host: battery and flags
    SEND_DESCRIPTOR = 0x10  # host -> device: please send your descriptor now
    SEND_STATUS = 0x11  # host -> device: please send a status message now


# DeviceStatus.flags bits; the others are reserved and sent as 0.
FLAG_CHARGING = 0x01
FLAG_SENSOR_FAULT = 0x02  # a sensor did not answer; its channels read 0
FLAG_OVERFLOW = 0x04  # the device dropped samples before sending (its buffer overflowed)

BATTERY_UNKNOWN = 255
_U16, _U32 = 1 << 16, 1 << 32
_HEADER = struct.Struct("<BB")
_BLOCK_HEAD = struct.Struct("<BBHIBB")  # version, type, seq, t_device_us, n, C
_F32 = struct.Struct("<f")
_INT16_MAX = 32767


# --------------------------------------------------------------------------- errors


class ProtocolError(EdgeharError, ValueError):
    """Bytes or a message that do not follow the protocol. `value` is the offending value."""

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


class UnknownVersionError(ProtocolError):
    """A payload from another protocol version; `value` is that version number."""


class UnknownMessageTypeError(ProtocolError):
    """A payload of a message type this host does not know; `value` is the type byte."""


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ChannelInfo:
    """One channel: physical value = int16 raw * scale, in `unit`."""

    name: str  # e.g. "acc_x"
    unit: str  # e.g. "g"
    scale: float  # physical units per LSB, > 0


@dataclass(frozen=True)
class DeviceDescriptor:
    """What a device streams. Sent on connect and on request (MessageType.SEND_DESCRIPTOR)."""

    kind: str  # "glove" | "imu" | ... (free text, short)
    firmware: str  # e.g. "1.0.0"
    rate_hz: float  # nominal sample rate
    channels: tuple[ChannelInfo, ...]  # column order of every SampleBlock.raw
    device_id: str = ""  # e.g. serial number / MAC

    def __post_init__(self) -> None:
        if not isinstance(self.channels, tuple):
            object.__setattr__(self, "channels", tuple(self.channels))
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ProtocolError(f"descriptor rate_hz must be finite and > 0, got {self.rate_hz!r}", self.rate_hz)
        if not 1 <= len(self.channels) <= 255:
            raise ProtocolError(f"descriptor needs 1..255 channels, got {len(self.channels)}", len(self.channels))
        for ch in self.channels:
            if not (math.isfinite(ch.scale) and ch.scale > 0):
                raise ProtocolError(f"channel {ch.name!r} scale must be finite and > 0, got {ch.scale!r}", ch.scale)
        names = [ch.name for ch in self.channels]
        if len(set(names)) != len(names):
            raise ProtocolError(f"descriptor channel names repeat: {names}", names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(ch.name for ch in self.channels)

    @cached_property
    def scales(self) -> np.ndarray:
        """(C,) float32 scales, read-only."""
        s = np.array([ch.scale for ch in self.channels], dtype=np.float32)
        s.flags.writeable = False
        return s


@dataclass(frozen=True, eq=False)
class SampleBlock:
    """n consecutive samples of all C channels, evenly spaced at the descriptor's rate."""

    seq: int  # uint16 block sequence number, +1 per block, wraps 65535 -> 0
    t_device_us: int  # uint32 device µs counter at the FIRST sample, wraps (~71.6 min)
    raw: np.ndarray  # (n, C) int16, row-major: one row per sample

    def __post_init__(self) -> None:
        raw = self.raw
        if not (isinstance(raw, np.ndarray) and raw.ndim == 2 and raw.dtype == np.int16):
            raise ProtocolError(f"SampleBlock.raw must be a 2-D int16 array, got {getattr(raw, 'dtype', type(raw))} "
                                f"{getattr(raw, 'shape', '')}", raw)
        if not (1 <= raw.shape[0] <= 255 and 1 <= raw.shape[1] <= 255):
            raise ProtocolError(f"SampleBlock.raw shape {raw.shape} must be within (1..255, 1..255)", raw.shape)
        if not 0 <= self.seq < _U16:
            raise ProtocolError(f"SampleBlock.seq {self.seq} outside uint16", self.seq)
        if not 0 <= self.t_device_us < _U32:
            raise ProtocolError(f"SampleBlock.t_device_us {self.t_device_us} outside uint32", self.t_device_us)

    def values(self, d: DeviceDescriptor) -> np.ndarray:
        """(n, C) float32 physical values, using the channel scales of `d`."""
        if len(d.channels) != self.raw.shape[1]:
            raise ProtocolError(f"block has {self.raw.shape[1]} channels, descriptor {d.kind!r} has "
                                f"{len(d.channels)}", self.raw.shape[1])
        return self.raw.astype(np.float32) * d.scales

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleBlock):
            return NotImplemented
        return (self.seq == other.seq and self.t_device_us == other.t_device_us
                and self.raw.shape == other.raw.shape and bool(np.array_equal(self.raw, other.raw)))

    __hash__ = None  # type: ignore[assignment]  # holds an array


@dataclass(frozen=True)
class DeviceStatus:
    """Optional periodic status."""

    battery_pct: int | None  # 0..100, None = unknown (sent as 255)
    flags: int = 0  # FLAG_* bits

    def __post_init__(self) -> None:
        if self.battery_pct is not None and not 0 <= self.battery_pct <= 100:
            raise ProtocolError(f"battery_pct must be 0..100 or None, got {self.battery_pct}", self.battery_pct)
        if not 0 <= self.flags <= 0xFF:
            raise ProtocolError(f"status flags must fit one byte, got {self.flags}", self.flags)


@dataclass(frozen=True)
class HostCommand:
    """Host -> device request (written to COMMAND_CHAR_UUID over BLE, or down the serial line)."""

    command: MessageType  # MessageType.SEND_DESCRIPTOR or MessageType.SEND_STATUS

    def __post_init__(self) -> None:
        if self.command not in _COMMANDS:
            raise ProtocolError(f"{self.command!r} is not a host command; use one of {sorted(_COMMANDS)}", self.command)
        object.__setattr__(self, "command", MessageType(self.command))


_COMMANDS = frozenset({MessageType.SEND_DESCRIPTOR, MessageType.SEND_STATUS})

Message = DeviceDescriptor | SampleBlock | DeviceStatus  # device -> host
AnyMessage = DeviceDescriptor | SampleBlock | DeviceStatus | HostCommand  # either direction


# --------------------------------------------------------------------------- COBS + CRC


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor (check 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire & Baker 1999), written here: it is ten lines.

    Output has no 0x00 and is at most len(data) + 1 + len(data) // 254 bytes.
    """
    out = bytearray()
    for block in bytes(data).split(b"\x00"):  # each zero ends a block; code = block length + 1
        while len(block) >= 254:
            out.append(0xFF)  # 254 data bytes, no zero follows
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Inverse of `cobs_encode`; None if `data` is not valid COBS (a code runs past the end, or a 0x00)."""
    data = bytes(data)
    return None if b"\x00" in data else _cobs_decode_nz(data)


def _cobs_decode_nz(data: bytes) -> bytes | None:
    """`cobs_decode` of bytes already known to hold no 0x00 (a segment split on the delimiter)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        j = i + code
        if code == 0 or j > n:
            return None
        out += data[i + 1:j]
        if code != 0xFF and j < n:
            out.append(0)
        i = j
    return bytes(out)


def cobs_max_len(n: int) -> int:
    """The most bytes `cobs_encode` can make of n bytes."""
    return n + 1 + n // 254


# --------------------------------------------------------------------------- encode


def _pstr(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 255:
        raise ProtocolError(f"{what} is {len(b)} UTF-8 bytes; the protocol allows 255", s)
    return bytes((len(b),)) + b


def encode_message(msg: AnyMessage) -> bytes:
    """The unframed payload: version, type, body. Raises ProtocolError if it cannot be encoded."""
    if isinstance(msg, SampleBlock):
        n, c = msg.raw.shape
        head = _BLOCK_HEAD.pack(PROTOCOL_VERSION, MessageType.SAMPLES, msg.seq, msg.t_device_us, n, c)
        return head + msg.raw.astype("<i2", copy=False).tobytes(order="C")
    if isinstance(msg, DeviceDescriptor):
        parts = [_HEADER.pack(PROTOCOL_VERSION, MessageType.DESCRIPTOR), _pstr(msg.kind, "kind"),
                 _pstr(msg.firmware, "firmware"), _pstr(msg.device_id, "device_id"),
                 _F32.pack(msg.rate_hz), bytes((len(msg.channels),))]
        for ch in msg.channels:
            parts += [_pstr(ch.name, "channel name"), _pstr(ch.unit, "channel unit"), _F32.pack(ch.scale)]
        return b"".join(parts)
    if isinstance(msg, DeviceStatus):
        battery = BATTERY_UNKNOWN if msg.battery_pct is None else msg.battery_pct
        return bytes((PROTOCOL_VERSION, MessageType.STATUS, battery, msg.flags))
    if isinstance(msg, HostCommand):
        return bytes((PROTOCOL_VERSION, msg.command))
    raise ProtocolError(f"cannot encode {type(msg).__name__}; expected one of "
                        "DeviceDescriptor, SampleBlock, DeviceStatus, HostCommand", msg)


def encode_frame(msg: AnyMessage) -> bytes:
    """COBS(payload || crc16_be) || 0x00. Raises ProtocolError past MAX_FRAME_BYTES."""
    payload = encode_message(msg)
    body = cobs_encode(payload + crc16(payload).to_bytes(2, "big"))
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"{type(msg).__name__} encodes to {len(body)} bytes; a frame holds at most "
                            f"{MAX_FRAME_BYTES} (send fewer samples or channels per message)", len(body))
    return body + b"\x00"


SEND_DESCRIPTOR_FRAME = encode_frame(HostCommand(MessageType.SEND_DESCRIPTOR))  # 4 bytes a host writes
SEND_STATUS_FRAME = encode_frame(HostCommand(MessageType.SEND_STATUS))


def samples_per_block(n_channels: int, payload_limit: int = BLE_PAYLOAD_BYTES) -> int:
    """Most samples of n_channels per SampleBlock whose whole frame (with 0x00) fits payload_limit bytes.

    Worst-case COBS overhead is assumed, so any sample values fit.
    """
    if not 1 <= n_channels <= 255:
        raise ProtocolError(f"n_channels must be 1..255, got {n_channels}", n_channels)
    limit = min(payload_limit, MAX_FRAME_BYTES + 1)
    best = 0
    for n in range(1, 256):
        if cobs_max_len(_BLOCK_HEAD.size + 2 * n * n_channels + 2) + 1 > limit:
            break
        best = n
    if best == 0:
        raise ProtocolError(f"not even one sample of {n_channels} channels fits {payload_limit} bytes", payload_limit)
    return best


def _f32(x: float) -> float:
    return float(np.float32(x))


def descriptor_from_channels(kind: str, firmware: str, rate_hz: float, names: Sequence[str], units: Sequence[str],
                             ranges: Sequence[tuple[float, float]], device_id: str = "") -> DeviceDescriptor:
    """A descriptor whose int16 scales cover each channel's physical (lo, hi) range.

    scale = max(|lo|, |hi|) / 32767, rounded to a float32 that still keeps ±max within
    ±32767 LSB (so the scale survives the wire exactly and the range end never clips).
    """
    if not len(names) == len(units) == len(ranges):
        raise ProtocolError(f"{len(names)} names, {len(units)} units and {len(ranges)} ranges; they must match",
                            (len(names), len(units), len(ranges)))
    channels = []
    for name, unit, (lo, hi) in zip(names, units, ranges):
        peak = max(abs(float(lo)), abs(float(hi)))
        if not (math.isfinite(peak) and peak > 0 and lo < hi):
            raise ProtocolError(f"channel {name!r} range ({lo}, {hi}) must be finite with lo < hi and not all 0",
                                (lo, hi))
        scale = _f32(peak / _INT16_MAX)
        while peak / scale > _INT16_MAX:  # float32 rounding went down: step up one ulp
            scale = float(np.nextafter(np.float32(scale), np.float32(np.inf)))
        channels.append(ChannelInfo(str(name), str(unit), scale))
    return DeviceDescriptor(kind, firmware, _f32(rate_hz), tuple(channels), device_id)


# --------------------------------------------------------------------------- decode


def _take_str(p: bytes, i: int) -> tuple[str, int]:
    n = p[i]
    j = i + 1 + n
    if j > len(p):
        raise ProtocolError(f"string of {n} bytes at offset {i} runs past the end ({len(p)} bytes)", n)
    return p[i + 1:j].decode("utf-8"), j


def _decode_descriptor(p: bytes) -> DeviceDescriptor:
    kind, i = _take_str(p, 2)
    firmware, i = _take_str(p, i)
    device_id, i = _take_str(p, i)
    (rate,) = _F32.unpack_from(p, i)
    n = p[i + 4]
    i += 5
    channels = []
    for _ in range(n):
        name, i = _take_str(p, i)
        unit, i = _take_str(p, i)
        (scale,) = _F32.unpack_from(p, i)
        i += 4
        channels.append(ChannelInfo(name, unit, scale))
    if i != len(p):
        raise ProtocolError(f"descriptor has {len(p) - i} bytes after its last channel", len(p) - i)
    return DeviceDescriptor(kind, firmware, rate, tuple(channels), device_id)


def _decode_block(p: bytes) -> SampleBlock:
    if len(p) < _BLOCK_HEAD.size:
        raise ProtocolError(f"sample block of {len(p)} bytes is shorter than its header", len(p))
    _, _, seq, t_us, n, c = _BLOCK_HEAD.unpack_from(p)
    if len(p) != _BLOCK_HEAD.size + 2 * n * c:
        raise ProtocolError(f"sample block says {n}x{c} samples but carries {len(p) - _BLOCK_HEAD.size} bytes", (n, c))
    raw = np.frombuffer(p, dtype="<i2", count=n * c, offset=_BLOCK_HEAD.size).reshape(n, c)
    if raw.dtype != np.int16:  # big-endian host
        raw = raw.astype(np.int16)
    return SampleBlock(seq, t_us, raw)  # frombuffer of bytes: read-only view


def _decode_status(p: bytes) -> DeviceStatus:
    if len(p) != 4:
        raise ProtocolError(f"status body is {len(p) - 2} bytes, expected 2", len(p) - 2)
    return DeviceStatus(None if p[2] == BATTERY_UNKNOWN else p[2], p[3])


def _decode_command(p: bytes) -> HostCommand:
    if len(p) != 2:
        raise ProtocolError(f"host command 0x{p[1]:02x} has a {len(p) - 2}-byte body, expected none", len(p) - 2)
    return HostCommand(MessageType(p[1]))


_DECODERS = {MessageType.DESCRIPTOR: _decode_descriptor, MessageType.SAMPLES: _decode_block,
             MessageType.STATUS: _decode_status, MessageType.SEND_DESCRIPTOR: _decode_command,
             MessageType.SEND_STATUS: _decode_command}
_DECODERS_BY_INT = {int(k): v for k, v in _DECODERS.items()}


def decode_message(payload: bytes) -> AnyMessage:
    """Inverse of `encode_message` (no CRC, no COBS). Raises ProtocolError (or a subclass)."""
    p = bytes(payload)
    if len(p) < 2:
        raise ProtocolError(f"payload of {len(p)} bytes is shorter than the 2-byte header", len(p))
    if p[0] != PROTOCOL_VERSION:
        raise UnknownVersionError(f"protocol version {p[0]} is not supported (this host speaks version "
                                  f"{PROTOCOL_VERSION}); update edgehar or the firmware", p[0])
    decoder = _DECODERS_BY_INT.get(p[1])
    if decoder is None:
        raise UnknownMessageTypeError(f"unknown message type 0x{p[1]:02x}", p[1])
    try:
        return decoder(p)
    except ProtocolError:
        raise
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed {MessageType(p[1]).name.lower()} message: {exc}", p) from exc


# --------------------------------------------------------------------------- stream decoder


@dataclass
class DecoderStats:
    """What a FrameDecoder has seen. Every non-empty frame lands in exactly one of
    frames / crc_errors / oversize / unknown_version / unknown_type / malformed."""

    frames: int = 0  # messages decoded and returned
    bytes: int = 0  # bytes fed
    crc_errors: int = 0  # frames failing the integrity check: bad COBS, too short, or CRC mismatch
    resyncs: int = 0  # times a good frame re-locked the decoder after garbage/corruption
    oversize: int = 0  # runs of > max_frame bytes without a delimiter (discarded up to the next 0x00)
    malformed: int = 0  # CRC-good frames whose body is inconsistent (or whose channel count contradicts the descriptor)
    unknown_version: int = 0  # CRC-good frames of another protocol version (skipped)
    gaps: int = 0  # sequence jumps of k > 1 blocks
    lost_blocks: int = 0  # sum of (k - 1) over those jumps
    unknown_type: int = 0  # CRC-good frames of a message type this host does not know (skipped)
    seq_restarts: int = 0  # seq went backwards or repeated without a descriptor (device restarted)


class FrameDecoder:
    """Incremental decoder of one device's byte stream: feed bytes, get messages.

    Never raises on any input; linear time; any chunking gives the same messages and stats.
    `descriptor` is the last descriptor seen. A SampleBlock whose channel count contradicts
    it is counted `malformed` and dropped.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self.stats = DecoderStats()
        self.descriptor: DeviceDescriptor | None = None
        self._pending = b""  # bytes of the frame in progress (no delimiter yet)
        self._discarding = False  # in an oversize run: drop bytes until the next 0x00
        self._broken = False  # a bad frame since the last good one -> next good one is a resync
        self._last_seq: int | None = None

    def feed(self, data: bytes) -> list[AnyMessage]:
        """Messages completed by `data` (bytes, bytearray or memoryview), in stream order."""
        if not isinstance(data, (bytes, bytearray, memoryview)):  # bytes(5) would be five zero bytes
            raise TypeError(f"FrameDecoder.feed takes bytes, bytearray or memoryview, got {type(data).__name__}")
        if not data:
            return []
        data = bytes(data)
        self.stats.bytes += len(data)
        parts = data.split(b"\x00")
        tail = parts.pop()  # bytes after the last delimiter: the next frame's start
        out: list[AnyMessage] = []
        if parts:
            first = parts[0]
            if self._discarding:
                parts[0] = b""  # the rest of the oversize run; its delimiter ends it
                self._discarding = False
            elif self._pending:
                parts[0] = self._pending + first
            self._pending = b""
            for seg in parts:
                if seg:
                    self._frame(seg, out)
        if self._discarding:
            return out
        pending = self._pending + tail if self._pending else tail
        if len(pending) > self.max_frame:
            self.stats.oversize += 1
            self._broken = True
            self._discarding = True
            pending = b""
        self._pending = pending
        return out

    def _frame(self, seg: bytes, out: list) -> None:
        st = self.stats
        if len(seg) > self.max_frame:
            st.oversize += 1
            self._broken = True
            return
        p = _cobs_decode_nz(seg)
        if p is None or len(p) < 4 or binascii.crc_hqx(p, 0xFFFF) != 0:  # CRC over payload||crc_be is 0
            st.crc_errors += 1
            self._broken = True
            return
        if self._broken:  # framing is good again
            st.resyncs += 1
            self._broken = False
        p = p[:-2]
        try:
            msg = decode_message(p)
        except UnknownVersionError:
            st.unknown_version += 1
            return
        except UnknownMessageTypeError:
            st.unknown_type += 1
            return
        except ProtocolError:
            st.malformed += 1
            return
        except Exception:  # never raise on bytes: anything else a body can provoke is malformed too
            st.malformed += 1
            return
        if type(msg) is SampleBlock:
            d = self.descriptor
            if d is not None and msg.raw.shape[1] != len(d.channels):
                st.malformed += 1
                return
            last = self._last_seq
            if last is not None:
                k = (msg.seq - last) % _U16
                if k == 0 or k > _U16 // 2:
                    st.seq_restarts += 1
                elif k > 1:
                    st.gaps += 1
                    st.lost_blocks += k - 1
            self._last_seq = msg.seq
        elif type(msg) is DeviceDescriptor:
            self.descriptor = msg
            self._last_seq = None  # device (re)connected or restarted
        st.frames += 1
        out.append(msg)


def encode_blocks(values_raw: np.ndarray, block: int, seq0: int = 0, t0_us: int = 0,
                  rate_hz: float = 100.0) -> Iterable[bytes]:
    """Frames of consecutive SampleBlocks cut from (T, C) int16 samples (firmware-side helper for sims/tests).

    seq and t_device_us wrap as on a device; t advances by round(1e6 / rate_hz) µs per sample.
    """
    dt = round(1e6 / rate_hz)
    for k, start in enumerate(range(0, len(values_raw), block)):
        raw = np.ascontiguousarray(values_raw[start:start + block], dtype=np.int16)
        yield encode_frame(SampleBlock((seq0 + k) % _U16, (t0_us + start * dt) % _U32, raw))
