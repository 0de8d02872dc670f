"""Reading a bundle folder: its manifest and the model file it names.

A bundle is a folder holding `manifest.json` (the input contract, `manifest.py`) and
one model file whose name and format the manifest gives (`formats.py`). Training
writes bundles (models/bundle.py), export rewrites them in other formats, and the
runtime's backends (app/backends.py) open the model; all of them read the folder here.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgeharError
from .manifest import Manifest, ManifestError


class BundleError(EdgeharError, ValueError):
    """A bundle folder is missing, incomplete, or cannot be run here."""


def read_manifest(folder: str | Path) -> Manifest:
    """A bundle folder's manifest; BundleError (one line) when the folder or manifest is bad."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"bundle {str(folder)!r} is not a folder")
    try:
        return Manifest.load(folder)
    except ManifestError as exc:
        raise BundleError(f"bad manifest in bundle {str(folder)!r}: {exc}") from None


def model_path(folder: str | Path, manifest: Manifest) -> Path:
    """The bundle's model file; BundleError when the manifest names one that is not there."""
    path = Path(folder) / manifest.model_file
    if not path.is_file():
        raise BundleError(f"bundle {str(folder)!r} has no model file {manifest.model_file!r}")
    return path
