"""How much of one core the wire-protocol decoder needs for a glove + wrist IMU at 100 Hz.

Encodes 60 s of simulated glove (12 ch) and IMU (6 ch) samples, as a device would
(descriptor, then SampleBlocks of `samples_per_block(C)` samples, one frame per BLE
notification), and times `FrameDecoder.feed` over serial-like chunks (64-4096 bytes)
and over one-frame-per-notification chunks. The same for the plain-text CSV
convention (`CsvLineDecoder`, one line per sample). Median of several repetitions;
CPU % = decode time / 60 s of real stream.

    python benchmarks/decoder_throughput.py [--seconds S] [--reps N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from edgehar.firmware_bridge.csvlines import CsvLineDecoder
from edgehar.firmware_bridge.protocol import (
    DeviceDescriptor,
    FrameDecoder,
    descriptor_from_channels,
    encode_blocks,
    encode_frame,
    samples_per_block,
)
from edgehar.simulator.datasheet import STREAM_RATES, STREAM_SPECS
from edgehar.simulator.subject import make_subject
from edgehar.simulator.world import ACTIVITIES, generate_recording

DEFAULT_OUT = Path(__file__).parent / "results" / "decoder_throughput.json"
CHUNKS = (64, 256, 1024, 4096)
TARGET_CPU_PCT = 2.0


def device_streams(seconds: float) -> dict[str, dict]:
    """Per device: descriptor, the encoded byte stream, its frames, and the CSV text of the same samples."""
    per = seconds / 6
    rec = generate_recording(make_subject(0, 0), [(a, per) for a in ACTIVITIES[1:7]], seed=0)
    out = {}
    for name in ("glove", "imu"):
        specs = STREAM_SPECS[name]
        d: DeviceDescriptor = descriptor_from_channels(name, "1.0.0", STREAM_RATES[name], [c.name for c in specs],
                                                       [c.unit for c in specs], [(c.lo, c.hi) for c in specs])
        values = rec.series[name].values  # (T, C) float32, physical
        raw = np.clip(np.round(values / d.scales), -32767, 32767).astype(np.int16)
        n = samples_per_block(len(specs))
        frames = [encode_frame(d)] + list(encode_blocks(raw, n, seq0=65000, t0_us=2**32 - 5_000_000,
                                                         rate_hz=d.rate_hz))
        t_ms = np.arange(len(values)) * (1000.0 / d.rate_hz)
        csv = "".join(f"{t:.0f}," + ",".join(f"{v:.4f}" for v in row) + "\r\n" for t, row in zip(t_ms, values))
        out[name] = {"descriptor": d, "frames": frames, "stream": b"".join(frames), "samples": len(values),
                     "block": n, "csv": b"\n" + csv.encode()}
    return out


def time_feed(make, pieces: list[bytes], reps: int) -> tuple[float, object]:
    times, dec = [], None
    for _ in range(reps):
        dec = make()
        tic = time.perf_counter()
        for p in pieces:
            dec.feed(p)
        times.append(time.perf_counter() - tic)
    return statistics.median(times), dec


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    streams = device_streams(args.seconds)
    seconds = max(s["samples"] / STREAM_RATES[name] for name, s in streams.items())
    rows = []
    for chunk in ("ble", *CHUNKS):
        total_t, frames, nbytes = 0.0, 0, 0
        for name, s in streams.items():
            pieces = s["frames"] if chunk == "ble" else chunked(s["stream"], chunk)
            t, dec = time_feed(FrameDecoder, pieces, args.reps)
            st = dec.stats
            assert st.frames == len(s["frames"]) and st.crc_errors == st.gaps == st.malformed == 0, st
            total_t, frames, nbytes = total_t + t, frames + st.frames, nbytes + st.bytes
        rows.append({"decoder": "binary", "chunk": chunk, "frames": frames, "bytes": nbytes, "seconds": total_t,
                     "frames_per_s": frames / total_t, "mb_per_s": nbytes / total_t / 1e6,
                     "cpu_pct_at_real_rate": 100.0 * total_t / seconds})
    for chunk in (64, 1024):
        total_t, lines, nbytes = 0.0, 0, 0
        for name, s in streams.items():
            chans = tuple(c.name for c in STREAM_SPECS[name])
            t, dec = time_feed(lambda: CsvLineDecoder(chans, 100.0), chunked(s["csv"], chunk), args.reps)
            assert dec.stats.lines == s["samples"] and dec.stats.malformed == 0, dec.stats
            total_t, lines, nbytes = total_t + t, lines + dec.stats.lines, nbytes + dec.stats.bytes
        rows.append({"decoder": "csv", "chunk": chunk, "lines": lines, "bytes": nbytes, "seconds": total_t,
                     "lines_per_s": lines / total_t, "mb_per_s": nbytes / total_t / 1e6,
                     "cpu_pct_at_real_rate": 100.0 * total_t / seconds})

    wire = {name: {"samples_per_block": s["block"], "frames": len(s["frames"]), "bytes": len(s["stream"]),
                   "bytes_per_s": len(s["stream"]) / seconds, "max_frame": max(len(f) for f in s["frames"][1:]),
                   "descriptor_frame": len(s["frames"][0])} for name, s in streams.items()}
    print(f"{seconds:.0f} s of glove (12 ch) + IMU (6 ch) at 100 Hz; median of {args.reps} runs")
    for name, w in wire.items():
        print(f"  {name}: {w['samples_per_block']} samples/block, {w['frames']} frames, "
              f"{w['bytes_per_s'] / 1e3:.2f} kB/s on the wire, largest block frame {w['max_frame']} B, "
              f"descriptor frame {w['descriptor_frame']} B")
    print(f"{'decoder':8} | {'chunk':>5} | {'items/s':>10} | {'MB/s':>6} | {'CPU % @ real rate':>17}")
    for r in rows:
        rate = r.get("frames_per_s", r.get("lines_per_s"))
        print(f"{r['decoder']:8} | {r['chunk']!s:>5} | {rate:10.0f} | {r['mb_per_s']:6.2f} | "
              f"{r['cpu_pct_at_real_rate']:17.4f}")
    worst = max(r["cpu_pct_at_real_rate"] for r in rows if r["decoder"] == "binary")
    print(f"worst binary CPU {worst:.4f} % of one core (target < {TARGET_CPU_PCT} %): "
          f"{'OK' if worst < TARGET_CPU_PCT else 'OVER TARGET'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "decoder_throughput", "stream_seconds": seconds, "reps": args.reps, "wire": wire,
        "results": rows, "worst_binary_cpu_pct": worst, "target_cpu_pct": TARGET_CPU_PCT,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "numpy": np.__version__},
    }, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
