"""`edgehar info BUNDLE`: what a bundle holds, enough to run its model from any runtime.

A C++, Android or ONNX user wires a model from three things: the input pipeline's
constants (streams, window, hop, N, K, GAF and frame settings), the model file's tensors
in argument order (name, shape, dtype, int8 scale and zero point) and the labels in
logit order. All of them are in the manifest; this prints them in that order, checks
the model file against the manifest's sha256 and says which pip extra runs the format.
Torch-free: it reads JSON and hashes a file, so it works on a deploy-only install for
a bundle of any format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..contract.bundle import BundleError, model_path, read_manifest
from ..contract.formats import FORMATS
from ..contract.manifest import Manifest, TensorSpec
from .columns import columns


def run_info(folder: Path, as_json: bool = False) -> int:
    """Print the bundle at `folder`; 1 when its model file is missing or fails the sha256 check."""
    manifest = read_manifest(folder)
    try:
        model_path(folder, manifest)
        problem = ""
    except BundleError as exc:
        problem = str(exc)
    checked = "no sha256 in the manifest" if not manifest.model_sha256 else ("FAILED" if problem else "ok")
    if as_json:
        print(json.dumps({"bundle": str(folder), "model_file_check": checked if not problem else problem,
                          "manifest": manifest.to_dict()}, indent=2))
    else:
        print("\n".join(_describe(folder, manifest, checked)))
    if problem:
        print(f"edgehar info: {problem}", file=sys.stderr)
        return 1
    return 0


def _describe(folder: Path, m: Manifest, checked: str) -> list[str]:
    fmt = next((f for f in FORMATS if f.name == m.format), None)
    runtime = f"pip install 'edgehar[{fmt.runtime_extra}]'" if fmt else "a backend registered by another package"
    file = Path(folder) / m.model_file
    size = f"{file.stat().st_size:,} bytes" if file.is_file() else "MISSING"
    lines = [
        f"bundle     {folder}",
        f"model      {m.model}, format {m.format} {m.precision}, runtime: {runtime}",
        f"file       {m.model_file} ({size}), sha256 {m.model_sha256 or '-'} [{checked}]",
        f"labels     {len(m.labels)}, in logit order: {', '.join(m.labels)}",
        "streams",
    ]
    for s in m.streams:
        what = "frames" if s.kind == "camera" else f"{len(s.channels)} channels: {', '.join(s.channels)}"
        lines.append(f"  {s.name:<10} {s.rate_hz:g} Hz, {what}")
    lines += [
        f"window     {m.window_s:g} s, one prediction every {m.hop_s:g} s; N={m.num_segments} {m.sampling} segments, "
        f"K={m.gaf_k} samples per sensor segment",
        f"gaf        {m.gaf_kind}, scaling {m.gaf_scaling}, {m.gaf_side()}x{m.gaf_side()} px, "
        f"{'eq. 5 uint8 grey levels' if m.gaf_grey == 'uint8' else 'float field'}, "
        f"each K-sample window inside its {'segment' if m.window_bounds == 'segment' else 'observation window'}",
        f"frames     short side resized to {m.frame_resize}, centre crop {m.frame_crop}, RGB /255, "
        f"mean {list(m.frame_mean)}, std {list(m.frame_std)}",
        "modalities",
    ]
    for mod in m.modalities:
        lines.append(f"  {mod.name:<10} {mod.type} of stream {mod.stream}"
                     + (f", channels {', '.join(mod.channels)}" if mod.channels else ""))
    if m.inputs:
        lines += ["inputs (in argument order)", *_tensors(m.inputs), "outputs", *_tensors(m.outputs)]
    else:
        shapes = ", ".join(f"{name} {'x'.join(map(str, (1, *s)))}" for name, s in zip(m.modality_names(), m.input_shapes()))
        lines.append(f"inputs     not listed in this manifest (written before listings); float32 {shapes}")
    figures = m.metrics
    if "accuracy" in figures:
        line = f"metrics    accuracy {100 * figures['accuracy']:.2f} % on {figures.get('test_windows', '?')} test windows"
        fidelity = figures.get("fidelity")
        if fidelity:
            line += (f"; vs fp32: top-1 agreement {100 * fidelity['top1_agreement']:.1f} %, "
                     f"drop {100 * fidelity['accuracy_drop']:.1f} points")
        lines.append(line)
    return lines


def _tensors(tensors: tuple[TensorSpec, ...]) -> list[str]:
    return columns(["name", "role", "shape", "layout", "dtype", "int8 scale, zero point"],
                   [[t.name, t.role, "x".join(map(str, t.shape)), t.layout, t.dtype,
                     f"{t.scale:.6g}, {t.zero_point}" if t.scale else "-"] for t in tensors])
