"""Train a registered model on labelled recordings and write a bundle.

Cross-subject: the model is fitted on the training subjects, the best epoch is picked
on the validation subjects, and the figures reported are on the test subjects only.
Inputs are built by `contract.preprocess.inputs.build_inputs`, the code the live app
runs, with random segment times (training) or segment centres (evaluation).

Under torchrun (or `train --nproc N`) the same function runs in every worker:
DistributedDataParallel over the model, each rank a disjoint shard of every epoch's
windows and its share of the global batch (`batch_size` windows per step in all, so the
recipe and its schedule mean the same at any worker count), validation accuracy summed
over ranks (each predicts its part of the validation windows: it runs every epoch, so
splitting it pays); the test, MACs and the bundle are rank 0's alone (once, and the
confusion matrix and the per-modality test need every prediction in one place).
See `distributed.py`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..contract.manifest import GAF_KINDS, GAF_SCALINGS, SAMPLINGS, SENSOR_TYPES, Manifest, ModalitySpec
from .bundle import write_bundle
from .datasets import NAMED_SOURCES, DataError, LabelledData, LabelledRecording, WindowSampler, load_data
from .distributed import Workers
from .flops import count_macs
from .metrics import classification_metrics
from .public_datasets import is_public_source
from .recipes import SENSOR_IMAGES, RecipeError, get_recipe, split_sensors
from .registry import create_model, model_config_class


@dataclass
class TrainConfig:
    data: str = "sim"  # "sim", "basicmotions", or a folder of recorded sessions
    model: str = "mmtsa"  # registry name
    modalities: tuple[str, ...] = ()  # subset of the data's modalities by name; () = all
    window_s: float | None = None  # None: the data source's default
    hop_s: float = 0.25  # live hop written to the manifest
    # None below: the model family's InputRecipe (models/registry.py) decides
    num_segments: int | None = None  # N segments per window (MMTSA uses 3)
    gaf_k: int | None = None  # K samples per sensor window
    # "window": rescale each sensor window over its own K samples (official MMTSA code);
    # "range": over per-channel ranges calibrated on the training split (keeps amplitude)
    gaf_scaling: Literal[GAF_SCALINGS] | None = None
    gaf_kind: Literal[GAF_KINDS] = "summation"  # GASF ("summation") or GADF ("difference") images
    sampling: Literal[SAMPLINGS] = "sparse"  # one time per segment, or one dense clip (MMTSA's ablation)
    # < 1: a class-imbalanced training split, each of a seeded half of the classes keeps this
    # share of its training bouts (`imbalanced`); validation and test are untouched
    minority_keep: float = 1.0
    # None below: the named `recipe` (models/recipes.py: "edge", or MMTSA's "paper" mode) decides
    recipe: str = "edge"
    sensor_images: str | None = None  # "stream": one GAF image per stream; "sensor": one per sensor (x/y/z channels)
    gaf_size: int | None = None  # GAF image side; 0 = K
    gaf_grey: str | None = None  # "float" field, or "uint8" (MMTSA eq. 5, truncated)
    window_bounds: str | None = None  # K-sample windows inside the "window" or their "segment" (eq. 6)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3  # AdamW peak learning rate, one-cycle schedule
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    windows_per_bout: int = 6  # random training windows drawn per labelled bout per epoch
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the model's config
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None: all cores (split between local workers)
    out: str = "runs/train"


def build_manifest(data: LabelledData, cfg: TrainConfig) -> Manifest:
    """The input contract for this run: data streams + chosen modalities + pipeline constants.

    Sensor modalities take the type the model family reads (its InputRecipe: GAF images
    or raw series); N, K and the scaling come from `cfg` where given, else the recipe. The
    imaging options (per-sensor images, image size, grey levels, window bounds) come from
    `cfg` where given, else its named recipe (models/recipes.py).
    """
    recipe = model_config_class(cfg.model).input_recipe
    named = get_recipe(cfg.recipe)
    sensor_images = cfg.sensor_images or named.sensor_images
    if sensor_images not in SENSOR_IMAGES:
        raise RecipeError(f"sensor images {sensor_images!r} is not one of {SENSOR_IMAGES}")
    if cfg.recipe != "edge" and recipe.sensor_type != "gaf":
        raise RecipeError(f"recipe {cfg.recipe!r} is an input mode for GAF models (MMTSA); {cfg.model!r} reads {recipe.sensor_type!r}")
    scaling = cfg.gaf_scaling or recipe.scaling
    modalities = tuple(replace(m, type=recipe.sensor_type) if m.type in SENSOR_TYPES else m for m in data.modalities)
    if cfg.modalities:
        known = [m.name for m in data.modalities]
        unknown = [m for m in cfg.modalities if m not in known]
        if unknown:
            raise DataError(f"unknown modality {unknown[0]!r} for data {data.name!r} (known: {', '.join(known)})")
        modalities = tuple(m for m in modalities if m.name in cfg.modalities)
    if scaling == "range":
        modalities = tuple(_calibrated(m, data.split("train")) for m in modalities)
    if sensor_images == "sensor":
        modalities = split_sensors(modalities)
    used_streams = {m.stream for m in modalities}
    return Manifest(
        streams=tuple(s for s in data.streams if s.name in used_streams),
        modalities=modalities,
        labels=data.labels,
        window_s=cfg.window_s or data.window_s,
        hop_s=cfg.hop_s,
        num_segments=cfg.num_segments or recipe.num_segments,
        gaf_k=cfg.gaf_k or recipe.k,
        gaf_scaling=scaling,
        gaf_kind=cfg.gaf_kind,
        sampling=cfg.sampling,
        gaf_size=named.gaf_size if cfg.gaf_size is None else cfg.gaf_size,
        gaf_grey=cfg.gaf_grey or named.gaf_grey,
        window_bounds=cfg.window_bounds or named.window_bounds,
        model=cfg.model,
    )


def _calibrated(modality: ModalitySpec, recordings: list[LabelledRecording]) -> ModalitySpec:
    """Per-channel (lo, hi) from the training recordings' 0.5 / 99.5 percentiles, so a
    rare spike does not squash every other window; values outside are clipped."""
    if modality.type not in SENSOR_TYPES:
        return modality
    values = np.concatenate([r.series[modality.stream].select(modality.channels) for r in recordings])
    lo, hi = np.percentile(values, [0.5, 99.5], axis=0)
    hi = np.maximum(hi, lo + 1e-6)
    return replace(modality, ranges=tuple((round(float(a), 6), round(float(b), 6)) for a, b in zip(lo, hi)))


def train(cfg: TrainConfig, data: LabelledData | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit, evaluate on the test subjects, write the bundle and reports to `cfg.out`.

    In a distributed run every rank calls this and gets rank 0's metrics back."""
    workers = Workers.from_env()
    progress = progress and workers.is_main
    torch.manual_seed(cfg.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    torch.set_num_threads(cfg.threads or workers.threads())
    out = Path(cfg.out)
    if data is None:
        with workers.main_first():  # rank 0 alone generates the cached simulated set
            data = load_data(cfg.data, frame_resize=Manifest.frame_resize, progress=progress)
    manifest = build_manifest(data, cfg)
    model_config = {**get_recipe(cfg.recipe).model_config, **cfg.model_config}  # the user's own settings win
    try:
        model = create_model(cfg.model, input_shapes=manifest.input_shapes(), num_classes=len(manifest.labels), **model_config)
    except AssertionError as exc:  # a config's own range check (`__post_init__`), against this data's shapes
        if not cfg.model_config:
            raise
        raise DataError(f"{cfg.model} with {cfg.model_config} does not fit data {data.name!r}: {exc}") from None
    manifest = replace(manifest, model_config=model.config.to_dict())
    if workers.is_main:
        out.mkdir(parents=True, exist_ok=True)  # only now: a bad data source or model leaves no empty folder
    if workers.distributed:  # each rank its own dropout / modality-dropout draws
        torch.manual_seed(cfg.seed + workers.rank)

    train_recs = imbalanced(data.split("train"), data.labels, cfg.minority_keep, cfg.seed)
    train_set = WindowSampler(manifest, train_recs, train=True, seed=cfg.seed, rank=workers.rank)
    val_recs = data.split("val")
    val_set = _EvalSet(WindowSampler(manifest, val_recs, train=False), workers) if val_recs else None

    started = time.perf_counter()
    model = _fit(model, train_set, val_set, cfg, progress, workers)
    train_seconds = time.perf_counter() - started
    if not workers.is_main:
        return workers.from_main(None)

    test_set = _EvalSet(WindowSampler(manifest, data.split("test"), train=False))
    metrics = evaluate(model, test_set, manifest)
    macs = count_macs(model, model.example_inputs(batch=1))
    metrics.update(
        data=_source(cfg.data),
        modalities=list(manifest.modality_names()),
        params=sum(p.numel() for p in model.parameters()),
        macs=macs,
        train_seconds=round(train_seconds, 1),
        test_windows=len(test_set.labels),
    )
    manifest = replace(manifest, metrics={k: metrics[k] for k in ("accuracy", "macro_f1", "data", "test_windows")})
    write_bundle(out / "bundle", model, manifest)
    _write_reports(out, metrics, manifest.labels)
    return workers.from_main(metrics)


def imbalanced(recordings: list[LabelledRecording], labels: tuple[str, ...], keep: float, seed: int) -> list[LabelledRecording]:
    """A class-imbalanced copy of the training recordings (residual attention's WSVM ablation).

    Half the classes (rounded down, at least one), drawn with `seed`, are minority classes:
    each keeps `keep` of its labelled bouts (rounded up, at least one), the bouts kept drawn
    with the same seed. Bouts, not whole recordings, are dropped because a simulated or
    recorded session holds every activity; the sensor series stay, only their labels go, so
    a dropped bout is simply never sampled. `keep` >= 1 returns the recordings unchanged.
    """
    if keep >= 1.0:
        return recordings
    if not 0.0 < keep:
        raise DataError(f"minority_keep must be in (0, 1], got {keep}")
    rng = np.random.default_rng(seed)
    minority = set(rng.choice(len(labels), size=max(1, len(labels) // 2), replace=False).tolist())
    bouts = [(ri, bi) for ri, r in enumerate(recordings) for bi, (_, _, act) in enumerate(r.labels)
             if act in labels and labels.index(act) in minority]
    dropped: set[tuple[int, int]] = set()
    for c in sorted(minority):
        mine = [b for b in bouts if labels.index(recordings[b[0]].labels[b[1]][2]) == c]
        if mine:
            kept = rng.choice(len(mine), size=max(1, math.ceil(keep * len(mine))), replace=False)
            dropped |= {b for i, b in enumerate(mine) if i not in set(kept.tolist())}
    return [replace(r, labels=[lab for bi, lab in enumerate(r.labels) if (ri, bi) not in dropped])
            for ri, r in enumerate(recordings)]


class _EvalSet:
    """Evaluation windows with their inputs built once (they are deterministic); with
    `workers`, this rank's part of them."""

    def __init__(self, windows: WindowSampler, workers: Workers | None = None):
        self.inputs, self.labels = windows.inputs(workers.part(windows.eval_windows) if workers else windows.eval_windows)


@dataclass(frozen=True)
class LossContext:
    """What a model's own `training_loss` may need beyond its inputs and labels."""

    loss_fn: nn.Module  # the trainer's cross-entropy (label smoothing applied)
    class_weights: torch.Tensor  # (num_classes,) inverse class frequency of the training bouts, mean 1


class _Loss(nn.Module):
    """The model's training loss as a module, so DistributedDataParallel wraps the whole
    loss computation: a model's own `training_loss` calls its forward from inside, which
    a DDP wrapper around the bare model would never see."""

    def __init__(self, model: nn.Module, ctx: LossContext):
        super().__init__()
        self.model, self.ctx = model, ctx

    def forward(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "training_loss"):
            return self.model.training_loss(inputs, target, self.ctx)
        return self.ctx.loss_fn(self.model(*inputs), target)


def _fit(model: nn.Module, train_set: WindowSampler, val_set: _EvalSet | None, cfg: TrainConfig, progress: bool,
         workers: Workers = Workers()) -> nn.Module:
    """Optimise the model, one AdamW + one-cycle schedule per training stage.

    Models may opt into two hooks (both optional, so a plain classifier needs neither):
    - `training_stages(epochs) -> [(name, epochs), ...]` with `set_training_stage(name)`:
      staged training, e.g. CAM's stage 1 (modality encoders) then stage 2 (fusion).
      Each stage gets a fresh optimiser over the parameters that require grad then.
    - `training_loss(inputs, labels, ctx: LossContext) -> loss`: a loss other than
      cross-entropy of `forward` (auxiliary heads, class-weighted margins).
    The checkpoint kept is the best validation epoch of the last stage (earlier stages
    may not train the final head, so their validation accuracy says nothing).
    Distributed, each stage wraps the loss in a fresh DDP (the stage decides which
    parameters train), with `static_graph`: within a stage every step uses the same
    parameters, and a config that leaves some out of the loss (an ablated component)
    still trains, without `find_unused_parameters`' extra graph walk every step.
    """
    stages = model.training_stages(cfg.epochs) if hasattr(model, "training_stages") else [("main", cfg.epochs)]
    batch = workers.per_rank_batch(cfg.batch_size)
    steps_per_epoch = math.ceil(math.ceil(len(train_set.bouts) * cfg.windows_per_bout / workers.world_size) / batch)
    device = workers.device
    model.to(device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    counts = np.bincount([c for *_, c in train_set.bouts], minlength=len(train_set.manifest.labels)).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(counts), 0.0)
    ctx = LossContext(loss_fn, torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32, device=device))
    loss_module = _Loss(model, ctx)
    best_state, best_acc = None, -1.0
    bar = tqdm(total=sum(e for _, e in stages) * steps_per_epoch, desc=f"train {cfg.model}", unit="batch", disable=not progress)
    for si, (stage, epochs) in enumerate(stages):
        if hasattr(model, "set_training_stage"):
            model.set_training_stage(stage)
        params = [p for p in model.parameters() if p.requires_grad]
        step: nn.Module = loss_module
        if workers.distributed:
            from torch.nn.parallel import DistributedDataParallel

            step = DistributedDataParallel(loss_module, device_ids=[device.index] if device.type == "cuda" else None,
                                           static_graph=True)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=epochs * steps_per_epoch, pct_start=0.2)
        last_stage = si == len(stages) - 1
        for epoch in range(epochs):
            model.train()
            items = workers.shard(train_set.epoch(cfg.windows_per_bout))  # every rank draws the same epoch
            for b in range(0, len(items), batch):
                arrays, labels = train_set.inputs(items[b : b + batch])
                inputs = tuple(torch.from_numpy(a).to(device) for a in arrays)
                loss = step(inputs, torch.from_numpy(labels).to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(stage=stage, epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
            if val_set is not None and last_stage:
                correct, seen = workers.sum(float(np.sum(predict(model, val_set.inputs) == val_set.labels)), len(val_set.labels))
                acc = correct / seen
                bar.set_postfix(stage=stage, epoch=epoch + 1, loss=f"{loss.item():.3f}", val_acc=f"{acc:.3f}")
                if acc >= best_acc:  # the same on every rank: the sums are
                    best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    bar.close()
    if hasattr(model, "set_training_stage"):
        model.set_training_stage(stages[-1][0])
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.cpu().eval()  # export, bundles and the live app take a CPU model


@torch.no_grad()
def predict(model: nn.Module, inputs: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for b in range(0, inputs[0].shape[0], batch_size):
        logits = model(*(torch.from_numpy(a[b : b + batch_size]).to(device) for a in inputs))
        preds.append(logits.argmax(dim=1).cpu().numpy())
    return np.concatenate(preds)


def evaluate(model: nn.Module, test_set: _EvalSet, manifest: Manifest) -> dict[str, Any]:
    """Accuracy, macro-F1 and confusion matrix on the test windows; also accuracy with
    each modality removed (zeros, as a dropped stream reaches the model)."""
    preds = predict(model, test_set.inputs)
    metrics = classification_metrics(test_set.labels, preds, len(manifest.labels))
    if len(test_set.inputs) > 1:
        metrics["accuracy_without"] = {}
        for m, name in enumerate(manifest.modality_names()):
            ablated = [np.zeros_like(a) if i == m else a for i, a in enumerate(test_set.inputs)]
            metrics["accuracy_without"][name] = round(float(np.mean(predict(model, ablated) == test_set.labels)), 4)
    return metrics


def _source(data: str) -> str:
    """The data source as `load_data` takes it again: a name, `name:` + an absolute path
    for a public data set, or a folder's absolute path."""
    if data in NAMED_SOURCES:
        return data
    if is_public_source(data):
        name, path = data.split(":", 1)
        return f"{name}:{Path(path).expanduser().resolve()}"
    return str(Path(data).resolve())


def _write_reports(out: Path, metrics: dict[str, Any], labels: tuple[str, ...]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    rows = ["true\\pred," + ",".join(labels)]
    rows += [f"{labels[i]}," + ",".join(map(str, row)) for i, row in enumerate(metrics["confusion"])]
    (out / "confusion.csv").write_text("\n".join(rows) + "\n")


def train_ablation(cfg: TrainConfig, data: LabelledData | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """The paper's modality ablation: all modalities, then each one alone, same recipe.
    Writes `ablation.md` (and `ablation.json`) in `cfg.out`; each run's bundle lands in
    its own sub-folder. Returns one row per run, the fused run first."""
    if data is None:
        data = load_data(cfg.data, frame_resize=Manifest.frame_resize, progress=progress)
    names = list(cfg.modalities) or [m.name for m in data.modalities]
    runs = [("+".join(names), tuple(names))] + [(n, (n,)) for n in names] if len(names) > 1 else [(names[0], tuple(names))]
    results = []
    for label, mods in runs:
        run_cfg = replace(cfg, modalities=mods, out=str(Path(cfg.out) / label.replace("+", "_")))
        metrics = train(run_cfg, data=data, progress=progress)
        keys = ("accuracy", "macro_f1", "params", "macs", "train_seconds", "accuracy_without")
        results.append({"modalities": label, **{k: metrics[k] for k in keys if k in metrics}})
    lines = [
        f"# {cfg.model} modality ablation on `{data.name}` (cross-subject test windows)",
        "",
        "| modalities | accuracy | macro-F1 | params | MACs / prediction |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['modalities']} | {100 * r['accuracy']:.1f}% | {100 * r['macro_f1']:.1f}% | {r['params']:,} | {r['macs'] / 1e6:.1f} M |"
        for r in results
    ]
    if Workers.from_env().is_main:
        Path(cfg.out, "ablation.md").write_text("\n".join(lines) + "\n")
        Path(cfg.out, "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
