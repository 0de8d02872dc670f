"""The one live pipeline: smoothing, a stream that drops out and comes back, the CLI's
`live` and `demo` verbs (headless fallback, video, --check, one-line errors)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from edgehar.app.backends import load_bundle
from edgehar.app.config import STALE_S
from edgehar.app.live import LiveOptions, Smoother, run_live
from edgehar.app.sources import Sources
from edgehar.simulator.devices.rig import SimulatedRig
from live_helpers import tiny_bundle
from waiting import wait_for


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundles"))


def _p(i: int, n: int = 3, p: float = 0.6) -> np.ndarray:
    probs = np.full(n, (1 - p) / (n - 1))
    probs[i] = p
    return probs


def test_majority_smoothing_does_not_flicker_on_one_odd_hop():
    s = Smoother(3, "majority", k=5)
    shown = [s.update(_p(i))[0] for i in (0, 0, 0, 1, 0, 0, 2, 2, 2, 2)]
    assert shown == [0, 0, 0, 0, 0, 0, 0, 2, 2, 2]  # the single 1 never shows; 2 wins once it is the majority


def test_ema_and_none_and_cycling():
    ema = Smoother(3, "ema", k=3)  # alpha 0.5
    assert [ema.update(_p(i, p=0.9))[0] for i in (0, 0, 1, 1)] == [0, 0, 0, 1]
    raw = Smoother(3, "none")
    assert [raw.update(_p(i))[0] for i in (0, 1, 0)] == [0, 1, 0]
    assert raw.cycle() == "majority" and raw.cycle() == "ema" and raw.cycle() == "none"
    with pytest.raises(ValueError, match="not one of"):
        Smoother(3, "median")


# Real time: passed 20/20 beside two busy processes (tools/under_load.py; docs/under-load.json).
@pytest.mark.parametrize("name, stall_s", [("glove", 1.5), ("camera", 3.0)])
def test_a_dropped_stream_is_degraded_and_recovered(bundle, tmp_path, name, stall_s):
    """Unplug the simulated glove (its pty disappears), or stall the camera for 3 s (no
    frames), while live, then bring it back: predictions go on without it, marked
    degraded, it is picked up again, and its outage is counted in its health."""
    manifest, backend = load_bundle(bundle)
    rig = SimulatedRig(("camera", "glove", "imu"), seed=1, replugable=True)
    sources = Sources(feed=rig)
    marks = {}  # host monotonic times the test saw each step (the clock the predictions use)

    def unplug_and_replug():
        if not wait_for(lambda: sources.start_time is not None, 60):
            return  # the run never started: the marks check below says so
        t0 = sources.start_time
        time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))  # the scenario's schedule, not a synchronisation
        marks["unplug"] = time.monotonic()
        rig.unplug(name)
        marks["seen_down"] = wait_for(lambda: sources.health()[name].state != "connected", 30) and time.monotonic()
        time.sleep(max(0.0, t0 + 2.0 + stall_s - time.monotonic()))
        rig.replug(name)
        marks["back"] = wait_for(lambda: sources.health()[name].state == "connected", 30) and time.monotonic()

    thread = threading.Thread(target=unplug_and_replug, daemon=True)
    thread.start()
    out = io.StringIO()
    summary = run_live(manifest, backend, sources,
                       LiveOptions(seconds=8.0, json_path=tmp_path / "p.jsonl", view="headless"), out=out)
    thread.join(30)
    assert marks.get("seen_down") and marks.get("back"), marks
    lines = [json.loads(l) for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    gone = [l for l in lines if l["degraded"]]
    assert gone, "the outage shows in the predictions"
    # degraded only after the unplug, and no later than one stale limit and one hop after
    # the stream was seen connected again
    latest = marks["back"] + STALE_S + manifest.hop_s
    missing = [m.name for m in manifest.modalities if m.stream == name]  # what the stream feeds ("rgb": the camera)
    assert all(l["missing"] == missing and marks["unplug"] < l["t"] <= latest for l in gone), \
        ([(l["t"], l["missing"]) for l in gone], marks)
    assert all(not l["degraded"] for l in lines[-2:]), f"the {name} came back and predictions are whole again"
    health = lines[-1]["streams"]
    assert health[name]["state"] == "connected" and health[name]["outages"] == 1, health[name]
    assert summary.degraded == len(gone)
    assert f"DEGRADED: missing {missing[0]}" in out.getvalue()
    assert all(health[other]["outages"] == 0 for other in health if other != name)  # the others never stopped


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgehar.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _one_line_error(result, expect):
    assert result.returncode == 2, result.stderr
    assert expect in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len([l for l in result.stderr.splitlines() if l.startswith("edgehar")]) == 1, result.stderr


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _main(capfd, *args):
    """The CLI in this process (torch already loaded: fast); capfd sees what C code writes too."""
    from edgehar.cli import main

    rc = main(list(args))
    out, err = capfd.readouterr()
    return _Result(rc, out, err)


@pytest.fixture
def glove_and_imu():
    """Simulated glove and IMU on pseudo-terminals, described but silent."""
    from edgehar.simulator.devices.firmware import pty_devices

    devs = pty_devices(("glove", "imu"), seed=0)
    yield {k: f"serial://{d.path}" for k, d in devs.items()}
    for d in devs.values():
        d.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "cam.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), i * 8, np.uint8))
    writer.release()
    return path


def test_live_check_validates_devices_camera_and_bundle(bundle, glove_and_imu, video):
    result = _cli("live", "--check", "--model", str(bundle), "--glove", glove_and_imu["glove"],
                  "--imu", glove_and_imu["imu"], "--camera", str(video))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "glove SIM-GLOVE" in result.stdout.replace("sim-1.0.0 ", "")
    assert "frames 160x120" in result.stdout
    # the cv2 in use, from where, and what it can do (pip's wheel here: no GStreamer)
    from edgehar.app.opencv_build import opencv_build

    assert f"  opencv: {opencv_build().summary()}\n" in result.stdout
    assert f"OpenCV {cv2.__version__} ({os.path.dirname(cv2.__file__)})" in result.stdout


def test_live_check_with_a_config_file(bundle, glove_and_imu, video, tmp_path, capfd):
    cfg = tmp_path / "live.toml"
    cfg.write_text(f'model = "{bundle}"\nglove = "{glove_and_imu["glove"]}"\nimu = ["{glove_and_imu["imu"]}"]\n'
                   f'camera = "{video}"\n[smoothing]\nmode = "ema"\nk = 3\n')
    result = _main(capfd, "live", "--check", "--config", str(cfg))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case, expect", [
    ("camera_index", "camera '7': cannot open this camera index"),
    ("bad_video", "OpenCV cannot open this file as a video"),
    ("gstreamer", "built without GStreamer"),
    ("no_imu", "the bundle reads stream 'imu' but no device was given"),
    ("wrong_device", "missing channel(s)"),
    ("no_camera", "give --camera"),
    ("bad_config", "smoothing.k: expected an integer >= 1, got 'five'"),
])
def test_bad_input_is_one_line_and_non_zero(bundle, glove_and_imu, video, tmp_path, capfd, case, expect):
    g, i = glove_and_imu["glove"], glove_and_imu["imu"]
    base = ["live", "--model", str(bundle), "--seconds", "2", "--headless"]
    args = {
        "camera_index": [*base, "--glove", g, "--imu", i, "--camera", "7"],
        "bad_video": [*base, "--glove", g, "--imu", i, "--camera", str(tmp_path / "x.mp4")],
        "gstreamer": [*base, "--glove", g, "--imu", i, "--camera", "videotestsrc ! appsink"],
        "no_imu": [*base, "--glove", g, "--camera", str(video)],
        "wrong_device": [*base, "--glove", i, "--imu", g, "--camera", str(video)],  # glove and IMU swapped
        "no_camera": [*base, "--glove", g, "--imu", i],
        "bad_config": [*base, "--config", str(tmp_path / "c.toml")],
    }[case]
    (tmp_path / "x.mp4").write_text("not a video")
    (tmp_path / "c.toml").write_text('[smoothing]\nk = "five"\n')
    _one_line_error(_main(capfd, *args), expect)


def test_demo_falls_back_to_headless_and_saves_video(bundle, tmp_path):
    result = _cli("demo", "--model", str(bundle), "--seconds", "2.5", "--save-video", str(tmp_path / "out.mp4"),
                  "--json", str(tmp_path / "p.jsonl"), env={"DISPLAY": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("showing the headless view") == 1 and not result.stderr
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    assert shape == (720, 1280, 3) and 20 <= n <= 30  # 2.5 s at 10 fps
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and "smoothed" in json.loads(lines[0])


def test_window_keys_switch_smoothing_and_quit(bundle, tmp_path):
    """The keys the window reads (here fed by `key_source`): s switches smoothing, q quits."""
    from edgehar.cli.demo import run_demo

    log = tmp_path / "p.jsonl"
    pressed = []

    def keys():
        n = len(log.read_text().splitlines()) if log.is_file() else 0
        if n >= 5:
            return "q"
        if n >= 2 and not pressed:
            pressed.append("s")
            return "s"
        return ""

    summary = run_demo(bundle, seconds=30, json_path=tmp_path / "p.jsonl", out=io.StringIO(), key_source=keys,
                       options=LiveOptions(view="headless", save_video=tmp_path / "v.mp4"))
    assert summary.predictions <= 7  # q quit after the 5th; 30 s would be ~100 hops
    modes = [json.loads(l)["smoothed"]["mode"] for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert modes[0] == "majority of 5" and modes[-1] == "EMA over 5", modes
    assert summary.video_frames > 0


def test_a_series_model_runs_live_and_its_windows_are_drawn(tmp_path):
    """A model fed raw sensor windows ("series", e.g. late_concat) runs the same loop; the view
    draws its sampled windows as line tiles beside the frames."""
    from edgehar.cli.demo import run_demo

    bundle = tiny_bundle(tmp_path, model="late_concat_tiny")
    assert {m.type for m in load_bundle(bundle)[0].modalities} == {"frames", "series"}
    shot = tmp_path / "view.png"
    summary = run_demo(bundle, seconds=2.0, json_path=tmp_path / "p.jsonl", out=io.StringIO(),
                       options=LiveOptions(view="headless", snapshot=shot))
    assert summary.predictions >= 3
    view = cv2.imread(str(shot))
    assert view.shape == (720, 1280, 3)
    tiles = view[290:520, 730:1270]  # the thumbnail area: frames and series tiles, not a plain panel
    assert float(tiles.std()) > 20
