"""What a user can connect to: the serial ports the OS lists and the BLE devices in range.

Backs `edgehar devices`. Each entry carries the device URL that `edgehar live` and
`record` take for it, so a user copies a URL instead of composing one. Serial ports come
from pyserial's `list_ports` (on Linux: /dev/ttyACM*, ttyUSB*, ttyS*, ttyAMA*, ... with
USB details from sysfs); BLE devices from a bleak scan, through the same scanner the BLE
transport connects with, flagged when they advertise the edgehar service.

Torch-free, like the rest of firmware_bridge; bleak is imported only when a scan runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import protocol
from .transport import TransportError
from .transports.ble import ADDRESS, import_bleak, scanning


@dataclass(frozen=True)
class SerialPort:
    """One port as pyserial lists it; USB fields are None for a UART or when the OS does not say."""

    device: str  # /dev/ttyACM0, COM3
    description: str | None
    vid: int | None = None  # USB vendor id
    pid: int | None = None  # USB product id
    manufacturer: str | None = None
    product: str | None = None
    serial_number: str | None = None

    @property
    def url(self) -> str:
        return f"serial://{quote(self.device, safe='/:')}"

    @property
    def usb_id(self) -> str | None:
        """vendor:product in lsusb's form (2e8a:000a), or None if this is no USB device."""
        return None if self.vid is None else f"{self.vid:04x}:{(self.pid or 0):04x}"


@dataclass(frozen=True)
class BleDevice:
    """A BLE device heard advertising during a scan."""

    name: str | None
    address: str
    rssi: int | None  # dBm of the strongest advertisement heard
    service_uuids: tuple[str, ...] = field(default=())
    url: str | None = None  # what live/record take to connect to it; None when it cannot be named

    @property
    def edgehar(self) -> bool:
        """Advertises the edgehar service: a glove or IMU speaking the wire protocol."""
        return protocol.SERVICE_UUID in self.service_uuids


def serial_ports() -> list[SerialPort]:
    """The serial ports the OS lists, in pyserial's natural order (ttyS2 before ttyS10);
    pseudo-terminals are not listed."""
    from serial.tools import list_ports

    return [SerialPort(device=p.device, description=None if p.description in (None, "", "n/a") else p.description,
                       vid=p.vid, pid=p.pid, manufacturer=p.manufacturer, product=p.product,
                       serial_number=p.serial_number)
            for p in sorted(list_ports.comports())]


async def scan_ble(seconds: float) -> list[BleDevice]:
    """Every device heard advertising within `seconds`: edgehar devices first, then by signal strength.

    Raises TransportError with a one-line reason when the Bluetooth stack cannot scan
    (no D-Bus system bus, no BlueZ, no adapter).
    """
    bleak = import_bleak("ble://")
    heard: dict[str, tuple[Any, Any]] = {}
    strongest: dict[str, int] = {}

    def on_advertisement(device: Any, adv: Any) -> None:
        heard[device.address] = (device, adv)
        if adv.rssi is not None:
            strongest[device.address] = max(adv.rssi, strongest.get(device.address, adv.rssi))

    async with scanning(bleak, on_advertisement, "ble://"):
        await asyncio.sleep(seconds)
    names = [adv.local_name or device.name for device, adv in heard.values()]
    found = []
    for address, (device, adv) in heard.items():
        name = adv.local_name or device.name
        found.append(BleDevice(name=name, address=address, rssi=strongest.get(address),
                               service_uuids=tuple(sorted({u.lower() for u in adv.service_uuids})),
                               url=_ble_url(name, address, unique=names.count(name) == 1)))
    return sorted(found, key=lambda d: (not d.edgehar, -(d.rssi if d.rssi is not None else -999), d.address))


def _ble_url(name: str | None, address: str, unique: bool) -> str | None:
    """ble://name=NAME where the name picks this device alone (it survives a changing random
    address and works on macOS, whose addresses are per-host UUIDs), else ble://ADDRESS."""
    if name and unique:
        return f"ble://name={quote(name, safe='')}"
    return f"ble://{address.upper()}" if ADDRESS.match(address) else None


@dataclass
class Devices:
    """Everything `edgehar devices` found; `ble_error` says why BLE was not scanned."""

    serial: list[SerialPort]
    ble: list[BleDevice]
    ble_seconds: float
    ble_error: str | None = None


def discover(seconds: float) -> Devices:
    """List the serial ports and scan BLE for `seconds`. A Bluetooth stack that cannot scan
    leaves `ble` empty and says why in `ble_error`; the serial ports are listed regardless."""
    ports = serial_ports()
    try:
        ble, error = asyncio.run(scan_ble(seconds)), None
    except TransportError as exc:
        ble, error = [], exc.reason
    return Devices(serial=ports, ble=ble, ble_seconds=seconds, ble_error=error)
