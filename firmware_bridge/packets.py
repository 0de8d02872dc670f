"""Decoding a profile device's packets: bytes in, physical samples out. Pure, no I/O.

Like `protocol.FrameDecoder`, `PacketDecoder.feed(data, source)` is incremental, never
raises and gives the same samples for any chunking of a serial stream. `source` is
where the bytes came from (a BLE characteristic's UUID; "" for serial), so packets
that travel on different characteristics never mix in one buffer.

Framing follows the profile (firmware_bridge.profiles):
- a packet with header bytes is hunted for: at the header, take the packet's length,
  check its checksum; on a bad checksum skip one byte and hunt again (a header inside
  data is found this way too). Bytes that start no known header are skipped and
  counted (`resyncs`). On serial the hunt runs over the byte stream, so any chunking
  gives the same packets; a BLE notification carries whole packets (one or more), so
  it is hunted on its own and a cut packet at its end is `malformed`, never completed
  by the next notification's bytes (a packet without checksum could not tell).
- a packet without header is one whole BLE notification; another length is
  `malformed`.
A sample is one of each of the profile's packets, completed by the last one (WitMotion
serial sends 0x51 acceleration, 0x52 angular velocity, 0x53 angle per sample): a
sample whose other parts did not all arrive since the previous one is dropped and
counted (`incomplete`), except before the first complete sample of a connection, which
may begin mid-sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profiles import PacketSpec, Profile

MAX_BUFFER = 4096  # bytes kept per source while hunting; more cannot be one packet


@dataclass
class PacketStats:
    """What a PacketDecoder has seen."""

    packets: int = 0  # whole packets that passed their checksum
    crc_errors: int = 0  # packets at a header whose checksum failed
    malformed: int = 0  # notifications of the wrong length (header-less packets)
    resyncs: int = 0  # bytes skipped looking for a header
    incomplete: int = 0  # samples dropped because one of their packets did not arrive
    samples: int = 0  # samples decoded
    bytes: int = 0


@dataclass(frozen=True, eq=False)
class ProfileSample:
    """One decoded sample."""

    values: np.ndarray  # (C,) float32 physical values, the profile's channel order
    counter: int | None  # the device counter field, when the profile's time source is "counter"


def sum8(data: bytes) -> int:
    """Low byte of the sum of the bytes: WitMotion's packet checksum."""
    return sum(data) & 0xFF


class PacketDecoder:
    """Incremental decoder of one profile device's packets."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.stats = PacketStats()
        self._buffers: dict[str, bytearray] = {}
        self._parts: dict[int, dict[str, float]] = {}  # packet index -> its field values, this sample
        self._synced = False  # a complete sample was seen on this connection
        self._fields = [c.field for c in profile.channels]
        self._scales = np.array([c.scale for c in profile.channels], np.float64)
        self._last = len(profile.packets) - 1
        self._by_source: dict[str, list[int]] = {}  # BLE characteristic -> its packets
        for i, p in enumerate(profile.packets):
            if p.characteristic:
                self._by_source.setdefault(p.characteristic, []).append(i)

    def feed(self, data: bytes, source: str = "") -> list[ProfileSample]:
        """Samples completed by `data` from `source`, in order. Never raises."""
        self.stats.bytes += len(data)
        out: list[ProfileSample] = []
        indices = self._by_source.get(source.lower()) if source else list(range(len(self.profile.packets)))
        if not indices:  # a characteristic the profile does not read
            self.stats.malformed += 1
            return out
        packets = self.profile.packets
        if all(not packets[i].header for i in indices):
            self._whole(bytes(data), indices, out)
        else:
            self._hunt(source, bytes(data), indices, out)
        return out

    # ---- framing ------------------------------------------------------------------

    def _whole(self, data: bytes, indices: list[int], out: list[ProfileSample]) -> None:
        for i in indices:
            if len(data) == self.profile.packets[i].size:
                self._packet(i, data, out)
                return
        self.stats.malformed += 1

    def _hunt(self, source: str, data: bytes, indices: list[int], out: list[ProfileSample]) -> None:
        buf = self._buffers.setdefault(source, bytearray())
        buf += data
        packets = self.profile.packets
        pos = 0
        while pos < len(buf):
            match = None
            waiting = False
            for i in indices:
                p = packets[i]
                head = bytes(buf[pos:pos + len(p.header)])
                if not p.header.startswith(head):
                    continue
                if len(head) < len(p.header) or len(buf) - pos < p.size:
                    waiting = True  # could be this packet: wait for its bytes
                    continue
                packet = bytes(buf[pos:pos + p.size])
                if p.checksum == "sum8" and sum8(packet[:-1]) != packet[-1]:
                    self.stats.crc_errors += 1
                    continue
                match = i
                break
            if match is not None:
                self._packet(match, bytes(buf[pos:pos + packets[match].size]), out)
                pos += packets[match].size
            elif waiting:
                break
            else:
                pos += 1
                self.stats.resyncs += 1
        del buf[:pos]
        if source and buf:  # BLE: the rest of a notification is no packet
            self.stats.malformed += 1
            buf.clear()
        if len(buf) > MAX_BUFFER:
            self.stats.resyncs += len(buf)
            buf.clear()

    # ---- samples ------------------------------------------------------------------

    def _packet(self, i: int, packet: bytes, out: list[ProfileSample]) -> None:
        spec: PacketSpec = self.profile.packets[i]
        self.stats.packets += 1
        if i in self._parts and i != self._last:  # a second copy before the sample completed
            self._drop_sample()
        self._parts[i] = dict(zip(spec.fields, spec.layout.unpack(packet)))
        if i != self._last:
            return
        parts, self._parts = self._parts, {}
        if len(parts) != len(self.profile.packets):
            self._drop_sample()
            return
        values = {k: v for part in parts.values() for k, v in part.items()}
        self._synced = True
        self.stats.samples += 1
        raw = np.array([values[f] for f in self._fields], np.float64)
        counter = None
        if self.profile.time_field is not None:
            counter = int(values[self.profile.time_field])
        out.append(ProfileSample((raw * self._scales).astype(np.float32), counter))

    def _drop_sample(self) -> None:
        self._parts = {}
        if self._synced:
            self.stats.incomplete += 1
