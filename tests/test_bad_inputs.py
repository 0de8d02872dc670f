"""Bad inputs a user can hand edgehar (issue 13): each is one line naming the bad value,
never a traceback, a wall of warnings or a dead process.

- a model file that is not what its bundle says (garbage, empty, truncated) is refused
  before a native loader sees it: ExecuTorch's aborts the whole process on some bytes;
- a corrupt `.pt2` fails quietly (torch logs a traceback as a warning before it raises);
- a manifest with a value of the wrong type names the key, the value and what was expected;
- a `serial://` baud rate pyserial cannot take is refused when the URL is read;
- `edgehar bench` exits non-zero when a bundle is missing or a row failed;
- every verb (demo, live, train, evaluate, export, bench, record) against a table of
  broken bundles, sessions, configs, URLs and output paths: exit 2, one line naming the
  bad value, no traceback, nothing left behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from edgehar.app.backends import EagerBackend, ExecuTorchBackend, LiteRTBackend, load_bundle
from edgehar.contract.bundle import BundleError, read_manifest
from edgehar.contract.manifest import Manifest, ModalitySpec, StreamSpec
from edgehar.firmware_bridge.transport import DeviceURL, TransportError
from edgehar.firmware_bridge.transports.serial import SerialTransport

from export_helpers import tiny_bundle, tiny_export

BACKENDS = {"eager": EagerBackend, "executorch": ExecuTorchBackend, "litert": LiteRTBackend}
# Bytes 4..8 are where a flatbuffer keeps its file identifier; these are not UTF-8, which is
# what made ExecuTorch's loader abort (it logs the identifier it found through Python).
NOT_UTF8_GARBAGE = b"\x00\x01\x02\x03\xff\xfe\xfd\xfc" + bytes(range(256)) * 4
# ASCII garbage for in-process tests: wrong for every format, yet safe for this test process
# even without the fix.
TEXT_GARBAGE = b"not a model, just text " * 40


def _cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`edgehar ARGS` in a fresh interpreter (as tests/test_live.py runs it)."""
    return subprocess.run([sys.executable, "-m", "edgehar.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _one_line_error(result: subprocess.CompletedProcess, expect: str, code: int = 2) -> None:
    """Exit `code`, exactly one line on stderr, naming `expect`, no traceback."""
    assert result.returncode == code, f"exit {result.returncode}: {result.stderr[-3000:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert expect in lines[0] and lines[0].startswith("edgehar "), lines[0]
    assert "Traceback" not in result.stderr


def _manifest(**kw) -> Manifest:
    """A small valid manifest (camera + one sensor), nothing to do with any real model."""
    streams = (StreamSpec("camera", "camera", 30.0), StreamSpec("glove", "sensor", 100.0, ("flex_index", "acc_x")))
    modalities = (ModalitySpec("rgb", "camera", "frames"), ModalitySpec("glove", "glove", "gaf", ("acc_x", "flex_index")))
    return Manifest(streams=streams, modalities=modalities, labels=("a", "b", "c"), **kw)


def _bundle(folder: Path, model_bytes: bytes | None = None, **manifest) -> Path:
    """A bundle folder with a valid manifest and `model_bytes` as its model file."""
    folder.mkdir(parents=True, exist_ok=True)
    m = _manifest(**manifest)
    m.save(folder)
    if model_bytes is not None:
        (folder / m.model_file).write_bytes(model_bytes)
    return folder


def _real_bundle(tmp_path_factory, fmt: str) -> Path:
    """The tiny trained bundle (eager) or its fp32 export, shared with test_backends."""
    if fmt == "eager":
        return tiny_bundle(tmp_path_factory)[1]
    return tiny_export(tmp_path_factory, fmt, "fp32").out_dir


def _unsealed_copy(tmp_path_factory, fmt: str, folder: Path) -> Path:
    """A copy of a real bundle whose manifest has no model_sha256 (hand-written, or from
    before manifests carried one): then only the file sniff stands between a bad model
    file and the native loader, which is what these tests exercise."""
    shutil.copytree(_real_bundle(tmp_path_factory, fmt), folder)
    data = json.loads((folder / "manifest.json").read_text())
    data["model_sha256"] = ""
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


# -- model files: sniffed before a native loader sees them ----------------------------------
@pytest.mark.parametrize("fmt", ["eager", "executorch", "litert"])
@pytest.mark.parametrize("case", ["garbage", "empty", "truncated", "truncated_head"])
def test_a_model_file_that_is_not_its_format_is_one_quiet_line(tmp_path_factory, tmp_path, capfd, fmt, case):
    folder = _unsealed_copy(tmp_path_factory, fmt, tmp_path / "bundle")
    model = next(folder.glob("model.*"))
    data = model.read_bytes()
    model.write_bytes({"garbage": TEXT_GARBAGE, "empty": b"", "truncated": data[: len(data) // 2],
                       "truncated_head": data[:64]}[case])
    capfd.readouterr()
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"cannot load {str(model)!r} as ")
    expect = {
        ("eager", "garbage"): "not a .pt2 file (not a zip archive",
        ("executorch", "garbage"): "not a .pte file (no 'ET12' identifier at byte 4)",
        ("litert", "garbage"): "not a .tflite file (no 'TFL3' identifier at byte 4)",
        ("executorch", "truncated"): f"truncated ({len(data) // 2} bytes, its header says {len(data)})",
        ("executorch", "truncated_head"): f"truncated (64 bytes, its header says {len(data)})",
    }.get((fmt, case), "the file is empty" if case == "empty" else "")
    assert expect in message
    _, stderr = capfd.readouterr()
    assert not stderr.strip(), stderr  # no native loader log, no torch traceback, no warnings


@pytest.mark.parametrize("fmt", ["eager", "executorch", "litert"])
def test_a_model_file_changed_after_it_was_written_fails_its_sha256(tmp_path_factory, tmp_path, capfd, fmt):
    """Every bundle train and export write carries its model file's sha256: one changed
    byte (which a sniff cannot see) is refused before any runtime reads the file."""
    folder = tmp_path / "bundle"
    shutil.copytree(_real_bundle(tmp_path_factory, fmt), folder)
    model = next(folder.glob("model.*"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"model file {str(model)!r} does not match its manifest (sha256 ")
    assert not capfd.readouterr().err.strip()


@pytest.mark.parametrize("fmt, expect", [
    ("executorch", "not a .pte file (no 'ET12' identifier at byte 4)"),
    ("litert", "not a .tflite file (no 'TFL3' identifier at byte 4)"),
    ("eager", "not a .pt2 file (not a zip archive"),
])
def test_random_bytes_do_not_kill_the_process(tmp_path, fmt, expect):
    """ExecuTorch's loader aborted (SIGABRT) on a file whose bytes 4..8 are not UTF-8: run in
    a child, so the abort this guards against cannot take the test process with it."""
    path = tmp_path / f"model{ {'executorch': '.pte', 'litert': '.tflite', 'eager': '.pt2'}[fmt]}"
    path.write_bytes(NOT_UTF8_GARBAGE)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from edgehar.app.backends import {BACKENDS[fmt].__name__} as Backend
        from edgehar.contract.bundle import BundleError
        try:
            Backend(Path({str(path)!r}))
        except BundleError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"exit {result.returncode} (a negative exit is the signal): {result.stderr[-2000:]}"
    assert expect in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["zip_not_pt2", "corrupt_entries"])
def test_a_corrupt_pt2_that_is_a_zip_fails_quietly(tmp_path_factory, tmp_path, capfd, case):
    """A zip archive passes the sniff; torch then logs a traceback as a warning before it raises."""
    folder = _unsealed_copy(tmp_path_factory, "eager", tmp_path / "bundle")
    model = folder / "model.pt2"
    if case == "zip_not_pt2":
        model.unlink()
        with zipfile.ZipFile(model, "w") as z:
            z.writestr("notes.txt", "not a torch.export program")
    else:  # every stored entry's bytes overwritten; the zip's directory intact
        with zipfile.ZipFile(model) as z:
            infos = z.infolist()
        data = bytearray(model.read_bytes())
        for info in infos:
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            data[start:start + info.compress_size] = b"\xa5" * info.compress_size
        model.write_bytes(bytes(data))
        assert zipfile.is_zipfile(model)
    capfd.readouterr()
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"cannot load {str(model)!r} as a torch.export program: ")
    if case == "zip_not_pt2":  # not torch's "check the warnings above": they are silenced
        assert message.endswith("a zip archive, but not one torch.export wrote")
    _, stderr = capfd.readouterr()
    assert "Traceback" not in stderr and "arning" not in stderr and not stderr.strip(), stderr


# -- manifests: every field type-checked, naming the key ------------------------------------
def _ranges(d: dict, ranges) -> None:
    d["gaf_scaling"] = "range"
    d["modalities"][1]["ranges"] = ranges


BROKEN_MANIFESTS = [
    # (id, edit, key the message must name, text that shows the bad value)
    ("channels_int", lambda d: d["streams"][1].update(channels=5), "streams[1].channels", "got 5"),
    ("labels_int", lambda d: d.update(labels=7), "labels", "got 7"),
    ("labels_string", lambda d: d.update(labels="abc"), "labels", 'got "abc"'),
    ("label_not_string", lambda d: d.update(labels=["a", 2]), "labels[1]", "got 2"),
    ("stream_without_name", lambda d: d["streams"][1].pop("name"), "streams[1].name", "missing"),
    ("modality_without_type", lambda d: d["modalities"][0].pop("type"), "modalities[0].type", "missing"),
    ("no_labels", lambda d: d.pop("labels"), "labels", "missing"),
    ("frame_mean_null", lambda d: d.update(frame_mean=None), "frame_mean", "got null"),
    ("frame_std_two_values", lambda d: d.update(frame_std=[0.25, 0.25]), "frame_std", "got [0.25, 0.25]"),
    ("frame_mean_string_value", lambda d: d.update(frame_mean=[0.5, "0.5", 0.5]), "frame_mean[1]", 'got "0.5"'),
    ("ranges_int", lambda d: d["modalities"][1].update(ranges=3), "modalities[1].ranges", "got 3"),
    ("ranges_flat", lambda d: _ranges(d, [0, 1]), "modalities[1].ranges[0]", "got 0"),
    ("range_bound_string", lambda d: _ranges(d, [[0, "a"], [0, 1]]), "modalities[1].ranges[0][1]", 'got "a"'),
    ("range_three_bounds", lambda d: _ranges(d, [[0, 1, 2], [0, 1]]), "modalities[1].ranges[0]", "got [0, 1, 2]"),
    ("rate_string", lambda d: d["streams"][1].update(rate_hz="100"), "streams[1].rate_hz", 'got "100"'),
    ("rate_bool", lambda d: d["streams"][1].update(rate_hz=True), "streams[1].rate_hz", "got true"),
    ("window_string", lambda d: d.update(window_s="3"), "window_s", 'got "3"'),
    ("hop_infinite", lambda d: d.update(hop_s=float("inf")), "hop_s", "got Infinity"),
    ("gaf_k_float", lambda d: d.update(gaf_k=16.5), "gaf_k", "got 16.5"),
    ("frame_resize_string", lambda d: d.update(frame_resize="72"), "frame_resize", 'got "72"'),
    ("model_config_list", lambda d: d.update(model_config=[]), "model_config", "got []"),
    ("metrics_string", lambda d: d.update(metrics="good"), "metrics", 'got "good"'),
    ("format_int", lambda d: d.update(format=3), "format", "got 3"),
    ("model_file_null", lambda d: d.update(model_file=None), "model_file", "got null"),
    ("streams_object", lambda d: d.update(streams=d["streams"][0]), "streams", "got {"),
    ("stream_string", lambda d: d["streams"].__setitem__(0, "camera"), "streams[0]", 'got "camera"'),
    ("modality_channels_string", lambda d: d["modalities"][1].update(channels="acc_x"), "modalities[1].channels",
     'got "acc_x"'),
    ("kind_list", lambda d: d["streams"][0].update(kind=["camera"]), "streams[0].kind", 'got ["camera"]'),
]


@pytest.mark.parametrize("edit, key, shown", [c[1:] for c in BROKEN_MANIFESTS], ids=[c[0] for c in BROKEN_MANIFESTS])
def test_a_manifest_value_of_the_wrong_type_names_its_key(tmp_path, edit, key, shown):
    data = json.loads(json.dumps(_manifest().to_dict()))
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as err:
        read_manifest(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f": {key}: " in message, message  # the key path, exactly
    assert shown in message, message


def test_a_well_typed_manifest_still_reads_back_equal(tmp_path):
    """Integers where floats are expected are numbers too; lists become the tuples."""
    base = _manifest()
    glove = ModalitySpec("glove", "glove", "gaf", ("acc_x", "flex_index"), ((-1.0, 1.0), (0.0, 4.0)))
    m = Manifest(streams=base.streams, modalities=(base.modalities[0], glove), labels=base.labels,
                 gaf_scaling="range", metrics={"data": "sim", "accuracy": 0.5}, model_config={"width": 8})
    m.save(tmp_path)
    assert read_manifest(tmp_path) == m
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["streams"][1]["rate_hz"] = 100  # an int in the JSON
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert read_manifest(tmp_path).streams[1].rate_hz == 100.0


# -- serial://: the baud option --------------------------------------------------------------
@pytest.mark.parametrize("baud", ["99999999999", "2147483648", "0", "-9600", "fast", "", "9600.5", "inf", "nan"])
def test_a_baud_rate_pyserial_cannot_take_is_one_line(baud):
    url = f"serial:///dev/ttyEDGEHAR0?baud={baud}"
    with pytest.raises(TransportError) as err:
        SerialTransport(DeviceURL.parse(url))
    message = str(err.value)
    assert "\n" not in message and f"baud={baud!r}" in message, message


@pytest.mark.parametrize("baud, expect", [("9600", 9600), ("921600", 921600), ("2147483647", 2147483647), ("1e6", 1000000)])
def test_a_baud_rate_pyserial_takes_is_kept(baud, expect):
    assert SerialTransport(DeviceURL.parse(f"serial:///dev/ttyEDGEHAR0?baud={baud}")).baud == expect


def test_a_huge_baud_rate_never_reaches_pyserial():
    """It used to pass the URL check and overflow inside pyserial when the port opened."""
    import asyncio

    from edgehar.simulator.devices.firmware import pty_devices

    devs = pty_devices(("glove",), seed=0)
    try:
        with pytest.raises(TransportError, match=r"baud='99999999999' is not an integer"):
            transport = SerialTransport(DeviceURL.parse(f"serial://{devs['glove'].path}?baud=99999999999"))
            asyncio.run(transport.connect())
    finally:
        for d in devs.values():
            d.close()


# -- through the CLI ---------------------------------------------------------------------------
def test_bench_of_a_missing_bundle_exits_2(tmp_path):
    result = _cli("bench", "/nonexistent", cwd=tmp_path)
    _one_line_error(result, "'/nonexistent'")
    assert not (tmp_path / "runs").exists()  # stopped before measuring or writing anything


def test_bench_with_a_failed_row_exits_non_zero(tmp_path):
    bundle = _bundle(tmp_path / "tensorrt-bundle", b"", format="tensorrt", model_file="model.engine")
    result = _cli("bench", str(bundle), "--out", str(tmp_path / "out"), "--runs", "1", "--warmup", "0",
                  "--meter", "none", "--no-dense", "--gaf-reps", "0", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [l for l in result.stderr.splitlines() if l.startswith("edgehar bench: error:")]
    assert len(errors) == 1 and str(bundle) in errors[0] and "format 'tensorrt' is not supported" in errors[0], result.stderr
    assert (tmp_path / "out" / "bench.md").is_file()  # the table is still written


def _broken_manifest(folder: Path) -> Path:
    _bundle(folder, b"")
    data = json.loads((folder / "manifest.json").read_text())
    data["streams"][1]["channels"] = 5
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("case, expect", [
    ("garbage_pte", "not a .pte file (no 'ET12' identifier at byte 4)"),
    ("garbage_tflite", "not a .tflite file (no 'TFL3' identifier at byte 4)"),
    ("garbage_pt2", "not a .pt2 file (not a zip archive"),
    ("empty_pte", "the file is empty"),
    ("manifest_types", "streams[1].channels: expected a list of strings, got 5"),
])
def test_live_check_with_a_broken_bundle_is_one_line_and_exit_2(tmp_path, case, expect):
    folder = tmp_path / "bundle"
    if case == "manifest_types":
        _broken_manifest(folder)
    else:
        kind, fmt = case.split("_")
        data = NOT_UTF8_GARBAGE if kind == "garbage" else b""
        name = {"pte": "executorch", "tflite": "litert", "pt2": "eager"}[fmt]
        _bundle(folder, data, format=name, model_file=f"model.{fmt}")
    result = _cli("live", "--model", str(folder), "--check")
    _one_line_error(result, expect)
    assert str(folder) in result.stderr


def _session_with_meta_streams(folder: Path, streams) -> Path:
    """A recorded-session folder whose meta.json says `streams` (the rest is valid)."""
    from edgehar.firmware_bridge.session import write_session
    from edgehar.simulator.world import generate_recording, make_subject

    write_session(folder, generate_recording(make_subject(1, seed=0), [("neutral", 1.0)], seed=1))
    meta = json.loads((folder / "meta.json").read_text())
    meta["streams"] = streams(meta["streams"])
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# verb, arguments, what the one line must name, and the output that must not be left
# behind (relative to the test's folder). {tmp}: the test's folder; {bundle}: a working
# camera + glove + IMU bundle; {video}: a working video file; {dev}: the device flags that
# give glove and IMU the URL that follows (so whichever opens first fails on it).
LIVE = ["live", "--model", "{bundle}", "--camera", "{video}", "--check"]
VERB_CASES = [
    ("demo-missing-model", ["demo", "--model", "{tmp}/nope", "--seconds", "1", "--headless"], "{tmp}/nope", None),
    ("live-missing-model", ["live", "--model", "{tmp}/nope", "--check"], "{tmp}/nope", None),
    ("live-unknown-scheme", [*LIVE, "{dev}", "bluetooth://glove"], "bluetooth", None),
    ("live-no-such-port", [*LIVE, "{dev}", "serial://{tmp}/ttyNOPE"], "{tmp}/ttyNOPE", None),
    ("live-baud", [*LIVE, "{dev}", "serial://{tmp}/tty?baud=99999999999"], "baud='99999999999'", None),
    ("live-csv-repeated-channel", [*LIVE, "{dev}", "serial://{tmp}/tty?format=csv&channels=a,a&rate=100"], "channels=a,a", None),
    ("live-no-such-replay", [*LIVE, "{dev}", "replay://{tmp}/nosession"], "{tmp}/nosession", None),
    ("live-no-such-video", ["live", "--model", "{bundle}", "--camera", "{tmp}/clip.mp4", "--check", "{dev}", "sim://glove"],
     "{tmp}/clip.mp4", None),
    ("live-config-inf", ["live", "--config", "{tmp}/inf.toml", "--model", "{bundle}", "--check"], "expected a finite number", None),
    ("train-missing-data", ["train", "--data", "{tmp}/nodata", "--out", "{tmp}/out"], "{tmp}/nodata", "out"),
    # in two launched workers: the worker's message, not the launcher's report
    ("train-nproc-missing-data", ["train", "--nproc", "2", "--data", "{tmp}/nodata", "--out", "{tmp}/out"], "{tmp}/nodata", "out"),
    ("train-meta-streams-not-objects", ["train", "--data", "{tmp}/s-streams-5", "--out", "{tmp}/out"], "streams.imu is 5", "out"),
    ("train-meta-streams-number", ["train", "--data", "{tmp}/s-streams-int", "--out", "{tmp}/out"], "streams is 5", "out"),
    ("evaluate-missing-data", ["evaluate", "--data", "{tmp}/nodata", "--out", "{tmp}/out"], "{tmp}/nodata", "out"),
    ("export-missing-bundle", ["export", "{tmp}/nope", "--format", "litert", "--out", "{tmp}/out"], "{tmp}/nope", "out"),
    ("export-broken-manifest", ["export", "{tmp}/broken", "--format", "litert", "--out", "{tmp}/out"], "streams[1].channels", "out"),
    ("bench-broken-manifest", ["bench", "{tmp}/broken", "--out", "{tmp}/out"], "streams[1].channels", "out"),
    ("record-out-is-a-file", ["record", "--out", "{tmp}/afile", "--simulate", "--seconds", "1", "--headless"], "{tmp}/afile", None),
    ("record-unpaced-replay", ["record", "--out", "{tmp}/out", "--device", "imu=replay://{tmp}/s-ok?speed=0", "--seconds", "1",
                               "--headless"], "not paced in real time", "out"),
]


@pytest.mark.parametrize("args, names, leftover", [c[1:] for c in VERB_CASES], ids=[c[0] for c in VERB_CASES])
def test_every_verb_refuses_bad_input_in_one_line_and_leaves_nothing(tmp_path_factory, tmp_path, args, names, leftover):
    """Each verb against broken bundles, sessions, configs, URLs and output paths: exit 2,
    one line on stderr naming the bad value, no traceback, no output folder left behind."""
    import cv2
    import numpy as np

    from live_helpers import tiny_bundle as camera_bundle

    bundle = camera_bundle(tmp_path_factory.mktemp("bundles"))
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "inf.toml").write_text("seconds = 1e400\n")
    _broken_manifest(tmp_path / "broken")
    if any("{tmp}/s-" in a for a in args):
        _session_with_meta_streams(tmp_path / "s-streams-5", lambda s: {**s, "imu": 5})
        _session_with_meta_streams(tmp_path / "s-streams-int", lambda s: 5)
        _session_with_meta_streams(tmp_path / "s-ok", lambda s: s)
    if "{dev}" in args:
        i = args.index("{dev}")
        args = [*args[:i], "--glove", args[i + 1], "--imu", args[i + 1], *args[i + 2:]]
    fill = lambda text: (text.replace("{tmp}", str(tmp_path)).replace("{bundle}", str(bundle))  # noqa: E731
                         .replace("{video}", str(video)))
    before = set(tmp_path.iterdir())
    result = _cli(*map(fill, args), cwd=tmp_path)
    _one_line_error(result, fill(names))
    if leftover:
        assert not (tmp_path / leftover).exists(), f"{leftover} was left behind"
    assert set(tmp_path.iterdir()) == before
