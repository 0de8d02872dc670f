"""The benchmark table: one `BundleResult` row per bundle, gathered in a `BenchTable`.

Its own module because two others read it: `bench` fills it (in the per-bundle child
processes, which send rows back as JSON) and `report` writes it out; neither of those
needs the other to do so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("sampling", "gaf", "frames", "inference", "total")


@dataclass
class BundleResult:
    """One row: one bundle measured in one process. Figures are None where not measured."""

    bundle: str
    status: str  # "ok", or why the bundle could not be measured
    model: str | None = None
    format: str | None = None
    precision: str | None = None
    size_bytes: int | None = None  # every file in the bundle folder
    data: str | None = None  # data source of the test subjects
    accuracy: float | None = None
    macro_f1: float | None = None
    test_windows: int | None = None
    runs: int = 0  # timed single-stream queries
    p90_stable: bool | None = None  # stopped because p90 settled (False: hit max_runs)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {"p50", "p90", "p99", "mean"}
    throughput_per_s: float | None = None  # 1 / mean total latency, single stream
    peak_rss_mb: float | None = None  # after load + warm-up on random inputs: what the live app needs
    peak_rss_with_data_mb: float | None = None  # end of run: also holds the test recordings
    energy_j_per_inference: float | None = None
    energy_net_j_per_inference: float | None = None  # above idle power, when idle_s > 0
    idle_w: float | None = None
    energy_label: str = "no meter"  # meter name, "estimate", or "no meter"
    threads: int | None = None  # requested; None = the runtime's default
    model_config: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def p50(self, stage: str = "total") -> float | None:
        return self.latency_ms.get(stage, {}).get("p50")


@dataclass
class BenchTable:
    rows: list[BundleResult]
    comparisons: list[dict[str, Any]]  # speed/accuracy/size ratios between rows
    sparse_vs_dense: list[dict[str, Any]]  # MMTSA N sparse segments vs dense, per model
    gaf_vs_official: dict[str, Any]  # {"rows": [...]} or {"skipped": why}
    machine: dict[str, Any]
    meter: dict[str, Any]  # name, description, estimate, reasons
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchTable":
        return cls(**{**d, "rows": [BundleResult(**r) for r in d["rows"]]})
