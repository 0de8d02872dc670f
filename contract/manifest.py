"""The bundle manifest: the one source of truth for every input-pipeline constant.

Training writes it, export copies it, the live app reads it. Nothing downstream of
training may hard-code a stream name, a rate, a window length, N, K, a GAF option, an
image size or a normalisation constant: they are read from here (timm's pretrained
cfg plays the same role for image models).

The manifest is plain JSON so a deploy-only install (no torch) can read it, and a
person can too. Unknown keys and bad values are rejected with the key path, so a
hand-edited manifest never half-works.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from ..errors import EdgeharError
from .formats import get_format

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

GAF_KINDS = ("summation", "difference")
# "window": rescale each channel over the K samples of the window (official MMTSA code).
# "range": rescale over fixed per-channel [lo, hi] (calibrated sensor ranges).
GAF_SCALINGS = ("window", "range")
# "sparse": one time in each of N equal segments of the window (MMTSA sec. 3.2, TSN);
# "dense": N evenly spaced times inside one segment-long clip (the dense clip sampling the
# MMTSA paper argues against), for its sparse-vs-dense ablation (contract/preprocess/sampling.py)
SAMPLINGS = ("sparse", "dense")
# "gaf": sensor windows imaged as GAF, (N, C, K, K); "series": the same K-sample windows
# rescaled to [-1, 1] and fed raw, (N, C, K), for models whose paper reads raw sequences
# (recurrent and 1-D conv encoders); "frames": camera frames, (N, 3, crop, crop).
MODALITY_TYPES = ("gaf", "series", "frames")
SENSOR_TYPES = ("gaf", "series")
# How a GAF image reaches the model: "float", the field itself in [-1, 1] (the edge recipe);
# "uint8", MMTSA eq. 5 as the official code does it: each image min-max mapped to 0..255 and
# truncated to uint8, then (if gaf_size asks) resized as an 8-bit image, then fed as
# grey / 127.5 - 1 so both modes span [-1, 1].
GAF_GREYS = ("float", "uint8")
# Where a segment's K-sample sensor window may lie: "window", anywhere inside the
# observation window (centred on the segment's time, shifted inward at its edges: the edge
# recipe); "segment", inside the segment's own [S_i-1, S_i) (MMTSA eq. 6).
WINDOW_BOUNDS = ("window", "segment")
# gaf_size limits: 0 means "K" (no resize); otherwise a side MMTSA's range of inputs covers
GAF_SIZES = (8, 512)


class ManifestError(EdgeharError, ValueError):
    """A manifest is missing, malformed, or holds a bad value; carries the key path."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def imu_stream(k: int) -> str:
    """The stream name of the k-th IMU (from 0): "imu", "imu2", "imu3", ...

    One rule for everyone who numbers IMUs: the k-th `--imu URL` of `edgehar live` /
    `record`, and the simulator's k-th IMU placement, so a bundle trained on simulated
    sessions names the streams a user then gives with repeated `--imu`."""
    return "imu" if k == 0 else f"imu{k + 1}"


@dataclass(frozen=True)
class StreamSpec:
    """One time-stamped input stream (a device or the camera)."""

    name: str  # e.g. "glove", "imu", "camera"
    kind: str  # "sensor" (samples x channels) or "camera" (frames)
    rate_hz: float  # nominal sample / frame rate
    channels: tuple[str, ...] = ()  # sensor channel names, in column order; empty for cameras


@dataclass(frozen=True)
class ModalitySpec:
    """One model input: which stream it reads, which channels, and how it is imaged."""

    name: str  # e.g. "rgb", "glove", "imu"
    stream: str  # StreamSpec.name it reads from
    type: str  # one of MODALITY_TYPES: "gaf", "series" (sensor windows) or "frames" (camera)
    channels: tuple[str, ...] = ()  # for sensor types: subset of the stream's channels, in order
    # for sensor types with scaling "range": per-channel (lo, hi) used to rescale to [-1, 1]
    ranges: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class TensorSpec:
    """One tensor the model file takes or gives, as its own runtime sees it.

    The listing a C++ / Android / ONNX user needs to wire the model with no Python: the
    tensor's name in the file, what it carries, its full shape (batch axis first), its
    element type and, for int8 tensors, the affine mapping real = scale * (q - zero_point).
    Written by `edgehar train` and `edgehar export` from the runtime that loaded the file
    (app/backends.py `with_model_io`), so it describes the file, not what we hoped to write.
    """

    name: str  # the tensor's name in the model file (LiteRT/ONNX names; "args_<i>" where the file has none)
    role: str  # the modality it carries (ModalitySpec.name), in argument order, or "logits"
    shape: tuple[int, ...]  # full shape, batch first
    dtype: str  # numpy dtype name: "float32", "int8", ...
    layout: str  # the axes of `shape`, e.g. "B,N,C,H,W" (B batch, N segments, C channels)
    scale: float = 0.0  # int8 tensors only (0 for float ones): real = scale * (q - zero_point)
    zero_point: int = 0


@dataclass(frozen=True)
class Manifest:
    """Input contract + identity of a trained model bundle."""

    streams: tuple[StreamSpec, ...]
    modalities: tuple[ModalitySpec, ...]
    labels: tuple[str, ...]
    window_s: float = 3.0  # observation window the model sees
    hop_s: float = 0.25  # live: one prediction every hop
    num_segments: int = 3  # N sparse segments per window (MMTSA sec. 3.2)
    gaf_k: int = 32  # K samples per sensor window (-> K x K GAF images, or K raw values for "series")
    gaf_kind: str = "summation"
    gaf_scaling: str = "window"
    sampling: str = "sparse"  # one of SAMPLINGS: where the N times fall in the window
    gaf_size: int = 0  # GAF image side fed to the model; 0: K (no resize). MMTSA's paper uses 224
    gaf_grey: str = "float"  # one of GAF_GREYS: "float" field, or "uint8" (eq. 5, truncated)
    window_bounds: str = "window"  # one of WINDOW_BOUNDS: K-sample windows inside the window or their segment (eq. 6)
    frame_resize: int = 72  # resize the frame's short side to this many pixels ...
    frame_crop: int = 64  # ... then centre-crop a square of this side
    frame_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB, after /255
    frame_std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    model: str = "mmtsa"  # registry name
    model_config: dict[str, Any] = field(default_factory=dict)
    format: str = "eager"  # which backend runs the model file
    precision: str = "fp32"
    model_file: str = get_format("eager").model_file  # the file the default format writes
    # execution providers, best first, for a runtime that has them (ONNX Runtime: e.g.
    # ["CUDAExecutionProvider", "CPUExecutionProvider"]); empty = the backend's own preference
    providers: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)  # test figures, for people
    # The model file's tensors and bytes, filled when a bundle is written; empty in a
    # hand-written manifest or a bundle written before they existed (then unchecked).
    inputs: tuple[TensorSpec, ...] = ()  # one per modality, in modality (= argument) order
    outputs: tuple[TensorSpec, ...] = ()
    model_sha256: str = ""  # hex digest of model_file, checked when the bundle is loaded
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # -- lookups -----------------------------------------------------------------
    def stream(self, name: str) -> StreamSpec:
        for s in self.streams:
            if s.name == name:
                return s
        raise ManifestError("streams", f"no stream named {name!r} (have {[s.name for s in self.streams]})")

    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-modality input shape without the batch axis: (N, C, H, W), or (N, C, K) for "series"."""
        shapes = []
        for m in self.modalities:
            if m.type == "frames":
                shapes.append((self.num_segments, 3, self.frame_crop, self.frame_crop))
            elif m.type == "series":
                shapes.append((self.num_segments, len(m.channels), self.gaf_k))
            else:
                side = self.gaf_side()
                shapes.append((self.num_segments, len(m.channels), side, side))
        return tuple(shapes)

    def gaf_side(self) -> int:
        """The side of a GAF input image: gaf_size, or K when gaf_size is 0."""
        return self.gaf_size or self.gaf_k

    # -- (de)serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        if not isinstance(data, dict):
            raise ManifestError("", f"expected a JSON object, got {type(data).__name__}")
        version = data.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise ManifestError("version", f"unsupported manifest version {version!r} (this edgehar reads {MANIFEST_VERSION})")
        return _read(cls, data, "")

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        """Read `folder/manifest.json` (or a manifest file given directly)."""
        path = Path(folder)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError("", f"no bundle manifest at {str(path)!r}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError("", f"{str(path)!r} is not valid JSON ({exc})") from None
        return cls.from_dict(data)


# -- reading JSON into the dataclasses, every value type-checked ----------------------------
# The checks follow the dataclasses' own field types (str, int, float, tuple[X, ...],
# fixed-length tuple[X, Y], dict[str, Any], a nested spec), so a field added above is
# checked with no change here, and a wrong type is a ManifestError naming the key path
# and the value, never a TypeError from deep inside a constructor or a comparison.
_NOUNS: dict[Any, tuple[str, str]] = {
    str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
    Any: ("any value", "values"),
}


def _read(cls: type, data: Any, where: str) -> Any:
    """`cls` (a dataclass) built from the JSON object `data` found at key path `where`."""
    if not isinstance(data, dict):
        raise ManifestError(where, f"expected an object, got {_shown(data)}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ManifestError(_key(where, unknown[0]), f"unknown key (known: {sorted(known)})")
    missing = [n for n, f in known.items() if n not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ManifestError(_key(where, missing[0]), "missing required key")
    hints = _hints(cls)
    return cls(**{k: _value(v, hints[k], _key(where, k)) for k, v in data.items()})


def _value(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the field type `hint`; JSON lists become tuples, numbers floats."""
    if is_dataclass(hint):
        return _read(hint, value, where)
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:  # a JSON list; or a tuple, from `to_dict()` in Python
        ok = isinstance(value, (list, tuple)) and (args[-1] is Ellipsis or len(value) == len(args))
    elif origin is dict:
        ok = isinstance(value, dict)
    elif hint is float:  # bool is an int in Python, not a number in a manifest; NaN and inf are no rate or size
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is Any:
        ok = True
    else:
        raise TypeError(f"no JSON check for the field type {hint!r} at {where!r}")  # a new field type: add it above
    if not ok:
        raise ManifestError(where, f"expected {_expected(hint)[0]}, got {_shown(value)}")
    if origin is tuple:
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        return tuple(_value(v, h, f"{where}[{i}]") for i, (v, h) in enumerate(zip(value, items)))
    return float(value) if hint is float else value


def _expected(hint: Any) -> tuple[str, str]:
    """What a field type expects, in words: (singular, plural)."""
    if is_dataclass(hint) or get_origin(hint) is dict:
        return "an object", "objects"
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if args[-1] is Ellipsis:
            inner = _expected(args[0])[1]
            return f"a list of {inner}", f"lists of {inner}"
        kinds = {_expected(a)[1] for a in args}
        inner = kinds.pop() if len(kinds) == 1 else "values"
        return f"a list of {len(args)} {inner}", f"lists of {len(args)} {inner}"
    return _NOUNS[hint]


def _shown(value: Any, limit: int = 60) -> str:
    """A bad value as the manifest spells it (JSON: null, true, "100"), cut to one short line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _validate(m: Manifest) -> None:
    def check(ok: bool, path: str, reason: str) -> None:
        if not ok:
            raise ManifestError(path, reason)

    names = [s.name for s in m.streams]
    check(len(names) > 0, "streams", "need at least one stream")
    check(len(set(names)) == len(names), "streams", f"duplicate stream names {names}")
    for i, s in enumerate(m.streams):
        check(s.kind in ("sensor", "camera"), f"streams[{i}].kind", f"{s.kind!r} is not 'sensor' or 'camera'")
        check(s.rate_hz > 0, f"streams[{i}].rate_hz", f"{s.rate_hz!r} must be > 0")
        check(s.kind == "camera" or len(s.channels) > 0, f"streams[{i}].channels", "a sensor stream needs channels")
    check(len(m.modalities) > 0, "modalities", "need at least one modality")
    for i, mod in enumerate(m.modalities):
        where = f"modalities[{i}]"
        check(mod.type in MODALITY_TYPES, f"{where}.type", f"{mod.type!r} is not one of {MODALITY_TYPES}")
        check(mod.stream in names, f"{where}.stream", f"{mod.stream!r} is not a stream (have {names})")
        stream = next(s for s in m.streams if s.name == mod.stream)
        if mod.type == "frames":
            check(stream.kind == "camera", f"{where}.stream", f"'frames' needs a camera stream, {mod.stream!r} is {stream.kind}")
        else:
            check(stream.kind == "sensor", f"{where}.stream", f"{mod.type!r} needs a sensor stream, {mod.stream!r} is {stream.kind}")
            check(len(mod.channels) > 0, f"{where}.channels", f"a {mod.type!r} modality needs channels")
            missing = [c for c in mod.channels if c not in stream.channels]
            check(not missing, f"{where}.channels", f"{missing} not in stream {mod.stream!r} channels {list(stream.channels)}")
            if m.gaf_scaling == "range":
                check(len(mod.ranges) == len(mod.channels), f"{where}.ranges", "gaf_scaling 'range' needs one (lo, hi) per channel")
    check(len(m.labels) >= 2, "labels", "need at least two labels")
    check(m.window_s > 0, "window_s", f"{m.window_s!r} must be > 0")
    check(m.hop_s > 0, "hop_s", f"{m.hop_s!r} must be > 0")
    check(isinstance(m.num_segments, int) and m.num_segments >= 1, "num_segments", f"{m.num_segments!r} must be an integer >= 1")
    check(isinstance(m.gaf_k, int) and m.gaf_k >= 2, "gaf_k", f"{m.gaf_k!r} must be an integer >= 2")
    check(m.gaf_kind in GAF_KINDS, "gaf_kind", f"{m.gaf_kind!r} is not one of {GAF_KINDS}")
    check(m.gaf_scaling in GAF_SCALINGS, "gaf_scaling", f"{m.gaf_scaling!r} is not one of {GAF_SCALINGS}")
    check(m.sampling in SAMPLINGS, "sampling", f"{m.sampling!r} is not one of {SAMPLINGS}")
    check(m.gaf_size == 0 or GAF_SIZES[0] <= m.gaf_size <= GAF_SIZES[1], "gaf_size",
          f"{m.gaf_size!r} must be 0 (= gaf_k) or {GAF_SIZES[0]}..{GAF_SIZES[1]}")
    check(m.gaf_grey in GAF_GREYS, "gaf_grey", f"{m.gaf_grey!r} is not one of {GAF_GREYS}")
    check(m.window_bounds in WINDOW_BOUNDS, "window_bounds", f"{m.window_bounds!r} is not one of {WINDOW_BOUNDS}")
    check(0 < m.frame_crop <= m.frame_resize, "frame_crop", f"{m.frame_crop!r} must be in (0, frame_resize={m.frame_resize}]")
    check(len(m.frame_mean) == 3 and len(m.frame_std) == 3, "frame_mean", "mean and std need 3 values (RGB)")
    check(all(s > 0 for s in m.frame_std), "frame_std", f"{m.frame_std!r} must be > 0")
    check(m.model_sha256 == "" or (len(m.model_sha256) == 64 and all(c in "0123456789abcdef" for c in m.model_sha256)),
          "model_sha256", f"{m.model_sha256!r} is not a lowercase hex sha256 (64 characters)")
    if m.inputs:
        roles = tuple(t.role for t in m.inputs)
        check(roles == m.modality_names(), "inputs", f"roles {list(roles)} must be the modalities in order {list(m.modality_names())}")
        for i, (t, shape) in enumerate(zip(m.inputs, m.input_shapes())):
            check(tuple(t.shape[1:]) == shape, f"inputs[{i}].shape",
                  f"{list(t.shape)} does not end in the modality's input shape {list(shape)}")
    for where, tensors in (("inputs", m.inputs), ("outputs", m.outputs)):
        for i, t in enumerate(tensors):
            check(len(t.layout.split(",")) == len(t.shape), f"{where}[{i}].layout",
                  f"{t.layout!r} does not name the {len(t.shape)} axes of shape {list(t.shape)}")
