"""What the device-to-host clock fit costs per received block, and what refitting only
when its bins change saves.

`ClockMapper` (firmware_bridge/clock.py) keeps the lowest-delay point of each 0.25 s bin
over a 30 s horizon and fits their lower envelope. The fit depends on the bins alone, so
it is redone only when a block changes them (a new bin, or a new lowest point in one);
before, every block marked it stale, and each block's mapping refitted up to 120 bins.
This times both on the same synthetic stream (100 blocks a second from a device clock
30 ppm fast, 1-20 ms of uniform arrival latency), interleaved in one run, per 10 s of
stream time (the cost grows as the horizon fills), and checks both map every block to
the same host time.

    python benchmarks/clock_cost.py [--seconds 60] [--out benchmarks/results/clock_cost.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgehar.firmware_bridge.clock import ClockMapper

DEFAULT_OUT = Path(__file__).parent / "results" / "clock_cost.json"
BLOCKS_PER_S = 100


class RefitEveryBlock(ClockMapper):
    """The mapper as it was: every block marks the fit stale."""

    def add(self, t_device: float, t_host: float) -> None:
        super().add(t_device, t_host)
        self._dirty = True


def synthetic_stream(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(device seconds, host arrival seconds) of each block's last sample."""
    rng = np.random.default_rng(seed)
    t_device = np.arange(int(seconds * BLOCKS_PER_S)) / BLOCKS_PER_S
    return t_device, 1000.0 + t_device * (1 + 30e-6) + rng.uniform(0.001, 0.020, len(t_device))


def measure(seconds: float) -> dict:
    t_device, t_host = synthetic_stream(seconds)
    mappers = {"refit on change": ClockMapper(), "refit every block": RefitEveryBlock()}
    per_10s = {name: [] for name in mappers}
    spent = dict.fromkeys(mappers, 0.0)
    mapped = {name: np.empty(len(t_device)) for name in mappers}
    for i, (td, th) in enumerate(zip(t_device, t_host)):
        for name, m in (mappers.items() if i % 2 else reversed(mappers.items())):  # alternate which goes first
            t0 = time.thread_time()
            m.add(td, th)
            mapped[name][i] = m.to_host(td)  # what a stream does with each block
            spent[name] += time.thread_time() - t0
        if (i + 1) % (10 * BLOCKS_PER_S) == 0:
            for name in mappers:
                per_10s[name].append(round(1e3 * spent[name] / (10 * BLOCKS_PER_S), 4))
                spent[name] = 0.0
    same = bool(np.array_equal(mapped["refit on change"], mapped["refit every block"]))
    steady = {name: float(np.mean(v[len(v) // 2:])) for name, v in per_10s.items()}  # the horizon full
    return {
        "blocks_per_s": BLOCKS_PER_S, "seconds": seconds,
        "ms_per_block_each_10s": per_10s,
        "ms_per_block_steady": {k: round(v, 4) for k, v in steady.items()},
        "cpu_pct_one_core_steady": {k: round(v * BLOCKS_PER_S / 10, 2) for k, v in steady.items()},
        "ratio_steady": round(steady["refit every block"] / steady["refit on change"], 1),
        "same_mapping": same,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="stream time (default 60)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    result = measure(args.seconds)
    result["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    result["command"] = "python benchmarks/clock_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result["same_mapping"] else 1


if __name__ == "__main__":
    sys.exit(main())
