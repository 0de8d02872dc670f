"""Export trained bundles to edge runtimes (ExecuTorch, LiteRT) at fp32 or int8.

`FORMATS` (contract/formats.py, re-exported here) is the one table of formats;
`export_bundle` (export.py) writes a bundle and checks its fidelity against the fp32
eager model before calling it good.
Importing this package does not import torch; `export_bundle` does when called.
"""

from ..contract.formats import FORMATS, PRECISIONS, ExportFormat, FormatError, export_targets, get_format

__all__ = ["FORMATS", "PRECISIONS", "ExportFormat", "FormatError", "export_bundle", "export_targets", "get_format",
           "ExportResult", "ExportError"]


def __getattr__(name: str):
    if name in ("export_bundle", "ExportResult", "ExportError"):
        from . import export

        return getattr(export, name)
    raise AttributeError(name)
