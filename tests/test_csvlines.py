"""Plain-text sample lines (DIY gloves, Edge Impulse data forwarder): parsing, auto-detected
timestamps, garbage lines counted and skipped, any chunking the same."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgehar.firmware_bridge.csvlines import MAX_LINE_BYTES, CsvLineDecoder, CsvStats
from edgehar.firmware_bridge.protocol import ProtocolError
from edgehar.simulator.datasheet import IMU_CHANNELS

CH3 = ("ax", "ay", "az")


def feed_all(dec: CsvLineDecoder, data: bytes, chunks: list[int] | None = None) -> list:
    out, i, k = [], 0, 0
    sizes = chunks or [max(1, len(data))]
    while i < len(data):
        n = max(1, sizes[k % len(sizes)])
        out += dec.feed(data[i:i + n])
        i, k = i + n, k + 1
    return out


def rows(samples) -> list[list[float]]:
    return [s.values.tolist() for s in samples]


def test_values_only_comma_tab_semicolon_and_spaces():
    dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
    out = feed_all(dec, b"1,2,3\n4\t5\t6\r\n7; 8 ;9\n 10 11   12 \n0.5, -1e-3, +.25,\n")
    assert rows(out) == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [0.5, np.float32(-1e-3), 0.25]]
    assert all(s.t_device_us is None and s.values.dtype == np.float32 and s.values.shape == (3,) for s in out)
    assert dec.timestamp_column is False and dec.stats.lines == 5 and dec.stats.malformed == 0


def test_leading_millisecond_timestamp_is_autodetected_and_wrapped_like_t_device_us():
    dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
    out = feed_all(dec, b"1000,1,2,3\n1010.5,4,5,6\n4294967,7,8,9\n4294968,7,8,9\n")
    assert dec.timestamp_column is True
    assert [s.t_device_us for s in out] == [1_000_000, 1_010_500, 4_294_967_000, (4_294_968_000) % 2**32]
    assert rows(out)[1] == [4, 5, 6]


def test_autodetect_locks_on_the_first_line():
    dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
    out = feed_all(dec, b"1,2,3\n5,1,2,3\n4,5,6\n")
    assert rows(out) == [[1, 2, 3], [4, 5, 6]] and dec.stats.malformed == 1


@pytest.mark.parametrize("ts,line,ok", [(True, b"7,1,2,3", True), (True, b"1,2,3", False),
                                        (False, b"1,2,3", True), (False, b"7,1,2,3", False)])
def test_explicit_timestamp_column(ts, line, ok):
    dec = CsvLineDecoder(CH3, 50.0, timestamp_column=ts, skip_first_line=False)
    out = dec.feed(line + b"\n")
    assert len(out) == ok and dec.stats.malformed == (not ok)
    if ok and ts:
        assert out[0].t_device_us == 7000


@pytest.mark.parametrize("line", [
    b"ax,ay,az",  # a header
    b"1,2",  # too few
    b"1,2,3,4,5",  # too many
    b"1,,3",  # empty field
    b"1,two,3",
    b"nan,1,2", b"inf,1,2", b"1e999,1,2",  # not finite
    b"0x10,1,2", b"1_000,1,2",  # Python-isms that float() would accept
    b"1,2,\xff3",  # not ASCII
    b"-5,1,2,3",  # negative timestamp (auto-detect: 4 columns)
])
def test_malformed_lines_are_counted_and_skipped(line):
    dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
    out = dec.feed(line + b"\n1,2,3\n")
    assert rows(out) == [[1, 2, 3]] and dec.stats.malformed == 1 and dec.stats.lines == 1


def test_blank_lines_are_neither_samples_nor_errors():
    dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
    assert rows(dec.feed(b"\n\r\n  \n1,2,3\n")) == [[1, 2, 3]]
    assert dec.stats == CsvStats(lines=1, bytes=12)


def test_first_line_is_skipped_because_a_port_opens_mid_line():
    dec = CsvLineDecoder(CH3, 100.0)
    out = dec.feed(b"234,0.5,0.25,1\n1240,1,2,3\n")  # "1234,..." cut to "234,...": looks valid
    assert [s.t_device_us for s in out] == [1_240_000] and dec.stats.skipped_first == 1
    dec = CsvLineDecoder(CH3, 100.0)
    assert rows(dec.feed(b"\n1,2,3\n")) == [[1, 2, 3]]  # firmware that starts with "\n" loses nothing


def test_oversize_lines_are_discarded_up_to_the_next_newline():
    long = b"1," * 600 + b"1"
    for chunks in ([10_000], [1], [100, 7]):
        dec = CsvLineDecoder(CH3, 100.0, skip_first_line=False)
        out = feed_all(dec, long + b"\n1,2,3\n" + long + long + b"\n4,5,6\n", chunks)
        assert rows(out) == [[1, 2, 3], [4, 5, 6]] and dec.stats.oversize == 2 and dec.stats.malformed == 0
    assert len(long) > MAX_LINE_BYTES


def test_constructor_rejects_nonsense():
    with pytest.raises(ProtocolError):
        CsvLineDecoder((), 100.0)
    with pytest.raises(ProtocolError):
        CsvLineDecoder(CH3, 0.0)


def test_descriptor_names_the_channels():
    d = CsvLineDecoder(IMU_CHANNELS, 100.0).descriptor
    assert d.names == IMU_CHANNELS and d.rate_hz == 100.0 and all(c.scale == 1.0 for c in d.channels)


@st.composite
def text_streams(draw):
    n = draw(st.integers(0, 30))
    lines = []
    for i in range(n):
        kind = draw(st.sampled_from(["good"] * 4 + ["junk", "blank"]))
        if kind == "good":
            vals = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=6, max_size=6))
            sep = draw(st.sampled_from([",", "\t", ", ", " "]))
            lines.append(f"{i * 10}{sep}" + sep.join(repr(float(v)) for v in vals))
        elif kind == "junk":
            lines.append(draw(st.text(max_size=40)).replace("\n", ""))
        else:
            lines.append("")
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return ("\n" + eol.join(lines) + eol).encode("utf-8", "replace")


@given(text_streams(), st.lists(st.integers(1, 64), min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_any_chunking_gives_the_same_samples(data, chunks):
    a, b = CsvLineDecoder(IMU_CHANNELS, 100.0, True), CsvLineDecoder(IMU_CHANNELS, 100.0, True)
    whole, pieces = feed_all(a, data), feed_all(b, data, chunks)
    assert [(s.t_device_us, s.values.tolist()) for s in whole] == [(s.t_device_us, s.values.tolist()) for s in pieces]
    assert a.stats == b.stats


@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_raise(data, chunks):
    dec = CsvLineDecoder(CH3, 100.0, timestamp_column=None)
    out = feed_all(dec, data, chunks)
    assert dec.stats.bytes == len(data) and dec.stats.lines == len(out)
    assert all(s.values.shape == (3,) and np.isfinite(s.values).all() for s in out)
