"""Energy meters against fake sysfs trees written by the test (tmp_path is the root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgehar.benchmarks import meters
from edgehar.benchmarks.meters import (
    BatteryMeter,
    EstimateMeter,
    Ina3221Meter,
    MeterError,
    MeterUnavailable,
    RaplMeter,
    detect_meter,
    meter_from_spec,
    probe_meters,
)


def write(root: Path, path: str, value) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{value}\n")
    return p


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# -- RAPL -------------------------------------------------------------------------------
def rapl_zone(root: Path, zone: str, name: str, energy: int, max_range: int) -> Path:
    base = f"/sys/class/powercap/{zone}"
    write(root, f"{base}/name", name)
    write(root, f"{base}/max_energy_range_uj", max_range)
    return write(root, f"{base}/energy_uj", energy)


def test_rapl_sums_packages_skips_subzones_and_handles_wraparound(tmp_path):
    pkg0 = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 999_000, 1_000_000)
    pkg1 = rapl_zone(tmp_path, "intel-rapl:1", "package-1", 10, 1_000_000)
    core = rapl_zone(tmp_path, "intel-rapl:0:0", "core", 5, 1_000_000)  # part of package-0
    meter = RaplMeter.probe(tmp_path, poll_s=None)
    assert [z.name for z in meter.zones] == ["package-0", "package-1"]
    meter.start()
    pkg0.write_text("2000\n")  # wrapped: 999_000 -> 1_000_000 (= 0) -> 2_000: +3_000 µJ
    pkg1.write_text("500010\n")  # +500_000 µJ
    core.write_text("900000\n")  # must not count
    assert meter.read_uj() == 503_000
    pkg0.write_text("3000\n")  # +1_000
    assert meter.stop() == pytest.approx(0.504)
    assert "package-0 + package-1" in meter.description


def test_rapl_permission_error_says_how_to_fix(tmp_path, monkeypatch):
    energy = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1, 100)
    real = meters._read_text

    def read(path: Path) -> str:  # root reads anything, so stand in for the kernel's 0400
        if path == energy:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(meters, "_read_text", read)
    with pytest.raises(MeterUnavailable) as err:
        RaplMeter.probe(tmp_path)
    msg = str(err.value)
    assert "root only" in msg and "run as root" in msg
    assert "chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in msg
    probe = {p.name: p for p in probe_meters(tmp_path)}["rapl"]
    assert probe.meter is None and "chmod" in probe.reason


# -- Jetson INA3221 -------------------------------------------------------------------------
ORIN = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"


def ina_rails(root: Path, rails: list[tuple[str, int, int]], base: str = ORIN) -> dict[str, tuple[Path, Path]]:
    files = {}
    for i, (label, mv, ma) in enumerate(rails, start=1):
        write(root, f"{base}/in{i}_label", label)
        files[label] = (write(root, f"{base}/in{i}_input", mv), write(root, f"{base}/curr{i}_input", ma))
    return files


@pytest.mark.parametrize(
    "rails",
    [
        [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 200)],
        [("VDD_SOC", 5000, 200), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_IN", 5000, 1000)],
    ],
    ids=["VDD_IN first", "VDD_IN last"],
)
def test_ina3221_finds_the_board_total_rail_by_label_and_integrates(tmp_path, rails):
    files = ina_rails(tmp_path, rails)
    clock = FakeClock()
    meter = Ina3221Meter.probe(tmp_path, clock=clock, background=False)
    assert meter.rail.label == "VDD_IN" and "VDD_IN" in meter.description
    meter.start()  # 5 V x 1 A = 5 W
    clock.t += 1.0
    files["VDD_IN"][1].write_text("2000\n")  # 10 W: trapezoid over 1 s = 7.5 J
    meter.sample()
    clock.t += 2.0  # 10 W for 2 s = 20 J
    assert meter.stop() == pytest.approx(27.5)
    assert meter.samples == 3


def test_ina3221_xavier_label_and_explicit_rail(tmp_path):
    ina_rails(tmp_path, [("GPU", 5000, 100), ("POM_5V_IN", 5000, 800)], base="/sys/bus/i2c/drivers/ina3221/7-0040/hwmon/hwmon1")
    assert Ina3221Meter.probe(tmp_path, background=False).rail.label == "POM_5V_IN"
    assert Ina3221Meter.probe(tmp_path, rail="GPU", background=False).read_power_w() == pytest.approx(0.5)
    assert meter_from_spec("ina3221:GPU", tmp_path)[0].rail.label == "GPU"


def test_ina3221_without_a_board_total_rail_lists_what_it_found(tmp_path):
    ina_rails(tmp_path, [("VDD_GPU_SOC", 5000, 100), ("VDD_CPU_CV", 5000, 100)])
    with pytest.raises(MeterUnavailable, match=r"VDD_IN or POM_5V_IN\) among \['VDD_GPU_SOC', 'VDD_CPU_CV'\]"):
        Ina3221Meter.probe(tmp_path)


def test_ina3221_old_iio_driver(tmp_path):
    dev = "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    write(tmp_path, f"{dev}/rail_name_0", "POM_5V_IN")
    write(tmp_path, f"{dev}/in_power0_input", 2500)  # mW
    write(tmp_path, f"{dev}/rail_name_1", "POM_5V_GPU")
    write(tmp_path, f"{dev}/in_power1_input", 100)
    meter = Ina3221Meter.probe(tmp_path, background=False)
    assert meter.rail.label == "POM_5V_IN" and meter.read_power_w() == pytest.approx(2.5)


def test_sampling_thread_integrates_while_work_runs(tmp_path):
    """The real thread and clock: energy is positive and no sample is lost at stop."""
    ina_rails(tmp_path, [("VDD_IN", 5000, 1000)])
    meter = Ina3221Meter.probe(tmp_path, interval_s=0.001)
    meter.start()
    while meter.samples < 5:
        pass
    joules = meter.stop()
    assert joules > 0 and meter.samples >= 6


# -- battery ---------------------------------------------------------------------------------
def battery(root: Path, status: str, current_ua: int, voltage_uv: int = 4_000_000, name: str = "battery") -> Path:
    base = f"/sys/class/power_supply/{name}"
    write(root, f"{base}/type", "Battery")
    write(root, f"{base}/status", status)
    write(root, f"{base}/current_now", current_ua)
    write(root, f"{base}/voltage_now", voltage_uv)
    return root / base.lstrip("/")


@pytest.mark.parametrize("current_ua", [500_000, -500_000], ids=["positive while discharging", "negative while discharging"])
def test_battery_integrates_a_known_constant_power_whatever_the_sign(tmp_path, current_ua):
    write(tmp_path, "/sys/class/power_supply/AC/type", "Mains")
    battery(tmp_path, "Discharging", current_ua)  # 0.5 A x 4 V = 2 W
    clock = FakeClock()
    meter = BatteryMeter.probe(tmp_path, clock=clock, background=False)
    meter.start()
    for _ in range(10):
        clock.t += 0.5
        meter.sample()
    assert meter.stop() == pytest.approx(2.0 * 5.0)  # 2 W x 5 s


def test_battery_on_a_charger_is_not_a_meter(tmp_path):
    folder = battery(tmp_path, "Charging", 500_000)
    with pytest.raises(MeterUnavailable, match="'Charging', not 'Discharging'.*unplug the charger"):
        BatteryMeter.probe(tmp_path)
    (folder / "status").write_text("Discharging\n")
    clock = FakeClock()
    meter = BatteryMeter.probe(tmp_path, clock=clock, background=False)
    meter.start()
    (folder / "status").write_text("Charging\n")  # plugged in mid-run
    clock.t += 1
    with pytest.raises(MeterError, match="stopped discharging"):
        meter.stop()


# -- choosing ---------------------------------------------------------------------------------
def test_no_meter_on_an_empty_tree_and_every_reason_given(tmp_path):
    assert detect_meter(tmp_path) is None
    meter, reasons = meter_from_spec("auto", tmp_path)
    assert meter is None
    names = [r.split(":")[0] for r in reasons]
    assert names[:3] == ["ina3221", "rapl", "battery"]
    assert any("no /sys/class/powercap" in r for r in reasons)
    with pytest.raises(MeterUnavailable, match="rapl: no /sys/class/powercap"):
        meter_from_spec("rapl", tmp_path)
    with pytest.raises(MeterError, match="unknown meter 'rapel'"):
        meter_from_spec("rapel", tmp_path)


def test_detect_prefers_the_board_total_over_rapl(tmp_path):
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1, 100)
    assert detect_meter(tmp_path).name == "rapl"
    ina_rails(tmp_path, [("VDD_IN", 5000, 1000)])
    assert detect_meter(tmp_path).name == "ina3221"


def test_estimate_is_labelled_and_uses_cpu_time():
    cpu = iter([10.0, 12.5])
    meter = EstimateMeter(4.0, cpu_time=lambda: next(cpu))
    meter.start()
    assert meter.stop() == pytest.approx(10.0)  # 2.5 s CPU x 4 W
    assert meter.estimate and "estimate" in meter.description and "not a measurement" in meter.description
    assert meter_from_spec("estimate:3.5")[0].watts == 3.5
    with pytest.raises(MeterError, match="needs a number"):
        meter_from_spec("estimate:lots")
    with pytest.raises(MeterError, match="must be > 0"):
        EstimateMeter(0)
