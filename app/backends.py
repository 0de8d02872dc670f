"""Inference backends: load a bundle, run its model on numpy inputs.

One small interface (`__init__(model_path, num_threads)`, `run`) with one class per
runtime, chosen by the bundle's manifest `format` — the app never branches on the
runtime elsewhere. A format's backend is the entry point its FORMATS row names in the
`edgehar.backends` group (these classes are registered in pyproject.toml), so another
package can add a runtime, or a whole format, by registering its own. Runtimes are
imported lazily inside their backend, so a deploy-only install without torch can run
a bundle whose format does not need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract.bundle import BundleError, model_path, read_manifest
from ..contract.formats import FORMATS
from ..contract.manifest import Manifest
from ..plugins import PluginError, load_plugin, plugin_names

BACKEND_GROUP = "edgehar.backends"  # entry-point group: backend name -> Backend class


class Backend(Protocol):
    name: str

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """inputs: one float32 array per modality, each (B, N, C, H, W) -> logits (B, classes)."""
        ...


class EagerBackend:
    """Runs the bundle's `torch.export` program (`.pt2`) with PyTorch on the CPU."""

    name = "eager"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        try:
            import torch  # the eager runtime is PyTorch itself
        except ImportError as exc:
            raise BundleError(_missing_runtime("PyTorch", self.name, exc)) from None

        if num_threads:
            torch.set_num_threads(num_threads)
        self._torch = torch
        try:
            self._module = torch.export.load(str(model_path)).module()
        except Exception as exc:  # torch raises many types for a bad file
            raise BundleError(f"cannot load {str(model_path)!r} as a torch.export program: {exc}".splitlines()[0]) from None

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        with self._torch.no_grad():
            out = self._module(*(self._torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        return out.numpy()


class ExecuTorchBackend:
    """Runs an ExecuTorch program (`.pte`, XNNPACK delegate) with the ExecuTorch runtime."""

    name = "executorch"

    def __init__(self, model_path: Path, num_threads: int | None = None):
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
            self._method = Runtime.get().load_program(str(model_path)).load_method("forward")
        except Exception as exc:  # the runtime raises RuntimeError/ValueError with an error code
            raise BundleError(f"cannot load {str(model_path)!r} as an ExecuTorch program: {exc}".splitlines()[0]) from None

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        outputs = self._method.execute([self._torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in inputs])
        return outputs[0].numpy()


class LiteRTBackend:
    """Runs a LiteRT (TFLite) flatbuffer with `ai_edge_litert` (or `tflite_runtime`).

    Inputs are matched to the model's tensors by their argument index; a tensor with
    int8 I/O (a PT2E-quantized model) is quantized / dequantized here with its own
    scale and zero point, so callers always pass and get float32.
    """

    name = "litert"

    def __init__(self, model_path: Path, num_threads: int | None = None):
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


def open_backend(format: str, model_file: Path, num_threads: int | None = None) -> Backend:
    """Open `model_file` with the backend that runs `format`.

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
    return backend_cls(model_file, num_threads=num_threads)


def load_bundle(folder: str | Path, num_threads: int | None = None) -> tuple[Manifest, Backend]:
    """Read a bundle's manifest and open its model with the backend the manifest's format names."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    return manifest, open_backend(manifest.format, model_path(folder, manifest), num_threads=num_threads)
