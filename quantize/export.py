"""`export_bundle`: an eager bundle -> an ExecuTorch or LiteRT bundle, checked before it counts.

Steps, the same for every row of the FORMATS table (contract/formats.py):

1. Load the source bundle's fp32 program (the eager row's model file, `torch.export.load(...).module()`)
   and its manifest; the manifest's `metrics["data"]` names the data it was trained on.
2. int8 only: calibrate PT2E static quantization on `calibration` random windows drawn
   from that data's *training* sessions (random window times and segment times, as in
   training), built by the live app's own `build_inputs`.
3. Write the model file with the format's exporter.
4. Reload what was written with the runtime backend users run (app/backends.py), run it
   on the held-out *test* windows and compare with the fp32 eager model: top-1
   agreement, SQNR of the logits, accuracy and accuracy drop.
5. Floor: agreement >= `min_agreement` (0.98) and accuracy drop <= `max_accuracy_drop`
   (0.01 = 1 point). Pass: `out_dir` becomes a self-contained bundle (model file +
   manifest.json with format, precision, model_file, the file's tensors as its runtime
   loaded them and its sha256, and the fidelity and calibration figures under `metrics`). Fail: nothing is written at `out_dir`; the files go to
   `<out_dir>.rejected/` with `manifest.rejected.json` and `REJECTED.txt` (the reason),
   which `load_bundle` refuses because there is no manifest.json.

Bad requests (unknown format or precision, a source that is not an eager bundle, data
that cannot be found, a missing exporter package) raise `ExportError`. A model the
format cannot express, a file the runtime cannot load, or fidelity below the floor
returns `ExportResult(status="failed", reason=...)`: the benchmark shows it as a row.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.bundle import BundleError, file_sha256, read_manifest
from ..contract.manifest import MANIFEST_NAME, Manifest
from ..errors import EdgeharError
from ..contract.formats import MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportFormat, check_precision, get_format

DEFAULT_CALIBRATION_WINDOWS = 256
REJECTED_MANIFEST = "manifest.rejected.json"
REJECTED_NOTE = "REJECTED.txt"


class ExportError(EdgeharError, ValueError):
    """An export request that cannot be carried out as asked (bad source, data, format)."""


@dataclass
class ExportResult:
    format: str
    precision: str
    status: str  # "ok" | "failed"
    reason: str = ""  # why it failed; empty when ok
    out_dir: Path | None = None  # the bundle when ok, the `.rejected` folder when failed after writing
    files: list[Path] = field(default_factory=list)
    size_bytes: int = 0  # model file size
    fidelity: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)  # quantizer, delegation, seconds

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir) if self.out_dir else None
        d["files"] = [str(f) for f in self.files]
        return d

    def summary(self) -> str:
        """One line for the CLI."""
        head = f"{self.format} {self.precision}: {self.status}"
        f = self.fidelity
        figures = ""
        if f:
            figures = (f"  agreement {100 * f['top1_agreement']:.1f}%  SQNR {f['sqnr_db']:.1f} dB  "
                       f"accuracy {100 * f['accuracy']:.1f}% (eager {100 * f['accuracy_eager']:.1f}%)  "
                       f"{self.size_bytes / 1024:.0f} KiB")
        where = f"  -> {self.out_dir}" if self.out_dir else ""
        why = f"  ({self.reason})" if self.reason else ""
        return head + figures + where + why


def export_bundle(source: str | Path, out_dir: str | Path, format: str, precision: str = "fp32", *,
                  calibration: int = DEFAULT_CALIBRATION_WINDOWS, data: str | None = None,
                  eval_windows: int | None = None, min_agreement: float = MIN_AGREEMENT,
                  max_accuracy_drop: float = MAX_ACCURACY_DROP, threads: int | None = None,
                  seed: int = 0, progress: bool = True) -> ExportResult:
    """Export the eager bundle `source` to `format` at `precision` into `out_dir`.

    calibration: number of training windows for int8 calibration.
    data: the data to draw windows from; default the bundle's `metrics["data"]`
        ("sim", "sim-hard", "basicmotions" or the absolute path of the sessions folder).
    eval_windows: cap on held-out test windows for the fidelity check (None: all).
    """
    fmt = get_format(format)
    check_precision(fmt, precision)
    if calibration < 1:
        raise ExportError(f"calibration must be at least 1 window, got {calibration}")
    source, out_dir = Path(source), Path(out_dir)
    manifest, pt2_path = _load_source(source)
    if out_dir.resolve() == source.resolve():
        raise ExportError(f"out_dir {str(out_dir)!r} is the source bundle; export into a new folder")
    _check_target(out_dir)
    source_data = _resolve_data(manifest, data)
    exporter = _exporter(fmt)

    import torch

    if threads:
        torch.set_num_threads(threads)
    eager = torch.export.load(str(pt2_path)).module()
    example = tuple(torch.zeros(1, *s) for s in manifest.input_shapes())

    recordings, test_inputs, test_labels = _prepared(source_data, manifest, eval_windows, progress)
    calib_info: dict[str, Any] = {}
    calibrate: Callable[[], Iterator[tuple[np.ndarray, ...]]] | None = None
    if precision == "int8":
        calib_info = {"data": source_data, "split": "train", "windows": calibration, "seed": seed,
                      "sampling": "random windows over the labelled bouts, random segment times (as in training)"}
        calibrate = functools.partial(_calibration_windows, manifest, recordings["train"], calibration, seed, progress)

    result = ExportResult(format=fmt.name, precision=precision, status="failed", calibration=calib_info)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model_path = staging / fmt.model_file
        started = time.perf_counter()
        try:
            result.export = _run_exporter(exporter, fmt, eager, example, precision, calibrate, model_path, progress)
        except EdgeharError:
            raise
        except Exception as exc:
            result.reason = _one_line(exc)
            return result
        result.export["seconds"] = round(time.perf_counter() - started, 1)
        # the floor the model was held to goes into its manifest: a bundle exported with a
        # lowered one (`--min-agreement`) says so wherever it is used
        result.export["floor"] = {"min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop}
        result.size_bytes = model_path.stat().st_size

        from ..app.backends import open_backend, with_model_io

        try:
            backend = open_backend(fmt.name, model_path, num_threads=threads)
            outputs = np.stack([backend.run(x)[0] for x in _bar(test_inputs, "check", progress)])
        except (BundleError, RuntimeError, ValueError) as exc:
            result.reason = f"the written {fmt.name} model does not run in its runtime: {_one_line(exc)}"
            result.out_dir = _reject(staging, out_dir, manifest, result)
            return result
        with torch.no_grad():
            reference = np.stack([eager(*(torch.from_numpy(a) for a in x))[0].numpy() for x in test_inputs])
        result.fidelity = fidelity(reference, outputs, test_labels)
        problems = []
        if result.fidelity["top1_agreement"] < min_agreement:
            problems.append(f"top-1 agreement {100 * result.fidelity['top1_agreement']:.1f}% "
                            f"< {100 * min_agreement:.1f}%")
        if result.fidelity["accuracy_drop"] > max_accuracy_drop + 1e-9:
            problems.append(f"accuracy drop {100 * result.fidelity['accuracy_drop']:.1f} points "
                            f"> {100 * max_accuracy_drop:.1f}")
        if problems:
            result.reason = "below the fidelity floor: " + "; ".join(problems)
            result.out_dir = _reject(staging, out_dir, manifest, result)
            return result
        result.status = "ok"
        out_manifest = _exported_manifest(manifest, fmt, precision, result, test_labels, outputs)
        with_model_io(out_manifest, model_path, backend).save(staging)
        _replace_folder(staging, out_dir)
        result.out_dir = out_dir
        result.files = [out_dir / fmt.model_file, out_dir / MANIFEST_NAME]
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- source, data, windows -------------------------------------------------------------


def _load_source(source: Path) -> tuple[Manifest, Path]:
    try:
        manifest = read_manifest(source)
    except BundleError as exc:
        raise ExportError(f"source {exc}") from None
    if manifest.format != "eager":
        raise ExportError(f"source bundle {str(source)!r} is format {manifest.format!r}; "
                          "export starts from an eager (trained) bundle")
    path = source / manifest.model_file
    if not path.is_file():
        raise ExportError(f"source bundle {str(source)!r} has no model file {manifest.model_file!r}")
    return manifest, path


def _exporter(fmt: ExportFormat):
    if not fmt.exporter:
        return None
    module, function = fmt.exporter.split(":")
    try:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)
    except ImportError as exc:  # pragma: no cover - the exporter modules import only torch at top level
        raise ExportError(f"the {fmt.name} exporter cannot be imported ({exc}); "
                          f"install it with: pip install 'edgehar[{fmt.export_extra}]'") from None


def _run_exporter(exporter, fmt: ExportFormat, eager, example, precision: str, calibrate, path: Path,
                  progress: bool) -> dict[str, Any]:
    if exporter is None:  # eager: the program itself, re-saved
        import torch

        torch.export.save(torch.export.export(eager, example), str(path))
        return {}
    kwargs = {"progress": progress} if fmt.name == "litert" else {}
    try:
        with _quiet(not progress):
            return exporter(eager, example, precision, calibrate, path, **kwargs)
    except ImportError as exc:
        raise ExportError(f"exporting to {fmt.name} needs {exc.name or exc}; "
                          f"install it with: pip install 'edgehar[{fmt.export_extra}]'") from None


def _resolve_data(manifest: Manifest, data: str | None) -> str:
    from ..models.datasets import NAMED_SOURCES

    source = data or manifest.metrics.get("data")
    names = "|".join(NAMED_SOURCES)
    if not source:
        raise ExportError("the bundle's manifest does not say which data it was trained on "
                          f"(metrics.data); pass the data (--data {names}|FOLDER)")
    if source not in NAMED_SOURCES and not Path(source).is_dir():
        raise ExportError(f"the bundle was trained on data {source!r}, which is not {', '.join(map(repr, NAMED_SOURCES))} "
                          f"or a folder here; pass the data (--data {names}|FOLDER)")
    return str(source)


_last_prepared: dict[str, Any] = {}


def _prepared(source: str, manifest: Manifest, eval_windows: int | None, progress: bool):
    """Recordings and built test windows, kept for the next export of the same bundle
    and data (the benchmark exports one bundle to every format in a row)."""
    key = json.dumps([source, str(Path(source).resolve()), manifest.to_dict(), eval_windows], sort_keys=True, default=str)
    if _last_prepared.get("key") != key:
        _last_prepared.clear()
        recordings = _load_recordings(source, manifest, progress)
        inputs, labels = _test_windows(manifest, recordings["test"], eval_windows, progress)
        _last_prepared.update(key=key, value=(recordings, inputs, labels))
    return _last_prepared["value"]


def _load_recordings(source: str, manifest: Manifest, progress: bool) -> dict[str, list]:
    from ..models.datasets import DataError, load_data

    try:
        data = load_data(source, frame_resize=manifest.frame_resize, progress=progress)
    except DataError as exc:
        raise ExportError(f"cannot load data {source!r}: {exc}") from None
    splits = {name: data.split(name) for name in ("train", "test")}
    for name, recs in splits.items():
        if not recs:
            raise ExportError(f"data {source!r} has no {name!r} sessions (calibration uses train, the check uses test)")
    return splits


def _test_windows(manifest: Manifest, recordings: list, limit: int | None,
                  progress: bool) -> tuple[list[tuple[np.ndarray, ...]], np.ndarray]:
    """Held-out windows: fixed stride, segment centres (the trainer's evaluation windows)."""
    from ..models.datasets import WindowSampler

    windows = WindowSampler(manifest, recordings, train=False)
    items = windows.eval_windows
    if limit is not None and len(items) > limit:  # an even spread over the whole test set
        items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    inputs = [tuple(a for a in windows.inputs([item])[0]) for item in _bar(items, "test windows", progress)]
    return inputs, np.array([c for _, _, c in items], np.int64)


def _calibration_windows(manifest: Manifest, recordings: list, count: int, seed: int,
                         progress: bool) -> Iterator[tuple[np.ndarray, ...]]:
    """`count` batch-1 inputs from random training windows, built one at a time."""
    from ..models.datasets import WindowSampler

    windows = WindowSampler(manifest, recordings, train=True, seed=seed)
    items = windows.epoch(math.ceil(count / len(windows.bouts)))[:count]
    for item in _bar(items, "calibrate", progress):
        yield tuple(windows.inputs([item])[0])


def _bar(items, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="window", disable=not progress, leave=False)


# -- fidelity -------------------------------------------------------------------------


def fidelity(reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Exported logits vs fp32 eager logits (B, classes) on labelled windows."""
    ref_pred, out_pred = reference.argmax(1), outputs.argmax(1)
    noise = float(np.sum((reference - outputs) ** 2))
    signal = float(np.sum(reference**2))
    sqnr = 10 * math.log10(signal / noise) if noise > 0 else math.inf
    acc_eager = float(np.mean(ref_pred == labels))
    acc = float(np.mean(out_pred == labels))
    return {
        "top1_agreement": round(float(np.mean(ref_pred == out_pred)), 4),
        "sqnr_db": round(sqnr, 2) if math.isfinite(sqnr) else 999.0,  # identical logits
        "accuracy": round(acc, 4),
        "accuracy_eager": round(acc_eager, 4),
        "accuracy_drop": round(acc_eager - acc, 4),
        "windows": int(len(labels)),
    }


# -- writing --------------------------------------------------------------------------


def _exported_manifest(manifest: Manifest, fmt: ExportFormat, precision: str, result: ExportResult,
                       labels: np.ndarray, outputs: np.ndarray) -> Manifest:
    from ..models.metrics import classification_metrics

    figures = classification_metrics(labels, outputs.argmax(1), len(manifest.labels))
    metrics = dict(manifest.metrics)
    metrics.update(
        accuracy=result.fidelity["accuracy"],  # of this model file, on the test windows
        macro_f1=figures["macro_f1"],
        test_windows=result.fidelity["windows"],
        fidelity=result.fidelity,
        export={k: v for k, v in result.export.items() if k != "seconds"} | {"size_bytes": result.size_bytes},
    )
    if result.calibration:
        metrics["calibration"] = result.calibration
    return replace(manifest, format=fmt.name, precision=precision, model_file=fmt.model_file, metrics=metrics)


def _reject(staging: Path, out_dir: Path, manifest: Manifest, result: ExportResult) -> Path | None:
    """Keep a failed export for inspection where no loader will take it for a good bundle."""
    model = next((p for p in staging.iterdir() if p.name.startswith("model.")), None)
    if model is None:
        return None
    rejected = out_dir.with_name(out_dir.name + ".rejected")
    # the source's tensor listing describes the source's file: this one's sha256 only (its
    # runtime may not even have loaded it)
    data = replace(manifest, format=result.format, precision=result.precision, model_file=model.name,
                   metrics={**manifest.metrics, "fidelity": result.fidelity, "calibration": result.calibration},
                   inputs=(), outputs=(), model_sha256=file_sha256(model)).to_dict()
    (staging / REJECTED_MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
    (staging / REJECTED_NOTE).write_text(f"REJECTED: {result.reason}\n")
    _replace_folder(staging, rejected)
    result.files = [rejected / model.name, rejected / REJECTED_MANIFEST, rejected / REJECTED_NOTE]
    return rejected


_OURS = {MANIFEST_NAME, REJECTED_MANIFEST, REJECTED_NOTE}


def _check_target(target: Path) -> None:
    """Refuse an output folder that holds anything but a bundle (it will be replaced)."""
    if target.exists():
        if not target.is_dir():
            raise ExportError(f"{str(target)!r} exists and is not a folder; choose another output folder")
        foreign = [p.name for p in target.iterdir() if p.name not in _OURS and not p.name.startswith("model.")]
        if foreign:
            raise ExportError(f"{str(target)!r} exists and holds more than a bundle ({', '.join(sorted(foreign)[:3])}); "
                              "choose another output folder")


def _replace_folder(staging: Path, target: Path) -> None:
    """Move `staging` to `target`, replacing a previous bundle there (never other files)."""
    if target.exists():
        _check_target(target)
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


def _one_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence the exporters' own logging (executorch/litert warnings) when progress is off."""
    if not enabled:
        yield
        return
    import logging
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
