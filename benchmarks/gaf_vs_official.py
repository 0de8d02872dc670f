"""Time the official MMTSA sensor-imaging pipeline against ours on identical windows.

Official (thuhci/MMTSA dataset.py, per sensor window): pyts GramianAngularField GASF
-> per-image min-max x 255 to uint8 -> cv2.resize to 224 x 224, one image at a time.
Ours: `gaf_images(..., out="uint8_minmax", out_size=224)`, which builds the resized
image directly from rank-2 factors. Both must give the same uint8 images (within one
grey level, asserted). Ratios come from one run, median of many repetitions.

    python benchmarks/gaf_vs_official.py [--out FILE] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from pyts.image import GramianAngularField

from edgehar.contract.preprocess.gaf import gaf_images

SEGMENTS, SENSORS, AXES, SAMPLES, SIDE = 3, 4, 3, 200, 224  # official: 2-s windows, 224² input
DEFAULT_OUT = Path(__file__).parent / "results" / "gaf_vs_official.json"


def official(windows: np.ndarray) -> np.ndarray:
    """(S, D, 3, K) windows -> (S, D, 3, 224, 224) uint8, the official way."""
    gasf = GramianAngularField(image_size=windows.shape[-1], sample_range=(-1, 1), method="summation")
    out = np.empty(windows.shape[:-1] + (SIDE, SIDE), dtype=np.uint8)
    for s in range(windows.shape[0]):
        for d in range(windows.shape[1]):
            images = gasf.fit_transform(windows[s, d])  # (3, K, K): one call per sensor window
            for c, g in enumerate(images):
                byte = np.floor((g - g.min()) / (g.max() - g.min()) * 255.0 + 0.5).astype(np.uint8)
                out[s, d, c] = cv2.resize(byte, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    return out


def full_then_resize(windows: np.ndarray) -> np.ndarray:
    """Middle ground: our vectorised K x K uint8 GAF, then cv2.resize per image."""
    images = gaf_images(windows, "summation", out="uint8_minmax")  # (S, D, 3, K, K)
    flat = images.reshape(-1, *images.shape[-2:])
    resized = [cv2.resize(g, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) for g in flat]
    return np.stack(resized).reshape(images.shape[:-2] + (SIDE, SIDE))


def ours(windows: np.ndarray) -> np.ndarray:
    return gaf_images(windows, "summation", out="uint8_minmax", out_size=SIDE)


def median_ms(fn, windows: np.ndarray, reps: int) -> float:
    fn(windows)  # warm-up: numba compilation, caches
    times = []
    for _ in range(reps):
        tic = time.perf_counter()
        fn(windows)
        times.append(time.perf_counter() - tic)
    return float(np.median(times) * 1e3)


def compare(reps: int) -> list[dict]:
    """One row per pipeline: median ms over `reps`, speed-up over official, max grey-level diff.
    (Also called by benchmarks/bench.py, so the full benchmark report carries it.)"""
    rng = np.random.default_rng(0)
    # Sensor-like windows: random walks plus a periodic component, float32 as recorded.
    t = np.arange(SAMPLES) / 100.0
    windows = (rng.standard_normal((SEGMENTS, SENSORS, AXES, SAMPLES)).cumsum(-1) + 3 * np.sin(2 * np.pi * 1.3 * t)).astype(np.float32)

    reference = official(windows)
    rows = []
    for name, fn in [("official (pyts + minmax + cv2.resize)", official), ("ours K×K + cv2.resize", full_then_resize), ("ours rank-2 out_size", ours)]:
        diff = int(np.abs(fn(windows).astype(np.int16) - reference.astype(np.int16)).max())
        assert diff <= 1, f"{name}: differs from the official output by {diff} grey levels"
        rows.append({"pipeline": name, "median_ms": median_ms(fn, windows, reps), "max_abs_diff": diff})
    base = rows[0]["median_ms"]
    for r in rows:
        r["speedup"] = base / r["median_ms"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()

    rows = compare(args.reps)

    result = {
        "windows": {"segments": SEGMENTS, "sensors": SENSORS, "axes": AXES, "samples": SAMPLES, "side": SIDE},
        "reps": args.reps,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| pipeline | median ms | speed-up | max abs diff (grey levels) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['median_ms']:.2f} | {r['speedup']:.1f}× | {r['max_abs_diff']} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
