"""Write a bundle: the model as a `torch.export` program + its manifest.

The bundle is everything the runtime needs (app/backends.py reads it back); the
model is exported at static shapes from `example_inputs()`, batch 1, which is how the
live app runs it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

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
    torch.export.save(program, str(folder / EAGER.model_file))
    replace(manifest, format=EAGER.name, precision="fp32", model_file=EAGER.model_file).save(folder)
    return folder
