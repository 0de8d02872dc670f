"""An emulated BlueZ on a private D-Bus bus: the Bluetooth stack replaced at its seam.

bleak on Linux does not touch a radio; it talks to BlueZ (`org.bluez`) over the D-Bus
*system* bus, which it finds through `DBUS_SYSTEM_BUS_ADDRESS`. So a private
`dbus-daemon` plus a service that answers like BlueZ lets the real, unmodified bleak
(and bleak-retry-connector) scan, connect, subscribe and lose the link on a machine
with no adapter. Tests and demos use it; nothing in the runtime imports it.

    with PrivateBus() as bus:                      # a dbus-daemon of our own
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        async with FakeBlueZ(bus.address) as bluez:  # org.bluez on that bus
            dev = bluez.add_device("AA:BB:CC:DD:EE:01", "Glove", services=[...])
            ...                                    # bleak finds, connects, subscribes
            dev.notify(DATA_CHAR_UUID, frame)      # a notification
            dev.drop_link()                        # supervision timeout: out of range
            dev.come_back()                        # advertising again

What bleak 3.x calls (read from bleak/backends/bluezdbus, the ground truth) and what is
emulated here: ObjectManager.GetManagedObjects and InterfacesAdded/Removed; Adapter1
(Roles must contain "central", Powered) with SetDiscoveryFilter/StartDiscovery/
StopDiscovery/RemoveDevice; Device1 Connect/Disconnect with Connected then
ServicesResolved; GattCharacteristic1 StartNotify/StopNotify/ReadValue/WriteValue with
notifications as PropertiesChanged of `Value`; `MTU` on characteristics (BlueZ >= 5.62),
which bleak turns into `max_write_without_response_size` = MTU - 3.

Deliberately absent: `NotifyAcquired`/`AcquireNotify` (bleak would take the fd route),
pairing, descriptors. Like BlueZ for an unbonded device, GATT objects appear on connect
and are removed on disconnect, notification sessions belong to the D-Bus client that
started them and end with the link or with that client, and a scanner only sees a
device while it advertises (in range and not connected).
"""

import asyncio
import array
import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from ...errors import EdgeharError

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ERR_FAILED = "org.bluez.Error.Failed"
ERR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_IN_PROGRESS = "org.bluez.Error.InProgress"

DEFAULT_MTU = 247  # a typical negotiated LE MTU: 244 bytes of payload per notification


class BusError(EdgeharError):
    """The private dbus-daemon could not be started."""


# --------------------------------------------------------------------------------------
# The private bus
# --------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it dies (Linux
    prctl PR_SET_PDEATHSIG), so even a killed owner leaks no daemon."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class PrivateBus:
    """A private `dbus-daemon`, stopped on exit; `address` goes into DBUS_SYSTEM_BUS_ADDRESS.

    Usable as a context manager or with start()/stop(). The daemon runs with the session
    configuration (anyone may own any name), listens on a socket in a private temporary
    directory, and is killed and reaped on stop(), so nothing outlives the owner.
    """

    def __init__(self, daemon: str | None = None, start_timeout_s: float = 10.0):
        self.daemon = daemon or shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
        self.start_timeout_s = start_timeout_s
        self.address: str | None = None
        self._proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> str:
        if self._proc is not None:
            return self.address  # type: ignore[return-value]
        if not os.path.exists(self.daemon):
            raise BusError(f"dbus-daemon not found at {self.daemon}; install the 'dbus' package")
        self._dir = tempfile.TemporaryDirectory(prefix="edgehar-dbus-")
        cmd = [self.daemon, "--session", "--nofork", "--nopidfile", "--print-address=1",
               f"--address=unix:dir={self._dir.name}"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
        line = self._read_address()
        if not line:
            err = self._stop_process()
            raise BusError(f"dbus-daemon printed no address: {err.strip() or 'no output'}")
        self.address = line
        return line

    def _read_address(self) -> str:
        result: list[str] = []

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            result.append(self._proc.stdout.readline().decode().strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        return result[0] if result else ""

    def _stop_process(self) -> str:
        proc, self._proc = self._proc, None
        err = ""
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    if stream is proc.stderr:
                        with contextlib.suppress(Exception):
                            err = stream.read().decode(errors="replace")
                    stream.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        return err

    def stop(self) -> None:
        self._stop_process()
        self.address = None

    @property
    def env(self) -> dict[str, str]:
        """What a bleak process needs in its environment to find this bus's BlueZ."""
        assert self.address, "bus not started"
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def __enter__(self) -> "PrivateBus":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leak a daemon
        if getattr(self, "_proc", None) is not None:
            with contextlib.suppress(Exception):
                self._stop_process()


# --------------------------------------------------------------------------------------
# GATT layout
# --------------------------------------------------------------------------------------


@dataclass
class CharSpec:
    """One characteristic: UUID, BlueZ flags ("notify", "write", "read", ...), initial value."""

    uuid: str
    flags: tuple[str, ...]
    value: bytes = b""


@dataclass
class ServiceSpec:
    """One primary service and its characteristics."""

    uuid: str
    chars: list[CharSpec] = field(default_factory=list)


def _device_path(adapter_path: str, address: str) -> str:
    return f"{adapter_path}/dev_{address.upper().replace(':', '_')}"


# --------------------------------------------------------------------------------------
# D-Bus interfaces (names and signatures as in BlueZ's doc/org.bluez.*.rst)
# --------------------------------------------------------------------------------------


class Adapter1(ServiceInterface):
    def __init__(self, bluez: "FakeBlueZ", address: str, name: str):
        super().__init__("org.bluez.Adapter1")
        self._bluez = bluez
        self._address = address
        self._name = name
        self.discovering = False

    @method()
    def StartDiscovery(self):  # noqa: N802  (D-Bus names)
        self._bluez._start_discovery(self._bluez._sender)

    @method()
    def StopDiscovery(self):  # noqa: N802
        self._bluez._stop_discovery(self._bluez._sender)

    @method()
    def SetDiscoveryFilter(self, properties: "a{sv}"):  # noqa: N802, F821
        self._bluez._set_filter(self._bluez._sender, properties)

    @method()
    def GetDiscoveryFilters(self) -> "as":  # noqa: N802, F821
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]

    @method()
    def RemoveDevice(self, device: "o"):  # noqa: N802, F821
        self._bluez._remove_device(device)

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":  # noqa: N802, F821
        return self._address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":  # noqa: N802, F821
        return "public"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":  # noqa: N802, F821
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":  # noqa: N802, F821
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Class(self) -> "u":  # noqa: N802, F821
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> "b":  # noqa: N802, F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def PowerState(self) -> "s":  # noqa: N802, F821
        return "on"

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Pairable(self) -> "b":  # noqa: N802, F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> "b":  # noqa: N802, F821
        return self.discovering

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":  # noqa: N802, F821
        return []

    @dbus_property(access=PropertyAccess.READ)
    def Modalias(self) -> "s":  # noqa: N802, F821
        return "usb:v1D6Bp0246d0548"

    @dbus_property(access=PropertyAccess.READ)
    def Roles(self) -> "as":  # noqa: N802, F821
        return ["central", "peripheral"]


class Device1(ServiceInterface):
    def __init__(self, dev: "FakeDevice"):
        super().__init__("org.bluez.Device1")
        self._dev = dev

    @method()
    async def Connect(self):  # noqa: N802
        await self._dev._connect()

    @method()
    def Disconnect(self):  # noqa: N802
        self._dev._teardown(reason="local")

    @method()
    def Pair(self):  # noqa: N802
        raise DBusError(ERR_NOT_SUPPORTED, "pairing is not emulated")

    @method()
    def CancelPairing(self):  # noqa: N802
        raise DBusError(ERR_DOES_NOT_EXIST, "no pairing in progress")

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":  # noqa: N802, F821
        return self._dev.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":  # noqa: N802, F821
        return "random"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":  # noqa: N802, F821
        return self._dev.name

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":  # noqa: N802, F821
        return self._dev.name or self._dev.address.replace(":", "-")

    @dbus_property(access=PropertyAccess.READ)
    def Appearance(self) -> "q":  # noqa: N802, F821
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> "o":  # noqa: N802, F821
        return self._dev.bluez.adapter_path

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Bonded(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Trusted(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Blocked(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def LegacyPairing(self) -> "b":  # noqa: N802, F821
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> "b":  # noqa: N802, F821
        return self._dev.connected

    @dbus_property(access=PropertyAccess.READ)
    def ServicesResolved(self) -> "b":  # noqa: N802, F821
        return self._dev.services_resolved

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":  # noqa: N802, F821
        return list(self._dev.service_uuids)

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> "n":  # noqa: N802, F821
        return self._dev.rssi

    @dbus_property(access=PropertyAccess.READ)
    def TxPower(self) -> "n":  # noqa: N802, F821
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> "a{qv}":  # noqa: N802, F821
        return {k: Variant("ay", bytes(v)) for k, v in self._dev.manufacturer_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":  # noqa: N802, F821
        return {k: Variant("ay", bytes(v)) for k, v in self._dev.service_data.items()}


class GattService1(ServiceInterface):
    def __init__(self, uuid: str, device_path: str, handle: int):
        super().__init__("org.bluez.GattService1")
        self._uuid, self._device_path, self._handle = uuid, device_path, handle

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: N802, F821
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # noqa: N802, F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Device(self) -> "o":  # noqa: N802, F821
        return self._device_path

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> "q":  # noqa: N802, F821
        return self._handle


class GattCharacteristic1(ServiceInterface):
    def __init__(self, dev: "FakeDevice", spec: CharSpec, path: str, service_path: str, handle: int):
        super().__init__("org.bluez.GattCharacteristic1")
        self._dev, self.spec, self.path, self._service_path, self._handle = dev, spec, path, service_path, handle
        self.value = bytes(spec.value)
        self.subscribers: set[str] = set()  # D-Bus clients with a StartNotify session

    @property
    def notifying(self) -> bool:
        return bool(self.subscribers)

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: N802, F821
        self._dev._require_connected()
        if "read" not in self.spec.flags:
            raise DBusError(ERR_NOT_PERMITTED, "Read not permitted")
        return self.value

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}"):  # noqa: N802, F821
        self._dev._require_connected()
        if not {"write", "write-without-response"} & set(self.spec.flags):
            raise DBusError(ERR_NOT_PERMITTED, "Write not permitted")
        self.value = bytes(value)
        self._dev._on_write(self.spec.uuid, self.value)

    @method()
    def StartNotify(self):  # noqa: N802
        self._dev._require_connected()
        if not {"notify", "indicate"} & set(self.spec.flags):
            raise DBusError(ERR_NOT_SUPPORTED, "Operation is not supported")
        was = self.notifying
        self.subscribers.add(self._dev.bluez._sender or "?")
        if not was:
            self.emit_properties_changed({"Notifying": True})
            self._dev._on_notify_state(self.spec.uuid, True)

    @method()
    def StopNotify(self):  # noqa: N802
        self._dev._require_connected()
        sender = self._dev.bluez._sender or "?"
        if sender not in self.subscribers:
            raise DBusError(ERR_FAILED, "No notify session started")
        self._forget(sender)

    def _forget(self, sender: str | None) -> None:
        """End one client's notify session (all of them with sender=None)."""
        was = self.notifying
        if sender is None:
            self.subscribers.clear()
        else:
            self.subscribers.discard(sender)
        if was and not self.notifying:
            self.emit_properties_changed({"Notifying": False})
            self._dev._on_notify_state(self.spec.uuid, False)

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: N802, F821
        return self.spec.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # noqa: N802, F821
        return self._service_path

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # noqa: N802, F821
        return self.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> "b":  # noqa: N802, F821
        return self.notifying

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # noqa: N802, F821
        return list(self.spec.flags)

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> "q":  # noqa: N802, F821
        return self._dev.mtu

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> "q":  # noqa: N802, F821
        return self._handle


# --------------------------------------------------------------------------------------
# The emulated stack
# --------------------------------------------------------------------------------------

NotifyStateCallback = Callable[[str, bool], None]  # (char uuid, notifying)
WriteCallback = Callable[[str, bytes], None]  # (char uuid, value)
ConnectionCallback = Callable[[bool], None]  # connected


class FakeDevice:
    """A remote LE peripheral as BlueZ shows it, plus the peripheral-side controls.

    Peripheral side (call from the FakeBlueZ's event loop): `notify(uuid, data)`,
    `drop_link()`, `come_back()`, and the callbacks `on_write`, `on_notify_state`,
    `on_connection`. Central side: whatever bleak does over D-Bus.
    """

    def __init__(self, bluez: "FakeBlueZ", address: str, name: str | None, services: list[ServiceSpec],
                 service_uuids: list[str] | None, manufacturer_data: dict[int, bytes] | None,
                 service_data: dict[str, bytes] | None, rssi: int, mtu: int, connect_latency_s: float):
        self.bluez = bluez
        self.address = address.upper()
        self.name = name or ""
        self.path = _device_path(bluez.adapter_path, self.address)
        self.services = services
        self.service_uuids = [u.lower() for u in (service_uuids if service_uuids is not None else [s.uuid for s in services])]
        self.manufacturer_data = dict(manufacturer_data or {})
        self.service_data = {k.lower(): v for k, v in (service_data or {}).items()}
        self.rssi = rssi
        self.mtu = mtu
        self.connect_latency_s = connect_latency_s
        self.in_range = True
        self.connected = False
        self.services_resolved = False
        self.exported = False
        self._rssi_flip = False
        self.connections = 0  # successful Connect() calls, for tests
        self.on_write: WriteCallback | None = None
        self.on_notify_state: NotifyStateCallback | None = None
        self.on_connection: ConnectionCallback | None = None
        self._iface = Device1(self)
        self._gatt: list[tuple[str, ServiceInterface]] = []  # exported GATT objects, in order
        self._chars: dict[str, GattCharacteristic1] = {}  # uuid -> characteristic (while connected)
        self._changed = asyncio.Event()

    # ---- peripheral side ------------------------------------------------------------

    @property
    def advertising(self) -> bool:
        return self.in_range and not self.connected

    def notifying(self, char_uuid: str) -> bool:
        char = self._chars.get(char_uuid.lower())
        return bool(char and self.connected and char.notifying)

    def notify(self, char_uuid: str, data: bytes) -> bool:
        """Send one notification; False (and nothing sent) unless a central subscribed."""
        char = self._chars.get(char_uuid.lower())
        if char is None or not self.connected or not char.notifying:
            return False
        if len(data) > self.mtu - 3:
            raise ValueError(f"notification of {len(data)} bytes exceeds the ATT payload {self.mtu - 3}")
        char.value = bytes(data)
        char.emit_properties_changed({"Value": char.value})
        return True

    def drop_link(self, out_of_range: bool = True) -> None:
        """The link is lost without a Disconnect (supervision timeout); out of range until come_back()."""
        if out_of_range:
            self.in_range = False
        self._teardown(reason="remote")

    def come_back(self) -> None:
        """Back in range: advertising again, so a scan finds it and Connect works."""
        self.in_range = True
        self._touch()

    async def wait_for(self, predicate: Callable[["FakeDevice"], bool], timeout_s: float | None = 10.0) -> None:
        """Wait until predicate(self) holds (state changes wake the waiter); None waits forever."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not predicate(self):
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.address}: condition not met within {timeout_s} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # ---- BlueZ side -----------------------------------------------------------------

    def _touch(self) -> None:
        self._changed.set()

    def _require_connected(self) -> None:
        if not self.connected:
            raise DBusError(ERR_NOT_CONNECTED, "Not Connected")

    def _on_write(self, uuid: str, value: bytes) -> None:
        if self.on_write is not None:
            self.on_write(uuid, value)

    def _on_notify_state(self, uuid: str, on: bool) -> None:
        self._touch()
        if self.on_notify_state is not None:
            self.on_notify_state(uuid, on)

    def _export(self) -> None:
        if not self.exported:
            self.bluez.bus.export(self.path, self._iface)  # InterfacesAdded: a scanner sees it now
            self.exported = True

    def _unexport(self) -> None:
        self._remove_gatt()
        if self.exported:
            self.bluez.bus.unexport(self.path, self._iface)
            self.exported = False

    async def _connect(self) -> None:
        if self.connected:
            return
        await asyncio.sleep(self.connect_latency_s)
        if not self.in_range:
            # what BlueZ answers when the LE create-connection times out
            await asyncio.sleep(self.bluez.connect_timeout_s)
            raise DBusError(ERR_FAILED, "Software caused connection abort")
        self.connected = True
        self.connections += 1
        self._iface.emit_properties_changed({"Connected": True})
        self._add_gatt()  # discovery: InterfacesAdded for each GATT object
        self.services_resolved = True
        self._iface.emit_properties_changed({"ServicesResolved": True})
        self._touch()
        if self.on_connection is not None:
            self.on_connection(True)

    def _teardown(self, reason: str) -> None:
        if not self.connected:
            return
        for char in self._chars.values():
            char._forget(None)  # notify sessions do not survive the link
        self.services_resolved = False
        self._iface.emit_properties_changed({"ServicesResolved": False})
        self.connected = False
        self._iface.emit_properties_changed({"Connected": False})
        self._remove_gatt()  # unbonded device: BlueZ drops its GATT objects
        log.debug("%s disconnected (%s)", self.address, reason)
        self._touch()
        if self.on_connection is not None:
            self.on_connection(False)

    def _add_gatt(self) -> None:
        handle = 0x000C  # BlueZ-style handles: paths end in 4 hex digits that bleak parses
        for service in self.services:
            spath = f"{self.path}/service{handle:04x}"
            siface = GattService1(service.uuid.lower(), self.path, handle)
            self.bluez.bus.export(spath, siface)
            self._gatt.append((spath, siface))
            handle += 1
            for spec in service.chars:
                cpath = f"{spath}/char{handle:04x}"
                spec = CharSpec(spec.uuid.lower(), tuple(spec.flags), spec.value)
                ciface = GattCharacteristic1(self, spec, cpath, spath, handle)
                self.bluez.bus.export(cpath, ciface)
                self._gatt.append((cpath, ciface))
                self._chars[spec.uuid] = ciface
                handle += 3  # declaration, value, CCCD
            handle += 1

    def _remove_gatt(self) -> None:
        for path, iface in reversed(self._gatt):
            self.bluez.bus.unexport(path, iface)
        self._gatt.clear()
        self._chars.clear()

    def _forget_sender(self, sender: str) -> None:
        for char in self._chars.values():
            char._forget(sender)

    def _advertise(self) -> None:
        """One advertisement seen by the adapter: export, or an RSSI update bleak treats as one."""
        if not self.exported:
            self._export()
            return
        self._rssi_flip = not self._rssi_flip  # a new value each time, as a real RSSI would be
        self.rssi += 1 if self._rssi_flip else -1
        self._iface.emit_properties_changed({"RSSI": self.rssi})


class FakeBlueZ:
    """`org.bluez` with one adapter on the bus at `address` (use `async with`, or start()/stop())."""

    def __init__(self, address: str, adapter: str = "hci0", adapter_address: str = "00:1A:7D:DA:71:13",
                 adv_interval_s: float = 0.02, connect_timeout_s: float = 0.5):
        self.address = address
        self.adapter_path = f"/org/bluez/{adapter}"
        self.adv_interval_s = adv_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.bus: MessageBus = MessageBus(bus_address=address, bus_type=BusType.SESSION)
        self.adapter = Adapter1(self, adapter_address, "edgehar-fake-bluez")
        self.devices: dict[str, FakeDevice] = {}  # by address
        self._sessions: dict[str, dict[str, Any]] = {}  # discovery sessions: sender -> filter
        self._filters: dict[str, dict[str, Any]] = {}
        self._sender: str | None = None  # sender of the method call being handled
        self._adv_task: asyncio.Task | None = None

    async def start(self) -> "FakeBlueZ":
        await self.bus.connect()
        self.bus.add_message_handler(self._on_message)
        await self.bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                    interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                                    body=["type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'"]))
        self.bus.export(self.adapter_path, self.adapter)
        await self.bus.request_name(BLUEZ)
        self._adv_task = asyncio.create_task(self._advertiser())
        return self

    async def stop(self) -> None:
        if self._adv_task is not None:
            self._adv_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adv_task
            self._adv_task = None
        for dev in self.devices.values():
            dev._teardown(reason="stack stopped")
        if self.bus.connected:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await self.bus.wait_for_disconnect()

    async def __aenter__(self) -> "FakeBlueZ":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def add_device(self, address: str, name: str | None, services: list[ServiceSpec] | None = None, *,
                   service_uuids: list[str] | None = None, manufacturer_data: dict[int, bytes] | None = None,
                   service_data: dict[str, bytes] | None = None, rssi: int = -55, mtu: int = DEFAULT_MTU,
                   connect_latency_s: float = 0.005) -> FakeDevice:
        """A peripheral in range and advertising; it appears on the bus when a scan hears it."""
        dev = FakeDevice(self, address, name, list(services or []), service_uuids, manufacturer_data,
                         service_data, rssi, mtu, connect_latency_s)
        if dev.address in self.devices:
            raise ValueError(f"device {dev.address} already exists")
        self.devices[dev.address] = dev
        return dev

    def backlog(self) -> int:
        """Bytes written to our D-Bus socket that the daemon has not read yet (TIOCOUTQ)."""
        sock = getattr(self.bus, "_sock", None)
        if sock is None or sock.fileno() < 0:
            return 0
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
        except OSError:
            return 0
        return buf[0]

    async def drain(self, max_backlog: int = 32 * 1024) -> None:
        """Wait until the socket to the daemon has room again.

        dbus-fast (5.x) treats EAGAIN on a full socket as a dead connection and drops the
        bus, so whoever pushes notifications faster than real time must pace on this,
        much as a real link is paced by its connection interval.
        """
        await asyncio.sleep(0)  # always yield: a central in this loop gets to read
        while self.bus.connected and (self.backlog() > max_backlog or self._writer_busy()):
            await asyncio.sleep(0.0005)

    def _writer_busy(self) -> bool:
        writer = getattr(self.bus, "_writer", None)
        return bool(writer is not None and (writer.buf is not None or writer.messages))

    # ---- bus plumbing ----------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        """Runs before dbus-fast dispatches: remember who calls (BlueZ keys sessions by client)."""
        if msg.message_type == MessageType.METHOD_CALL:
            self._sender = msg.sender
        elif (msg.message_type == MessageType.SIGNAL and msg.member == "NameOwnerChanged"
              and msg.sender == "org.freedesktop.DBus"):
            name, _old, new = msg.body
            if name.startswith(":") and not new:
                self._forget_sender(name)
        return None

    def _forget_sender(self, sender: str) -> None:
        """A D-Bus client went away: end its discovery and notify sessions, as BlueZ does."""
        self._filters.pop(sender, None)
        if self._sessions.pop(sender, None) is not None:
            self._update_discovering()
        for dev in self.devices.values():
            dev._forget_sender(sender)

    # ---- discovery -------------------------------------------------------------------

    def _set_filter(self, sender: str | None, properties: dict[str, Variant]) -> None:
        flt = {k: (v.value if isinstance(v, Variant) else v) for k, v in properties.items()}
        self._filters[sender or "?"] = flt

    def _start_discovery(self, sender: str | None) -> None:
        sender = sender or "?"
        self._sessions[sender] = dict(self._filters.get(sender, {}))
        self._update_discovering()
        asyncio.get_running_loop().call_soon(self._advertise_all)

    def _stop_discovery(self, sender: str | None) -> None:
        sender = sender or "?"
        if self._sessions.pop(sender, None) is None:
            raise DBusError(ERR_FAILED, "No discovery started")
        self._update_discovering()

    def _update_discovering(self) -> None:
        discovering = bool(self._sessions)
        if discovering != self.adapter.discovering:
            self.adapter.discovering = discovering
            self.adapter.emit_properties_changed({"Discovering": discovering})

    def _remove_device(self, path: str) -> None:
        for dev in self.devices.values():
            if dev.path == path and dev.exported:
                dev._teardown(reason="removed")
                dev._unexport()
                return
        raise DBusError(ERR_DOES_NOT_EXIST, "Does Not Exist")

    def _wanted(self, dev: FakeDevice) -> bool:
        """Does any discovery session's UUID filter let this device's advertisement through?"""
        for flt in self._sessions.values():
            uuids = [u.lower() for u in flt.get("UUIDs", [])]
            if not uuids or set(uuids) & set(dev.service_uuids):
                return True
        return False

    def _advertise_all(self) -> None:
        if not self._sessions or not self.bus.connected:
            return
        for dev in list(self.devices.values()):
            if dev.advertising and self._wanted(dev):
                dev._advertise()

    async def _advertiser(self) -> None:
        while True:
            await asyncio.sleep(self.adv_interval_s)
            try:
                self._advertise_all()
            except Exception:  # a dying bus at shutdown; keep the task quiet
                log.debug("advertiser", exc_info=True)
