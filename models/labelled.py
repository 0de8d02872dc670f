"""What every data source becomes, and where data is cached.

A source (simulated or recorded sessions, BasicMotions, a public data set) turns into
`LabelledData`: recordings of time-stamped series with activity intervals, a subject and
a split each, plus the streams and default modalities. Kept apart from the loaders
(datasets.py, public_datasets.py) so each loader module can import it without importing
the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..contract.manifest import ModalitySpec, StreamSpec
from ..contract.series import FrameSeries, SensorSeries
from ..errors import EdgeharError

SPLITS = ("train", "val", "test")


class DataError(EdgeharError, ValueError):
    """A data source that cannot be used for training; the message names it."""


@dataclass
class LabelledRecording:
    series: dict[str, SensorSeries | FrameSeries]
    labels: list[tuple[float, float, str]]  # (start_s, end_s, activity)
    subject: str
    split: str  # "train" | "val" | "test" (cross-subject)


@dataclass
class LabelledData:
    name: str
    recordings: list[LabelledRecording]
    streams: tuple[StreamSpec, ...]
    modalities: tuple[ModalitySpec, ...]  # the default: one per stream
    labels: tuple[str, ...]
    window_s: float  # default observation window for this source

    def split(self, name: str) -> list[LabelledRecording]:
        return [r for r in self.recordings if r.split == name]


def cache_dir() -> Path:
    """Where default data and bundles are cached: $EDGEHAR_HOME or ~/.cache/edgehar."""
    return Path(os.environ.get("EDGEHAR_HOME", Path.home() / ".cache" / "edgehar"))


def recording_span(rec: LabelledRecording) -> tuple[float, float]:
    """The time span every stream covers; a stream's last sample covers one period."""
    starts, ends = [], []
    for s in rec.series.values():
        t = s.timestamps
        if len(t) > 1:
            starts.append(float(t[0]))
            ends.append(float(t[-1] + (t[-1] - t[0]) / (len(t) - 1)))
    return max(starts), min(ends)
