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

`evaluate_components` (`edgehar evaluate --components`) is the other table the papers
report: each family's component ablation (MMTSA's segment fusion, N, GASF/GADF, sparse
vs dense; CAM without MAR; M-Mixer's MCU parts; ...). The rows are named `--set`
settings defined next to each family (`components` of its config class), trained with
every modality fused, each over several seeds: mean ± std of test accuracy and macro-F1,
and training time.

Under torchrun (`torchrun --nproc-per-node N -m edgehar evaluate ...`) every run is
trained by all the ranks together (`train` is distributed data parallel) and rank 0
writes the tables. `jobs > 1` trains that many models (or, with `--components`, runs)
at once instead (a spawned process pool; for the modality table each job is one model's
whole ablation, loading the data itself): the runs are independent,
so this needs no distributed training, only cores. Each job gets its share of the
cores, so its `train s` reads longer than the same run alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..contract.manifest import Manifest
from .datasets import load_data
from .distributed import Workers
from .labelled import LabelledData
from .registry import list_models, model_config_class
from .settings import apply_settings
from .train import TrainConfig, train, train_ablation

# the models of the table: the five papers' architectures and the baselines they compare against
DEFAULT_MODELS = ("mmtsa", "cam", "mmixer", "nonlocal_fusion", "resatt", "late_concat", "score_avg")


def evaluate_models(cfg: TrainConfig, models: tuple[str, ...] = (), progress: bool = True,
                    settings: tuple[str, ...] = (), jobs: int = 1) -> list[dict[str, Any]]:
    """Train and evaluate each model (fused + each single modality), `jobs` models at a
    time; write the table to `cfg.out`. `settings` (`--set` items) apply to every model."""
    models = models or tuple(m for m in DEFAULT_MODELS if m in list_models())
    data = _load(cfg.data, progress)
    started = time.perf_counter()
    cfgs = [apply_settings(replace(cfg, model=name, out=str(Path(cfg.out) / name)), settings) for name in models]
    if jobs > 1:
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            all_runs = list(pool.map(partial(train_ablation, progress=False), [replace(c, threads=threads) for c in cfgs]))
    else:
        all_runs = [train_ablation(c, data=data, progress=progress) for c in cfgs]
    rows = []
    for name, runs in zip(models, all_runs):
        fused, singles = runs[0], runs[1:]
        rows.append({"model": name, "fused": fused, "single": {r["modalities"]: r for r in singles}})
    minutes = (time.perf_counter() - started) / 60
    _write(Path(cfg.out), {"data": data.name, "minutes": round(minutes, 1), "rows": rows},
           markdown(rows, data.name, [m.name for m in data.modalities], minutes))
    return rows


def evaluate_components(cfg: TrainConfig, models: tuple[str, ...] = (), seeds: int = 3, progress: bool = True,
                        settings: tuple[str, ...] = (), jobs: int = 1) -> list[dict[str, Any]]:
    """Each model's component ablation: every row of its config class's `components`, trained
    with seeds cfg.seed .. cfg.seed + seeds - 1 on all modalities; `settings` first, the row's
    on top. Writes `evaluation.md` / `evaluation.json` (each run's bundle in
    `out/MODEL/ROW/seed-S/`) and returns one row per (model, component).

    The table is hours of training, so it is written again as each row completes (an
    interrupted run leaves the rows it finished), and a run whose folder already holds the
    metrics of the same recipe (`run.json`) is not trained again: the same command resumes
    where it stopped. `jobs > 1` trains that many runs at once in spawned processes, each
    loading the data once and taking its share of the cores."""
    models = models or tuple(m for m in DEFAULT_MODELS if m in list_models())
    data = _load(cfg.data, progress)
    started = time.perf_counter()
    table = [(name, component, items) for name in models
             for component, items in model_config_class(name).components.items()]
    runs = [apply_settings(replace(cfg, model=name, seed=seed,
                                   out=str(Path(cfg.out, name, _folder(component), f"seed-{seed}"))), settings + items)
            for name, component, items in table for seed in range(cfg.seed, cfg.seed + seeds)]
    if jobs > 1:
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // jobs)
        pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_load_worker_data,
                                   initargs=(cfg.data,))
        results = pool.map(_train_in_worker, [replace(r, threads=threads) for r in runs])
    else:
        pool, results = None, (_train_once(r, data, progress) for r in runs)
    rows: list[dict[str, Any]] = []
    try:
        for k, (name, component, items) in enumerate(table):
            done = [next(results) for _ in range(seeds)]  # in order: a row as soon as its seeds are in
            rows.append({"model": name, "component": component, "settings": list(items), "seeds": seeds,
                         **{key: _spread([r[key] for r in done]) for key in ("accuracy", "macro_f1", "train_seconds")},
                         "params": done[0]["params"], "macs": done[0]["macs"]})
            minutes = (time.perf_counter() - started) / 60
            _write(Path(cfg.out), {"data": data.name, "minutes": round(minutes, 1), "rows": rows,
                                   "complete": k + 1 == len(table)},
                   components_markdown(rows, data.name, minutes, of=len(table)))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return rows


def _train_once(cfg: TrainConfig, data: LabelledData | None, progress: bool) -> dict[str, Any]:
    """`train(cfg)`, unless `cfg.out` already holds the metrics of a run of this very recipe
    (its `run.json`: every TrainConfig field but the output folder and the threads, which do
    not change what is trained)."""
    recipe = json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k not in ("out", "threads")}))
    out, workers = Path(cfg.out), Workers.from_env()
    done = None
    if workers.is_main:
        with contextlib.suppress(OSError, ValueError):
            if json.loads((out / "run.json").read_text()) == recipe:
                done = json.loads((out / "metrics.json").read_text())
    done = workers.from_main(done)  # under torchrun rank 0 decides: every rank trains the run, or none
    if done is not None:
        return done
    metrics = train(cfg, data=data, progress=progress)
    if workers.is_main:
        (out / "run.json").write_text(json.dumps(recipe, indent=2) + "\n")
    return metrics


_worker_data: LabelledData | None = None  # a pool process's copy of the data (`_load_worker_data`)


def _load_worker_data(source: str) -> None:
    global _worker_data
    _worker_data = load_data(source, frame_resize=Manifest.frame_resize, progress=False)


def _train_in_worker(cfg: TrainConfig) -> dict[str, Any]:
    return _train_once(cfg, _worker_data, progress=False)


def _folder(component: str) -> str:
    """A row's name as a folder name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", component).strip("_")


def _spread(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value) of one figure over the seeds."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _load(source: str, progress: bool) -> LabelledData:
    """The data set, once per run of the command; under torchrun rank 0 loads (and, for
    `sim`, generates the cache) before the others read it."""
    workers = Workers.from_env()
    with workers.main_first():
        return load_data(source, frame_resize=Manifest.frame_resize, progress=progress and workers.is_main)


def _write(out: Path, payload: dict[str, Any], md: str) -> None:
    if not Workers.from_env().is_main:  # under torchrun every rank has the same rows; rank 0 writes them
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / "evaluation.md").write_text(md)


def components_markdown(rows: list[dict[str, Any]], data: str, minutes: float, of: int | None = None) -> str:
    """One table per model: component, settings, accuracy and macro-F1 (mean ± std, %), train s.
    `of`: how many rows the whole table has (fewer in `rows`: a table still being trained)."""
    lines = [f"## Component ablations on `{data}` (cross-subject test windows, all modalities; mean ± std over seeds)", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += [
            f"### {model}",
            "",
            "| component | settings | accuracy % | macro-F1 % | params | MACs / prediction | train s | seeds |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in (r for r in rows if r["model"] == model):
            acc, f1, secs = r["accuracy"], r["macro_f1"], r["train_seconds"]
            settings = " ".join(f"`{s}`" for s in r["settings"]) or "(defaults)"
            lines.append(f"| {r['component']} | {settings} | {pct(acc['mean'])} ± {pct(acc['std'])} | "
                         f"{pct(f1['mean'])} ± {pct(f1['std'])} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | "
                         f"{secs['mean']:.0f} ± {secs['std']:.0f} | {r['seeds']} |")
        lines.append("")
    so_far = f" of {of} (the rest not trained yet)" if of is not None and of > len(rows) else ""
    lines += [f"{len(rows)} rows{so_far} trained in {minutes:.0f} min on this machine.", ""]
    return "\n".join(lines)


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
