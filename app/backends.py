"""Inference backends: load a bundle, run its model on numpy inputs.

One small interface (`__init__(model_path, num_threads)`, `run`, `io`; a runtime with
execution providers also takes `providers`) with one class per runtime, chosen by the
bundle's manifest `format` — the app never branches on the
runtime elsewhere. A format's backend is the entry point its FORMATS row names in the
`edgehar.backends` group (these classes are registered in pyproject.toml), so another
package can add a runtime, or a whole format, by registering its own. Runtimes are
imported lazily inside their backend, so a deploy-only install without torch can run
a bundle whose format does not need it.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import struct
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from ..contract.bundle import BundleError, file_sha256, model_path, read_manifest
from ..contract.formats import FORMATS
from ..contract.manifest import Manifest, TensorSpec
from ..errors import EdgeharWarning
from ..plugins import PluginError, load_plugin, plugin_names

BACKEND_GROUP = "edgehar.backends"  # entry-point group: backend name -> Backend class


class Tensor(NamedTuple):
    """A model file's tensor as its runtime reports it (the manifest adds role and layout)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    scale: float = 0.0  # int8: real = scale * (q - zero_point)
    zero_point: int = 0


class Backend(Protocol):
    name: str

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """inputs: one float32 array per modality, each (B, N, C, H, W) -> logits (B, classes)."""
        ...

    def io(self) -> tuple[list[Tensor], list[Tensor]]:
        """The model's input tensors (in argument order) and output tensors, as loaded."""
        ...


class EagerBackend:
    """Runs the bundle's `torch.export` program (`.pt2`) with PyTorch on the CPU."""

    name = "eager"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        check_model_file(model_path, ".pt2", "a torch.export program")
        try:
            import torch  # the eager runtime is PyTorch itself
        except ImportError as exc:
            raise BundleError(_missing_runtime("PyTorch", self.name, exc)) from None

        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        try:
            with _quiet(_TORCH_LOADER_LOGGERS):
                self._program = torch.export.load(str(model_path))
                self._module = self._program.module()
        except Exception as exc:  # torch raises many types for a bad file
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            if "warnings above" in reason:  # torch points at the warnings _quiet silenced
                reason = "a zip archive, but not one torch.export wrote"
            raise BundleError(f"cannot load {str(model_path)!r} as a torch.export program: {reason}") from None

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        with self._torch.no_grad():
            out = self._module(*(self._torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        return out.numpy()

    def io(self) -> tuple[list[Tensor], list[Tensor]]:
        # the program's graph holds each user input's placeholder and the output node, with
        # the fake tensors torch.export traced them with (static shapes: batch 1)
        graph, signature = self._program.graph, self._program.graph_signature
        nodes = {n.name: n for n in graph.nodes if n.op == "placeholder"}
        returned = next(n for n in graph.nodes if n.op == "output").args[0]
        returned = returned[len(returned) - len(signature.user_outputs):]  # buffer mutations come first

        def tensor(name: str, val) -> Tensor:
            return Tensor(name, tuple(int(v) for v in val.shape), str(val.dtype).removeprefix("torch."))

        return ([tensor(name, nodes[name].meta["val"]) for name in signature.user_inputs],
                [tensor(name, node.meta["val"]) for name, node in zip(signature.user_outputs, returned)])


class ExecuTorchBackend:
    """Runs an ExecuTorch program (`.pte`, XNNPACK delegate) with the ExecuTorch runtime."""

    name = "executorch"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        check_model_file(model_path, ".pte", "an ExecuTorch program")
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise BundleError(_missing_runtime("ExecuTorch", self.name, exc)) from None
        if num_threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(num_threads)  # XNNPACK's threadpool is process-wide
        self._torch = torch
        try:
            program = Runtime.get().load_program(str(model_path))
            self._method = program.load_method("forward")
            self._meta = program.metadata("forward")
        except Exception as exc:  # the runtime raises RuntimeError/ValueError with an error code
            raise BundleError(f"cannot load {str(model_path)!r} as an ExecuTorch program: {exc}".splitlines()[0]) from None

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        outputs = self._method.execute([self._torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in inputs])
        return outputs[0].numpy()

    def io(self) -> tuple[list[Tensor], list[Tensor]]:
        # a .pte keeps no tensor names: they are called by position, as the runtime's API does
        def tensor(name: str, info) -> Tensor:
            return Tensor(name, tuple(int(v) for v in info.sizes()), _ET_DTYPES.get(int(info.dtype()), str(info.dtype())))

        meta = self._meta
        return ([tensor(f"args_{i}", meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
                [tensor(f"output_{i}", meta.output_tensor_meta(i)) for i in range(meta.num_outputs())])


class LiteRTBackend:
    """Runs a LiteRT (TFLite) flatbuffer with `ai_edge_litert` (or `tflite_runtime`).

    Inputs are matched to the model's tensors by their argument index; a tensor with
    int8 I/O (a PT2E-quantized model) is quantized / dequantized here with its own
    scale and zero point, so callers always pass and get float32.
    """

    name = "litert"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        check_model_file(model_path, ".tflite", "a LiteRT model")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            try:  # the predecessor; fails under numpy 2 (docs/platform-notes.md, "Installing"), so only a fallback
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                raise BundleError(_missing_runtime("LiteRT", self.name, exc)) from None
        try:
            self._interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise BundleError(f"cannot load {str(model_path)!r} as a LiteRT model: {exc}".splitlines()[0]) from None
        self._inputs = sorted(self._interp.get_input_details(), key=_arg_index)
        self._output = self._interp.get_output_details()[0]

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in d["shape"]) for d in self._inputs]

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        if len(inputs) != len(self._inputs):
            raise BundleError(f"the LiteRT model takes {len(self._inputs)} inputs, got {len(inputs)}")
        for detail, x in zip(self._inputs, inputs):
            self._interp.set_tensor(detail["index"], _to_tensor(np.asarray(x, np.float32), detail))
        self._interp.invoke()
        out = self._interp.get_tensor(self._output["index"])
        return _from_tensor(out, self._output)

    def io(self) -> tuple[list[Tensor], list[Tensor]]:
        def tensor(detail: dict) -> Tensor:
            scale, zero = detail["quantization"]
            return Tensor(str(detail["name"]), tuple(int(v) for v in detail["shape"]), np.dtype(detail["dtype"]).name,
                          float(scale), int(zero))

        return [tensor(d) for d in self._inputs], [tensor(d) for d in self._interp.get_output_details()]


# ExecuTorch's ScalarType codes (c10/core/ScalarType.h order) -> numpy dtype names
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64", 11: "bool"}
# the axes of each modality type's input (contract/manifest.py `input_shapes`, batch first)
_LAYOUTS = {"frames": "B,N,C,H,W", "gaf": "B,N,C,H,W", "series": "B,N,C,K"}


def with_model_io(manifest: Manifest, model_file: Path, backend: Backend) -> Manifest:
    """`manifest` with the listing of `model_file`'s tensors, read from the runtime that
    loaded it (`backend`), and the file's sha256: what train and export write, so that a
    user of any runtime can wire the model from the manifest alone and a changed or
    corrupted file is caught at load."""
    inputs, outputs = backend.io()
    if len(inputs) != len(manifest.modalities):
        raise BundleError(f"{str(model_file)!r} takes {len(inputs)} inputs; the manifest has "
                          f"{len(manifest.modalities)} modalities")

    def spec(t: Tensor, role: str, layout: str) -> TensorSpec:
        return TensorSpec(t.name, role, t.shape, t.dtype, layout, t.scale, t.zero_point)

    return replace(
        manifest,
        inputs=tuple(spec(t, m.name, _LAYOUTS[m.type]) for t, m in zip(inputs, manifest.modalities)),
        outputs=tuple(spec(t, "logits", "B,L") for t in outputs),
        model_sha256=file_sha256(model_file),
    )


class OnnxRuntimeBackend:
    """Runs an ONNX model with ONNX Runtime, on the execution providers asked for.

    `providers` (the manifest's `providers` or `--providers`) are ONNX Runtime provider
    names, best first, each also accepted without its "ExecutionProvider" suffix and in
    any case (`cuda`, `TensorRT`). Unset: TensorRT, then CUDA, then the CPU, among those
    this onnxruntime build has (`onnxruntime.get_available_providers()`), so the same
    bundle uses a Jetson's GPU and a Raspberry Pi's CPU. ONNX Runtime itself runs on the
    CPU whatever a named provider does not take. A name this build lacks is a one-line
    error listing the ones it has. The model's inputs and output are float32 in both
    precisions (int8 models hold their QDQ pairs inside the graph); inputs are fed in
    the graph's order, which is the model's argument order.
    """

    name = "onnx"

    def __init__(self, model_path: Path, num_threads: int | None = None, providers: Sequence[str] | None = None):
        check_model_file(model_path, ".onnx", "an ONNX model")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BundleError(_missing_runtime("ONNX Runtime", self.name, exc)) from None
        chosen = choose_providers(providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: a bad file is our one line, not its log too
        # ORT's pool threads spin-wait for the next op by default; the live app runs one
        # ~1 ms inference per 250 ms hop, and the spinning cost 15-20 % of a core beside it
        # (benchmarks/live_path.py onnx rows). The threads sleep between hops instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if num_threads:  # like the other runtimes: threads of one inference (intra-op); ops run in order
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime's own exception types, one per status code
            raise BundleError(f"cannot load {str(model_path)!r} as an ONNX model: {exc}".splitlines()[0]) from None
        self.providers = tuple(self._session.get_providers())
        dropped = [p for p in chosen if p not in self.providers]
        if dropped:  # e.g. onnxruntime-gpu on a machine whose CUDA libraries do not load
            message = (f"ONNX Runtime could not start {', '.join(dropped)}; running on {', '.join(self.providers)}")
            if providers:
                raise BundleError(message)
            warnings.warn(message, EdgeharWarning, stacklevel=2)
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._output = self._session.get_outputs()[0].name

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        if len(inputs) != len(self._inputs):
            raise BundleError(f"the ONNX model takes {len(self._inputs)} inputs, got {len(inputs)}")
        feeds = {name: np.ascontiguousarray(x, np.float32) for name, x in zip(self._inputs, inputs)}
        return self._session.run([self._output], feeds)[0]

    def io(self) -> tuple[list[Tensor], list[Tensor]]:
        # float tensors in both precisions (the QDQ pairs are inside the graph): no scale / zero point
        def tensor(arg) -> Tensor:
            return Tensor(arg.name, tuple(int(v) for v in arg.shape), _ONNX_DTYPES.get(arg.type, arg.type))

        return [tensor(a) for a in self._session.get_inputs()], [tensor(a) for a in self._session.get_outputs()]


# ONNX Runtime's tensor type names -> numpy dtype names
_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64",
                "tensor(bool)": "bool"}


# ONNX Runtime's providers in the order a bundle without `providers` tries them
ONNX_PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SUFFIX_START = "executionp"  # of every provider name's "ExecutionProvider": a misspelt suffix is cut too


def choose_providers(asked: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The ONNX Runtime providers to open a session with, best first.

    `asked` empty: those of ONNX_PROVIDER_PREFERENCE that are `available`. Otherwise each
    asked name resolved to its full `available` name (the suffix "ExecutionProvider" and
    the case may be left out); a name not available is a BundleError listing the ones
    that are, with a close match (by the part before the suffix: every name shares it).
    """
    if not asked:
        return [p for p in ONNX_PROVIDER_PREFERENCE if p in available] or list(available)
    by_key = {key: p for p in available for key in (p.lower(), _provider_stem(p))}
    chosen = []
    for name in asked:
        full = by_key.get(name.strip().lower())
        if full is None:
            stems = {_provider_stem(p): p for p in available}
            close = difflib.get_close_matches(_provider_stem(name), list(stems), n=1)
            hint = f"; did you mean {stems[close[0]]!r}?" if close else ""
            raise BundleError(f"ONNX Runtime execution provider {name!r} is not available here{hint} "
                              f"(available: {', '.join(available)})")
        if full not in chosen:
            chosen.append(full)
    return chosen


def _provider_stem(name: str) -> str:
    """'CUDAExecutionProvider', 'cuda', 'CUDAExecutionProvidr' -> 'cuda'."""
    name = name.strip().lower()
    cut = name.find(_SUFFIX_START)
    return name[:cut] if cut > 0 else name


# -- what a model file must look like before a native loader sees it -------------------
# Flatbuffer file identifiers, at bytes 4..8: executorch/schema/program.fbs declares
# `file_identifier "ET12"`; TFLite's schema.fbs declares "TFL3".
_FLATBUFFER_IDS = {".pte": b"ET12", ".tflite": b"TFL3"}
# A .pte's extended header follows the identifier (executorch/exir/_serialize/_program.py,
# _ExtendedHeader): magic, header length (u32), program size, segment base offset and
# segment data size (u64 each, the last only when the header is >= 32 bytes), little-endian.
_PTE_HEADER_MAGIC = b"eh00"
_PTE_HEAD_BYTES = 64  # what the runtime reads first (kNumHeadBytes): a shorter .pte cannot load
# torch.export.load logs its deserialisation traceback as a warning on these before it raises
_TORCH_LOADER_LOGGERS = ("torch.export", "torch._export")


def check_model_file(model_path: Path, suffix: str, what: str) -> None:
    """BundleError (one line) unless `model_path` looks like a `suffix` file.

    A native loader must never be the first to see a file of the wrong kind: ExecuTorch's
    logs the 4 bytes it found where its identifier belongs and aborts the whole process
    (SIGABRT, no Python exception) when they are not UTF-8; others print their own error
    text before raising. So each backend checks the bytes first, which is cheap and needs
    no runtime: a flatbuffer's file identifier, a .pte's size against its header (a
    truncated copy), a .pt2's zip directory. A file that passes may still be corrupt; the
    loader's own error is then the message.
    """
    def bad(reason: str) -> BundleError:
        return BundleError(f"cannot load {str(model_path)!r} as {what}: {reason}")

    try:
        size = os.path.getsize(model_path)
        with open(model_path, "rb") as f:
            head = f.read(_PTE_HEAD_BYTES)
        is_zip = suffix == ".pt2" and zipfile.is_zipfile(model_path)
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise bad("the file is empty")
    if suffix == ".onnx":  # a protobuf has no identifier; ONNX Runtime reports a bad one in a Python exception
        return
    if suffix == ".pt2":
        if not is_zip:
            raise bad("not a .pt2 file (not a zip archive; truncated, or another kind of file)")
        return
    ident = _FLATBUFFER_IDS[suffix]
    if head[4:8] != ident:
        raise bad(f"not a {suffix} file (no {ident.decode()!r} identifier at byte 4)")
    if suffix == ".pte":
        if size < _PTE_HEAD_BYTES:
            raise bad(f"truncated ({size} bytes; the runtime reads a {_PTE_HEAD_BYTES}-byte head)")
        if head[8:12] == _PTE_HEADER_MAGIC:
            length, program_size, segment_base = struct.unpack_from("<IQQ", head, 12)
            segment_size = struct.unpack_from("<Q", head, 32)[0] if length >= 32 else 0
            expected = segment_base + segment_size if segment_size else program_size
            if size < expected:
                raise bad(f"truncated ({size} bytes, its header says {expected})")


@contextlib.contextmanager
def _quiet(loggers: tuple[str, ...]) -> Iterator[None]:
    """Silence Python warnings and these loggers while a runtime reads a model file: a bad
    file is one BundleError line, not the runtime's traceback logged as a warning first."""
    saved = [(logger, logger.level) for logger in map(logging.getLogger, loggers)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger, _ in saved:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in saved:
                logger.setLevel(level)


def _arg_index(detail: dict) -> int:
    # litert-torch names inputs "serving_default_args_0", "..._args_1" in the module's argument order
    tail = str(detail.get("name", "")).rsplit("args_", 1)[-1].split(":")[0]
    return int(tail) if tail.isdigit() else int(detail["index"])


def _to_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _from_tensor(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]) == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * np.float32(scale)


def _missing_runtime(runtime: str, backend: str, exc: ImportError) -> str:
    """One line naming the pip extra that installs `runtime`: the runtime_extra of the
    FORMATS row this backend runs (the table, not the class, knows the extras)."""
    extra = next(f.runtime_extra for f in FORMATS if f.backend == backend)
    return (f"the {runtime} runtime is not installed ({exc.name or exc}); "
            f"install it with: pip install 'edgehar[{extra}]'")


def backend_class(format: str) -> type[Backend]:
    """The backend class that runs `format`; BundleError when none does.

    A FORMATS row names its backend; a format the table lacks is looked up under its
    own name, which is how a separate package adds a format. Only that backend's
    module is imported.
    """
    name = next((f.backend for f in FORMATS if f.name == format), format)
    try:
        backend_cls = load_plugin(BACKEND_GROUP, name)
    except PluginError as exc:
        raise BundleError(f"bundle format {format!r}: {exc}") from None
    if backend_cls is None:
        known = sorted({f.name for f in FORMATS} | set(plugin_names(BACKEND_GROUP)))
        raise BundleError(f"bundle format {format!r} is not supported (known: {known})")
    return backend_cls


def open_backend(format: str, model_file: Path, num_threads: int | None = None,
                 providers: Sequence[str] = ()) -> Backend:
    """Open `model_file` with the backend that runs `format` (on `providers`, for a
    backend that takes them)."""
    backend_cls = backend_class(format)
    return backend_cls(model_file, num_threads=num_threads, **_provider_option(backend_cls, format, providers))


def load_bundle(folder: str | Path, num_threads: int | None = None,
                providers: Sequence[str] = ()) -> tuple[Manifest, Backend]:
    """Read a bundle's manifest and open its model with the backend the manifest's format
    names, on `providers` if given, else the manifest's. An unknown format is reported
    before a missing model file: it is the deeper problem (no file name would help)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    backend_cls = backend_class(manifest.format)
    option = _provider_option(backend_cls, manifest.format, providers or manifest.providers)
    return manifest, backend_cls(model_path(folder, manifest), num_threads=num_threads, **option)


def _provider_option(backend_cls: type, format: str, providers: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """{"providers": ...} for a backend whose constructor takes them; none asked: {}; a
    backend without providers asked for some: BundleError (never silently ignored)."""
    if not providers:
        return {}
    if "providers" not in inspect.signature(backend_cls).parameters:
        raise BundleError(f"execution providers {', '.join(providers)} given, but format {format!r} "
                          f"({backend_cls.__name__}) takes none; providers are for onnx bundles")
    return {"providers": tuple(providers)}
