"""Inference backends: load a bundle, run its model on numpy inputs.

One small interface (`load`, `run`) with one class per runtime, chosen by the bundle's
manifest `format` — the app never branches on the runtime elsewhere. Runtimes are
imported lazily inside their backend, so a deploy-only install without torch can run
a bundle whose format does not need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract.bundle import BundleError, model_path, read_manifest
from ..contract.manifest import Manifest


class Backend(Protocol):
    name: str

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """inputs: one float32 array per modality, each (B, N, C, H, W) -> logits (B, classes)."""
        ...


class EagerBackend:
    """Runs the bundle's `torch.export` program (`.pt2`) with PyTorch on the CPU."""

    name = "eager"
    extra = "train"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        try:
            import torch  # the eager runtime is PyTorch itself
        except ImportError as exc:
            raise BundleError(_missing_runtime("PyTorch", self.extra, exc)) from None

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
    extra = "executorch"  # pip extra that provides the runtime (contract/formats.py)

    def __init__(self, model_path: Path, num_threads: int | None = None):
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise BundleError(_missing_runtime("ExecuTorch", self.extra, exc)) from None
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
    extra = "litert"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            try:  # the predecessor; fails under numpy 2 (docs/platform-notes.md, "Installing"), so only a fallback
                from tflite_runtime.interpreter import Interpreter
            except ImportError:
                raise BundleError(_missing_runtime("LiteRT", self.extra, exc)) from None
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


def _missing_runtime(runtime: str, extra: str, exc: ImportError) -> str:
    return (f"the {runtime} runtime is not installed ({exc.name or exc}); "
            f"install it with: pip install 'edgehar[{extra}]'")


# manifest `format` -> backend; must match the FORMATS table (contract/formats.py)
BACKENDS = {"eager": EagerBackend, "executorch": ExecuTorchBackend, "litert": LiteRTBackend}


def load_bundle(folder: str | Path, num_threads: int | None = None) -> tuple[Manifest, Backend]:
    """Read a bundle's manifest and open its model with the backend the manifest names."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    backend_cls = BACKENDS.get(manifest.format)
    if backend_cls is None:
        raise BundleError(f"bundle format {manifest.format!r} is not supported (known: {sorted(BACKENDS)})")
    return manifest, backend_cls(model_path(folder, manifest), num_threads=num_threads)
