"""`edgehar devices`: print what firmware_bridge.discovery found, as a table or as JSON.

The table is for a person choosing a `--glove` / `--imu` URL; `--json` is for scripts
(one object: serial ports, BLE devices, and why BLE was not scanned, if it was not).
A Bluetooth stack that cannot scan is one line on stderr, not a failure: the serial
ports are still listed and the exit status is 0.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict

from ..errors import EdgeharWarning
from ..firmware_bridge.discovery import Devices, discover


def run_devices(seconds: float, as_json: bool) -> int:
    found = discover(seconds)
    if found.ble_error:
        warnings.warn(f"BLE not scanned: {found.ble_error}", EdgeharWarning)
    sys.stdout.write(to_json(found) + "\n" if as_json else to_table(found))
    return 0


def to_json(found: Devices) -> str:
    return json.dumps({
        "serial": [{**asdict(p), "usb_id": p.usb_id, "url": p.url} for p in found.serial],
        "ble": [{**asdict(d), "service_uuids": list(d.service_uuids), "edgehar": d.edgehar} for d in found.ble],
        "ble_seconds": found.ble_seconds,
        "ble_error": found.ble_error,
    }, indent=2)


def to_table(found: Devices) -> str:
    lines = ["serial ports"]
    lines += _rows(["URL", "USB ID", "MANUFACTURER", "PRODUCT", "SERIAL", "DESCRIPTION"],
                   [[p.url, p.usb_id, p.manufacturer, p.product, p.serial_number, p.description] for p in found.serial],
                   "none listed by the OS")
    if found.ble_error is None:
        lines.append(f"BLE devices ({found.ble_seconds:g} s scan)")
        lines += _rows(["URL", "NAME", "ADDRESS", "RSSI", "EDGEHAR"],
                       [[d.url, d.name, d.address, d.rssi, "yes" if d.edgehar else "no"] for d in found.ble],
                       "none heard")
    lines.append("pass a URL to edgehar live or record, e.g. --glove URL")
    return "\n".join(lines) + "\n"


def _rows(header: list[str], rows: list[list[object]], empty: str) -> list[str]:
    """Indented, left-aligned columns; a missing value shows as '-'."""
    if not rows:
        return [f"  {empty}"]
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
