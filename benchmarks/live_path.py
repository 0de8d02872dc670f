"""The live path at real camera resolutions: what each hop costs, stage by stage.

    python benchmarks/live_path.py [--sizes 160x120,640x480,1280x720,1920x1080] [--seconds 40]
        [--bundle DIR ...] [--session DIR] [--out benchmarks/results/live_path.json]

For each bundle and camera size it runs `edgehar live --headless` as a user would: the
glove and the IMU from `replay://` of a recorded session, the camera from a 30 fps video
file of that size (the session's own video, scaled and written once into a work folder
beside --out). Bundles default to the demo's cached default MMTSA (eager) and its LiteRT
int8 and ExecuTorch int8 exports, and its ONNX int8 export when onnxruntime is installed,
made with `edgehar export` when missing; the session defaults to the first one of the
simulated data set.

From each run's JSON log (one line per prediction) and the process itself it reports:
per-stage latency p50/p90/p99 (late, rings, sampling, gaf, frames, inference,
unattributed, total: every millisecond from the hop's deadline to the prediction), each
stream's newest-sample age, the camera thread's CPU per frame (read, decode, reduce),
predictions against the hops that fell due (missed hops),
the CPU share of the whole process (decode, reduce, inference, view) between its first
and last prediction, and its peak RSS. Writes JSON to --out, markdown beside it (.md)
and a PNG of the total latency against the camera's pixel count (.png).

Not covered yet: more IMUs and 1 kHz sensors (they need bundles trained on such
streams; the live path's cost per sensor sample is what benchmarks/bench.py measures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DEFAULT_OUT = Path(__file__).parent / "results" / "live_path.json"
DEFAULT_SIZES = ((160, 120), (640, 480), (1280, 720), (1920, 1080))
STAGES = ("late", "rings", "sampling", "gaf", "frames", "inference", "unattributed", "total")
CPU_SAMPLE_S = 0.5
TICKS = os.sysconf("SC_CLK_TCK")


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'640x480,1280x720' -> ((640, 480), (1280, 720))."""
    sizes = []
    for part in text.split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"live_path: size {part!r} is not WIDTHxHEIGHT (e.g. 640x480)") from None
        sizes.append((w, h))
    return tuple(sizes)


def scaled_video(source: Path, size: tuple[int, int], seconds: float, work: Path) -> Path:
    """The first `seconds` of `source` scaled to `size` (w, h), 30 fps MJPG, written once.

    MJPG: every frame is a JPEG, which is what a USB camera at these sizes delivers and
    what the camera thread then has to decode."""
    w, h = size
    out = work / f"{source.parent.name}-{w}x{h}-{seconds:g}s.avi"
    if out.is_file():
        return out
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    part = out.with_suffix(".part.avi")
    writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(int(seconds * fps) + 1):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR))
    writer.release()
    cap.release()
    part.rename(out)
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def run_live(bundle: Path, session: Path, video: Path, seconds: float, log: Path) -> dict:
    """One `edgehar live --headless` run; its log's lines, CPU share and peak RSS."""
    cmd = [sys.executable, "-m", "edgehar", "live", "--headless", "--model", str(bundle),
           "--glove", f"replay://{session}?stream=glove", "--imu", f"replay://{session}?stream=imu",
           "--camera", str(video), "--seconds", str(seconds), "--json", str(log)]
    log.unlink(missing_ok=True)
    err_path = log.with_suffix(".stderr")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "DISPLAY": ""})
    first = last = None  # (wall, cpu s) at the first prediction and the newest sample after it
    while True:
        # wait4, not poll(): it reaps the child with its own rusage (peak RSS of this run only)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        cpu = cpu_seconds(proc.pid)
        if cpu is not None and _count_lines(log):
            now = (time.monotonic(), cpu)
            first = first or now
            last = now
        time.sleep(CPU_SAMPLE_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"edgehar live exited with {proc.returncode}: {err_path.read_text().strip()[-500:]}")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    cpu_share = None
    if first and last and last[0] > first[0]:
        cpu_share = round((last[1] - first[1]) / (last[0] - first[0]), 4)
    return {"lines": lines, "cpu_share": cpu_share, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # KB on Linux


def summarise(lines: list[dict], seconds: float, window_s: float, hop_s: float) -> dict:
    """Per-stage p50/p90/p99, newest-sample age, predictions and missed hops of one run."""
    due = int(np.floor((seconds - window_s) / hop_s + 1e-9)) + 1
    stats = {}
    for stage in STAGES:
        values = [line["latency_ms"][stage] for line in lines if stage in line["latency_ms"]]
        if values:
            stats[stage] = {f"p{p}": round(float(np.percentile(values, p)), 3) for p in (50, 90, 99)}
    streams = sorted({name for line in lines for name in line.get("age_ms", {})})
    age = {name: {f"p{p}": round(float(np.percentile([l["age_ms"][name] for l in lines if name in l.get("age_ms", {})], p)), 1)
                  for p in (50, 99)} for name in streams}
    decode = [line["streams"]["camera"]["decode_ms"] for line in lines
              if line.get("streams", {}).get("camera", {}).get("decode_ms") is not None]
    return {"predictions": len(lines), "due": due, "missed": max(0, due - len(lines)), "latency_ms": stats, "age_ms": age,
            "camera_decode_ms": round(float(np.median(decode)), 3) if decode else None}


def to_markdown(result: dict) -> str:
    cols = ("runtime", "camera", "predictions / due", "total p50 / p90 / p99 ms", "unattributed p50", "late p50",
            "frames p50", "inference p50", "camera age p50", "camera thread ms/frame", "CPU (one core)", "peak RSS")
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["runs"]:
        lat, age = r["latency_ms"], r["age_ms"]
        tot = lat.get("total", {})
        cpu = "--" if r["cpu_share"] is None else f"{100 * r['cpu_share']:.0f} %"
        rows.append("| " + " | ".join([
            f"{r['format']} {r['precision']}", r["camera"], f"{r['predictions']} / {r['due']}",
            " / ".join(f"{tot.get(p, float('nan')):.1f}" for p in ("p50", "p90", "p99")),
            f"{lat.get('unattributed', {}).get('p50', float('nan')):.2f}", f"{lat.get('late', {}).get('p50', float('nan')):.2f}",
            f"{lat.get('frames', {}).get('p50', float('nan')):.2f}", f"{lat.get('inference', {}).get('p50', float('nan')):.2f}",
            f"{age.get('camera', {}).get('p50', float('nan')):.0f} ms",
            "--" if r.get("camera_decode_ms") is None else f"{r['camera_decode_ms']:.2f}", cpu, f"{r['peak_rss_mb']:.0f} MB"]) + " |")
    head = (f"Live path, {result['seconds']:g} s per run, {result['machine']}\n\n"
            f"    {result['command']}\n\n")
    return head + "\n".join(rows) + "\n"


def plot(result: dict, path: Path, size: tuple[int, int] = (900, 560)) -> Path:
    """Total latency p50 (solid) and p99 (thin) against the camera's megapixels, per runtime."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 200, 40, 50
    runs = result["runs"]
    xs = [r["pixels"] / 1e6 for r in runs] or [1.0]
    ys = [r["latency_ms"].get("total", {}).get("p99", 0.0) for r in runs] or [1.0]
    x_hi, y_hi = max(xs) * 1.05, max(max(ys), 1.0) * 1.1
    to_px = lambda x, y: (int(left + x / x_hi * (w - left - right)), int(h - bottom - y / y_hi * (h - top - bottom)))
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
    cv2.line(img, to_px(0, 0), to_px(x_hi, 0), black, 1)
    cv2.line(img, to_px(0, 0), to_px(0, y_hi), black, 1)
    for tick in np.linspace(0, y_hi, 5):
        cv2.putText(img, f"{tick:.0f}", (10, to_px(0, tick)[1] + 5), font, 0.45, black, 1, cv2.LINE_AA)
    for r in {r["camera"]: r for r in runs}.values():  # one tick per camera size
        x = to_px(r["pixels"] / 1e6, 0)[0]
        cv2.line(img, (x, h - bottom), (x, h - bottom + 5), black, 1)
        cv2.putText(img, r["camera"], (x - 30, h - bottom + 20), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(img, "camera (x: megapixels)", (w // 2 - 100, h - 8), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(img, "total latency ms (p50 thick, p99 thin)", (left, 25), font, 0.5, black, 1, cv2.LINE_AA)
    colours = [(200, 80, 30), (40, 150, 40), (30, 30, 200), (150, 50, 150)]
    for i, key in enumerate(dict.fromkeys(f"{r['format']} {r['precision']}" for r in runs)):
        mine = sorted((r for r in runs if f"{r['format']} {r['precision']}" == key), key=lambda r: r["pixels"])
        colour = colours[i % len(colours)]
        for p, thick in (("p50", 3), ("p99", 1)):
            pts = [to_px(r["pixels"] / 1e6, r["latency_ms"].get("total", {}).get(p, 0.0)) for r in mine]
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, thick, cv2.LINE_AA)
        cv2.putText(img, key, (w - right + 15, top + 25 * (i + 1)), font, 0.5, colour, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)
    return path


def int8_formats() -> list[str]:
    """The int8 formats the default run measures: LiteRT and ExecuTorch, and ONNX when
    onnxruntime (the `onnx` extra) is installed: a machine set up before the onnx format
    existed has the other two without it."""
    from importlib.util import find_spec

    return ["litert", "executorch", *(["onnx"] if find_spec("onnxruntime") is not None else [])]


def default_bundles(work: Path) -> list[Path]:
    """The demo's cached default bundle and its int8 exports (`int8_formats`)."""
    from edgehar.models.datasets import default_bundle_dir

    eager = default_bundle_dir()
    if not (eager / "manifest.json").is_file():
        raise SystemExit(f"live_path: no default bundle at {eager}; run `edgehar demo` once (it trains it) or pass --bundle")
    bundles = [eager]
    for fmt in int8_formats():
        out = work / f"default-{fmt}-int8"
        if not (out / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "edgehar", "export", str(eager), "--format", fmt, "--precision", "int8",
                            "--out", str(out)], check=True)
        bundles.append(out)
    return bundles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="camera sizes, e.g. 640x480,1280x720")
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds per run")
    ap.add_argument("--bundle", action="append", type=Path, help="bundle to run (repeatable; default: see above)")
    ap.add_argument("--session", type=Path, help="recorded session to replay (default: the simulated data set's first)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    from edgehar.contract.bundle import read_manifest
    from edgehar.models.datasets import simulated_dataset

    work = args.out.parent / "live_path_work"
    work.mkdir(parents=True, exist_ok=True)
    session = args.session or sorted(p for p in simulated_dataset().iterdir() if (p / "meta.json").is_file())[0]
    bundles = args.bundle or default_bundles(work)
    runs = []
    for bundle in bundles:
        manifest = read_manifest(bundle)
        for w, h in args.sizes:
            video = scaled_video(session / "camera.mp4", (w, h), args.seconds + 5, work)
            measured = run_live(bundle, session, video, args.seconds, work / "live.jsonl")
            row = {"bundle": str(bundle), "format": manifest.format, "precision": manifest.precision,
                   "camera": f"{w}x{h}", "pixels": w * h, "cpu_share": measured["cpu_share"],
                   "peak_rss_mb": measured["peak_rss_mb"],
                   **summarise(measured["lines"], args.seconds, manifest.window_s, manifest.hop_s)}
            runs.append(row)
            print(to_markdown({"runs": [row], "seconds": args.seconds, "machine": "", "command": ""}).splitlines()[-1], flush=True)
    result = {
        "command": " ".join(["python benchmarks/live_path.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": args.seconds, "session": str(session), "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(result))
    plot(result, args.out.with_suffix(".png"))
    print(f"live_path: wrote {args.out} (.md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
