"""Write a `BenchTable` as markdown, JSON and a latency-vs-accuracy PNG.

The plot is drawn with OpenCV (a core dependency) rather than matplotlib (not one):
axes, ticks and one labelled point per measured bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .table import STAGES, BenchTable, BundleResult

MARKDOWN_NAME, JSON_NAME, PLOT_NAME = "bench.md", "bench.json", "bench.png"


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f} MB"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


def energy_cell(r: BundleResult) -> str:
    """Energy per inference, labelled; "no meter" when nothing measured it."""
    if r.energy_j_per_inference is None:
        return r.energy_label if r.ok else "–"
    mj = r.energy_j_per_inference * 1e3
    text = f"{mj:.3f} mJ"
    if r.energy_net_j_per_inference is not None:
        text += f" ({r.energy_net_j_per_inference * 1e3:.3f} above idle)"
    return f"{text} ({r.energy_label})" if r.energy_label == "estimate" else text


def energy_header(table: BenchTable) -> str:
    if table.meter["estimate"]:
        return "energy / inference (ESTIMATE)"
    if table.meter["name"] == "no meter":
        return "energy / inference"
    return f"energy / inference ({table.meter['name']})"


def to_markdown(table: BenchTable) -> str:
    m, s = table.machine, table.settings
    lines = [
        "# edgehar benchmark",
        "",
        f"Machine: {m['cpu']}{' (' + m['board'] + ')' if m.get('board') else ''}, {m['usable_cores']}/{m['cores']} cores, "
        f"{m.get('memory_gb')} GB, {m['os']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        f"Scenario: {s['scenario']}; {s['warmup']} warm-up queries, then ≥ {s['runs']} timed (and one per test window), "
        f"up to {s['max_runs']} until p90 is stable; threads: {s['threads'] or 'runtime default'}.",
        f"Energy: {table.meter['description']}" + (" (why: see the end)." if table.meter["reasons"] and table.meter["name"] == "no meter" else "."),
        "",
        f"| model | format | precision | status | size | accuracy | p50 ms | p90 ms | p99 ms | throughput /s | peak RSS | {energy_header(table)} |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.rows:
        tot = r.latency_ms.get("total", {})
        lines.append(
            f"| {r.model or '–'} | {r.format or '–'} | {r.precision or '–'} | {r.status} | {_mb(r.size_bytes)} | "
            f"{_pct(r.accuracy)} | {_ms(tot.get('p50'))} | {_ms(tot.get('p90'))} | {_ms(tot.get('p99'))} | "
            f"{'–' if r.throughput_per_s is None else f'{r.throughput_per_s:.1f}'} | "
            f"{'–' if r.peak_rss_mb is None else f'{r.peak_rss_mb:.0f} MB'} | {energy_cell(r)} |"
        )
    lines += ["", "Peak RSS: fresh process after loading the bundle and warm-up inferences (what the live app needs); "
              "the test recordings loaded afterwards are not counted (`peak_rss_with_data_mb` in bench.json).", ""]

    lines += ["## Latency per stage (ms, p50 / p90 / p99)", "",
              "| bundle | runs | p90 stable | " + " | ".join(STAGES) + " |", "|---|---:|---|" + "---:|" * len(STAGES)]
    for r in table.rows:
        if not r.ok:
            continue
        cells = [f"{_ms(r.latency_ms[st]['p50'])} / {_ms(r.latency_ms[st]['p90'])} / {_ms(r.latency_ms[st]['p99'])}" for st in STAGES]
        lines.append(f"| {r.format} {r.precision} `{r.bundle}` | {r.runs} | {'yes' if r.p90_stable else 'no'} | " + " | ".join(cells) + " |")

    if table.comparisons:
        lines += ["", "## Ratios (same run; speed-up = reference p50 / p50)", "",
                  "| model | comparison | speed-up total | speed-up inference | accuracy Δ | size ratio |",
                  "|---|---|---:|---:|---:|---:|"]
        for c in table.comparisons:
            delta = "–" if c["accuracy_delta"] is None else f"{100 * c['accuracy_delta']:+.1f} pts"
            lines.append(f"| {c['model']} | {c['what']} | {_ratio(c['speedup_total'])} | {_ratio(c['speedup_inference'])} | "
                         f"{delta} | {_ratio(c['size_ratio'])} |")

    if table.sparse_vs_dense:
        lines += ["", "## Sparse N-segment sampling vs dense (same trained weights, eager PyTorch)", "",
                  "| model | variant | segments | MACs | MACs / segment | accuracy | eager inference p50 ms |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for d in table.sparse_vs_dense:
            if "skipped" in d:
                lines.append(f"| {d.get('model', '–')} | skipped: {d['skipped']} | | | | | |")
                continue
            for v in d["variants"]:
                lines.append(f"| {d['model']} | {v['kind']} | {v['segments']} | {v['macs'] / 1e6:.1f} M | "
                             f"{v['macs_per_segment'] / 1e6:.2f} M | {_pct(v['accuracy'])} | {_ms(v['eager_inference_ms_p50'])} |")
        lines += ["", "Dense = one segment per camera frame of the window (sensor-only: non-overlapping K-sample "
                  "windows). The dense figures evaluate the model trained with N sparse segments; a model trained "
                  "dense may do differently."]

    g = table.gaf_vs_official
    lines += ["", "## Our GAF vs the official-style pyts pipeline", ""]
    if "rows" in g:
        lines += ["| pipeline | median ms | speed-up | max abs diff (grey levels) |", "|---|---:|---:|---:|"]
        lines += [f"| {r['pipeline']} | {r['median_ms']:.2f} | {r['speedup']:.1f}× | {r['max_abs_diff']} |" for r in g["rows"]]
    else:
        lines.append(f"Skipped: {g.get('skipped')}.")
    if table.meter["reasons"] and table.meter["name"] == "no meter":
        lines += ["", "## Why no energy meter", ""] + [f"- {r}" for r in table.meter["reasons"]]
    return "\n".join(lines) + "\n"


def write_json(table: BenchTable, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(table.to_dict(), indent=2) + "\n")
    return path


def read_json(path: str | Path) -> BenchTable:
    return BenchTable.from_dict(json.loads(Path(path).read_text()))


def write_markdown(table: BenchTable, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_markdown(table))
    return path


def plot_points(table: BenchTable) -> list[dict[str, Any]]:
    """The plotted points: one per bundle measured with an accuracy."""
    return [
        {"label": f"{r.model} {r.format} {r.precision}", "latency_ms": r.p50("total"), "accuracy": r.accuracy}
        for r in table.rows
        if r.ok and r.accuracy is not None and r.p50("total") is not None
    ]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    span = max(hi - lo, 1e-9)
    step = 10 ** np.floor(np.log10(span / n))
    step *= min((m for m in (1, 2, 5, 10) if span / (step * m) <= n), default=10)
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-6, step)


def write_plot(table: BenchTable, path: str | Path, size: tuple[int, int] = (900, 600)) -> Path:
    """Latency p50 (x) vs accuracy (y), one labelled point per bundle, drawn with OpenCV."""
    import cv2

    path = Path(path)
    w, h = size
    left, right, top, bottom = 90, 40, 50, 70
    img = np.full((h, w, 3), 255, np.uint8)
    pts = plot_points(table)
    black, grey = (0, 0, 0), (200, 200, 200)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "edgehar bench: single-stream latency vs accuracy", (left, 30), font, 0.6, black, 1, cv2.LINE_AA)
    xs = [p["latency_ms"] for p in pts] or [0.0, 1.0]
    ys = [100 * p["accuracy"] for p in pts] or [0.0, 100.0]
    x_lo, x_hi = 0.0, max(xs) * 1.15 or 1.0
    y_lo, y_hi = max(0.0, min(ys) - 10), min(100.0, max(ys) + 5 + 2 * len(pts))  # headroom for the legend
    if y_hi - y_lo < 10:
        y_lo = max(0.0, y_hi - 10)

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (w - left - right)
        py = h - bottom - (y - y_lo) / (y_hi - y_lo) * (h - top - bottom)
        return int(round(px)), int(round(py))

    for t in _nice_ticks(x_lo, x_hi):
        p = to_px(t, y_lo)
        cv2.line(img, (p[0], top), (p[0], h - bottom), grey, 1)
        cv2.putText(img, f"{t:g}", (p[0] - 12, h - bottom + 20), font, 0.45, black, 1, cv2.LINE_AA)
    for t in _nice_ticks(y_lo, y_hi):
        p = to_px(x_lo, t)
        cv2.line(img, (left, p[1]), (w - right, p[1]), grey, 1)
        cv2.putText(img, f"{t:g}%", (left - 55, p[1] + 5), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
    cv2.putText(img, "latency p50, whole pipeline (ms)", (w // 2 - 140, h - 25), font, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(img, "accuracy", (10, top - 10), font, 0.5, black, 1, cv2.LINE_AA)
    if not pts:
        cv2.putText(img, "no bundle measured", (w // 2 - 90, h // 2), font, 0.7, (0, 0, 200), 2, cv2.LINE_AA)
    colours = [(180, 80, 0), (0, 120, 220), (40, 160, 40), (30, 30, 200), (150, 60, 150), (0, 160, 160)]
    # points carry a number, the legend names them: labels of nearby points never collide
    for i, p in enumerate(pts):
        colour = colours[i % len(colours)]
        c = to_px(p["latency_ms"], 100 * p["accuracy"])
        cv2.circle(img, c, 6, colour, -1, cv2.LINE_AA)
        cv2.putText(img, str(i + 1), (c[0] + 7, c[1] - 7), font, 0.45, colour, 1, cv2.LINE_AA)
        legend = f"{i + 1}  {p['label']}  ({p['latency_ms']:.2f} ms, {100 * p['accuracy']:.1f}%)"
        cv2.putText(img, legend, (left + 10, top + 20 + 18 * i), font, 0.45, colour, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return path


def write_all(table: BenchTable, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_markdown(table, out / MARKDOWN_NAME), write_json(table, out / JSON_NAME), write_plot(table, out / PLOT_NAME)]
