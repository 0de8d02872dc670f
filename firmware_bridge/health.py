"""Per-stream health: what a UI or a log needs to say whether a device is fine.

`StreamHealth` is the one snapshot type every producer hands out (device streams here,
the camera in app.camera) and every consumer reads (the live JSON log, the view's
status lines, the recorder's health events): one set of fields, so a reader never
guesses which keys a stream fills. `HealthTracker` is what the device layer
(firmware_bridge.device) updates as it decodes; `snapshot()` reads it from any thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# states a stream moves through
CONNECTING = "connecting"  # first connection attempt
CONNECTED = "connected"
RECONNECTING = "reconnecting"  # the link dropped; trying again with backoff
DOWN = "down"  # lost and not reconnecting (reconnect=False), or stopped
FAILED = "failed"  # a fatal error (wrong device, bad URL); not retried
STATES = (CONNECTING, CONNECTED, RECONNECTING, DOWN, FAILED)

RATE_WINDOW_S = 5.0  # measured sample rate: samples over the last few seconds


@dataclass(frozen=True)
class StreamHealth:
    """One stream's health at one moment; the field names are the keys of its JSON form."""

    name: str
    url: str
    state: str = CONNECTING
    device: str = ""  # "kind firmware id" from the descriptor, "camera 0", ...
    rate_hz: float | None = None  # measured over the last RATE_WINDOW_S
    samples: int = 0  # samples (frames) delivered to the sink
    frames: int = 0  # messages decoded (all connections)
    lost_blocks: int = 0
    gaps: int = 0
    crc_errors: int = 0
    resyncs: int = 0
    malformed: int = 0
    cut_lines: int = 0
    excess_samples: int = 0
    undescribed_blocks: int = 0
    outages: int = 0
    outage_s: float = 0.0
    battery_pct: int | None = None
    status_flags: int = 0
    last_sample_t: float | None = None
    drift_ppm: float | None = None
    clock_ready: bool = False
    last_error: str = ""
    # cameras: CPU ms the camera thread spends per frame (read + decode + reduce to the
    # model's size, not the wait for the frame), mean over its last frames
    decode_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class HealthTracker:
    """Counters and state of one device stream; updated by its consumer only."""

    name: str
    url: str
    state: str = CONNECTING
    device: str = ""  # "kind firmware id" from the descriptor
    samples: int = 0  # samples delivered to the sink
    frames: int = 0  # messages decoded (all connections)
    lost_blocks: int = 0  # from sequence gaps
    gaps: int = 0
    crc_errors: int = 0
    resyncs: int = 0
    malformed: int = 0  # incl. CSV lines that did not parse
    cut_lines: int = 0  # CSV: a line cut by a connection's start (skipped) or end (its tail never came)
    excess_samples: int = 0  # sent faster than the declared rate (overlapping in device time): dropped
    undescribed_blocks: int = 0  # blocks dropped because no descriptor was known yet
    outages: int = 0  # times the link dropped
    outage_s: float = 0.0  # total seconds down (finished outages)
    battery_pct: int | None = None
    status_flags: int = 0
    last_sample_t: float | None = None  # host time of the newest sample delivered
    drift_ppm: float | None = None  # fitted device clock rate error: +50 = the device clock runs 50 ppm fast
    clock_ready: bool = False  # drift fitted (before: offset only)
    last_error: str = ""
    _down_since: float | None = None
    _rate: deque = field(default_factory=lambda: deque(maxlen=4096))  # (host t of block's last sample, n)
    _rate_n: int = 0  # the samples of the blocks in _rate (kept as they come and go: a read costs O(1))
    _base: dict = field(default_factory=dict)  # decoder counters of finished connections
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- updates (consumer side) ----------------------------------------------------------
    def set_state(self, state: str, now: float, error: str = "", lost: bool = False) -> None:
        """Move to `state`; `lost` (or RECONNECTING) after CONNECTED starts an outage."""
        assert state in STATES, f"unknown state {state!r}"
        with self._lock:
            if (state == RECONNECTING or lost) and self.state == CONNECTED:
                self.outages += 1
                self._down_since = now
            if state == CONNECTED and self._down_since is not None:
                self.outage_s += now - self._down_since
                self._down_since = None
            self.state = state
            if error:
                self.last_error = error

    def add_samples(self, t_last: float, n: int) -> None:
        with self._lock:
            self.samples += n
            self.last_sample_t = t_last
            if len(self._rate) == self._rate.maxlen:
                self._rate_n -= self._rate.popleft()[1]
            self._rate.append((t_last, n))
            self._rate_n += n
            # Blocks older than the rate's window are dropped as they age out, and their
            # samples kept summed, so a read (every view frame) walks no blocks at all.
            while self._rate[0][0] < t_last - RATE_WINDOW_S:
                self._rate_n -= self._rate.popleft()[1]

    def decoder_counters(self, counters: dict[str, int], finished: bool = False) -> None:
        """Current decoder's counters; `finished` folds them into the totals (a connection ended)."""
        with self._lock:
            for k, v in counters.items():
                setattr(self, k, self._base.get(k, 0) + v)
            if finished:
                self._base = {k: getattr(self, k) for k in counters}

    def count_outage_loss(self, blocks: int) -> None:
        """Blocks the device sent while the link was down (seen across a reconnect)."""
        with self._lock:
            for k, n in (("lost_blocks", blocks), ("gaps", 1)):
                self._base[k] = self._base.get(k, 0) + n
                setattr(self, k, getattr(self, k) + n)

    # -- reads (any thread) ---------------------------------------------------------------
    def rate_hz(self) -> float | None:
        """Measured sample rate over the last RATE_WINDOW_S of sample time: the samples
        after the window's first block over the time from it to the last."""
        with self._lock:
            if len(self._rate) < 2:
                return None
            (t_first, n_first), (t_last, _) = self._rate[0], self._rate[-1]
            if t_last <= t_first:
                return None
            return (self._rate_n - n_first) / (t_last - t_first)

    def snapshot(self, now: float | None = None) -> StreamHealth:
        """The health now; an outage in progress counts up to `now`."""
        rate = self.rate_hz()
        with self._lock:
            outage_s = self.outage_s
            if self._down_since is not None and now is not None:
                outage_s += max(0.0, now - self._down_since)
            return StreamHealth(
                name=self.name, url=self.url, state=self.state, device=self.device,
                rate_hz=None if rate is None else round(rate, 2), samples=self.samples, frames=self.frames,
                lost_blocks=self.lost_blocks, gaps=self.gaps, crc_errors=self.crc_errors, resyncs=self.resyncs,
                malformed=self.malformed, cut_lines=self.cut_lines,
                excess_samples=self.excess_samples, undescribed_blocks=self.undescribed_blocks, outages=self.outages,
                outage_s=round(outage_s, 3), battery_pct=self.battery_pct, status_flags=self.status_flags,
                last_sample_t=self.last_sample_t,
                drift_ppm=None if self.drift_ppm is None else round(self.drift_ppm, 2),
                clock_ready=self.clock_ready, last_error=self.last_error)
