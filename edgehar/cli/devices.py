"""`edgehar devices`: print what firmware_bridge.discovery found, as a table or as JSON;
`edgehar devices --probe URL`: what firmware_bridge.probe saw one device send.

The table is for a person choosing a `--glove` / `--imu` URL; `--json` is for scripts
(one object: serial ports, BLE devices, and why BLE was not scanned, if it was not).
A Bluetooth stack that cannot scan is one line on stderr, not a failure: the serial
ports are still listed and the exit status is 0. A probe that gets no sample says why
in one line on stderr and exits 1.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict

from ..errors import EdgeharWarning
from .columns import columns
from ..firmware_bridge.discovery import Devices, discover
from ..firmware_bridge.probe import ProbeReport, probe


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
    lines += columns(["URL", "USB ID", "MANUFACTURER", "PRODUCT", "SERIAL", "DESCRIPTION"],
                   [[p.url, p.usb_id, p.manufacturer, p.product, p.serial_number, p.description] for p in found.serial],
                   "none listed by the OS")
    if found.ble_error is None:
        lines.append(f"BLE devices ({found.ble_seconds:g} s scan)")
        lines += columns(["URL", "NAME", "ADDRESS", "RSSI", "EDGEHAR"],
                       [[d.url, d.name, d.address, d.rssi, "yes" if d.edgehar else "no"] for d in found.ble],
                       "none heard")
    lines.append("pass a URL to edgehar live or record, e.g. --glove URL")
    return "\n".join(lines) + "\n"


def run_probe(url: str, seconds: float, as_json: bool) -> int:
    report = probe(url, seconds)
    if report.samples == 0:
        print(f"edgehar devices: {nothing_arrived(report)}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(probe_json(report), indent=2) + "\n" if as_json else probe_table(report))
    return 0


def nothing_arrived(r: ProbeReport) -> str:
    """One line: why a probe got no sample."""
    h = r.health
    where = f"{r.url}: no samples in {r.seconds:g} s"
    if r.profile is not None and h.frames == 0 and (h.resyncs or h.malformed or h.crc_errors):
        return (f"{where}: bytes arrived but no packet of profile {r.profile!r} (resyncs {h.resyncs}, malformed "
                f"{h.malformed}, crc errors {h.crc_errors}); is it the device the profile describes, at its baud?")
    if h.undescribed_blocks:
        return f"{where}: {h.undescribed_blocks} sample blocks arrived but the device never sent its descriptor"
    if h.frames or h.resyncs or h.malformed or h.crc_errors:
        return (f"{where}: {h.frames} frames decoded, none with samples (resyncs {h.resyncs}, malformed {h.malformed}, "
                f"crc errors {h.crc_errors})")
    if h.state == "connected":
        return f"{where}: connected, but nothing arrived"
    return f"{where}: {h.state}" + (f" ({h.last_error})" if h.last_error else "")


def _identity(r: ProbeReport) -> str:
    d = r.info.device if r.info is not None else {}
    if r.profile is not None:
        return f"profile {r.profile} matched: {r.health.frames} packets ({d.get('kind', '')}; {d.get('source', '')})"
    return "wire-v1 descriptor: " + " ".join(x for x in (d.get("kind"), d.get("firmware"), d.get("device_id")) if x)


def probe_table(r: ProbeReport) -> str:
    h = r.health
    measured = "-" if r.rate_hz is None else f"{r.rate_hz:.1f} Hz"
    lines = [f"probe {r.url} for {r.seconds:g} s",
             f"  device   {_identity(r)}",
             f"  rate     {measured} measured, {r.nominal_hz:g} Hz nominal, {r.samples} samples",
             f"  loss     lost {h.lost_blocks} ({h.gaps} gaps), crc errors {h.crc_errors}, malformed {h.malformed}, "
             f"resyncs {h.resyncs}, outages {h.outages}"]
    info = r.info
    lines += columns(["CHANNEL", "UNIT", "MIN", "MAX"],
                   [[n, u or "-", f"{lo:.6g}", f"{hi:.6g}"]
                    for n, u, lo, hi in zip(info.channels, info.units, r.minima, r.maxima)], "no channels")
    return "\n".join(lines) + "\n"


def probe_json(r: ProbeReport) -> dict:
    info = r.info
    return {
        "url": r.url, "seconds": r.seconds, "device": dict(info.device), "profile": r.profile,
        "rate_hz": r.rate_hz, "nominal_hz": r.nominal_hz, "samples": r.samples,
        "channels": [{"name": n, "unit": u, "min": lo, "max": hi}
                     for n, u, lo, hi in zip(info.channels, info.units, r.minima, r.maxima)],
        "health": r.health.to_json(),
    }
