"""`edgehar evaluate`: every model's modality ablation on one data set, as one table.

The papers report, per method, single-modality and fused accuracy; the fusion claims
("beats its best single modality", "degrades gracefully with a stream missing") are
read off such a table. For each model this trains the fused model and the same model on
each modality alone (`train_ablation`, identical recipe), then writes
`evaluation.md` / `evaluation.json`:

- accuracy and macro-F1 on the cross-subject test windows, fused and per single modality;
- the gain of fusion over the best single modality;
- accuracy of the fused model with each modality removed at test time (zeros, as a
  dropped stream reaches it) and the largest drop;
- parameters and MACs per prediction of the fused model, and training time.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..contract.manifest import Manifest
from .datasets import load_data
from .registry import list_models
from .train import TrainConfig, train_ablation

# the models of the table: the five papers' architectures and the baselines they compare against
DEFAULT_MODELS = ("mmtsa", "cam", "mmixer", "nonlocal_fusion", "resatt", "late_concat", "score_avg")


def evaluate_models(cfg: TrainConfig, models: tuple[str, ...] = (), progress: bool = True) -> list[dict[str, Any]]:
    """Train and evaluate each model (fused + each single modality); write the table to `cfg.out`."""
    models = models or tuple(m for m in DEFAULT_MODELS if m in list_models())
    data = load_data(cfg.data, frame_resize=Manifest.frame_resize, progress=progress)
    started = time.perf_counter()
    rows = []
    for name in models:
        runs = train_ablation(replace(cfg, model=name, out=str(Path(cfg.out) / name)), data=data, progress=progress)
        fused, singles = runs[0], runs[1:]
        rows.append({"model": name, "fused": fused, "single": {r["modalities"]: r for r in singles}})
    minutes = (time.perf_counter() - started) / 60
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps({"data": data.name, "minutes": round(minutes, 1), "rows": rows}, indent=2) + "\n")
    (out / "evaluation.md").write_text(markdown(rows, data.name, [m.name for m in data.modalities], minutes))
    return rows


def markdown(rows: list[dict[str, Any]], data: str, modalities: list[str], minutes: float) -> str:
    """The two tables: ablation per model, and the fused models with a modality removed."""
    single_cols = " | ".join(f"{m} only" for m in modalities)
    lines = [
        f"## Modality ablation on `{data}` (cross-subject test windows; accuracy %)",
        "",
        f"| model | fused | macro-F1 | {single_cols} | fusion gain | params | MACs / prediction | train s |",
        "|---|---:|---:|" + "---:|" * len(modalities) + "---:|---:|---:|---:|",
    ]
    for r in rows:
        f, singles = r["fused"], r["single"]
        accs = [singles[m]["accuracy"] for m in modalities if m in singles]
        gain = f"{100 * (f['accuracy'] - max(accs)):+.1f}" if accs else "–"
        cells = " | ".join(pct(singles[m]["accuracy"]) if m in singles else "–" for m in modalities)
        lines.append(f"| {r['model']} | {pct(f['accuracy'])} | {pct(f['macro_f1'])} | {cells} | {gain} | "
                     f"{f['params']:,} | {f['macs'] / 1e6:.1f} M | {f['train_seconds']:.0f} |")
    lines += [
        "",
        "## The fused models with one modality removed at test time (zeros, as a dropped stream; accuracy %)",
        "",
        "| model | all | " + " | ".join(f"without {m}" for m in modalities) + " | largest drop |",
        "|---|---:|" + "---:|" * len(modalities) + "---:|",
    ]
    for r in rows:
        f, without = r["fused"], r["fused"].get("accuracy_without", {})
        drops = [f["accuracy"] - without[m] for m in modalities if m in without]
        cells = " | ".join(pct(without[m]) if m in without else "–" for m in modalities)
        worst = f"{100 * max(drops):.1f}" if drops else "–"
        lines.append(f"| {r['model']} | {pct(f['accuracy'])} | {cells} | {worst} |")
    lines += ["", f"All {len(rows)} models trained in {minutes:.0f} min on this machine.", ""]
    return "\n".join(lines)


def pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}"
