"""`edgehar devices` through the real libraries: no mock of pyserial or bleak.

BLE: unmodified bleak scans the emulated BlueZ on a private D-Bus bus, where an
edgehar glove and a heart-rate strap advertise, and the URL it prints connects.
Serial: pyserial's own list_ports_linux reads what it reads on a board, /dev/ttyACM*
and /sys/class/tty/NAME/device, in a private mount namespace where /dev holds a
ttyACM0 that is a pseudo-terminal and /sys/class/tty describes it as a USB CDC device
(vendor, product, serial number), so the listing is the one a plugged-in board gives.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgehar.cli import main
from edgehar.firmware_bridge import protocol
from edgehar.firmware_bridge.discovery import discover
from edgehar.firmware_bridge.transport import open_transport
from edgehar.simulator.devices.ble_peripheral import BlePeripheral
from edgehar.simulator.devices.bluez import FakeBlueZ, ServiceSpec

HEART_RATE = "0000180d-0000-1000-8000-00805f9b34fb"
STRAPS = ("F1:22:33:44:55:66", "F1:22:33:44:55:77")
DEVICES = [sys.executable, "-m", "edgehar", "devices"]


def test_ble_scan_lists_the_glove_and_the_other_peripheral_and_the_url_connects(private_system_bus):
    async def main_():
        async with FakeBlueZ(private_system_bus) as bluez:
            glove = BlePeripheral(bluez, "glove")
            for address, rssi in zip(STRAPS, (-72, -80)):  # a name two devices share picks neither
                bluez.add_device(address, "HR-Strap", [ServiceSpec(HEART_RATE)], rssi=rssi)
            try:
                proc = await asyncio.create_subprocess_exec(*DEVICES, "--json", "--seconds", "1",
                                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 0 and err == b"", err.decode()[-2000:]
                listing = json.loads(out)
                url = listing["ble"][0]["url"]
                transport = open_transport(url)  # what `edgehar live --glove URL` opens
                await transport.connect()
                try:
                    connected = transport.device.address
                finally:
                    await transport.close()
                return listing, glove.address, connected
            finally:
                await glove.close()

    listing, glove_address, connected = asyncio.run(main_())
    assert listing["ble_error"] is None and listing["ble_seconds"] == 1
    first, *straps = listing["ble"]  # the edgehar device first, then by signal strength
    assert (first["name"], first["address"], first["edgehar"], first["url"]) == \
        ("edgehar-glove", glove_address, True, "ble://name=edgehar-glove")
    assert protocol.SERVICE_UUID in first["service_uuids"]
    assert [(s["name"], s["address"], s["edgehar"], s["url"], s["service_uuids"]) for s in straps] == \
        [("HR-Strap", a, False, f"ble://{a}", [HEART_RATE]) for a in STRAPS]
    # the emulated radio jitters by 1 dB
    assert [abs(d["rssi"] - rssi) <= 2 for d, rssi in zip(listing["ble"], (-55, -72, -80))] == [True] * 3
    assert connected == glove_address


def _fake_usb_cdc(root: Path, pty: str) -> None:
    """/dev and /sys/class/tty as a board with one USB CDC device shows them, under `root`.

    The layout is the kernel's: class/tty/ttyACM0/device -> the USB interface, whose
    `subsystem` is bus/usb and whose parent, the USB device, holds idVendor, idProduct,
    serial, manufacturer and product. /dev/ttyACM0 is a link to the pty (pyserial names a
    port by the path it globbed, link or not, and looks that name up in sysfs).
    """
    usb_device = root / "sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"
    interface = usb_device / "1-2:1.0"
    interface.mkdir(parents=True)
    (root / "sys/bus/usb").mkdir(parents=True)
    (interface / "subsystem").symlink_to(root / "sys/bus/usb")
    (interface / "interface").write_text("Board CDC\n")
    for name, value in {"idVendor": "2e8a", "idProduct": "000a", "serial": "E6614C311B4A7A29",
                        "manufacturer": "Raspberry Pi", "product": "Pico", "bNumInterfaces": " 2"}.items():
        (usb_device / name).write_text(value + "\n")
    (root / "tty/ttyACM0").mkdir(parents=True)
    (root / "tty/ttyACM0/device").symlink_to(interface)
    (root / "dev/pts").mkdir(parents=True)
    (root / "dev/null").touch()
    (root / "dev/ttyACM0").symlink_to(pty)


def _in_private_mounts(root: Path, argv: list[str]) -> list[str]:
    """argv run where /dev and /sys/class/tty are `root`'s (a private mount namespace:
    nothing outside this process tree sees them, and they vanish with it)."""
    unshare = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*unshare, "true"], capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs a private mount namespace (util-linux unshare, as root or with user namespaces)"
                    + (f": {probe.stderr.strip()}" if probe else ""))
    script = ('set -e; r="$1"; shift; mount --bind /dev/pts "$r/dev/pts"; mount --bind /dev/null "$r/dev/null"; '
              'mount --bind "$r/tty" /sys/class/tty; mount --bind "$r/dev" /dev; exec "$@"')
    return [*unshare, "sh", "-c", script, "sh", str(root), *argv]


def test_serial_listing_shows_the_usb_device_and_a_bus_without_bluez_is_one_line(private_system_bus, tmp_path):
    """The table as a user sees it: the USB CDC port with vendor:product, maker, product
    and serial number, and the URL live/record take; BlueZ absent from the system bus
    is one warning line on stderr, the ports are still listed and the exit status is 0."""
    master, slave = os.openpty()
    try:
        _fake_usb_cdc(tmp_path, os.ttyname(slave))
        result = subprocess.run(_in_private_mounts(tmp_path, [*DEVICES, "--seconds", "0.5"]),
                                capture_output=True, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.splitlines() == ["edgehar devices: warning: BLE not scanned: BlueZ (org.bluez) is not on "
                                          "the D-Bus system bus; is bluetoothd running?"]
    lines = result.stdout.splitlines()
    assert lines[0] == "serial ports"
    assert lines[1].split() == ["URL", "USB", "ID", "MANUFACTURER", "PRODUCT", "SERIAL", "DESCRIPTION"]
    assert lines[2].split() == ["serial:///dev/ttyACM0", "2e8a:000a", "Raspberry", "Pi", "Pico", "E6614C311B4A7A29",
                                "Pico", "-", "Board", "CDC"]
    assert not any(line.startswith("BLE") for line in lines)  # not scanned: no empty BLE table pretending it was
    assert open_transport("serial:///dev/ttyACM0").port == "/dev/ttyACM0"  # the URL form the serial transport takes


def test_no_system_bus_is_a_reason_not_an_exception(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system_bus_socket")
    found = discover(0.2)
    assert found.ble == [] and "BlueZ is not reachable on the D-Bus system bus" in found.ble_error
    assert isinstance(found.serial, list)  # listed regardless


@pytest.mark.parametrize("seconds, expect", [("0", "'0' must be > 0"), ("-2", "'-2' must be > 0"),
                                             ("soon", "'soon' is not a number"), ("nan", "'nan' must be > 0")])
def test_a_bad_scan_time_is_one_line(capsys, seconds, expect):
    with pytest.raises(SystemExit) as exit_:
        main(["devices", "--seconds", seconds])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"edgehar devices: error: argument --seconds: {expect}" and "Traceback" not in err
