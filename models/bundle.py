"""Write a bundle: the model as a `torch.export` program + its manifest.

The bundle is everything the runtime needs (app/backends.py reads it back); the
model is exported at static shapes from `example_inputs()`, batch 1, which is how the
live app runs it. The manifest lists the saved program's tensors and its sha256.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..app.backends import EagerBackend, with_model_io
from ..contract.formats import get_format
from ..contract.manifest import Manifest

EAGER = get_format("eager")  # what `torch.export.save` writes: the table's eager row


def write_bundle(folder: str | Path, model: nn.Module, manifest: Manifest) -> Path:
    """Export `model` and write it with `manifest` (format eager, fp32) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with torch.no_grad():
        program = torch.export.export(model, model.example_inputs(batch=1))
    path = folder / EAGER.model_file
    torch.export.save(program, str(path))
    manifest = replace(manifest, format=EAGER.name, precision="fp32", model_file=EAGER.model_file)
    # the tensor listing and sha256 come from the saved file, loaded as the runtime loads it
    with_model_io(manifest, path, EagerBackend(path)).save(folder)
    return folder
