"""The reference firmware's C library (firmware_bridge/firmware/edgehar_wire) writes exactly
the bytes of the Python encoder and the spec's test vectors, and its command decoder finds
exactly the host commands the Python decoder finds in any stream, garbage included.

A sanitized C driver (tests/firmware/wire_driver.c) answers requests line by line; every
frame buffer it hands the library is exactly as large as the test says, so a write past it
stops the driver."""

from __future__ import annotations

import re
import struct
import subprocess

import numpy as np
import pytest

from c_build import ROOT, WIRE, build, compiler, env
from edgehar.firmware_bridge.protocol import (
    COMMAND_CHAR_UUID,
    DATA_CHAR_UUID,
    MAX_FRAME_BYTES,
    SEND_DESCRIPTOR_FRAME,
    SEND_STATUS_FRAME,
    SERVICE_UUID,
    ChannelInfo,
    DeviceDescriptor,
    DeviceStatus,
    FrameDecoder,
    HostCommand,
    ProtocolError,
    SampleBlock,
    cobs_encode,
    crc16,
    descriptor_from_channels,
    encode_frame,
    samples_per_block,
)
from edgehar.simulator.devices.firmware import sim_descriptor
from test_protocol import DOC, VECTORS, _message_from_json

RNG = np.random.default_rng(18)


class Driver:
    """The C library behind a line protocol (see wire_driver.c)."""

    def __init__(self, exe):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env())

    def ask(self, *words) -> str:
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:  # the driver died: a sanitizer report or a crash
            self.proc.wait(10)
            raise AssertionError(f"wire_driver exited {self.proc.returncode}: {self.proc.stderr.read()}")
        return line.strip()

    def frame(self, *words) -> bytes | None:
        """An encoder's frame, None where it returned 0."""
        out = self.ask(*words)
        return None if out == "-" else bytes.fromhex(out)

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(10) == 0, self.proc.stderr.read()


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    exe = build(tmp_path_factory.mktemp("c") / "wire_driver", ROOT / "tests" / "firmware" / "wire_driver.c",
                WIRE / "edgehar_wire.c")
    driver = Driver(exe)
    yield driver
    driver.close()


def hx(b: bytes) -> str:
    return b.hex() or "-"


def s_arg(s: str) -> str:
    return "x" + s.encode().hex()


def f_bits(x: float) -> str:
    return struct.pack("<f", x)[::-1].hex()  # the float32's bits, most significant first


def py_frame(payload: bytes) -> bytes | None:
    body = cobs_encode(payload + crc16(payload).to_bytes(2, "big"))
    return None if len(body) > MAX_FRAME_BYTES else body + b"\x00"


def payloads():
    """Random payloads of every zero density, runs of 252-509 non-zero bytes (the COBS 0xFF
    edge, bare and between zeros), all-zero payloads, and lengths around the frame cap."""
    for n in list(range(0, 12)) + list(RNG.integers(0, 700, 150)):
        zeros = RNG.random()
        data = RNG.integers(1, 256, n).astype(np.uint8)
        data[RNG.random(n) < zeros * 0.5] = 0
        yield data.tobytes()
    for n in range(252, 510):
        run = RNG.integers(1, 256, n).astype(np.uint8).tobytes()
        yield run
        yield b"\x00" + run + b"\x00\x07"
    for n in (1, 2, 253, 254, 255, 508, 600):
        yield bytes(n)
    for n in range(500, 515):
        yield RNG.integers(1, 256, n).astype(np.uint8).tobytes()
        yield bytes(RNG.integers(0, 3, n).astype(np.uint8))


def test_crc_and_cobs_match_python(c):
    assert c.ask("crc", b"123456789".hex()) == "29b1"
    for p in payloads():
        assert int(c.ask("crc", hx(p)), 16) == crc16(p), p.hex()
        assert c.ask("cobs", hx(p)) == (cobs_encode(p).hex() or "-"), p.hex()


def test_frames_match_python_and_never_pass_the_cap(c):
    refused = 0
    for p in payloads():
        want = py_frame(p)
        assert c.frame("payload", 513 + 4 * len(p), hx(p)) == want, p.hex()
        refused += want is None
        if want is not None:  # exactly enough room works; one byte less is refused (and ASan sees no overflow)
            assert c.frame("payload", len(want), hx(p)) == want
            assert c.frame("payload", len(want) - 1, hx(p)) is None
    assert refused > 10  # payloads past the 512-byte frame were tried


def test_sample_blocks_match_python(c):
    edges = np.array([0, 1, -1, 255, 256, -256, 32767, -32768, 0x00FF, 0x7F00], np.int16)
    for _ in range(300):
        n, ch = int(RNG.integers(1, 21)), int(RNG.integers(1, 13))
        raw = RNG.integers(-32768, 32768, (n, ch)).astype(np.int16)
        raw.flat[RNG.random(n * ch) < 0.3] = RNG.choice(edges, int((RNG.random(n * ch) < 0.3).sum()) or 1)[0]
        seq, t = int(RNG.integers(0, 65536)), int(RNG.integers(0, 2**32))
        want = encode_frame(SampleBlock(seq, t, raw))
        assert c.frame("samples", len(want), seq, t, n, ch, raw.astype("<i2").tobytes().hex()) == want
    raw = RNG.integers(-32768, 32768, (240, 1)).astype(np.int16)  # near the frame cap
    assert c.frame("samples", 600, 7, 9, 240, 1, raw.astype("<i2").tobytes().hex()) == encode_frame(SampleBlock(7, 9, raw))
    assert c.frame("samples", 600, 0, 0, 0, 12, "-") is None  # n = 0 is no block
    big = RNG.integers(1, 32767, (21, 12)).astype(np.int16)  # over 512 bytes: refused, as Python refuses
    with pytest.raises(ProtocolError):
        encode_frame(SampleBlock(0, 0, big))
    assert c.frame("samples", 2000, 0, 0, 21, 12, big.astype("<i2").tobytes().hex()) is None


def test_status_matches_python(c):
    for battery in [*range(0, 101), 255]:
        for flags in (0, 1, 2, 4, 7, 0xFF):
            want = encode_frame(DeviceStatus(None if battery == 255 else battery, flags))
            assert c.frame("status", 8, battery, flags) == want
    assert c.frame("status", 8, 101, 0) is None  # neither a percentage nor "unknown"


def descriptor_words(d: DeviceDescriptor, cap: int = 2000) -> list[str]:
    words = ["descriptor", str(cap), s_arg(d.kind), s_arg(d.firmware), s_arg(d.device_id), f_bits(d.rate_hz)]
    for ch in d.channels:
        words += [s_arg(ch.name), s_arg(ch.unit), f_bits(ch.scale)]
    return words


def random_descriptor() -> DeviceDescriptor:
    def text(n):
        return "".join(RNG.choice(list("abcxyz_019 °µ/ñ")) for _ in range(n))
    nch = int(RNG.integers(1, 9))
    names = {text(int(RNG.integers(1, 12))) for _ in range(nch)}
    chans = tuple(ChannelInfo(n, text(int(RNG.integers(0, 6))), float(np.float32(RNG.uniform(1e-6, 10))))
                  for n in names)
    return DeviceDescriptor(text(int(RNG.integers(0, 8))), text(int(RNG.integers(0, 8))),
                            float(np.float32(RNG.uniform(0.5, 2000))), chans, text(int(RNG.integers(0, 20))))


def test_descriptors_match_python_including_the_simulated_devices(c):
    for d in [sim_descriptor("glove", "SIM-GLOVE-0000"), sim_descriptor("imu"),
              *(random_descriptor() for _ in range(100))]:
        want = encode_frame(d)
        assert c.frame(*descriptor_words(d, len(want))) == want, d
        assert c.frame(*descriptor_words(d, len(want) - 1)) is None
    glove = sim_descriptor("glove")
    assert 260 < len(encode_frame(glove)) < 290  # longer than one BLE notification, as the spec says


@pytest.mark.parametrize("change", ["repeated name", "rate 0", "NaN scale", "negative scale", "infinite rate",
                                    "256-byte unit", "no channels"])
def test_descriptors_the_host_would_reject_are_not_encoded(c, change):
    words = descriptor_words(sim_descriptor("imu"))
    if change == "repeated name":
        words[9] = words[6]
    elif change == "rate 0":
        words[5] = f_bits(0.0)
    elif change == "NaN scale":
        words[8] = "7fc00000"
    elif change == "negative scale":
        words[8] = f_bits(-0.5)
    elif change == "infinite rate":
        words[5] = "7f800000"
    elif change == "256-byte unit":
        words[7] = s_arg("u" * 256)
    else:
        words = words[:6]
    assert c.frame(*words) is None


def test_the_spec_test_vectors(c):
    """Each vector with a payload is what the C encoder of its message writes; the host
    commands and the broken frames are what the C decoder finds (or rejects)."""
    for title, data, expect in VECTORS:
        if "payload" in expect:
            (msg,) = [_message_from_json(m) for m in expect["messages"]]
            assert c.frame("payload", len(data), expect["payload"]) == data, title
            if isinstance(msg, DeviceDescriptor):
                assert c.frame(*descriptor_words(msg, len(data))) == data, title
            elif isinstance(msg, SampleBlock):
                n, ch = msg.raw.shape
                assert c.frame("samples", len(data), msg.seq, msg.t_device_us, n, ch,
                               msg.raw.astype("<i2").tobytes().hex()) == data, title
            elif isinstance(msg, DeviceStatus):
                assert c.frame("status", len(data), 255 if msg.battery_pct is None else msg.battery_pct,
                               msg.flags) == data, title
        commands = [m for m in FrameDecoder().feed(data) if isinstance(m, HostCommand)]
        assert c.ask("rx", data.hex()) == rx_answer([int(m.command) for m in commands], data), title


def test_samples_per_block_and_scales_match_python(c):
    for limit in (12, 20, 23, 40, 100, 244, 247, 512, 513, 2000):
        for ch in range(1, 256):
            try:
                want = samples_per_block(ch, limit)
            except ProtocolError:
                want = 0
            assert int(c.ask("spb", ch, limit)) == want, (ch, limit)
    ranges = [(0.0, 1.0), (-16.0, 16.0), (-2000.0, 2000.0), (-1e-30, 3e-31), (0.1, 0.3), (-7.0, -2.0)]
    ranges += [tuple(sorted(RNG.uniform(-1, 1, 2) * 10.0 ** RNG.integers(-20, 25))) for _ in range(300)]
    for lo, hi in ranges:
        (want,) = descriptor_from_channels("x", "1", 1.0, ["a"], ["u"], [(lo, hi)]).scales
        assert c.ask("scale", lo.hex(), hi.hex()) == f_bits(float(want)), (lo, hi)
    for lo, hi in [(1.0, 1.0), (2.0, 1.0), (0.0, 0.0), (float("nan"), 1.0), (0.0, float("inf")), (0.0, 1e300)]:
        assert c.ask("scale", lo.hex(), hi.hex()) == "00000000", (lo, hi)


def test_gatt_uuids_match_the_host():
    header = (WIRE / "edgehar_wire.h").read_text()
    uuids = dict(re.findall(r'#define EDGEHAR_(\w+)_UUID "([0-9a-f-]+)"', header))
    assert uuids == {"SERVICE": SERVICE_UUID, "DATA_CHAR": DATA_CHAR_UUID, "COMMAND_CHAR": COMMAND_CHAR_UUID}


def rx_answer(commands: list[int], stream: bytes) -> str:
    """What the driver prints for `rx`: the commands, then how many frames were commands and how many not."""
    finished = [seg for seg in stream.split(b"\x00")[:-1] if seg]  # the bytes after the last 0x00 are no frame yet
    return " ".join(f"{x:02x}" for x in commands) + (" " if commands else "") + \
        f"| {len(commands)} {len(finished) - len(commands)}"


def test_command_decoder_finds_exactly_what_the_host_decoder_finds(c):
    """Random streams of host commands, other frames, commands with a body or another version,
    corrupted commands, cut frames and garbage with and without zeros: the C decoder returns
    the same commands, in order, as the Python FrameDecoder, and rejects the rest."""
    status_frame = encode_frame(DeviceStatus(50, 1))
    block_frame = encode_frame(SampleBlock(3, 4, np.zeros((2, 3), np.int16)))
    with_body = py_frame(b"\x01\x10\x00")
    version_2 = py_frame(b"\x02\x11")
    unknown = py_frame(b"\x01\x12")
    pieces = [SEND_DESCRIPTOR_FRAME, SEND_STATUS_FRAME, status_frame, block_frame, with_body, version_2, unknown, b"\x00"]
    seen = set()
    for _ in range(400):
        stream = b""
        for _ in range(int(RNG.integers(1, 12))):
            kind = int(RNG.integers(0, 6))
            if kind <= 2:
                stream += pieces[int(RNG.integers(0, len(pieces)))]
            elif kind == 3:  # a cut frame: its tail or its head
                f = pieces[int(RNG.integers(0, 7))]
                cut = int(RNG.integers(1, len(f)))
                stream += f[cut:] if RNG.random() < 0.5 else f[:cut]
            elif kind == 4:  # a command with one byte changed
                f = bytearray(SEND_DESCRIPTOR_FRAME)
                f[int(RNG.integers(0, 5))] ^= int(RNG.integers(1, 256))
                stream += bytes(f)
            else:  # garbage, sometimes longer than any command
                n = int(RNG.integers(1, 80))
                stream += RNG.integers(0 if RNG.random() < 0.5 else 1, 256, n).astype(np.uint8).tobytes()
        commands = [int(m.command) for m in FrameDecoder().feed(stream) if isinstance(m, HostCommand)]
        seen.add(len(commands))
        assert c.ask("rx", stream.hex()) == rx_answer(commands, stream), stream.hex()
    assert {0, 1, 2} <= seen  # streams with none, one and several commands were tried


def test_the_command_decoder_locks_on_after_a_cut_frame_and_a_long_garbage_run(c):
    """A decoder that starts mid-frame locks on at the next 0x00; a run longer than its
    buffer is dropped up to the next 0x00, and the commands after it are found."""
    stream = SEND_STATUS_FRAME[2:] + b"\x37" * 40 + b"\x00" + SEND_DESCRIPTOR_FRAME + SEND_STATUS_FRAME
    assert c.ask("rx", stream.hex()) == "10 11 | 2 2"  # the cut frame and the garbage run are both rejected


def test_the_library_builds_without_warnings_as_cxx_and_for_a_small_rx_buffer(tmp_path):
    """Arduino compiles sketches as C++ and may include the header from C++; a board may
    shrink EDGEHAR_RX_BUF to the 4 bytes a command needs."""
    main = tmp_path / "main.cpp"
    main.write_text('#include "edgehar_wire.h"\nint main() { edgehar_rx rx; edgehar_rx_init(&rx); '
                    'return edgehar_rx_byte(&rx, 0); }\n')
    obj = tmp_path / "wire.o"
    for cmd in ([compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-DEDGEHAR_RX_BUF=4", "-c",
                 str(WIRE / "edgehar_wire.c"), "-o", str(obj)],
                [compiler(cxx=True), "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{WIRE}", str(main), str(obj),
                 "-o", str(tmp_path / "main")]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_the_example_in_the_spec_compiles_and_writes_the_vectors(tmp_path):
    """docs/wire-protocol.md's C example, built against the library, prints vectors 2 and 3
    and finds the command of vector 4."""
    (example,) = re.findall(r"```c\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (tmp_path / "example.c").write_text(example)
    exe = build(tmp_path / "example", tmp_path / "example.c", WIRE / "edgehar_wire.c")
    out = subprocess.run([str(exe)], capture_output=True, text=True, env=env(), check=True).stdout.split()
    frames = {title.split(":")[0]: data.hex() for title, data, _ in VECTORS}
    assert out == [frames["Vector 2"], frames["Vector 3"], "SEND_DESCRIPTOR"]
