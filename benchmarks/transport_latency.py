"""End-to-end device latency: from the instant a sample is taken to the instant it is in the sink.

Serial path in simulation: simulated glove + wrist IMU firmware (100 Hz each) write
wire frames to two pseudo-terminals; a DeviceHub reads them with pyserial, decodes,
maps device time to host time and hands blocks to a sink. Per stream it reports

- block latency: true time of a block's LAST sample -> sink call, split into the
  simulator's own wake-up lateness (firmware_late_ms) and write -> sink
  (write_to_sink_ms: pty + pyserial reader thread + asyncio hand-off + decode);
- sample age: every sample's true time -> sink call (adds waiting for the block to fill:
  glove 9 samples, IMU 19 samples per block at 100 Hz);
- clock mapping error |mapped host time - true time| after a 10 s warm-up;
- zero-loss check: lost blocks == 0 and every sample sent was delivered;
- decoder CPU share: time in the consumer (decode + clock + sink) / wall time.

"True time" is the simulated firmware's own ground truth (SentBlock.t_true), on the
host's monotonic clock. The firmware simulator runs in the same process and shares
the CPU, so numbers on a loaded 2-core machine include its wake-up jitter.

    python benchmarks/transport_latency.py [--seconds N] [--out FILE]

BLE path in simulation: the same firmware as BLE peripherals on the emulated BlueZ
(private D-Bus bus), read through unmodified bleak; one frame per notification.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgehar.firmware_bridge.device import DeviceHub, DeviceStream
from edgehar.simulator.devices.firmware import FirmwarePlayer, PtyFirmware

DEFAULT_OUT = Path(__file__).parent / "results" / "transport_latency.json"
WARMUP_S = 10.0  # the clock fit is judged after this much data


class _TimedSink:
    """Records (mapped times, values, wall time of the call) per block; nothing else."""

    def __init__(self):
        self.blocks: dict[str, list[tuple[np.ndarray, float]]] = {}

    def __call__(self, name: str, t: np.ndarray, values: np.ndarray) -> None:
        self.blocks.setdefault(name, []).append((t.copy(), time.monotonic()))


def _consumer_timer() -> tuple[dict[str, float], Callable[[], None]]:
    """Wrap DeviceStream._consume to add up its wall time per stream (it never blocks)."""
    spent: dict[str, float] = {}
    original = DeviceStream._consume

    def timed(self, chunk, decoder, transport):
        t0 = time.perf_counter()
        try:
            return original(self, chunk, decoder, transport)
        finally:
            spent[self.name] = spent.get(self.name, 0.0) + time.perf_counter() - t0

    DeviceStream._consume = timed

    def restore() -> None:
        DeviceStream._consume = original

    return spent, restore


def run_serial(seconds: float) -> list[dict]:
    """Glove + IMU over two ptys for `seconds`; one result dict per stream."""
    devices = {kind: PtyFirmware(kind, seed=i + 1, history=1_000_000) for i, kind in enumerate(("glove", "imu"))}
    player = FirmwarePlayer([d.firmware for d in devices.values()], seed=0)
    sink = _TimedSink()
    spent, restore = _consumer_timer()
    hub = DeviceHub({k: f"serial://{d.path}?baud=921600" for k, d in devices.items()}, sink)
    try:
        hub.start()
        t_start = time.monotonic()
        player.start()
        player.wait(seconds)
        player.stop()
        time.sleep(0.5)  # what is in flight arrives
        wall = time.monotonic() - t_start
        health = hub.health()
    finally:
        hub.stop()
        restore()
        for d in devices.values():
            d.close()
    return _results("serial-pty", {k: d.firmware for k, d in devices.items()}, sink, health, spent, wall, seconds)


def run_ble(seconds: float) -> list[dict]:
    """Glove + IMU as BLE peripherals on the emulated BlueZ, read through bleak."""
    from edgehar.simulator.devices.ble_peripheral import BleSimulation

    sink = _TimedSink()
    spent, restore = _consumer_timer()
    with BleSimulation(("glove", "imu"), seed=1, history=1_000_000) as sim:
        hub = DeviceHub(sim.urls, sink, clock=sim.clock)
        try:
            hub.start()
            t_start = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - t_start
            health = hub.health()
        finally:
            hub.stop()
            restore()
        firmwares = sim.firmwares
    # The peripherals stream from before the host subscribes until after it stops
    # listening: only blocks sent while the link was up can be delivered.
    return _results("ble-fake", firmwares, sink, health, spent, wall, seconds, subscribed_only=True)


def _results(path: str, firmwares: dict, sink: _TimedSink, health: dict, spent: dict[str, float], wall: float,
             seconds: float, subscribed_only: bool = False) -> list[dict]:
    results = []
    for kind, fw in firmwares.items():
        got = sink.blocks.get(kind, [])
        sent = [b for b in fw.history if b.fate == "sent"]
        if subscribed_only and got:  # blocks written between the first and last delivered sample
            first, last = got[0][0][0], got[-1][0][-1]
            sent = [b for b in sent if b.t_true[0] >= first - 0.05 and b.t_true[-1] <= last + 0.05]
        truth = np.concatenate([b.t_true for b in sent]) if sent else np.zeros(0)
        mapped = np.concatenate([t for t, _ in got]) if got else np.zeros(0)
        called = np.concatenate([np.full(len(t), c) for t, c in got]) if got else np.zeros(0)
        last_idx = np.cumsum([len(t) for t, _ in got]) - 1
        complete = len(mapped) == len(truth)
        h = health[kind]
        res = {
            "path": path,
            "stream": kind,
            "seconds": seconds,
            "samples_sent": int(len(truth)),
            "samples_delivered": int(len(mapped)),
            "lost_blocks": h.lost_blocks,
            "crc_errors": h.crc_errors,
            "zero_loss": bool(complete and h.lost_blocks == 0 and (subscribed_only or fw.stats.overflow == 0)),
            "decoder_cpu_share": round(spent.get(kind, 0.0) / wall, 5),
            "drift_ppm_true": round(fw.drift * 1e6, 2),
            "drift_ppm_fit": h.drift_ppm,
        }
        if complete and len(truth):
            age = (called - truth) * 1e3
            block = age[last_idx]
            warm = truth >= truth[0] + WARMUP_S
            err = np.abs(mapped - truth)[warm] * 1e3
            written = np.array([b.t_written for b in sent])
            late = (written - np.array([b.t_true[-1] for b in sent])) * 1e3  # simulator wake-up lateness
            wire = (called[last_idx] - written) * 1e3  # firmware write -> sink: transport + decode
            res.update({
                "block_latency_ms": _percentiles(block, with_max=True),
                "firmware_late_ms": _percentiles(late),
                "write_to_sink_ms": _percentiles(wire),
                "sample_age_ms": _percentiles(age),
                "clock_error_ms": _percentiles(err, with_max=True) if warm.any() else None,
            })
        results.append(res)
    return results


def _percentiles(x: np.ndarray, with_max: bool = False) -> dict[str, float]:
    out = {"p50": round(float(np.percentile(x, 50)), 3), "p99": round(float(np.percentile(x, 99)), 3)}
    if with_max:
        out["max"] = round(float(x.max()), 3)
    return out


PATHS: dict[str, Callable[[float], list[dict]]] = {"serial-pty": run_serial, "ble-fake": run_ble}


def _table(rows: list[dict]) -> str:
    head = f"{'path':<11} | {'stream':<6} | {'samples':>15} | {'lost':>4} | {'block p50/p99 ms':>17} | {'age p50/p99 ms':>15} | {'clock err p99 ms':>16} | {'decode CPU':>10} | status"
    lines = [head, "-" * len(head)]
    for r in rows:
        bl, ag, ce = r.get("block_latency_ms"), r.get("sample_age_ms"), r.get("clock_error_ms")
        bls = f"{bl['p50']:.2f} / {bl['p99']:.2f}" if bl else "-"
        ags = f"{ag['p50']:.1f} / {ag['p99']:.1f}" if ag else "-"
        ces = f"{ce['p99']:.3f}" if ce else "-"
        lines.append(
            f"{r['path']:<11} | {r['stream']:<6} | {r['samples_delivered']:>7}/{r['samples_sent']:<7} | {r['lost_blocks']:>4} | "
            f"{bls:>17} | {ags:>15} | {ces:>16} | {100 * r['decoder_cpu_share']:>9.2f}% | {'ok' if r['zero_loss'] else 'LOSS'}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to stream (default 20; >10 for the clock check)")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, from {list(PATHS)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    rows = []
    for name in args.paths.split(","):
        if name not in PATHS:
            raise SystemExit(f"unknown path {name!r}; known: {list(PATHS)}")
        rows += PATHS[name](args.seconds)
    print(_table(rows))
    result = {"benchmark": "transport_latency", "machine": platform.machine(), "python": platform.python_version(),
              "cpus": __import__("os").cpu_count(), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
