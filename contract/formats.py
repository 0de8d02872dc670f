"""The one table of export formats (Ultralytics pattern).

Every row says what a format is called, the file it writes, the precisions it
supports, which function exports it, which backend runs it (by its name in the
`edgehar.backends` entry-point group; edgehar's own are in app/backends.py) and which
pip extras provide the exporter and the runtime. Export, the runtime's backend lookup
and missing-runtime hints, validation, the docs table (`formats_markdown()`) and the
benchmark harness all read this table; nothing else lists the formats. A format another
package adds by registering a backend under the format's name has no row: it can be
run, not exported.

Plain Python, no torch: a deploy-only install can read it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import EdgeharError

PRECISIONS = ("fp32", "int8")
# export's fidelity floor against the fp32 eager model on the test windows (quantize/export.py;
# here, torch-free, so the CLI can show and check it on a deploy-only install)
MIN_AGREEMENT = 0.98  # top-1 agreement
MAX_ACCURACY_DROP = 0.01  # 1 point of accuracy


@dataclass(frozen=True)
class ExportFormat:
    name: str  # the manifest's `format` and the CLI's --format
    suffix: str  # model file written into the bundle: "model" + suffix
    precisions: tuple[str, ...]  # precisions this format can be exported at
    exporter: str  # "module:function" in edgehar.quantize that writes the model file ("" = the trainer's)
    backend: str  # entry-point name in the `edgehar.backends` group of the backend that runs it
    runtime_extra: str  # pip extra that provides the runtime (`pip install edgehar[<extra>]`)
    export_extra: str  # pip extra that provides the exporter
    description: str

    @property
    def model_file(self) -> str:
        return "model" + self.suffix


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("eager", ".pt2", ("fp32",), "", "eager", "train", "train",
                 "torch.export program run by PyTorch (what `edgehar train` writes)"),
    ExportFormat("executorch", ".pte", ("fp32", "int8"), "executorch_export:export_executorch", "executorch",
                 "executorch", "export", "ExecuTorch program, XNNPACK delegate; int8 = PT2E XNNPACKQuantizer"),
    ExportFormat("litert", ".tflite", ("fp32", "int8"), "litert_export:export_litert", "litert",
                 "litert", "export", "LiteRT (TFLite) flatbuffer via litert-torch; int8 = PT2E static quantization"),
    ExportFormat("onnx", ".onnx", ("fp32", "int8"), "onnx_export:export_onnx", "onnx",
                 "onnx", "export", "ONNX via torch.onnx (dynamo) run by ONNX Runtime; int8 = ONNX Runtime static QDQ quantization"),
)


class FormatError(EdgeharError, ValueError):
    """An unknown export format or precision; carries the value and the known ones."""

    def __init__(self, kind: str, value: str, known: list[str], where: str = ""):
        self.value = value
        self.known = known
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {value!r}{where}{hint} (known: {', '.join(known)})")


def get_format(name: str) -> ExportFormat:
    for f in FORMATS:
        if f.name == name:
            return f
    raise FormatError("format", name, [f.name for f in FORMATS])


def check_precision(fmt: ExportFormat, precision: str) -> str:
    if precision not in fmt.precisions:
        raise FormatError("precision", precision, list(fmt.precisions), where=f" for format {fmt.name!r}")
    return precision


def export_targets() -> list[tuple[str, str]]:
    """Every (format, precision) an eager bundle can be exported to — the benchmark's rows."""
    return [(f.name, p) for f in FORMATS if f.exporter for p in f.precisions]


def formats_markdown() -> str:
    """The table for docs/export.md (tests check the doc holds it)."""
    rows = [
        "| format | file | precisions | backend | runtime extra | export extra |",
        "|---|---|---|---|---|---|",
    ]
    rows += [
        f"| `{f.name}` | `{f.model_file}` | {', '.join(f.precisions)} | `{f.backend}` | `edgehar[{f.runtime_extra}]` "
        f"| `edgehar[{f.export_extra}]` |"
        for f in FORMATS
    ]
    return "\n".join(rows)
