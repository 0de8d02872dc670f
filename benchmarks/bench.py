"""Benchmark bundles: format | status | size | accuracy | latency per stage | memory | energy.

Each bundle (any folder `app.backends.load_bundle` can open, so every export format
and precision) is measured in its own fresh subprocess, because peak RSS is
process-wide and a runtime loaded earlier would inflate the next one. Inside it:

1. load the bundle, run `warmup` inferences on random inputs of the manifest's shapes,
   read peak RSS ("runtime" RSS: interpreter + numpy/OpenCV + runtime + model);
2. load the test subjects of the manifest's data source (`metrics["data"]`, or `data=`)
   and run single-stream queries like MLPerf SingleStream: one window at a time, the
   whole live path (slice the streams, `build_inputs`, `backend.run`), `warmup`
   untimed queries first, then at least `runs` timed ones and at least one per test
   window, more (in steps of 50, up to `max_runs`) until the p90 of the total moves
   by less than 2 %. Every test window's prediction gives the accuracy;
3. the energy meter (if any) runs around the timed queries only.

Then, from the rows of one run, the ratios the comparison needs: every bundle against
the eager fp32 bundle of the same model, and every precision against fp32 of the same
format; for MMTSA bundles with eager weights, sparse N-segment sampling against dense
(MACs and accuracy of the same weights, where torch is installed); and our GAF against
the official-style pyts pipeline (where pyts is installed).

`edgehar bench` is the command line (its flags live with the other verbs' in
`edgehar.cli`); `python -m edgehar.benchmarks.bench --one BUNDLE | --dense BUNDLE
--result FILE` is the per-bundle child the driver starts, not meant to be typed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.bundle import read_manifest
from ..contract.manifest import Manifest, ManifestError
from ..errors import EdgeharError
from .meters import EnergyMeter, MeterError, meter_from_spec
from .report import write_all
from .table import STAGES, BenchTable, BundleResult

PERCENTILES = (50, 90, 99)
STABLE_STEP = 50  # extra queries between two p90 stability checks
STABLE_TOLERANCE = 0.02  # p90 moved by less than this fraction: stable
RUNTIME_PACKAGES = (
    "numpy", "opencv-python-headless", "opencv-python", "torch", "executorch", "ai-edge-litert",
    "tflite-runtime", "onnxruntime", "onnxruntime-gpu", "pyts", "nvidia-ml-py",
)


class BenchError(EdgeharError, ValueError):
    """A benchmark that cannot run as asked (no bundle, no data source, bad option)."""


# -- one bundle, in its own process ----------------------------------------------------
def _peak_rss_mb() -> float:
    """This process's resident high-water mark. Linux: VmHWM, which belongs to the
    process image; ru_maxrss is not used there because a child inherits its parent's
    maximum across fork + exec (a driver that exported models first would be counted)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    out = {f"p{p}": round(float(np.percentile(a, p)), 4) for p in PERCENTILES}
    out["mean"] = round(float(a.mean()), 4)
    return out


def _import_datasets():
    """`edgehar.models.datasets` (torch-free itself, but `edgehar.models/__init__` imports torch)."""
    try:
        from ..models import datasets
        from ..models.metrics import classification_metrics
    except ImportError as exc:
        raise BenchError(f"accuracy needs the data loaders, which need torch today ({exc}); pip install 'edgehar[train]'") from None
    return datasets, classification_metrics


def measure_bundle(bundle: str | Path, runs: int = 200, warmup: int = 20, threads: int | None = None,
                   meter_spec: str = "none", sysfs_root: str | Path = "/", data: str | None = None,
                   max_runs: int = 2000, idle_s: float = 0.0) -> BundleResult:
    """Measure one bundle in this process (the driver calls it in a fresh subprocess)."""
    from ..app.backends import load_bundle
    from ..contract.preprocess.frames import FrameTransform
    from ..contract.preprocess.inputs import build_inputs
    from ..contract.preprocess.sampling import SegmentSampler
    from ..contract.series import between

    bundle = Path(bundle)
    row = BundleResult(bundle=str(bundle), status="ok", threads=threads)
    try:
        manifest = Manifest.load(bundle)
    except ManifestError as exc:
        row.status = f"bad manifest: {exc}"
        return row
    row.model, row.format, row.precision = manifest.model, manifest.format, manifest.precision
    row.size_bytes = _folder_bytes(bundle)
    row.model_config, row.labels = manifest.model_config, list(manifest.labels)
    try:
        manifest, backend = load_bundle(bundle, num_threads=threads)
    except EdgeharError as exc:
        row.status = f"cannot load: {exc}"
        return row
    except ImportError as exc:  # a runtime that is not installed on this machine
        row.status = f"runtime not installed: {exc}"
        return row

    rng = np.random.default_rng(0)
    random_inputs = tuple(rng.standard_normal((1, *s)).astype(np.float32) for s in manifest.input_shapes())
    for _ in range(max(1, warmup)):
        backend.run(random_inputs)
    row.peak_rss_mb = round(_peak_rss_mb(), 1)

    row.data = data or manifest.metrics.get("data")
    if not row.data:
        row.status = "no data source: the manifest names none; pass --data"
        return row
    datasets, classification_metrics = _import_datasets()
    try:
        labelled = datasets.load_data(row.data, frame_resize=manifest.frame_resize, progress=False)
        windows = datasets.WindowSampler(manifest, labelled.split("test"), train=False)
    except EdgeharError as exc:
        row.status = f"data {row.data!r}: {exc}"
        return row
    items = windows.eval_windows
    if not items:
        row.status = f"data {row.data!r} has no test windows"
        return row
    recordings = windows.recordings
    streams = [s.name for s in manifest.streams]
    sampler = SegmentSampler.for_manifest(manifest, train=False)
    frames = FrameTransform.from_manifest(manifest)

    def query(i: int) -> tuple[dict[str, float], int]:
        ri, t0, _ = items[i % len(items)]
        t1 = t0 + manifest.window_s
        tic = time.perf_counter()
        series = {name: between(recordings[ri].series[name], t0, t1) for name in streams}
        built = build_inputs(manifest, series, t0, t1, sampler, frames)
        t_inf = time.perf_counter()
        logits = backend.run(tuple(a[None] for a in built.arrays))
        t_done = time.perf_counter()
        stages = dict(built.timings, inference=t_done - t_inf, total=t_done - tic)
        return stages, int(np.argmax(logits[0]))

    for i in range(warmup):
        query(i)

    meter, _ = meter_from_spec(meter_spec, sysfs_root)
    if meter is not None and idle_s > 0:
        meter.start()
        time.sleep(idle_s)
        row.idle_w = meter.stop() / idle_s
    timings: dict[str, list[float]] = {s: [] for s in STAGES}
    preds = np.full(len(items), -1)
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    n, target, last_p90 = 0, max(runs, len(items)), None
    while True:
        while n < target:
            stages, pred = query(n)
            for s in STAGES:
                timings[s].append(stages.get(s, 0.0))
            if n < len(items):
                preds[n] = pred
            n += 1
        p90 = float(np.percentile(timings["total"], 90))
        row.p90_stable = last_p90 is not None and abs(p90 - last_p90) <= STABLE_TOLERANCE * last_p90
        if row.p90_stable or n >= max_runs:
            break
        last_p90, target = p90, min(max_runs, n + STABLE_STEP)
    elapsed = time.perf_counter() - started
    if meter is not None:
        try:
            joules = meter.stop()
            row.energy_j_per_inference = joules / n
            if row.idle_w is not None:
                row.energy_net_j_per_inference = (joules - row.idle_w * elapsed) / n
            row.energy_label = "estimate" if meter.estimate else meter.name
        except MeterError as exc:
            row.energy_label = f"meter error: {exc}"

    row.runs = n
    row.latency_ms = {s: _percentiles(v) for s, v in timings.items()}
    row.throughput_per_s = round(1e3 / row.latency_ms["total"]["mean"], 2)
    labels = np.array([c for _, _, c in items])
    metrics = classification_metrics(labels, preds, len(manifest.labels))
    row.accuracy, row.macro_f1, row.test_windows = metrics["accuracy"], metrics["macro_f1"], len(items)
    row.peak_rss_with_data_mb = round(_peak_rss_mb(), 1)
    return row


# -- sparse vs dense segments (MMTSA, eager weights, torch) ------------------------------
def dense_segments(manifest: Manifest) -> int:
    """Segments that read every frame of the window (every camera frame); for a
    sensor-only model, non-overlapping K-sample windows that cover every sample."""
    counts = []
    for m in manifest.modalities:
        rate = manifest.stream(m.stream).rate_hz
        per_window = manifest.window_s * rate
        counts.append(round(per_window) if m.type == "frames" else max(1, int(per_window // manifest.gaf_k)))
    return max(counts)


def sparse_vs_dense(bundle: str | Path, data: str | None = None, threads: int | None = None,
                    latency_runs: int = 10, batch: int = 16) -> dict[str, Any]:
    """The bundle's trained weights evaluated with N (as trained) and with dense segments.

    MMTSA shares each backbone across segments and attends over any N, so the same
    weights run at any N in eager PyTorch. The dense accuracy is that of a model
    trained sparse and evaluated dense — a model trained dense may differ.
    """
    import torch

    from ..models import count_macs, create_model

    datasets, classification_metrics = _import_datasets()
    from ..models.train import predict

    bundle = Path(bundle)
    manifest = Manifest.load(bundle)
    if manifest.format != "eager" or "input_shapes" not in manifest.model_config:
        raise BenchError(f"{bundle}: sparse vs dense needs an eager MMTSA-style bundle")
    if threads:
        torch.set_num_threads(threads)
    state = torch.export.load(str(bundle / manifest.model_file)).state_dict
    source = data or manifest.metrics.get("data")
    labelled = datasets.load_data(source, frame_resize=manifest.frame_resize, progress=False)
    result: dict[str, Any] = {"bundle": str(bundle), "model": manifest.model, "data": source, "variants": []}
    for kind, n in (("sparse", manifest.num_segments), ("dense", dense_segments(manifest))):
        # the same weights at another N: not the bundle's file, so without its tensor listing
        m_n = replace(manifest, num_segments=n, inputs=(), outputs=(), model_sha256="")
        model = create_model(manifest.model, **{**manifest.model_config, "input_shapes": m_n.input_shapes()})
        model.load_state_dict(state)
        model.eval()
        example = model.example_inputs(batch=1)
        macs = count_macs(model, example)
        with torch.no_grad():
            model(*example)
            times = []
            for _ in range(latency_runs):
                tic = time.perf_counter()
                model(*example)
                times.append(time.perf_counter() - tic)
        windows = datasets.WindowSampler(m_n, labelled.split("test"), train=False)
        preds = []
        for b in range(0, len(windows.eval_windows), batch):  # dense inputs are large: build in batches
            arrays, _ = windows.inputs(windows.eval_windows[b : b + batch])
            preds.append(predict(model, arrays))
        labels = np.array([c for _, _, c in windows.eval_windows])
        acc = classification_metrics(labels, np.concatenate(preds), len(manifest.labels))["accuracy"]
        result["variants"].append({
            "kind": kind, "segments": n, "macs": int(macs), "macs_per_segment": int(macs) / n,
            "accuracy": acc, "eager_inference_ms_p50": round(float(np.median(times)) * 1e3, 3),
        })
    sparse, dense = result["variants"]
    result["macs_ratio_dense_over_sparse"] = round(dense["macs"] / sparse["macs"], 2)
    result["accuracy_delta_dense_minus_sparse"] = round(dense["accuracy"] - sparse["accuracy"], 4)
    return result


# -- the driver -------------------------------------------------------------------------
def _child(args: list[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run `python -m edgehar.benchmarks.bench <args> --result FILE`; (JSON, error)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "edgehar.benchmarks.bench", *args, "--result", str(result)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout_s:g} s"
        if proc.returncode != 0 or not result.is_file():
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            return None, f"failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}"
        return json.loads(result.read_text()), ""


def compare_rows(rows: list[BundleResult]) -> list[dict[str, Any]]:
    """Ratios between rows of the same model (same registry name, config, labels and data):
    every bundle vs eager fp32, and every other precision vs fp32 of the same format.
    speedup > 1: faster than the reference (p50 ratio)."""
    groups: dict[str, list[BundleResult]] = {}
    for r in rows:
        if r.ok:
            key = json.dumps([r.model, r.model_config, r.labels, r.data], sort_keys=True)
            groups.setdefault(key, []).append(r)

    def ratio(ref: BundleResult, r: BundleResult, kind: str) -> dict[str, Any]:
        def speed(stage: str) -> float | None:
            a, b = ref.p50(stage), r.p50(stage)
            return round(a / b, 3) if a and b else None

        return {
            "kind": kind, "model": r.model, "bundle": r.bundle, "reference": ref.bundle,
            "what": f"{r.format} {r.precision} vs {ref.format} {ref.precision}",
            "speedup_total": speed("total"), "speedup_inference": speed("inference"),
            "accuracy_delta": None if r.accuracy is None or ref.accuracy is None else round(r.accuracy - ref.accuracy, 4),
            "size_ratio": round(r.size_bytes / ref.size_bytes, 3) if r.size_bytes and ref.size_bytes else None,
        }

    out = []
    for members in groups.values():
        eager = next((r for r in members if r.format == "eager" and r.precision == "fp32"), None)
        if eager is not None:
            out += [ratio(eager, r, "vs eager fp32") for r in members if r is not eager]
        for r in members:
            fp32 = next((f for f in members if f.format == r.format and f.precision == "fp32"), None)
            if fp32 is not None and r.precision != "fp32":
                out.append(ratio(fp32, r, "precision vs fp32"))
    return out


def machine_info() -> dict[str, Any]:
    """CPU, cores, OS, Python and the versions of what runs the pipeline."""
    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        for key in ("model name", "Hardware", "Model", "cpu model"):
            line = next((l for l in info.splitlines() if l.split(":")[0].strip() == key), None)
            if line:
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    board = None
    try:
        board = Path("/proc/device-tree/model").read_text().strip("\x00\n ") or None
    except OSError:
        pass
    versions = {}
    for pkg in RUNTIME_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem_gb = None
    try:
        kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        mem_gb = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpu": cpu, "board": board, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": mem_gb,
        "os": platform.platform(), "python": platform.python_version(), "versions": versions,
    }


def _gaf_vs_official(reps: int) -> dict[str, Any]:
    if reps <= 0:
        return {"skipped": "not asked (--gaf-reps 0)"}
    if importlib.util.find_spec("pyts") is None:
        return {"skipped": "pyts is not installed (pip install 'edgehar[train]')"}
    from . import gaf_vs_official

    return {"reps": reps, "rows": gaf_vs_official.compare(reps)}


def run_bench(bundles: list[str | Path], runs: int = 200, warmup: int = 20, threads: int | None = None,
              meter: str = "auto", out_dir: str | Path | None = None, *, data: str | None = None,
              max_runs: int = 2000, idle_s: float = 0.0, dense: bool = True, gaf_reps: int = 20,
              sysfs_root: str | Path = "/", timeout_s: float = 1800.0, log=None) -> BenchTable:
    """Measure every bundle in its own subprocess and put the rows and ratios in one table.

    meter: "auto" (first meter found, else "no meter"), "none", a meter name
    ("rapl", "ina3221[:RAIL]", "battery", "nvml") or "estimate:WATTS" (labelled an
    estimate). data: the test data source for every bundle (default: each manifest's).
    Writes bench.md, bench.json and bench.png to out_dir when given.

    Every bundle must be a folder with a readable manifest (BundleError otherwise), checked
    before anything is measured: a mistyped path fails at once, not after the other
    bundles' minutes. A bundle that is there but cannot be run (unknown format, missing
    runtime, corrupt model) is a row whose status says why, and does not stop the others.
    """
    if not bundles:
        raise BenchError("no bundle to benchmark")
    if runs < 1 or warmup < 0 or max_runs < 1:
        raise BenchError(f"runs ({runs}) and max_runs ({max_runs}) must be >= 1, warmup ({warmup}) >= 0")
    for b in bundles:
        read_manifest(b)
    say = log or (lambda msg: None)
    chosen, reasons = meter_from_spec(meter, sysfs_root)
    child_spec = "none" if chosen is None else _spec_of(chosen)
    meter_info = {
        "name": chosen.name if chosen else "no meter",
        "description": chosen.description if chosen else "no meter: energy not measured",
        "estimate": bool(chosen and chosen.estimate),
        "reasons": reasons,
    }
    common = ["--runs", str(runs), "--max-runs", str(max_runs), "--warmup", str(warmup), "--meter", child_spec,
              "--sysfs-root", str(sysfs_root), "--idle-s", str(idle_s)]
    if threads:
        common += ["--threads", str(threads)]
    if data:
        common += ["--data", str(data)]

    rows = []
    for b in bundles:
        say(f"bench {b} ...")
        got, err = _child(["--one", str(b), *common], timeout_s)
        rows.append(BundleResult(**got) if got else BundleResult(bundle=str(b), status=err, threads=threads))
        say(f"  {rows[-1].status}")

    dense_rows = []
    if dense:
        torch_here = importlib.util.find_spec("torch") is not None
        seen = set()
        for r in rows:
            key = json.dumps([r.model, r.model_config, r.data], sort_keys=True)
            if not (r.ok and r.format == "eager" and "input_shapes" in r.model_config) or key in seen:
                continue
            seen.add(key)
            if not torch_here:
                dense_rows.append({"bundle": r.bundle, "model": r.model, "skipped": "needs torch"})
                continue
            say(f"sparse vs dense segments {r.bundle} ...")
            args = ["--dense", r.bundle] + (["--data", r.data] if r.data else []) + (["--threads", str(threads)] if threads else [])
            got, err = _child(args, timeout_s)
            dense_rows.append(got or {"bundle": r.bundle, "model": r.model, "skipped": err})

    table = BenchTable(
        rows=rows,
        comparisons=compare_rows(rows),
        sparse_vs_dense=dense_rows,
        gaf_vs_official=_gaf_vs_official(gaf_reps),
        machine=machine_info(),
        meter=meter_info,
        settings={"runs": runs, "max_runs": max_runs, "warmup": warmup, "threads": threads, "data": data,
                  "idle_s": idle_s, "scenario": "single-stream: one window at a time, whole live path"},
    )
    if out_dir is not None:
        for path in write_all(table, out_dir):
            say(f"wrote {path}")
    return table


def _spec_of(meter: EnergyMeter) -> str:
    """The spec a child process needs to open the same meter the driver chose."""
    if meter.name == "estimate":
        return f"estimate:{meter.watts}"  # type: ignore[attr-defined]
    if meter.name == "ina3221":
        return f"ina3221:{meter.rail.label}"  # type: ignore[attr-defined]
    return meter.name


def _child_main(argv: list[str]) -> None:
    """The per-bundle subprocess: measure, write the JSON result file."""
    p = argparse.ArgumentParser()
    p.add_argument("--one", type=Path)
    p.add_argument("--dense", type=Path)
    p.add_argument("--result", type=Path, required=True)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--max-runs", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--data")
    p.add_argument("--meter", default="none")
    p.add_argument("--sysfs-root", default="/")
    p.add_argument("--idle-s", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.one:
        try:
            out = asdict(measure_bundle(a.one, a.runs, a.warmup, a.threads, a.meter, a.sysfs_root, a.data,
                                        a.max_runs, a.idle_s))
        except EdgeharError as exc:
            out = asdict(BundleResult(bundle=str(a.one), status=str(exc), threads=a.threads))
    else:
        try:
            out = sparse_vs_dense(a.dense, a.data, a.threads)
        except EdgeharError as exc:
            out = {"bundle": str(a.dense), "skipped": str(exc)}
    a.result.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    _child_main(sys.argv[1:])
