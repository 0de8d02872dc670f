"""Device profiles end to end, through the real libraries: no mock of bleak or pyserial.

Each shipped profile reads an emulated device (simulator.devices.imus) that writes the
bytes its maker documents, bad packets included: the BLE ones through unmodified bleak
on the emulated BlueZ, the serial one over a pseudo-terminal. `edgehar live --check`
accepts each as the IMU of a bundle and `edgehar record` records it across a dropped
link, every recorded value being one the device sent, in order. `edgehar devices
--probe` reports a wire-v1 glove and a profile device; bad profile files are one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgehar.cli import main
from edgehar.firmware_bridge.packets import PacketDecoder
from edgehar.firmware_bridge.profiles import SHIPPED_DIR, load_profile
from edgehar.simulator.devices.bluez import FakeBlueZ
from edgehar.simulator.devices.firmware import PtyPort
from edgehar.simulator.devices.imus import BleImu, Nano33Ble, SerialImu, WitMotionBle, WitMotionSerial, motion
from live_helpers import tiny_bundle

RATE = 100  # Hz the emulated devices are set to (?rate=100), as the test bundle's IMU expects
BAD_EVERY = 25  # every 25th sample goes out as bad packets
EDGEHAR = [sys.executable, "-m", "edgehar"]


def env(**extra: str) -> dict[str, str]:
    """This process's environment (the test's private system bus included), no display."""
    return {**os.environ, "DISPLAY": "", **extra}


@pytest.fixture(scope="module")
def imu_bundle(tmp_path_factory):
    """A bundle that reads one IMU stream (acc_x..gyro_z at 100 Hz), no camera."""
    return tiny_bundle(tmp_path_factory.mktemp("bundles"), streams=("imu",))


async def cli(*args: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*EDGEHAR, *map(str, args), stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


class Recording:
    """`edgehar record` of one IMU, stopped with `q` on its labelling prompt: the test says
    when, after what it waited for, rather than guessing how long a loaded machine takes."""

    def __init__(self, out: Path, url: str, **extra_env: str):
        self.out, self.url, self.extra_env = out, url, extra_env

    async def start(self) -> "Recording":
        self.proc = await asyncio.create_subprocess_exec(
            *EDGEHAR, "record", "--out", str(self.out), "--imu", self.url, "--headless", "--activities", "still",
            "--seconds", "60", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env(**self.extra_env))
        line = b""
        while b"recording imu" not in line:  # the device is connected and described
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            if not line:
                raise AssertionError((await self.proc.stderr.read()).decode())
        return self

    async def connected(self, times: int, timeout_s: float = 30) -> None:
        """Until the session's events (flushed every 0.5 s) show the device connected `times` times."""
        deadline = time.monotonic() + timeout_s
        while outage_events(self.out).count("connected") < times:
            assert time.monotonic() < deadline, f"not connected {times} times: {outage_events(self.out)}"
            await asyncio.sleep(0.1)

    async def stop(self) -> tuple[int, str, str]:
        self.proc.stdin.write(b"q\n")
        await self.proc.stdin.drain()
        out, err = await asyncio.wait_for(self.proc.communicate(), 60)
        return self.proc.returncode, out.decode(), err.decode()


def check_recording(out: Path, sent: np.ndarray, channels: tuple[str, ...], units: list[str], min_rows: int,
                    max_missing: int) -> None:
    """Every recorded row is a sample the device sent intact (bad ones never appear), in
    order, none repeated; missing only in one run of at most `max_missing`: what the
    outage took in flight (a notification under way, bytes in an unplugged port's buffer)."""
    meta = json.loads((out / "meta.json").read_text())["streams"]["imu"]
    assert meta["channels"][:len(channels)] == list(channels) and meta["units"][:len(units)] == units
    header = (out / "imu.csv").read_text().splitlines()[0].split(",")
    rows = np.loadtxt(out / "imu.csv", delimiter=",", skiprows=1, ndmin=2)
    got = rows[:, [header.index(c) for c in channels]]
    assert len(got) >= min_rows
    sent32 = sent.astype(np.float32).astype(np.float64)
    idx = [int(np.argmin(np.abs(sent32 - row).max(axis=1))) for row in got]
    np.testing.assert_allclose(got, sent32[idx], rtol=1e-6, atol=1e-9)  # %.7g of the float32 the host decoded
    steps = np.diff(idx)
    assert np.all(steps >= 1)
    assert np.count_nonzero(steps > 1) <= 1 and (steps - 1).sum() <= max_missing, "samples missing beyond the outage"


def outage_events(out: Path) -> list[str]:
    path = out / "events.csv"
    return [line.split(",")[2] for line in path.read_text().splitlines()[1:]] if path.exists() else []


# ---------------------------------------------------------------------------- BLE


def live_check(capfd, bundle: Path, url: str) -> tuple[int, str, str]:
    """`edgehar live --check` in this process (torch is loaded already: seconds saved)."""
    capfd.readouterr()
    rc = main(["live", "--check", "--model", str(bundle), "--imu", url])
    out, err = capfd.readouterr()
    return rc, out, err


@pytest.mark.parametrize("profile, model", [("witmotion-wt901ble", WitMotionBle), ("arduino-nano33-ble", Nano33Ble)])
def test_ble_profile_passes_live_check_and_records_the_sent_values_across_a_link_drop(
        private_system_bus, imu_bundle, tmp_path, capfd, profile, model):
    out = tmp_path / "session"

    async def run():
        async with FakeBlueZ(private_system_bus) as bluez:
            imu = BleImu(bluez, model(), RATE, bad_every=BAD_EVERY)
            try:
                url = f"ble://name={imu.model.name}?profile={profile}&rate={RATE}"
                check = await asyncio.to_thread(live_check, capfd, imu_bundle, url)  # the emulated BlueZ runs on
                recording = await Recording(out, url).start()
                await asyncio.sleep(1.0)
                imu.device.drop_link()  # out of range: a supervision timeout, no Disconnect
                await asyncio.sleep(0.5)
                imu.device.come_back()
                await recording.connected(2)
                await asyncio.sleep(1.0)
                return check, await recording.stop(), imu.sent
            finally:
                await imu.close()

    check, record, sent = asyncio.run(run())
    assert check[0] == 0, check[2]
    assert f"imu: imu profile {profile} (connected)" in check[1]
    assert record[0] == 0, record[2]
    m = model()
    check_recording(out, sent.array(), m.channels, ["g", "g", "g", "deg/s", "deg/s", "deg/s"], min_rows=150,
                    max_missing=5)
    events = outage_events(out)
    assert events.count("connected") == 2 and "reconnecting" in events  # the drop, then back
    assert sent.bad_samples > 0


# ---------------------------------------------------------------------------- serial


def test_serial_profile_passes_live_check_and_records_the_sent_values_across_an_unplug(imu_bundle, tmp_path, capfd):
    link = tmp_path / "ttyUSB0"
    imu = SerialImu(WitMotionSerial(), RATE, bad_every=BAD_EVERY, link=str(link))
    out = tmp_path / "session"
    url = f"serial://{link}?profile=witmotion-wt901c&rate={RATE}"  # 9600 baud from the profile

    async def run():
        check = live_check(capfd, imu_bundle, url)
        recording = await Recording(out, url).start()
        await asyncio.sleep(1.0)
        imu.unplug()
        await asyncio.sleep(0.3)
        imu.replug()
        await recording.connected(2)
        await asyncio.sleep(1.0)
        return check, await recording.stop()

    try:
        check, record = asyncio.run(run())
    finally:
        imu.close()
    assert check[0] == 0, check[2]
    assert "imu: imu profile witmotion-wt901c (connected)" in check[1]
    assert record[0] == 0, record[2]
    check_recording(out, imu.sent.array(), WitMotionSerial.channels,
                    ["g", "g", "g", "deg/s", "deg/s", "deg/s", "deg", "deg", "deg", "degC"], min_rows=150,
                    max_missing=25)  # pyserial flushes what the new port buffered before it opened
    events = outage_events(out)
    assert events.count("connected") == 2 and "reconnecting" in events
    assert "lost_blocks" in events  # each bad checksum drops its sample, counted


def test_serial_decoding_is_the_same_for_any_chunking():
    """Junk first, then 40 samples of which every 5th has a bad checksum (the first of them
    before any complete sample, so not counted as a loss: a port opens mid-stream)."""
    model = WitMotionSerial()
    stream = b"\x53\x01\x02" + b"".join(
        (model.bad(motion(k / RATE)) if k % 5 == 0 else model.encode(motion(k / RATE))[1])[0][1] for k in range(40))
    whole, single = (PacketDecoder(load_profile("witmotion-wt901c")) for _ in range(2))
    a = whole.feed(stream)
    b = [s for i in range(len(stream)) for s in single.feed(stream[i:i + 1])]
    assert len(a) == len(b) == 32
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b))
    assert whole.stats == single.stats
    assert whole.stats.crc_errors >= 8 and whole.stats.incomplete == 7 and whole.stats.resyncs >= 3


# ---------------------------------------------------------------------------- a user profile with a device counter


USER_PROFILE = """\
# A DIY sketch: AA 55, uint32 millis(), 3 x int16 acceleration in mg, SUM8
[device]
kind = "imu"
source = "this test"
rate_hz = 100

[serial]
baud = 115200

[[packet]]
header = "AA 55"
format = "<2xI3hx"
fields = ["t_ms", "ax", "ay", "az"]
checksum = "sum8"

[[channel]]
name = "acc_x"
field = "ax"
scale = 0.001
unit = "g"

[[channel]]
name = "acc_y"
field = "ay"
scale = 0.001
unit = "g"

[[channel]]
name = "acc_z"
field = "az"
scale = 0.001
unit = "g"

[time]
source = "counter"
field = "t_ms"
tick_s = 0.001
bits = 32
"""


def test_a_user_profile_by_name_with_a_device_counter_gives_device_time_and_counts_skips(tmp_path):
    """The counter wraps (u32 ms) during the recording and skips 5 samples: device time
    follows the counter across the wrap, and the skip is counted as lost."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "diy-imu.toml").write_text(USER_PROFILE)
    port = PtyPort()
    stop, recording_started = threading.Event(), threading.Event()
    t0_ms = 2**32 - 500  # wraps 0.5 s after the recording started

    def stream():
        while not recording_started.wait(0.01):  # the device starts once the host listens
            if stop.is_set():
                return
        k, start = 0, time.monotonic()
        while not stop.wait(max(0.0, start + k / RATE - time.monotonic())):
            if not 100 <= k < 105:  # the device skips five samples, 1 s in
                body = struct.pack("<BBI3h", 0xAA, 0x55, (t0_ms + 10 * k) % 2**32, k % 1000, -k % 1000, 1000)
                port.write(body + bytes([sum(body) & 0xFF]))
            k += 1

    out = tmp_path / "session"

    async def run():
        recording = await Recording(out, f"serial://{port.path}?profile=diy-imu", EDGEHAR_PROFILES=str(folder)).start()
        recording_started.set()
        await asyncio.sleep(2.0)
        return await recording.stop()

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    try:
        rc, _, err = asyncio.run(run())
    finally:
        stop.set()
        writer.join(2)
        port.close()
    assert rc == 0, err
    rows = np.loadtxt(out / "imu.csv", delimiter=",", skiprows=1, ndmin=2)
    t_device, acc_x = rows[:, 1], rows[:, 2]
    k = np.rint(acc_x * 1000).astype(int)  # acc_x carries k % 1000
    steps = np.diff(t_device)
    assert len(rows) > 150 and np.all(np.diff(k) >= 1) and k[0] < 50 < k[-1]  # the wrap is inside
    np.testing.assert_allclose(steps[np.diff(k) == 1], 0.01, atol=1e-6)  # the counter's 10 ms, across the wrap
    np.testing.assert_allclose(steps[np.diff(k) == 6], 0.06, atol=1e-6)  # the skip
    lost = [line for line in (out / "events.csv").read_text().splitlines() if ",lost_blocks," in line]
    assert [line.split(",")[3] for line in lost] == ["5"]


# ---------------------------------------------------------------------------- probe


def test_probe_reports_a_wire_v1_glove_on_a_pty(capfd):
    sim = subprocess.Popen([*EDGEHAR, "simulate", "glove", "--serial", "--seconds", "20"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = sim.stdout.readline()
        url = line.split("->")[1].split()[1]
        rc = main(["devices", "--probe", url, "--seconds", "2", "--json"])
        out, err = capfd.readouterr()
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
    assert rc == 0, err
    report = json.loads(out)
    assert report["device"]["kind"] == "glove" and report["profile"] is None and report["nominal_hz"] == 100
    assert 75 < report["rate_hz"] < 115 and report["samples"] > 100
    flex = next(c for c in report["channels"] if c["name"] == "flex_index")
    assert flex["unit"] == "bend 0..1" and 0 <= flex["min"] < flex["max"] <= 1
    assert report["health"]["crc_errors"] == report["health"]["lost_blocks"] == 0


def test_probe_reports_a_profile_device_its_rate_ranges_and_bad_packets(private_system_bus):
    async def run():
        async with FakeBlueZ(private_system_bus) as bluez:
            imu = BleImu(bluez, Nano33Ble(), RATE, bad_every=BAD_EVERY)
            try:
                result = await cli("devices", "--probe", f"ble://?profile=arduino-nano33-ble&rate={RATE}",
                                   "--seconds", 2)  # ble:// alone: the profile's service
                return result, imu.sent.array()
            finally:
                await imu.close()

    (rc, out, err), sent = asyncio.run(run())
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1].startswith("  device   profile arduino-nano33-ble matched:") and "Nano 33 BLE Service" in lines[1]
    measured = float(lines[2].split()[1])
    assert 0.75 * RATE < measured < 1.15 * RATE and "100 Hz nominal" in lines[2]
    loss = lines[3]
    lost = int(loss.split("lost ")[1].split()[0])
    malformed = int(loss.split("malformed ")[1].split(",")[0])
    assert lost >= 1 and malformed >= 1 and abs(lost - malformed) <= 1  # each cut value drops its sample
    table = {r.split()[0]: r.split()[1:] for r in lines[5:]}
    assert set(table) == {"acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"}
    for i, name in enumerate(("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")):
        unit, lo, hi = table[name][0], float(table[name][1]), float(table[name][2])
        assert unit == ("g" if i < 3 else "deg/s")
        assert sent[:, i].min() - 1e-3 <= lo < hi <= sent[:, i].max() + 1e-3  # physical values, as sent


def test_probe_of_a_silent_device_is_one_line_and_fails(capfd):
    port = PtyPort()
    try:
        rc = main(["devices", "--probe", f"serial://{port.path}?profile=witmotion-wt901c", "--seconds", "1"])
    finally:
        port.close()
    out, err = capfd.readouterr()
    assert rc == 1 and out == ""
    assert err.strip().count("\n") == 0 and "no samples in 1 s: connected, but nothing arrived" in err


# ---------------------------------------------------------------------------- bad profiles


SHIPPED = (SHIPPED_DIR / "witmotion-wt901ble.toml").read_text()


@pytest.mark.parametrize("edit, expect", [
    (("rate_hz = 10.0", "rate = 10.0"), "device.rate: unknown key (did you mean 'rate_hz'?)"),
    (('format = "<2x9h"', 'format = "<2x9k"'), "packet[0].format: expected a Python struct format"),
    (("scale = 0.00048828125  # 16 g / 32768", 'scale = "16/32768"'),
     "channel[0].scale: expected a finite number > 0, got '16/32768'"),
    (('fields = ["ax",', 'fields = ['), "packet[0].fields: expected 9 names, one per value of format '<2x9h'"),
])
def test_a_bad_profile_file_is_one_line_naming_file_key_and_expectation(tmp_path, capfd, edit, expect):
    path = tmp_path / "mine.toml"
    assert edit[0] in SHIPPED
    path.write_text(SHIPPED.replace(edit[0], edit[1], 1))
    rc = main(["devices", "--probe", f"ble://name=X?profile={path}", "--seconds", "1"])
    out, err = capfd.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and f"{path}: {expect}" in err, err


def test_an_unknown_profile_name_gets_a_did_you_mean(capfd):
    rc = main(["devices", "--probe", "serial:///dev/ttyUSB7?profile=witmotion-wt901bl", "--seconds", "1"])
    err = capfd.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "unknown profile 'witmotion-wt901bl'; did you mean 'witmotion-wt901ble'?" in err
