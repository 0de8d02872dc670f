"""Wire protocol v1: CRC, COBS, round trips, the spec's own test vectors, and a stream decoder
that survives any bytes, resyncs after corruption and counts exactly what was lost."""

from __future__ import annotations

import binascii
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgehar.errors import EdgeharError
from edgehar.firmware_bridge.protocol import (
    COMMAND_CHAR_UUID,
    DATA_CHAR_UUID,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    SEND_DESCRIPTOR_FRAME,
    SERVICE_UUID,
    ChannelInfo,
    DecoderStats,
    DeviceDescriptor,
    DeviceStatus,
    FrameDecoder,
    HostCommand,
    MessageType,
    ProtocolError,
    SampleBlock,
    UnknownVersionError,
    cobs_decode,
    cobs_encode,
    cobs_max_len,
    crc16,
    decode_message,
    descriptor_from_channels,
    encode_frame,
    encode_message,
    samples_per_block,
)
from edgehar.simulator.datasheet import GLOVE_SPECS, IMU_SPECS, STREAM_SPECS

DOC = Path(__file__).resolve().parents[1] / "docs" / "wire-protocol.md"


def sim_descriptor(name: str) -> DeviceDescriptor:
    specs = STREAM_SPECS[name]
    return descriptor_from_channels(name, "1.0.0", 100.0, [c.name for c in specs], [c.unit for c in specs],
                                    [(c.lo, c.hi) for c in specs], device_id=f"{name.upper()}-0001")


GLOVE = sim_descriptor("glove")


def block(seq: int, n: int = 8, c: int = 12, t: int = 0, seed: int = 0) -> SampleBlock:
    raw = np.random.default_rng(seed).integers(-32768, 32768, (n, c)).astype(np.int16)
    return SampleBlock(seq % 65536, t % 2**32, raw)


def frame_with_version(version: int, payload_after_version: bytes) -> bytes:
    p = bytes([version]) + payload_after_version
    return cobs_encode(p + crc16(p).to_bytes(2, "big")) + b"\x00"


def frame_of_payload(p: bytes) -> bytes:
    return cobs_encode(p + crc16(p).to_bytes(2, "big")) + b"\x00"


def ref_cobs_decode(seg: bytes) -> bytes | None:
    """An independent COBS decoder (spec-text style) for the test oracle."""
    out, i = [], 0
    while i < len(seg):
        code = seg[i]
        if code == 0 or i + code > len(seg):
            return None
        out.extend(seg[i + 1:i + code])
        i += code
        if code < 0xFF and i < len(seg):
            out.append(0)
    return bytes(out)


def decode_all(stream: bytes, chunks: list[int] | None = None, **kw) -> tuple[list, DecoderStats]:
    dec = FrameDecoder(**kw)
    out, i, k = [], 0, 0
    sizes = chunks or [len(stream) or 1]
    while i < len(stream):
        n = max(1, sizes[k % len(sizes)])
        out += dec.feed(stream[i:i + n])
        i, k = i + n, k + 1
    return out, dec.stats


# --------------------------------------------------------------------------- CRC and COBS


def test_crc_is_ccitt_false_with_check_value():
    assert crc16(b"123456789") == 0x29B1
    p = b"\x01\x03\x57\x01"
    assert binascii.crc_hqx(p + crc16(p).to_bytes(2, "big"), 0xFFFF) == 0  # the residue the decoder relies on


@given(st.binary(max_size=1200))
def test_cobs_round_trip_has_no_zero_and_bounded_overhead(data):
    enc = cobs_encode(data)
    assert b"\x00" not in enc and len(enc) <= cobs_max_len(len(data))
    assert cobs_decode(enc) == data


@pytest.mark.parametrize("data,enc", [
    (b"", b"\x01"), (b"\x00", b"\x01\x01"), (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),  # the 254-byte run (Wikipedia example 8 variant)
])
def test_cobs_known_encodings(data, enc):
    assert cobs_encode(data) == enc and cobs_decode(enc) == data


@pytest.mark.parametrize("bad", [b"\x05\x11", b"\x02\x00", b"\x00"])
def test_cobs_decode_rejects_invalid(bad):
    assert cobs_decode(bad) is None


# --------------------------------------------------------------------------- messages

names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # <= 32 UTF-8 bytes
f32_pos = st.floats(min_value=2.0**-100, max_value=2.0**100, width=32)


@st.composite
def descriptors(draw, max_channels=4):  # keeps every descriptor under MAX_FRAME_BYTES
    n = draw(st.integers(1, max_channels))
    chan_names = draw(st.lists(names, min_size=n, max_size=n, unique=True))
    chans = tuple(ChannelInfo(nm, draw(names), draw(f32_pos)) for nm in chan_names)
    return DeviceDescriptor(draw(names), draw(names), draw(f32_pos), chans, draw(names))


@st.composite
def blocks(draw, max_n=12, max_c=12):
    n, c = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    raw = np.array(draw(st.lists(st.integers(-32768, 32767), min_size=n * c, max_size=n * c)), np.int16).reshape(n, c)
    return SampleBlock(draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)), raw)


statuses = st.builds(DeviceStatus, st.one_of(st.none(), st.integers(0, 100)), st.integers(0, 255))
commands = st.sampled_from([HostCommand(MessageType.SEND_DESCRIPTOR), HostCommand(MessageType.SEND_STATUS)])
messages = st.one_of(descriptors(), blocks(), statuses, commands)


@given(messages)
def test_message_round_trip(msg):
    payload = encode_message(msg)
    assert payload[0] == PROTOCOL_VERSION
    assert decode_message(payload) == msg
    out, stats = decode_all(encode_frame(msg))
    assert out == [msg] and stats.frames == 1 and stats.crc_errors == 0


def test_decoded_block_is_int16_and_values_are_physical():
    d = descriptor_from_channels("imu", "1", 100, ["acc_x", "gyro_x"], ["g", "deg/s"], [(-16, 16), (-2000, 2000)])
    b = SampleBlock(1, 2, np.array([[32767, -32767], [0, 16384]], np.int16))
    (got,) = FrameDecoder().feed(encode_frame(b))
    assert got.raw.dtype == np.int16 and got.raw.shape == (2, 2)
    v = got.values(d)
    assert v.dtype == np.float32 and v.shape == (2, 2)
    np.testing.assert_allclose(v, [[16, -2000], [0, 1000]], rtol=1e-4)
    with pytest.raises(ProtocolError):
        got.values(GLOVE)  # 12 channels vs 2


@pytest.mark.parametrize("name", ["glove", "imu"])
def test_descriptor_scales_cover_the_datasheet_ranges(name):
    d = sim_descriptor(name)
    specs = STREAM_SPECS[name]
    assert d.names == tuple(c.name for c in specs) and decode_message(encode_message(d)) == d  # float32-exact
    for spec, ch in zip(specs, d.channels):
        peak = max(abs(spec.lo), abs(spec.hi))
        assert 32766 < peak / ch.scale <= 32767, (spec, ch)  # covers the range, wastes no resolution
        x = np.linspace(spec.lo, spec.hi, 101)
        raw = np.round(x / ch.scale).astype(np.int16)
        np.testing.assert_allclose(raw * np.float32(ch.scale), x, atol=ch.scale)


def test_descriptor_from_channels_rejects_bad_input():
    with pytest.raises(ProtocolError):
        descriptor_from_channels("g", "1", 100, ["a", "b"], ["g"], [(0, 1), (0, 1)])
    with pytest.raises(ProtocolError):
        descriptor_from_channels("g", "1", 100, ["a"], ["g"], [(0, 0)])
    with pytest.raises(ProtocolError):
        descriptor_from_channels("g", "1", 100, ["a", "a"], ["g", "g"], [(0, 1), (0, 1)])
    with pytest.raises(ProtocolError):
        descriptor_from_channels("g", "1", float("nan"), ["a"], ["g"], [(0, 1)])


def test_errors_are_user_facing_and_carry_the_value():
    assert issubclass(ProtocolError, EdgeharError) and issubclass(ProtocolError, ValueError)
    with pytest.raises(ProtocolError) as info:
        SampleBlock(70000, 0, np.zeros((1, 1), np.int16))
    assert info.value.value == 70000
    with pytest.raises(ProtocolError):
        SampleBlock(0, 0, np.zeros((1, 1), np.float32))
    with pytest.raises(ProtocolError):
        encode_message("hello")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        encode_message(DeviceDescriptor("x" * 256, "1", 1.0, (ChannelInfo("a", "", 1.0),)))


def test_frames_over_the_cap_cannot_be_encoded():
    with pytest.raises(ProtocolError) as info:
        encode_frame(block(0, n=30, c=12))  # 720 bytes of samples
    assert info.value.value > MAX_FRAME_BYTES


@pytest.mark.parametrize("c,expected", [(12, 9), (6, 19)])
def test_samples_per_block_fills_but_never_overflows_a_ble_payload(c, expected):
    n = samples_per_block(c)
    assert n == expected and n >= 8
    worst = np.full((n, c), 0x0101, np.int16)  # no zero bytes at all: maximum COBS overhead
    assert len(encode_frame(SampleBlock(0x0101, 0x01010101, worst))) <= 244
    worst_plus = np.full((n + 1, c), 0x0101, np.int16)
    assert len(encode_frame(SampleBlock(0x0101, 0x01010101, worst_plus))) > 244
    assert samples_per_block(c, payload_limit=20 + 2 * c * 2) >= 1


def test_samples_per_block_for_every_sim_device_and_tiny_mtu():
    for specs in (GLOVE_SPECS, IMU_SPECS):
        assert samples_per_block(len(specs)) >= 8
    with pytest.raises(ProtocolError):
        samples_per_block(12, payload_limit=20)  # ATT MTU 23: not one glove sample fits


def test_gatt_uuids_are_distinct_128_bit_uuids():
    uuids = [uuid.UUID(u) for u in (SERVICE_UUID, DATA_CHAR_UUID, COMMAND_CHAR_UUID)]
    assert len(set(uuids)) == 3 and all(len(u.bytes) == 16 for u in uuids)


def test_send_descriptor_frame_is_a_host_command():
    assert FrameDecoder().feed(SEND_DESCRIPTOR_FRAME) == [HostCommand(MessageType.SEND_DESCRIPTOR)]
    with pytest.raises(ProtocolError):
        HostCommand(MessageType.SAMPLES)


# --------------------------------------------------------------------------- test vectors in the doc


def _doc_vectors() -> list[tuple[str, bytes, dict]]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"^### (Vector [^\n]*)\n.*?```hex\n(.*?)```\s*```json\n(.*?)```", text, re.S | re.M)
    return [(title, bytes.fromhex(hx), json.loads(js)) for title, hx, js in found]


def _message_from_json(j: dict):
    kind = j["type"]
    if kind == "descriptor":
        chans = tuple(ChannelInfo(n, u, s) for n, u, s in j["channels"])
        return DeviceDescriptor(j["kind"], j["firmware"], j["rate_hz"], chans, j["device_id"])
    if kind == "samples":
        return SampleBlock(j["seq"], j["t_device_us"], np.array(j["raw"], np.int16).reshape(len(j["raw"]), -1))
    if kind == "status":
        return DeviceStatus(j["battery_pct"], j["flags"])
    return HostCommand(MessageType[kind.upper()])


VECTORS = _doc_vectors()


def test_doc_has_all_the_vectors():
    titles = " ".join(t for t, _, _ in VECTORS).lower()
    assert len(VECTORS) >= 8, f"parsed only {len(VECTORS)} vectors from {DOC}"
    for word in ("descriptor", "sample block", "status", "corrupted", "unknown version", "gap"):
        assert word in titles


@pytest.mark.parametrize("title,data,expect", VECTORS, ids=[t for t, _, _ in VECTORS])
def test_doc_vector(title, data, expect):
    vector1 = _message_from_json(VECTORS[0][2]["messages"][0])
    assert isinstance(vector1, DeviceDescriptor)
    want = [_message_from_json(m) for m in expect["messages"]]
    out, stats = decode_all(data)
    assert out == want
    for j, msg in zip(expect["messages"], out):
        if "values" in j:
            np.testing.assert_allclose(msg.values(vector1), j["values"], atol=1e-6)
    expected_stats = {k: 0 for k in vars(DecoderStats()) if k != "bytes"} | expect["stats"]
    assert {k: v for k, v in vars(stats).items() if k != "bytes"} == expected_stats
    if "payload" in expect:  # the encoder writes exactly these bytes
        (msg,) = want
        assert encode_message(msg).hex() == expect["payload"]
        assert encode_frame(msg) == data
    # the same bytes byte by byte
    assert decode_all(data, [1]) == (out, stats)


def test_unknown_version_raises_with_the_number_and_the_stream_skips_it():
    status_v2 = bytes([2]) + encode_message(DeviceStatus(50))[1:]
    with pytest.raises(UnknownVersionError) as info:
        decode_message(status_v2)
    assert info.value.value == 2 and "2" in str(info.value) and isinstance(info.value, ProtocolError)
    out, stats = decode_all(frame_with_version(2, status_v2[1:]) + encode_frame(DeviceStatus(51)))
    assert out == [DeviceStatus(51)] and stats.unknown_version == 1 and stats.resyncs == 0 and stats.frames == 1


@pytest.mark.parametrize("payload", [
    b"\x01",  # header cut
    b"\x01\x02" + bytes(8),  # block header with n = C = 0
    encode_message(block(0, n=3, c=2))[:-4],  # block says 3x2, carries less
    encode_message(block(0, n=3, c=2)) + b"\x00",  # and more
    encode_message(GLOVE) + b"\x07",  # bytes after the last channel
    encode_message(GLOVE)[:-3],  # last scale cut
    encode_message(GLOVE)[:3] + b"\xff" + encode_message(GLOVE)[4:],  # kind is not UTF-8 (length unchanged)
    b"\x01\x03\x65\x00",  # battery 101 %
    b"\x01\x03\x10",  # status body cut
    b"\x01\x10\x00",  # command with a body
])
def test_malformed_bodies_raise_and_are_counted(payload):
    with pytest.raises(ProtocolError):
        decode_message(payload)
    out, stats = decode_all(frame_of_payload(payload) + encode_frame(DeviceStatus(1)))
    assert out == [DeviceStatus(1)]
    assert stats.malformed + stats.crc_errors == 1  # a 1-byte payload is below the 4-byte CRC minimum
    assert stats.resyncs == stats.crc_errors


def test_unknown_type_is_counted_not_malformed():
    out, stats = decode_all(frame_of_payload(b"\x01\x7f\x00") + encode_frame(DeviceStatus(1)))
    assert out == [DeviceStatus(1)] and stats.unknown_type == 1 and stats.malformed == 0


def test_block_contradicting_the_descriptor_is_dropped():
    stream = encode_frame(GLOVE) + encode_frame(block(0, c=6)) + encode_frame(block(1, c=12))
    out, stats = decode_all(stream)
    assert out == [GLOVE, block(1, c=12)] and stats.malformed == 1


# --------------------------------------------------------------------------- sequence numbers


@pytest.mark.parametrize("seqs,gaps,lost,restarts", [
    ([65534, 65535, 0, 1], 0, 0, 0),  # wrap is not a gap
    ([65535, 2], 1, 2, 0),  # lost 0 and 1 across the wrap
    ([10, 11, 15, 16, 20], 2, 6, 0),
    ([10, 11, 11], 0, 0, 1),  # repeat: device restarted
    ([500, 3, 4], 0, 0, 1),  # backwards
])
def test_sequence_gaps(seqs, gaps, lost, restarts):
    out, stats = decode_all(b"".join(encode_frame(block(s, n=1)) for s in seqs))
    assert [m.seq for m in out] == seqs
    assert (stats.gaps, stats.lost_blocks, stats.seq_restarts) == (gaps, lost, restarts)


def test_descriptor_resets_sequence_tracking():
    stream = b"".join(encode_frame(m) for m in [block(5), GLOVE, block(100), block(101), block(103)])
    _, stats = decode_all(stream)
    assert (stats.gaps, stats.lost_blocks, stats.seq_restarts) == (1, 1, 0)


# --------------------------------------------------------------------------- stream robustness


def test_oversize_run_is_discarded_then_the_decoder_resyncs():
    big = encode_frame(GLOVE)  # 277 bytes: over a 128-byte cap
    stream = encode_frame(DeviceStatus(1)) + big + encode_frame(DeviceStatus(2)) + b"\x01" * 5000 + b"\x00" \
        + encode_frame(DeviceStatus(3))
    for chunks in ([len(stream)], [1], [7, 64, 3]):
        out, stats = decode_all(stream, chunks, max_frame=128)
        assert out == [DeviceStatus(1), DeviceStatus(2), DeviceStatus(3)]
        assert (stats.oversize, stats.resyncs, stats.crc_errors) == (2, 2, 0)
    out, stats = decode_all(stream)  # default cap: the descriptor fits
    assert out[1] == GLOVE and stats.oversize == 1


def test_leading_garbage_counts_one_resync():
    garbage = bytes(range(1, 200)) + b"\x00\x05\x00"
    out, stats = decode_all(garbage + encode_frame(GLOVE) + encode_frame(block(0)))
    assert out == [GLOVE, block(0)] and stats.resyncs == 1 and stats.crc_errors == 2


def _reference_stream() -> tuple[bytes, list]:
    msgs = [GLOVE] + [block(i, n=1 + i % 9, seed=i) for i in range(40)] + [DeviceStatus(i) for i in range(3)]
    stream = b"\x00" + b"".join(encode_frame(m) for m in msgs)
    stream += b"junk\x00" + b"\x02" * 700 + b"\x00" + encode_frame(block(45))
    return stream, msgs + [block(45)]


@given(st.lists(st.integers(1, 600), min_size=1, max_size=50))
@settings(max_examples=60, deadline=None)
def test_any_chunking_gives_the_same_messages_and_stats(chunks):
    stream, msgs = _reference_stream()
    whole = decode_all(stream)
    assert whole[0] == msgs and whole[1].oversize == 1 and whole[1].crc_errors == 1 and whole[1].resyncs == 1
    assert decode_all(stream, chunks) == whole
    assert decode_all(stream, [1]) == whole


@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), min_size=1, max_size=10))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_raise(data, chunks):
    out, stats = decode_all(data, chunks)
    assert stats.bytes == len(data) and stats.frames == len(out)
    assert all(isinstance(m, (DeviceDescriptor, SampleBlock, DeviceStatus, HostCommand)) for m in out)


@given(st.lists(st.one_of(st.binary(max_size=40), messages.map(encode_frame)), max_size=30),
       st.lists(st.integers(1, 300), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_frames_mixed_with_garbage_never_raise_and_chunking_does_not_matter(pieces, chunks):
    stream = b"".join(pieces)
    assert decode_all(stream, chunks) == decode_all(stream)


def test_long_inputs_stay_linear():
    """A megabyte without delimiters, of delimiters, and of 1-byte frames finishes (no quadratic buffer)."""
    for data in (b"\x01" * 2**20, b"\x00" * 2**20, b"\x02\x01\x00" * 2**18, bytes(range(1, 256)) * 4096):
        dec = FrameDecoder()
        for i in range(0, len(data), 4096):
            dec.feed(data[i:i + 4096])
        assert dec.stats.bytes == len(data) and dec.stats.frames == 0


# --------------------------------------------------------------------------- mutation fuzzing with an exact oracle

MUTATIONS = ("flip", "delete", "insert", "truncate")


@st.composite
def mutated_streams(draw):
    n_blocks = draw(st.integers(2, 25))
    seq0 = draw(st.integers(0, 65535))
    msgs: list = [GLOVE]
    for i in range(n_blocks):
        msgs.append(block(seq0 + i, n=draw(st.integers(1, 9)), seed=i))
        if draw(st.integers(0, 5)) == 0:
            msgs.append(DeviceStatus(len(msgs) % 101, flags=1))
    frames = [encode_frame(m) for m in msgs]
    pieces, fate = [], []
    for f in frames:
        what = draw(st.sampled_from(["keep"] * 6 + ["drop", "mutate", "mutate"]))
        if what == "mutate":
            b = bytearray(f)
            for _ in range(draw(st.integers(1, 3))):
                op = draw(st.sampled_from(MUTATIONS))
                if op == "flip" and b:
                    b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
                elif op == "delete" and b:
                    del b[draw(st.integers(0, len(b) - 1))]
                elif op == "insert":
                    b.insert(draw(st.integers(0, len(b))), draw(st.integers(0, 255)))
                elif op == "truncate" and b:
                    del b[draw(st.integers(0, len(b) - 1)):]
            f = bytes(b)
        pieces.append(b"" if what == "drop" else f)
        fate.append(what)
    garbage = draw(st.one_of(st.just(b""), st.binary(min_size=1, max_size=30)))
    chunks = draw(st.lists(st.integers(1, 400), min_size=1, max_size=6))
    return msgs, frames, pieces, fate, garbage, chunks


def oracle(stream: bytes, frames: list[bytes], msgs: list) -> tuple[list, dict]:
    """What a correct decoder must do, derived independently: split on 0x00; a segment is good
    iff it is exactly some original frame's bytes."""
    original = {f[:-1]: m for f, m in zip(frames, msgs)}
    segments = stream.split(b"\x00")
    pending = segments.pop()
    good, bad, resyncs, broken = [], 0, 0, False
    for seg in segments:
        if not seg:
            continue
        if seg in original:
            resyncs += broken
            broken = False
            good.append(original[seg])
            continue
        if len(seg) <= MAX_FRAME_BYTES:
            p = ref_cobs_decode(seg)
            # a corruption CRC-16 cannot see (p ~ 2**-16): outside the protocol's promise
            assume(p is None or len(p) < 4 or binascii.crc_hqx(p, 0xFFFF) != 0)
        bad += 1
        broken = True
    bad += len(pending) > MAX_FRAME_BYTES
    gaps = lost = 0
    last = None
    for m in good:
        if isinstance(m, DeviceDescriptor):
            last = None
        elif isinstance(m, SampleBlock):
            if last is not None and (k := (m.seq - last) % 65536) > 1:
                gaps, lost = gaps + 1, lost + k - 1
            last = m.seq
    return good, {"frames": len(good), "rejected": bad, "resyncs": resyncs, "gaps": gaps, "lost_blocks": lost}


@given(mutated_streams())
@settings(max_examples=300, deadline=None)
def test_corrupted_frames_are_rejected_and_the_rest_decode_with_exact_counts(case):
    msgs, frames, pieces, fate, garbage, chunks = case
    stream = garbage + b"".join(pieces)
    want, counts = oracle(stream, frames, msgs)
    out, stats = decode_all(stream, chunks)

    assert out == want  # no wrong message, nothing good lost, order kept
    assert stats.frames == counts["frames"] and stats.resyncs == counts["resyncs"]
    assert stats.crc_errors + stats.oversize == counts["rejected"]
    assert (stats.gaps, stats.lost_blocks) == (counts["gaps"], counts["lost_blocks"])
    assert stats.malformed == stats.unknown_version == stats.unknown_type == stats.seq_restarts == 0
    # resync: an untouched frame whose start is delimited decodes, however bad its neighbours
    for j, m in enumerate(msgs):
        if fate[j] != "keep":
            continue
        before = garbage if j == 0 else (garbage + b"".join(pieces[:j]))
        if not before or before.endswith(b"\x00"):
            assert any(x is m or x == m for x in out), (j, fate)
    # dropped frames: blocks missing between the first and last decoded block are all counted
    seqs = [m.seq for m in out if isinstance(m, SampleBlock)]
    if seqs and not any(isinstance(m, DeviceDescriptor) for m in out[1:]):
        span = (seqs[-1] - seqs[0]) % 65536 + 1
        assert stats.lost_blocks == span - len(seqs)


def test_mutation_oracle_can_fail():
    """The oracle is not vacuous: a decoder that trusted frames without CRC would be caught."""
    f = bytearray(encode_frame(block(7, n=2)))
    f[12] ^= 0x01
    p = ref_cobs_decode(bytes(f[:-1]))
    assert p is not None and binascii.crc_hqx(p, 0xFFFF) != 0
    wrong = decode_message(p[:-2])  # the body itself still parses: only the CRC rejects it
    assert isinstance(wrong, SampleBlock) and wrong != block(7, n=2)
    out, stats = decode_all(bytes(f) + encode_frame(block(8, n=2)))
    assert out == [block(8, n=2)] and stats.crc_errors == 1 and stats.resyncs == 1


def _descriptor_of_frame_size(body_bytes: int) -> DeviceDescriptor:
    """A descriptor whose encoded frame body (COBS, before the 0x00) is exactly body_bytes long:
    each character of the name adds one byte, so some name length hits it."""
    for length in range(1, 256):
        d = DeviceDescriptor("g" * length, "1.0.0", 100.0,
                             tuple(ChannelInfo(f"ch{i:02d}" * 3, "unit", 1.0) for i in range(12)))
        p = encode_message(d)
        if len(cobs_encode(p + crc16(p).to_bytes(2, "big"))) == body_bytes:
            return d
    raise AssertionError(f"no descriptor encodes to {body_bytes} bytes")


@pytest.mark.parametrize("chunks", [None, [1], [7], [300]])
def test_a_frame_of_exactly_the_cap_is_encoded_and_decoded(chunks):
    """Guards the boundary: a frame body of exactly MAX_FRAME_BYTES is legal on both sides
    (a `>` turned `>=` in encode_frame or FrameDecoder would refuse it), one byte more is not."""
    at_cap = _descriptor_of_frame_size(MAX_FRAME_BYTES)
    frame = encode_frame(at_cap)
    assert len(frame) == MAX_FRAME_BYTES + 1  # + the 0x00 delimiter
    msgs, stats = decode_all(frame + encode_frame(block(1)), chunks)
    assert msgs[0] == at_cap and len(msgs) == 2 and stats.oversize == 0

    over = _descriptor_of_frame_size(MAX_FRAME_BYTES + 1)
    with pytest.raises(ProtocolError):
        encode_frame(over)
    msgs, stats = decode_all(frame_of_payload(encode_message(over)) + encode_frame(block(1)), chunks)
    assert len(msgs) == 1 and isinstance(msgs[0], SampleBlock) and stats.oversize == 1
