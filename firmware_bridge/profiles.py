"""Device profiles: how a device that does not speak wire v1 lays out its bytes.

An off-the-shelf IMU notifies (BLE) or prints (serial) packets in its maker's own
layout. A profile, a small TOML file, says what that layout is, so the host can read
such a device without code: `ble://name=WT901BLE67?profile=witmotion-wt901ble` or
`serial:///dev/ttyUSB0?profile=witmotion-wt901c`. docs/devices.md is the reference of
the format and walks through writing one:

    [device]   kind, description, source (where the layout is documented), rate_hz
    [ble]      service, characteristic (notify)        } at least one of the two
    [serial]   baud                                    }
    [[packet]] header (hex), format (Python struct, the whole packet), fields,
               checksum ("none" | "sum8"), characteristic (BLE, per packet)
    [[channel]] name, field (default: name), scale (physical units per count), unit
    [time]     source = "arrival" (host arrival fitted at the nominal rate)
               | "counter" (field, tick_s, bits: a wrapping device counter)

Profiles are found by name in the user's folders first ($EDGEHAR_PROFILES, a
path list, else ~/.config/edgehar/profiles), then among the ones shipped in the
package (firmware_bridge/device_profiles/); a value with a `/` or ending in `.toml`
is a path. Every mistake in a file is a `ProfileError` naming the file, the key and
what was expected, raised before anything connects.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .protocol import ChannelInfo, DeviceDescriptor
from ..errors import EdgeharError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject installs tomli there)
    import tomli as tomllib

SHIPPED_DIR = Path(__file__).with_name("device_profiles")
PROFILES_ENV = "EDGEHAR_PROFILES"
CHECKSUMS = ("none", "sum8")
TIME_SOURCES = ("arrival", "counter")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLES = {
    "device": {"kind", "description", "source", "rate_hz"},
    "ble": {"service", "characteristic"},
    "serial": {"baud"},
    "packet": {"header", "format", "fields", "checksum", "characteristic"},
    "channel": {"name", "field", "scale", "unit"},
    "time": {"source", "field", "tick_s", "bits"},
}


class ProfileError(EdgeharError, ValueError):
    """A profile that cannot be found or does not hold together; the message names file and key."""


@dataclass(frozen=True)
class PacketSpec:
    """One packet type: its header bytes, struct layout, named values and checksum."""

    header: bytes  # b"" = no header: exactly one packet per BLE notification
    format: str  # Python struct format of the whole packet, header and checksum included
    fields: tuple[str, ...]  # a name per struct value ('x' pad bytes take none); "_" = unused
    checksum: str = "none"  # "sum8": the last byte is the low byte of the sum of all before it
    characteristic: str | None = None  # BLE: the characteristic that notifies this packet

    @cached_property
    def layout(self) -> struct.Struct:
        return struct.Struct(self.format)

    @property
    def size(self) -> int:
        return self.layout.size


@dataclass(frozen=True)
class ChannelSpec:
    """One output channel: physical value = field value * scale, in `unit`."""

    name: str
    field: str
    scale: float
    unit: str


@dataclass(frozen=True)
class Profile:
    """A parsed, checked profile file."""

    name: str  # the file's stem
    path: Path
    kind: str
    description: str
    source: str
    rate_hz: float  # nominal rate; a URL's ?rate= overrides it (the device's own setting)
    packets: tuple[PacketSpec, ...]  # one sample = one of each, completed by the last
    channels: tuple[ChannelSpec, ...]
    ble_service: str | None = None
    ble_characteristic: str | None = None
    serial_baud: int | None = None
    time_source: str = "arrival"
    time_field: str | None = None
    tick_s: float = 1e-3
    counter_bits: int = 32

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def characteristics(self) -> tuple[str, ...]:
        """The BLE characteristics to subscribe to, in packet order, each once."""
        return tuple(dict.fromkeys(p.characteristic for p in self.packets if p.characteristic))

    def descriptor(self, rate_hz: float | None = None) -> DeviceDescriptor:
        """The device as a wire-v1 device would describe itself: names, units, scales."""
        return DeviceDescriptor(self.kind, f"profile {self.name}", float(rate_hz or self.rate_hz),
                                tuple(ChannelInfo(c.name, c.unit, c.scale) for c in self.channels))


# --------------------------------------------------------------------------- finding


def profile_dirs() -> list[Path]:
    """Where user profiles live, searched in order: $EDGEHAR_PROFILES (os.pathsep-separated)
    or ~/.config/edgehar/profiles ($XDG_CONFIG_HOME respected)."""
    env = os.environ.get(PROFILES_ENV)
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return [Path(config) / "edgehar" / "profiles"]


def available_profiles() -> dict[str, Path]:
    """Every profile name that resolves, mapped to its file (a user's shadows a shipped one)."""
    found: dict[str, Path] = {}
    for folder in [SHIPPED_DIR, *reversed(profile_dirs())]:
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.toml"))})
    return dict(sorted(found.items()))


def load_profile(spec: str) -> Profile:
    """The profile a URL's `profile=` names: a path (has a `/` or ends in .toml) or a name."""
    if "/" in spec or os.sep in spec or spec.endswith(".toml"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ProfileError(f"profile file {path} does not exist")
        return parse_profile(path)
    known = available_profiles()
    if spec not in known:
        close = difflib.get_close_matches(spec, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ProfileError(f"unknown profile {spec!r}{hint} (known: {', '.join(known) or 'none'}; "
                           f"user profiles are read from {os.pathsep.join(map(str, profile_dirs()))})")
    return parse_profile(known[spec])


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Typed reads of one TOML table with errors that name file and key."""

    def __init__(self, path: Path, where: str, table: Any, allowed: set[str]):
        self.path, self.where = path, where
        if not isinstance(table, dict):
            self.fail("", "a table", table)
        unknown = sorted(set(table) - allowed)
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"{path}: {self._key(unknown[0])}: unknown key{hint}; "
                               f"expected one of {', '.join(sorted(allowed))}")
        self.table = table

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if key else self.where

    def fail(self, key: str, expected: str, got: Any) -> None:
        raise ProfileError(f"{self.path}: {self._key(key)}: expected {expected}, got {got!r}")

    def has(self, key: str) -> bool:
        return key in self.table

    def text(self, key: str, default: str | None = None, pattern: re.Pattern | None = None,
             expected: str = "a string") -> str:
        value = self.table.get(key, default)
        if value is None:
            raise ProfileError(f"{self.path}: {self._key(key)}: missing; expected {expected}")
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.fail(key, expected, value)
        return value

    def number(self, key: str, default: float | None = None, positive: bool = True) -> float:
        value = self.table.get(key, default)
        if value is None:
            raise ProfileError(f"{self.path}: {self._key(key)}: missing; expected a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (positive and value <= 0):
            self.fail(key, "a finite number > 0" if positive else "a finite number", value)
        return float(value)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, f"an integer in {lo}..{hi}", value)
        return int(value)

    def uuid(self, key: str, default: str | None = None) -> str:
        return self.text(key, default, _UUID, "a 128-bit UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lower case)")


def _tables(path: Path, data: dict, key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list) or not value:
        raise ProfileError(f"{path}: {key}: expected one or more [[{key}]] tables, got {value!r}")
    return value


def parse_profile(path: Path) -> Profile:
    """Read and check one profile file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read ({exc})") from None
    _Reader(path, "", data, set(_TABLES))  # no stray top-level keys

    device = _Reader(path, "device", data.get("device"), _TABLES["device"])
    ble = _Reader(path, "ble", data["ble"], _TABLES["ble"]) if "ble" in data else None
    serial = _Reader(path, "serial", data["serial"], _TABLES["serial"]) if "serial" in data else None
    if ble is None and serial is None:
        raise ProfileError(f"{path}: expected a [ble] table, a [serial] table or both, got neither")
    default_char = ble.uuid("characteristic", "") if ble is not None and ble.has("characteristic") else None

    packets = [_packet(path, i, t, ble is not None, serial is not None, default_char)
               for i, t in enumerate(_tables(path, data, "packet"))]
    fields = [f for p in packets for f in p.fields if f != "_"]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    if repeated:
        raise ProfileError(f"{path}: packet.fields: expected names used once across packets, {repeated} repeat")

    channels = []
    for i, table in enumerate(_tables(path, data, "channel")):
        r = _Reader(path, f"channel[{i}]", table, _TABLES["channel"])
        name = r.text("name", pattern=_NAME, expected="a channel name (letters, digits, _)")
        field = r.text("field", name)
        if field not in fields:
            r.fail("field", f"one of the packet fields {fields}", field)
        channels.append(ChannelSpec(name, field, r.number("scale"), r.text("unit", "")))
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ProfileError(f"{path}: channel.name: expected distinct names, got {names}")

    time = _Reader(path, "time", data.get("time", {}), _TABLES["time"])
    source = time.text("source", "arrival")
    if source not in TIME_SOURCES:
        time.fail("source", f"one of {TIME_SOURCES}", source)
    time_field = None
    if source == "counter":
        time_field = time.text("field")
        if time_field not in fields:
            time.fail("field", f"one of the packet fields {fields}", time_field)
    elif time.has("field"):
        time.fail("field", "no field with source = \"arrival\"", time.table["field"])

    return Profile(
        name=path.stem, path=path, kind=device.text("kind", "imu"), description=device.text("description", ""),
        source=device.text("source"), rate_hz=device.number("rate_hz"), packets=tuple(packets),
        channels=tuple(channels),
        ble_service=ble.uuid("service") if ble is not None else None, ble_characteristic=default_char,
        serial_baud=serial.integer("baud", 9600, 1, 2**31 - 1) if serial is not None else None,
        time_source=source, time_field=time_field, tick_s=time.number("tick_s", 1e-3),
        counter_bits=time.integer("bits", 32, 1, 64))


def _packet(path: Path, i: int, table: Any, ble: bool, serial: bool, default_char: str | None) -> PacketSpec:
    r = _Reader(path, f"packet[{i}]", table, _TABLES["packet"])
    header_text = r.text("header", "", expected="hex bytes, e.g. \"55 61\"")
    try:
        header = bytes.fromhex(header_text)
    except ValueError:
        r.fail("header", "hex bytes, e.g. \"55 61\"", header_text)
    fmt = r.text("format", expected="a Python struct format, e.g. \"<2x9h\"")
    try:
        layout = struct.Struct(fmt)
    except struct.error as exc:
        r.fail("format", f"a Python struct format, e.g. \"<2x9h\" ({exc})", fmt)
    if fmt[:1] not in "<>!=":
        r.fail("format", "a struct format that starts with its byte order (< little, > big)", fmt)
    n_values = len(layout.unpack(bytes(layout.size)))
    fields = r.table.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) and (f == "_" or _NAME.match(f)) for f in fields):
        r.fail("fields", "a list of names (\"_\" for an unused value)", fields)
    if len(fields) != n_values:
        r.fail("fields", f"{n_values} names, one per value of format {fmt!r}", fields)
    checksum = r.text("checksum", "none")
    if checksum not in CHECKSUMS:
        r.fail("checksum", f"one of {CHECKSUMS}", checksum)
    if len(header) >= layout.size or (checksum != "none" and len(header) + 1 >= layout.size):
        r.fail("format", f"a packet longer than its header and checksum ({layout.size} bytes)", fmt)
    char = r.uuid("characteristic") if r.has("characteristic") else default_char
    if ble and char is None:
        r.fail("characteristic", "a BLE characteristic UUID here or in [ble]", None)
    if serial and not header:
        r.fail("header", "header bytes: a serial stream is framed by them", header_text)
    return PacketSpec(header, fmt, tuple(fields), checksum, char)
