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

from ..errors import EdgeharError

from .manifest import Manifest, ManifestError


class BundleError(EdgeharError, ValueError):
    """A bundle folder is missing, incomplete, or cannot be run here."""


class Backend(Protocol):
    name: str

    def run(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """inputs: one float32 array per modality, each (B, N, C, H, W) -> logits (B, classes)."""
        ...


class EagerBackend:
    """Runs the bundle's `torch.export` program (`.pt2`) with PyTorch on the CPU."""

    name = "eager"

    def __init__(self, model_path: Path, num_threads: int | None = None):
        import torch  # the one place the runtime imports torch

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


BACKENDS = {"eager": EagerBackend}


def load_bundle(folder: str | Path, num_threads: int | None = None) -> tuple[Manifest, Backend]:
    """Read a bundle's manifest and open its model with the backend the manifest names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"bundle {str(folder)!r} is not a folder")
    try:
        manifest = Manifest.load(folder)
    except ManifestError as exc:
        raise BundleError(f"bad manifest in bundle {str(folder)!r}: {exc}") from None
    backend_cls = BACKENDS.get(manifest.format)
    if backend_cls is None:
        raise BundleError(f"bundle format {manifest.format!r} is not supported (known: {sorted(BACKENDS)})")
    model_path = folder / manifest.model_file
    if not model_path.is_file():
        raise BundleError(f"bundle {str(folder)!r} has no model file {manifest.model_file!r}")
    return manifest, backend_cls(model_path, num_threads=num_threads)
