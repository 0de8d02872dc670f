"""Energy meters: one small interface over the counters a board actually has.

    meter = detect_meter()          # or meter_from_spec("rapl"), None when there is none
    meter.start()
    ...                             # the work being measured
    joules = meter.stop()

Implementations (tried in this order by `detect_meter`):

- `Ina3221Meter`  Jetson on-board INA3221 monitors (hwmon, or the older `ina3221x`
  iio driver). Board-total rail: `VDD_IN` (Orin Nano/NX) or `POM_5V_IN` (Nano,
  Xavier NX/TX2 on L4T 32). Power = mV × mA, sampled by a thread, integrated.
- `RaplMeter`     Linux powercap RAPL (Intel, and AMD through the same tree): the
  package domains' `energy_uj` counters, wraparound at `max_energy_range_uj`.
- `BatteryMeter`  Android / laptop `power_supply` battery: |current_now| × voltage_now
  (or power_now), sampled and integrated while the battery is discharging.
- `NvmlMeter`     NVIDIA GPU total energy counter (pynvml, imported lazily). GPU only.

`EstimateMeter` is not a measurement: process CPU time × a power the user gives
(`--energy-estimate WATTS`); it is labelled "estimate" everywhere it appears.
When no meter is found the benchmark says "no meter" — it never prints invented joules.

Every sysfs path is taken relative to `root`, so tests run the real code on a fake
tree; clocks and the sampling thread are injectable so integration is deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import EdgeharError

# The order `detect_meter` tries; the board total beats a CPU-package counter beats a
# battery beats a GPU-only counter (the pipeline runs on the CPU).
METER_NAMES = ("ina3221", "rapl", "battery", "nvml")
BOARD_TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


class MeterError(EdgeharError, RuntimeError):
    """A meter that was asked for cannot be used, or a measurement went wrong."""


class MeterUnavailable(MeterError):
    """This meter does not exist or cannot be read here; carries the meter name and why."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class EnergyMeter(Protocol):
    name: str  # "rapl", "ina3221", "battery", "nvml", "estimate"
    description: str  # what exactly is measured, for the report
    estimate: bool  # True only for EstimateMeter: not a measurement

    def start(self) -> None:
        """Begin a measurement (resets the total)."""
        ...

    def stop(self) -> float:
        """End the measurement; joules consumed since `start`."""
        ...


# -- plumbing shared by the implementations -----------------------------------------
def _read_text(path: Path) -> str:
    """One sysfs attribute, stripped. Module-level so tests can stand in for a kernel."""
    return path.read_text().strip()


def _read_int(path: Path) -> int:
    return int(_read_text(path))


def _sys(root: str | Path, path: str) -> Path:
    return Path(root) / path.lstrip("/")


class _Poller:
    """Calls `fn` every `interval_s` on a daemon thread until stopped."""

    def __init__(self, fn: Callable[[], object], interval_s: float):
        self._fn, self._interval = fn, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="energy-meter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._fn()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _Polled:
    """A meter whose readings a `_Poller` repeats between `start` and `stop`."""

    _poller: _Poller | None = None

    def _start_polling(self, fn: Callable[[], object], interval_s: float | None) -> None:
        """Poll `fn` every `interval_s` (None or 0: never, the caller reads by hand)."""
        self._poller = _Poller(fn, interval_s) if interval_s else None

    def _stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.stop()
            self._poller = None


class SampledPowerMeter(_Polled):
    """Integrates instantaneous power (W) over time with the trapezoid rule.

    `start()` takes a first sample, a background thread samples every `interval_s`
    (set `background=False` and call `sample()` yourself for deterministic tests),
    `stop()` takes a last sample and returns the integral in joules.
    """

    name = "sampled"
    description = ""
    estimate = False

    def __init__(self, interval_s: float = 0.01, clock: Callable[[], float] = time.monotonic, background: bool = True):
        self.interval_s = interval_s
        self.clock = clock
        self.background = background
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None  # (t, watts)
        self._joules = 0.0
        self._samples = 0

    def read_power_w(self) -> float:
        raise NotImplementedError

    def sample(self) -> None:
        watts = self.read_power_w()
        t = self.clock()
        with self._lock:
            if self._last is not None:
                t_prev, w_prev = self._last
                self._joules += 0.5 * (w_prev + watts) * (t - t_prev)
            self._last = (t, watts)
            self._samples += 1

    def start(self) -> None:
        with self._lock:
            self._last, self._joules, self._samples = None, 0.0, 0
        self.sample()
        self._start_polling(self.sample, self.interval_s if self.background else None)

    def stop(self) -> float:
        self._stop_polling()
        self.sample()
        return self._joules

    @property
    def samples(self) -> int:
        """Power readings taken in the last measurement."""
        return self._samples


# -- RAPL ----------------------------------------------------------------------------
RAPL_DIR = "/sys/class/powercap"


@dataclass
class RaplZone:
    path: Path  # .../intel-rapl:0
    name: str  # "package-0"
    max_range_uj: int


class RaplMeter(_Polled):
    """Sum of the RAPL package domains' energy counters (µJ), wraparound handled.

    Only top-level zones (`intel-rapl:N`, the packages; also `psys` where the
    platform has one — then psys alone, as it already includes the packages) are read:
    sub-zones (`intel-rapl:N:M`, core/uncore/dram) are parts of their package and
    would be counted twice. A poller reads the counters every `poll_s` so a counter
    that wraps more than once during a long run is still accounted for.
    """

    name = "rapl"
    estimate = False

    def __init__(self, zones: list[RaplZone], poll_s: float | None = 1.0):
        assert zones, "need at least one RAPL zone"
        self.zones = zones
        self.poll_s = poll_s
        self.description = "RAPL " + " + ".join(z.name for z in zones) + " (CPU package; includes idle power)"
        self._lock = threading.Lock()
        self._prev: list[int] = []
        self._uj = 0

    @classmethod
    def probe(cls, root: str | Path = "/", poll_s: float | None = 1.0) -> "RaplMeter":
        base = _sys(root, RAPL_DIR)
        if not base.is_dir():
            raise MeterUnavailable("rapl", f"no {RAPL_DIR} (no RAPL powercap driver on this kernel/CPU)")
        top = sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not top:
            raise MeterUnavailable("rapl", f"no intel-rapl:N zone under {RAPL_DIR}")
        zones = []
        for p in top:
            energy = p / "energy_uj"
            try:
                name = _read_text(p / "name") if (p / "name").exists() else p.name
                _read_int(energy)
                max_range = _read_int(p / "max_energy_range_uj")
            except PermissionError:
                raise MeterUnavailable(
                    "rapl",
                    f"{energy} is readable by root only (Linux >= 5.10, CVE-2020-8694); run as root, or let "
                    f"users read it: sudo chmod o+r {RAPL_DIR}/intel-rapl:*/energy_uj",
                ) from None
            except (OSError, ValueError) as exc:
                raise MeterUnavailable("rapl", f"cannot read {energy}: {exc}") from None
            zones.append(RaplZone(p, name, max_range))
        psys = [z for z in zones if z.name.startswith("psys")]
        return cls(psys or [z for z in zones if z.name.startswith("package")] or zones, poll_s)

    def _read(self) -> list[int]:
        return [_read_int(z.path / "energy_uj") for z in self.zones]

    def read_uj(self) -> int:
        """µJ accumulated since `start`, wraparound corrected (the counters themselves wrap)."""
        now = self._read()
        with self._lock:
            for i, (z, prev, cur) in enumerate(zip(self.zones, self._prev, now)):
                delta = cur - prev
                if delta < 0:  # the counter wrapped at max_energy_range_uj
                    delta += z.max_range_uj
                self._uj += delta
            self._prev = now
            return self._uj

    def start(self) -> None:
        with self._lock:
            self._prev, self._uj = self._read(), 0
        self._start_polling(self.read_uj, self.poll_s)

    def stop(self) -> float:
        self._stop_polling()
        return self.read_uj() / 1e6


# -- Jetson INA3221 -------------------------------------------------------------------
INA_HWMON_GLOB = "sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*"
INA_IIO_GLOB = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"


@dataclass(frozen=True)
class Rail:
    label: str
    power_w: Callable[[], float]  # reads the rail now


def _hwmon_rails(root: str | Path) -> list[Rail]:
    """Rails of the mainline `ina3221` hwmon driver: in{i}_label, in{i}_input (mV), curr{i}_input (mA)."""
    rails = []
    for hw in sorted(Path(root).glob(INA_HWMON_GLOB)):
        for label_file in sorted(hw.glob("in*_label")):
            i = label_file.name[2 : -len("_label")]
            volt, curr = hw / f"in{i}_input", hw / f"curr{i}_input"
            if not (volt.exists() and curr.exists()):
                continue
            label = _read_text(label_file)

            def power(volt: Path = volt, curr: Path = curr) -> float:
                return _read_int(volt) * _read_int(curr) / 1e6  # mV * mA = µW

            rails.append(Rail(label, power))
    return rails


def _iio_rails(root: str | Path) -> list[Rail]:
    """Rails of the L4T 32 `ina3221x` iio driver: rail_name_{i}, in_power{i}_input (mW)."""
    rails = []
    for dev in sorted(Path(root).glob(INA_IIO_GLOB)):
        for name_file in sorted(dev.glob("rail_name_*")):
            i = name_file.name[len("rail_name_") :]
            pw = dev / f"in_power{i}_input"
            if not pw.exists():
                continue

            def power(pw: Path = pw) -> float:
                return _read_int(pw) / 1e3  # mW

            rails.append(Rail(_read_text(name_file), power))
    return rails


class Ina3221Meter(SampledPowerMeter):
    """Jetson board power from the on-board INA3221 monitor, sampled and integrated.

    Rail labels are read at run time (boards wire the channels in different orders);
    the board-total rail is `VDD_IN` (Orin) or `POM_5V_IN` (Nano, Xavier NX, TX2), or
    the one named with `rail=`.
    """

    name = "ina3221"

    def __init__(self, rail: Rail, **sampling):  # interval_s, clock, background: as SampledPowerMeter
        super().__init__(**sampling)
        self.rail = rail
        self.description = f"Jetson INA3221 rail {rail.label} (board input; includes idle power)"

    @classmethod
    def probe(cls, root: str | Path = "/", rail: str | None = None, **kw) -> "Ina3221Meter":
        try:
            rails = _hwmon_rails(root) or _iio_rails(root)
        except PermissionError as exc:
            raise MeterUnavailable("ina3221", f"cannot read {exc.filename}; run as root") from None
        if not rails:
            raise MeterUnavailable("ina3221", "no INA3221 monitor under /sys/bus/i2c/drivers/ina3221*")
        labels = [r.label for r in rails]
        wanted = (rail,) if rail else BOARD_TOTAL_RAILS
        chosen = next((r for w in wanted for r in rails if r.label == w), None)
        if chosen is None:
            what = f"rail {rail!r}" if rail else f"board-total rail ({' or '.join(BOARD_TOTAL_RAILS)})"
            raise MeterUnavailable("ina3221", f"no {what} among {labels}; choose one with --meter ina3221:RAIL")
        try:
            chosen.power_w()
        except PermissionError as exc:
            raise MeterUnavailable("ina3221", f"cannot read {exc.filename}; run as root") from None
        return cls(chosen, **kw)

    def read_power_w(self) -> float:
        return self.rail.power_w()


# -- battery --------------------------------------------------------------------------
POWER_SUPPLY_DIR = "/sys/class/power_supply"


class BatteryMeter(SampledPowerMeter):
    """Battery drain from `power_supply`: |current_now| (µA) × voltage_now (µV), or power_now (µW).

    Drivers disagree on the sign of the current while discharging (Android fuel
    gauges often report it positive, others negative), so the magnitude is used — and
    only while `status` is "Discharging": on a charger the battery current says
    nothing about what the device draws. A run during which the status changes fails.
    """

    name = "battery"

    def __init__(self, folder: Path, interval_s: float = 0.1, **sampling):  # clock, background: as SampledPowerMeter
        super().__init__(interval_s, **sampling)
        self.folder = folder
        self.description = f"battery {folder.name}: |current| × voltage while discharging (whole device)"
        self._left_discharging = False

    @classmethod
    def probe(cls, root: str | Path = "/", **kw) -> "BatteryMeter":
        base = _sys(root, POWER_SUPPLY_DIR)
        supplies = sorted(base.iterdir()) if base.is_dir() else []
        reasons = []
        for f in supplies:
            try:
                if (f / "type").exists() and _read_text(f / "type") != "Battery":
                    continue
                has_iv = (f / "current_now").exists() and (f / "voltage_now").exists()
                if not (has_iv or (f / "power_now").exists()):
                    reasons.append(f"{f.name} has no current_now/voltage_now or power_now")
                    continue
                status = _read_text(f / "status") if (f / "status").exists() else "Unknown"
                if status != "Discharging":
                    reasons.append(f"{f.name} is {status!r}, not 'Discharging' (unplug the charger to measure)")
                    continue
                meter = cls(f, **kw)
                meter.read_power_w()
                return meter
            except PermissionError as exc:
                reasons.append(f"cannot read {exc.filename}; run as root")
            except (OSError, ValueError) as exc:
                reasons.append(f"{f.name}: {exc}")
        if not reasons:
            raise MeterUnavailable("battery", f"no battery under {POWER_SUPPLY_DIR}")
        raise MeterUnavailable("battery", "; ".join(reasons))

    def read_power_w(self) -> float:
        f = self.folder
        if (f / "status").exists() and _read_text(f / "status") != "Discharging":
            self._left_discharging = True
        if (f / "current_now").exists() and (f / "voltage_now").exists():
            return abs(_read_int(f / "current_now")) * _read_int(f / "voltage_now") / 1e12  # µA * µV
        return abs(_read_int(f / "power_now")) / 1e6

    def start(self) -> None:
        self._left_discharging = False
        super().start()

    def stop(self) -> float:
        joules = super().stop()
        if self._left_discharging:
            raise MeterError(f"battery {self.folder.name} stopped discharging during the run (charger plugged in?)")
        return joules


# -- NVML -----------------------------------------------------------------------------
class NvmlMeter:
    """Total energy of every NVIDIA GPU (nvmlDeviceGetTotalEnergyConsumption, mJ, Volta+).

    GPU boards only: a pipeline that runs on the CPU is not in this figure.
    """

    name = "nvml"
    estimate = False

    def __init__(self, nvml, handles: list):
        self._nvml, self._handles = nvml, handles
        self.description = f"NVML total energy of {len(handles)} GPU(s) (GPU only, not the CPU)"
        self._start_mj = 0

    @classmethod
    def probe(cls, root: str | Path = "/") -> "NvmlMeter":
        try:
            import pynvml  # optional, never a dependency
        except ImportError:
            raise MeterUnavailable("nvml", "pynvml is not installed (pip install nvidia-ml-py)") from None
        try:
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            if not handles:
                raise MeterUnavailable("nvml", "no NVIDIA GPU")
            for h in handles:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        except MeterUnavailable:
            raise
        except Exception as exc:  # pynvml.NVMLError and friends: no driver, not supported
            raise MeterUnavailable("nvml", f"NVML: {exc}") from None
        return cls(pynvml, handles)

    def _read_mj(self) -> int:
        return sum(int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles)

    def start(self) -> None:
        self._start_mj = self._read_mj()

    def stop(self) -> float:
        return (self._read_mj() - self._start_mj) / 1e3


# -- the labelled estimate -------------------------------------------------------------
class EstimateMeter:
    """NOT a measurement: CPU time of this process × a power the user states.

    For a first-order figure on a machine without a meter, and only when asked
    (`--energy-estimate WATTS`); every report labels it "estimate".
    """

    name = "estimate"
    estimate = True

    def __init__(self, watts: float, cpu_time: Callable[[], float] = time.process_time):
        if not watts > 0:
            raise MeterError(f"estimate power {watts!r} W must be > 0")
        self.watts = watts
        self._cpu_time = cpu_time
        self._t0 = 0.0
        self.description = f"estimate: process CPU time × {watts:g} W (not a measurement)"

    def start(self) -> None:
        self._t0 = self._cpu_time()

    def stop(self) -> float:
        return (self._cpu_time() - self._t0) * self.watts


# -- choosing one ------------------------------------------------------------------------
@dataclass
class MeterProbe:
    name: str
    meter: EnergyMeter | None
    reason: str  # why it is unavailable; "" when available


def _probe_one(name: str, root: str | Path, arg: str | None) -> EnergyMeter:
    if name == "rapl":
        return RaplMeter.probe(root)
    if name == "ina3221":
        return Ina3221Meter.probe(root, rail=arg)
    if name == "battery":
        return BatteryMeter.probe(root)
    if name == "nvml":
        return NvmlMeter.probe(root)
    raise MeterError(f"unknown meter {name!r} (known: {', '.join(METER_NAMES)}, estimate:WATTS, auto, none)")


def probe_meters(root: str | Path = "/") -> list[MeterProbe]:
    """Try every meter in `METER_NAMES` order; each result says why it is unavailable."""
    probes = []
    for name in METER_NAMES:
        try:
            probes.append(MeterProbe(name, _probe_one(name, root, None), ""))
        except MeterUnavailable as exc:
            probes.append(MeterProbe(name, None, exc.reason))
    return probes


def detect_meter(root: str | Path = "/") -> EnergyMeter | None:
    """The first available meter, or None. `probe_meters` says why the others are not."""
    return next((p.meter for p in probe_meters(root) if p.meter is not None), None)


def meter_from_spec(spec: str, root: str | Path = "/") -> tuple[EnergyMeter | None, list[str]]:
    """A meter from a command-line spec, and the reasons the ones tried are unavailable.

    "auto" (first available, None if none), "none", "rapl", "ina3221", "ina3221:RAIL",
    "battery", "nvml", or "estimate:WATTS". A named meter that is unavailable raises
    MeterUnavailable with the reason.
    """
    name, _, arg = spec.partition(":")
    if name == "none":
        return None, ["energy not measured (--meter none)"]
    if name == "auto":
        probes = probe_meters(root)
        meter = next((p.meter for p in probes if p.meter is not None), None)
        return meter, [f"{p.name}: {p.reason}" for p in probes if p.meter is None]
    if name == "estimate":
        try:
            watts = float(arg)
        except ValueError:
            raise MeterError(f"--meter estimate:WATTS needs a number, got {arg!r}") from None
        return EstimateMeter(watts), []
    return _probe_one(name, root, arg or None), []


__all__ = [
    "BOARD_TOTAL_RAILS",
    "BatteryMeter",
    "EnergyMeter",
    "EstimateMeter",
    "Ina3221Meter",
    "METER_NAMES",
    "MeterError",
    "MeterProbe",
    "MeterUnavailable",
    "NvmlMeter",
    "RaplMeter",
    "SampledPowerMeter",
    "detect_meter",
    "meter_from_spec",
    "probe_meters",
]
