"""Reading a bundle folder: its manifest and the model file it names.

A bundle is a folder holding `manifest.json` (the input contract, `manifest.py`) and
one model file whose name and format the manifest gives (`formats.py`). Training
writes bundles (models/bundle.py), export rewrites them in other formats, and the
runtime's backends (app/backends.py) open the model; all of them read the folder here.
"""

from __future__ import annotations

import hashlib
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
    """The bundle's model file; BundleError when the manifest names one that is not there,
    or one whose bytes are not those the manifest's `model_sha256` was taken from (a file
    swapped, edited or cut short after export would otherwise run, or crash a native loader)."""
    path = Path(folder) / manifest.model_file
    if not path.is_file():
        raise BundleError(f"bundle {str(folder)!r} has no model file {manifest.model_file!r}")
    if manifest.model_sha256 and (found := file_sha256(path)) != manifest.model_sha256:
        raise BundleError(f"model file {str(path)!r} does not match its manifest (sha256 {found[:12]}..., "
                          f"manifest says {manifest.model_sha256[:12]}...): changed or corrupted since it was written")
    return path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
