"""The transport seam: one small async interface, one module per way bytes arrive.

Like pyserial's `serial_for_url`, a transport is chosen by the scheme of a URL:

    serial:///dev/ttyACM0?baud=921600&format=binary   pyserial
    ble://AA:BB:CC:DD:EE:FF | ble://name=Glove | ble://service=UUID   bleak
    ...?profile=NAME|PATH                             a device that is not wire v1 (profiles.py)
    replay://path/to/session?stream=glove&speed=4     a recorded session
    sim://glove?drift_ppm=80                          simulated firmware, in-process

Schemes are entry points in the `edgehar.transports` group (pyproject.toml), so another
installed package can add one; see edgehar.plugins.

A transport only moves bytes: it yields raw chunks (a serial read, one BLE
notification) stamped with the host's monotonic arrival time. Decoding, clock mapping
and health live above it (firmware_bridge.device), so every transport reaches the
same protocol code, and tests can inject any transport class.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import EdgeharError
from ..plugins import PluginError, load_plugin, plugin_names


class TransportError(EdgeharError):
    """A device cannot be reached or was lost; carries the URL."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class DeviceNotFoundError(TransportError):
    """No device matched; `found` lists what was seen instead (e.g. a BLE scan)."""

    def __init__(self, url: str, reason: str, found: list[str] | None = None):
        self.found = found or []
        seen = f" (found: {', '.join(self.found)})" if self.found else " (found none)"
        super().__init__(url, reason + seen)


class ConnectionLost(TransportError):
    """The link dropped after it was up (unplugged, out of range); reconnecting may help."""


@dataclass(frozen=True)
class Chunk:
    """Bytes as they arrived: a serial read or one BLE notification."""

    t_host: float  # host monotonic seconds at arrival (NOT the sample time)
    data: bytes
    source: str = ""  # the BLE characteristic (UUID) that notified them; "" for one-stream links


@dataclass(frozen=True)
class DeviceURL:
    """A parsed device URL: scheme, target (port, address, session path...) and options."""

    url: str
    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> "DeviceURL":
        parts = urlsplit(url)
        if not parts.scheme or "://" not in url:
            raise TransportError(url, f"not a device URL; expected SCHEME://TARGET with scheme one of {known_schemes()}")
        target = unquote(parts.netloc + parts.path)
        options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return cls(url, parts.scheme, target, options)

    def option(self, name: str, default: str | None = None, allowed: tuple[str, ...] | None = None) -> str | None:
        value = self.options.get(name, default)
        if allowed is not None and value not in allowed:
            raise TransportError(self.url, f"{name}={value!r} is not one of {allowed}")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.options.get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise TransportError(self.url, f"{name}={text!r} is not a number") from None
        if not math.isfinite(value):
            raise TransportError(self.url, f"{name}={text!r} is not a finite number")
        return value


class Transport(abc.ABC):
    """Async byte source for one device. Use as `async with transport: async for chunk in transport`.

    `clock` stamps Chunk.t_host (host monotonic by default); the device layer sets it
    to its own clock before connect(), so tests can run a device faster than real time.
    `realtime` is False for a source that does not pace itself (a replay at speed=0):
    its arrival times say nothing about sample times.
    """

    clock: Callable[[], float] = staticmethod(time.monotonic)
    realtime: bool = True

    def __init__(self, url: DeviceURL):
        self.url = url

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the link; raises DeviceNotFoundError / TransportError with a one-line reason."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the link; safe to call twice."""

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[Chunk]:
        """Raw chunks until the link drops (raises ConnectionLost) or close() (ends)."""

    async def send(self, data: bytes) -> None:
        """Host -> device bytes (e.g. a descriptor request); transports without a back channel ignore it."""

    async def __aenter__(self) -> "Transport":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self.chunks()


TRANSPORT_GROUP = "edgehar.transports"  # entry-point group: scheme -> Transport subclass

# Schemes added at run time; they shadow installed ones (tests inject fakes here).
_REGISTERED: dict[str, type[Transport]] = {}


def register_transport(scheme: str, cls: type[Transport]) -> None:
    """Add or replace a scheme for this process, without installing a package."""
    _REGISTERED[scheme] = cls


def known_schemes() -> list[str]:
    """Every scheme a URL can use: the installed entry points and the registered ones."""
    return sorted(set(plugin_names(TRANSPORT_GROUP)) | set(_REGISTERED))


def open_transport(url: str) -> Transport:
    """The transport for a URL, not yet connected; unknown schemes fail with the known ones.

    Only the scheme's own module is imported (bleak loads for ble:// alone); one whose
    import fails is a TransportError naming the entry point.
    """
    parsed = DeviceURL.parse(url)
    cls = _REGISTERED.get(parsed.scheme)
    if cls is None:
        try:
            cls = load_plugin(TRANSPORT_GROUP, parsed.scheme)
        except PluginError as exc:
            raise TransportError(url, str(exc)) from None
    if cls is None:
        raise TransportError(url, f"unknown scheme {parsed.scheme!r}; expected one of {known_schemes()}")
    return cls(parsed)
