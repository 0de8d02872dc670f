"""The one shape in which every producer hands over its samples: `Sink`.

Device streams, the camera, the simulator and the app's fan-out (app.sources) all call
a sink, and ring buffers and the session recorder all are one; one definition keeps
them from drifting apart. A sink runs in the producer's thread (a device callback, the
camera reader), so it may only copy or enqueue.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Sink(Protocol):
    """sink(stream name, t_host (n,) float64, data (n, C) | (n, H, W, 3)[, t_device (n,) | None]).

    t_device, the device's own seconds, is passed by producers that have it (the
    app's fan-out, for the recorder); device streams and cameras call with three
    arguments, so a sink of three arguments serves them.
    """

    def __call__(self, name: str, t_host: np.ndarray, data: np.ndarray,
                 t_device: np.ndarray | None = None, /) -> None: ...
