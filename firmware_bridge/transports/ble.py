"""BLE transport (bleak): one protocol frame per notification of the data characteristic.

    ble://AA:BB:CC:DD:EE:FF            the device with this address
    ble://name=edgehar-glove           the device advertising this local name
    ble://service=UUID                 the first device advertising this service
    ble://                             = ble://service=protocol.SERVICE_UUID
    options: ?scan_s=10 (scan time limit), attempts=4 (connect attempts, with backoff),
             adapter=hci0 (BlueZ adapter), profile=NAME|PATH (a device that is not
             wire v1: subscribe to the profile's characteristics instead, and ble://
             alone means its service; rate=HZ is then the device layer's)

connect() scans (a `BLEDevice` from the scan, never a bare address, goes to the client,
so bleak knows the device's D-Bus path), connects with bleak-retry-connector's
`establish_connection` (retries with backoff), then subscribes to the data
characteristic. The notify callback only stamps and enqueues; decoding happens above.
A disconnect makes the chunk iterator raise `ConnectionLost`; reconnecting is the
device layer's job: it calls connect() again, which scans, connects and subscribes
anew (subscriptions do not survive a disconnect).

bleak is imported on first connect(), so importing this module needs neither bleak's
backends nor a Bluetooth adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from .. import protocol
from ..profiles import Profile, load_profile
from ..transport import Chunk, ConnectionLost, DeviceNotFoundError, DeviceURL, Transport, TransportError

log = logging.getLogger(__name__)

ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_LOST = object()  # queue sentinel: the link dropped
_CLOSED = object()  # queue sentinel: close() was called


class BleTransport(Transport):
    """Notifications of protocol.DATA_CHAR_UUID as chunks; send() writes protocol.COMMAND_CHAR_UUID.

    With ?profile= the notifications of the profile's characteristics instead, each
    chunk naming its characteristic (`Chunk.source`); such a device takes no commands.
    """

    def __init__(self, url: DeviceURL):
        super().__init__(url)
        self.profile: Profile | None = load_profile(url.options["profile"]) if "profile" in url.options else None
        if self.profile is not None and self.profile.ble_service is None:
            raise TransportError(url.url, f"profile {self.profile.name!r} ({self.profile.path}) describes no BLE "
                                          "device (it has no [ble] table)")
        self.by, self.value = self._parse_target(url, self.profile.ble_service if self.profile else protocol.SERVICE_UUID)
        self.scan_s = url.number("scan_s", 10.0)
        if not self.scan_s > 0:
            raise TransportError(url.url, f"scan_s={self.scan_s} must be > 0")
        self.attempts = int(url.number("attempts", 4))
        if self.attempts < 1:
            raise TransportError(url.url, f"attempts={self.attempts} must be >= 1")
        self.adapter = url.option("adapter")
        allowed = {"scan_s", "attempts", "adapter"} | ({"profile", "rate"} if self.profile else {"profile"})
        unknown = set(url.options) - allowed
        if unknown:
            raise TransportError(url.url, f"unknown option(s) {sorted(unknown)}; expected {', '.join(sorted(allowed))}")
        self.device: Any = None  # the bleak BLEDevice of the current/last connection
        self.payload_size: int | None = None  # usable bytes per write/notification (ATT MTU - 3)
        self.connections = 0  # successful connect() calls
        self._client: Any = None
        self._command_char: Any = None
        self._queue: asyncio.Queue | None = None

    # ---- URL ---------------------------------------------------------------------

    @staticmethod
    def _parse_target(url: DeviceURL, default_service: str) -> tuple[str, str]:
        """(selector, value): ("address", "AA:..."), ("name", "Glove") or ("service", uuid)."""
        target = url.target.strip("/")
        if not target:
            return "service", default_service
        key, sep, value = target.partition("=")
        if not sep:
            key, value = "address", target
        if key not in ("address", "name", "service") or not value:
            raise TransportError(url.url, "expected ble://AA:BB:CC:DD:EE:FF, ble://name=NAME or ble://service=UUID")
        if key == "address" and not ADDRESS.match(value):
            raise TransportError(url.url, f"{value!r} is not a Bluetooth address (AA:BB:CC:DD:EE:FF); "
                                          "use ble://name=NAME to select by name")
        if key == "service" and not _UUID.match(value):
            raise TransportError(url.url, f"{value!r} is not a 128-bit UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        return key, value.upper() if key == "address" else value.lower() if key == "service" else value

    @property
    def description(self) -> str:
        return {"address": f"address {self.value}", "name": f"name {self.value!r}",
                "service": f"service {self.value}"}[self.by]

    # ---- Transport -----------------------------------------------------------------

    async def connect(self) -> None:
        await self._release()  # a previous, dropped connection still holds its D-Bus resources
        bleak = import_bleak(self.url.url)
        device = await self._scan(bleak)
        queue: asyncio.Queue = asyncio.Queue()
        self._queue = queue

        def on_disconnect(_client: Any) -> None:
            queue.put_nowait(_LOST)  # this connection's queue only; after _CLOSED nobody reads it

        name = device.name or device.address
        try:
            client = await bleak.establish_connection(
                bleak.BleakClient, device, name, disconnected_callback=on_disconnect,
                max_attempts=self.attempts)
        except Exception as exc:  # bleak-retry-connector raises BleakError subclasses with advice
            raise TransportError(self.url.url, f"could not connect to {name} ({device.address}): {exc}") from exc
        self._client = client
        try:
            services = client.services
            wanted = self.profile.characteristics if self.profile else (protocol.DATA_CHAR_UUID,)
            data = [services.get_characteristic(uuid) for uuid in wanted]
            if any(c is None for c in data):
                missing = next(u for u, c in zip(wanted, data) if c is None)
                offered = sorted(c.uuid for s in services for c in s.characteristics)
                what = f"profile {self.profile.name!r}'s" if self.profile else "a wire-v1 device's"
                raise TransportError(self.url.url, f"{name} has no characteristic {missing} ({what} data; it offers "
                                                   f"{', '.join(offered) or 'none'}); is it the device you meant?")
            self._command_char = None if self.profile else services.get_characteristic(protocol.COMMAND_CHAR_UUID)
            # BlueZ reports mtu_size 23 unless acquired; the characteristic knows the negotiated size
            self.payload_size = data[0].max_write_without_response_size

            clock = self.clock

            def on_notify_from(source: str) -> Callable[[Any, bytearray], None]:
                def on_notify(_char: Any, payload: bytearray) -> None:
                    queue.put_nowait(Chunk(clock(), bytes(payload), source))  # stamp and enqueue, nothing else
                return on_notify

            for char in data:
                await client.start_notify(char, on_notify_from(char.uuid.lower() if self.profile else ""))
        except TransportError:
            await self._release()
            raise
        except Exception as exc:
            await self._release()
            raise TransportError(self.url.url, f"connected to {name} but could not subscribe: {exc}") from exc
        self.device = device
        self.connections += 1
        log.info("BLE connected to %s (%s), %d-byte payload", name, device.address, self.payload_size)

    async def chunks(self) -> AsyncIterator[Chunk]:
        queue = self._queue
        if queue is None:
            raise TransportError(self.url.url, "not connected; call connect() first")
        while True:
            item = await queue.get()
            if item is _CLOSED:
                return
            if item is _LOST:
                raise ConnectionLost(self.url.url, f"BLE link to {self._device_label()} dropped")
            yield item

    async def send(self, data: bytes) -> None:
        client, char = self._client, self._command_char
        if client is None or not client.is_connected:
            raise ConnectionLost(self.url.url, "not connected")
        if char is None:
            raise TransportError(self.url.url, f"{self._device_label()} has no command characteristic "
                                               f"{protocol.COMMAND_CHAR_UUID}")
        response = "write" in char.properties  # acknowledged write when offered
        try:
            await client.write_gatt_char(char, bytes(data), response=response)
        except Exception as exc:
            if not client.is_connected:
                raise ConnectionLost(self.url.url, f"link dropped during a write: {exc}") from exc
            raise TransportError(self.url.url, f"write to {self._device_label()} failed: {exc}") from exc

    async def close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(_CLOSED)
        await self._release()

    # ---- internals ----------------------------------------------------------------

    def _device_label(self) -> str:
        d = self.device
        return f"{d.name or '?'} ({d.address})" if d is not None else self.description

    async def _release(self) -> None:
        client, self._client = self._client, None
        self._command_char = None
        if client is not None:
            with contextlib.suppress(Exception):  # "already disconnected" also frees the client's bus
                await client.disconnect()

    def _matches(self, device: Any, adv: Any) -> bool:
        if self.by == "address":
            return device.address.upper() == self.value
        if self.by == "name":
            return self.value in (device.name, adv.local_name)
        return self.value in {u.lower() for u in adv.service_uuids}

    async def _scan(self, bleak: Any) -> Any:
        """The first advertising device that matches; DeviceNotFoundError lists what was seen."""
        seen: dict[str, Any] = {}
        found: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_advertisement(device: Any, adv: Any) -> None:
            seen[device.address] = (device, adv)
            if not found.done() and self._matches(device, adv):
                found.set_result(device)

        # No OS-level filter: matching here lets a miss say what *was* around.
        async with scanning(bleak, on_advertisement, self.url.url, self.adapter):
            # asyncio.wait, not wait_for: before Python 3.12, wait_for swallows a
            # cancellation that arrives as the awaited future completes (CPython gh-86296)
            await asyncio.wait({found}, timeout=self.scan_s)
        if found.done():
            return found.result()
        listing = [f"{d.name or '?'} ({addr}, rssi {a.rssi})" for addr, (d, a) in sorted(seen.items())]
        raise DeviceNotFoundError(self.url.url, f"no device with {self.description} within {self.scan_s:g} s", listing)


@contextlib.asynccontextmanager
async def scanning(bleak: "_Bleak", on_advertisement: Callable[[Any, Any], None], url: str,
                   adapter: str | None = None) -> AsyncIterator[None]:
    """A BLE scan that calls on_advertisement(device, advertisement_data) while the body runs.

    A Bluetooth stack that cannot scan (no D-Bus system bus, no BlueZ on it, no adapter,
    access denied) raises TransportError(url, one-line reason). Scans of one process are
    serialised: BlueZ keeps one discovery session per D-Bus client, and bleak shares one
    connection, so the first of two overlapping scans to stop would end the other's
    session ("No discovery started").
    """
    kwargs = {"bluez": {"adapter": adapter}} if adapter else {}
    lock = _SCAN_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        try:
            async with bleak.BleakScanner(on_advertisement, **kwargs):
                yield
        except bleak.BleakError as exc:
            if "ServiceUnknown" in str(exc):  # the bus is there, BlueZ is not
                raise TransportError(url, "BlueZ (org.bluez) is not on the D-Bus system bus; "
                                          "is bluetoothd running?") from exc
            # args[0] is the message; BleakBluetoothNotAvailableError's str() is its args tuple
            raise TransportError(url, f"cannot scan: {exc.args[0] if exc.args else exc}") from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise TransportError(url, f"BlueZ is not reachable on the D-Bus system bus ({exc}); "
                                      "is bluetoothd running?") from exc


_SCAN_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


class _Bleak:
    """bleak and bleak-retry-connector, imported on first use."""

    def __init__(self) -> None:
        import bleak
        import bleak.exc
        import bleak_retry_connector

        self.BleakScanner = bleak.BleakScanner
        self.BleakClient = bleak.BleakClient
        self.BleakError = bleak.exc.BleakError
        self.establish_connection = bleak_retry_connector.establish_connection


_bleak: _Bleak | None = None


def import_bleak(url: str) -> _Bleak:
    """bleak, imported once; a missing install is a TransportError naming what to pip install."""
    global _bleak
    if _bleak is None:
        try:
            _bleak = _Bleak()
        except ImportError as exc:
            raise TransportError(url, f"BLE needs bleak and bleak-retry-connector ({exc}); "
                                      "pip install bleak bleak-retry-connector") from exc
    return _bleak
