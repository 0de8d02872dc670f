"""The reference glove firmware (firmware_bridge/firmware/edgehar_glove, the sketch's portable
part) built for this PC as glove_sim: it boots, streams a deterministic 12-channel glove at
100 Hz, sends STATUS, and answers the host's commands through garbage. Every sample it
generated (its --dump) reaches the host exactly: through a pseudo-terminal read here, and
through `edgehar record --glove serial://PTY` into a session."""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from c_build import FIRMWARE, GLOVE, WIRE, build, env
from edgehar.firmware_bridge.protocol import (
    SEND_DESCRIPTOR_FRAME,
    SEND_STATUS_FRAME,
    DeviceDescriptor,
    DeviceStatus,
    FrameDecoder,
    SampleBlock,
)
from edgehar.simulator.datasheet import GLOVE_SPECS

EDGEHAR = Path(sys.executable).with_name("edgehar")


@pytest.fixture(scope="module")
def glove_sim(tmp_path_factory):
    return build(tmp_path_factory.mktemp("glove") / "glove_sim", FIRMWARE / "host" / "glove_sim.c",
                 GLOVE / "glove_core.c", WIRE / "edgehar_wire.c", includes=(WIRE, GLOVE))


def read_dump(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seq of each sample's block, t_device_us, raw (n, 12)) of every sample glove_sim generated."""
    rows = np.array(list(csv.reader(path.open())), dtype=np.int64)
    assert np.array_equal(rows[:, 0], np.arange(len(rows)))  # k = 0, 1, 2, ...
    return rows[:, 1], rows[:, 2], rows[:, 3:].astype(np.int16)


def check_descriptor(d: DeviceDescriptor) -> None:
    """The glove's own descriptor: the simulated glove's channel names and units (so models
    trained on it take this glove), the MPU-6050's scales."""
    assert (d.kind, d.firmware, d.device_id, d.rate_hz) == ("glove", "1.0.0", "GLOVESIM-0001", 100.0)
    assert [(ch.name, ch.unit) for ch in d.channels] == [(s.name, s.unit) for s in GLOVE_SPECS]
    full = np.float32(1) / np.float32(32767)
    want = [full] * 5 + [np.float32(1) / np.float32(2048)] * 3 + [np.float32(1) / np.float32(16.4)] * 3 + [full]
    assert [ch.scale for ch in d.channels] == [float(x) for x in want]


def test_glove_sim_streams_every_sample_and_answers_commands_through_garbage(glove_sim, tmp_path):
    """glove_sim on a tty we hold the other side of: boot 0x00 and descriptor, blocks of 5
    (seq and the µs counter wrap 1 s in), a STATUS every second; garbage, a cut frame and a
    command split over two writes are sent its way, and exactly the two commands are answered."""
    master, slave = os.openpty()
    proc = subprocess.Popen([str(glove_sim), "--tty", os.ttyname(slave), "--seconds", "3", "--status-every", "1",
                             "--block", "5", "--seq0", str(65536 - 20), "--t0-us", str(2**32 - 1_000_000),
                             "--dump", str(tmp_path / "dump.csv")],
                            stderr=subprocess.PIPE, text=True, env=env())
    decoder, messages, wrote_at = FrameDecoder(), [], None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                messages += [(m, wrote_at is not None) for m in decoder.feed(os.read(master, 4096))]
            elif proc.poll() is not None:
                break  # exited and everything it wrote is read
            if wrote_at is None and len(messages) > 20:
                for part in (b"\x37" * 30 + b"\x00", SEND_STATUS_FRAME[:3] + b"\x00", SEND_DESCRIPTOR_FRAME[:3]):
                    os.write(master, part)
                    time.sleep(0.05)
                os.write(master, SEND_DESCRIPTOR_FRAME[3:] + SEND_STATUS_FRAME)
                wrote_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate(timeout=10)[1]
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, stderr
    assert stderr.count("host sent SEND_DESCRIPTOR") == 1 and stderr.count("host sent SEND_STATUS") == 1, stderr
    st = decoder.stats
    assert (st.crc_errors, st.oversize, st.malformed, st.gaps, st.seq_restarts) == (0, 0, 0, 0, 0)

    descriptors = [after for m, after in messages if isinstance(m, DeviceDescriptor)]
    assert descriptors == [False, True]  # at boot, and the answer
    check_descriptor(decoder.descriptor)
    statuses = [(m, after) for m, after in messages if isinstance(m, DeviceStatus)]
    assert len(statuses) == 4 and sum(after for _, after in statuses) >= 2  # 0 s, 1 s, 2 s, and the answer
    assert all(m.battery_pct == 100 and m.flags == 0 for m, _ in statuses)

    seq, t_us, raw = read_dump(tmp_path / "dump.csv")
    blocks = [m for m, _ in messages if isinstance(m, SampleBlock)]
    assert len(raw) == 300 and [b.raw.shape for b in blocks] == [(5, 12)] * 60
    assert np.array_equal(np.concatenate([b.raw for b in blocks]), raw)  # every sample, in order, exact
    assert [b.seq for b in blocks] == list(seq[::5]) == [(65516 + i) % 65536 for i in range(60)]
    assert [b.t_device_us for b in blocks] == list(t_us[::5])
    assert np.array_equal(t_us, (2**32 - 1_000_000 + 10_000 * np.arange(300)) % 2**32)
    assert raw.min() == -32768 and raw.max() == 32767 and (raw == 0).any()  # the generator spans the range


def test_edgehar_record_gets_every_sample_from_the_glove_firmware(glove_sim, tmp_path):
    """glove_sim makes a pty; `edgehar record --glove serial://PTY` opens it later (the boot
    descriptor is long gone), asks for the descriptor, and records: every sample from its
    first to its last is one glove_sim generated, in order, none missing, at the values
    the glove's scales give and its device times."""
    proc = subprocess.Popen([str(glove_sim), "--pty", "--seconds", "60", "--status-every", "1",
                             "--dump", str(tmp_path / "dump.csv")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("PTY /dev/"), line + proc.stderr.read()
        time.sleep(0.3)
        out = tmp_path / "session"
        rec = subprocess.run([str(EDGEHAR), "record", "--out", str(out), "--glove", f"serial://{line.split()[1]}",
                              "--seconds", "4", "--headless", "--subject", "glove-sim"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "DISPLAY": ""})
        assert rec.returncode == 0, rec.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0 and "host sent SEND_DESCRIPTOR" in stderr, stderr

    meta = json.loads((out / "meta.json").read_text())
    glove = meta["streams"]["glove"]
    assert {k: glove["device"][k] for k in ("kind", "firmware", "device_id")} == \
        {"kind": "glove", "firmware": "1.0.0", "device_id": "GLOVESIM-0001"}  # the answered descriptor
    assert glove["channels"] == [s.name for s in GLOVE_SPECS] and glove["units"] == [s.unit for s in GLOVE_SPECS]
    events = (out / "events.csv").read_text()
    assert ",glove,battery_pct,100" in events  # a STATUS reached the host

    rows = np.loadtxt(out / "glove.csv", delimiter=",", skiprows=1, ndmin=2)
    t_device, values = rows[:, 1], rows[:, 2:]
    assert len(rows) >= 350  # ~4 s at 100 Hz
    scales = np.array([1 / 32767] * 5 + [1 / 2048] * 3 + [1 / 16.4] * 3 + [1 / 32767], np.float32)
    raw = np.rint(values / scales).astype(np.int64)
    np.testing.assert_allclose(values, (raw * scales).astype(np.float32), rtol=6e-7, atol=0)  # %.7g of raw * scale
    _, t_us, sent = read_dump(tmp_path / "dump.csv")
    (k0,) = np.flatnonzero((sent == raw[0]).all(axis=1))  # the first recorded sample, found once in the dump
    assert np.array_equal(raw, sent[k0:k0 + len(raw)])  # every sample after it, in order, exact
    np.testing.assert_allclose(np.diff(t_device), 0.01, atol=2e-6)  # device time: 10 ms apart, no gap
    assert abs(t_device[0] % 4294.967296 - t_us[k0] / 1e6) < 2e-6
