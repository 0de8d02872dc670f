"""The real OpenCV window on a virtual X display (Xvfb), driven by key presses (xdotool).

`edgehar demo` opens its window where a display exists and its keys do what the README
says (q quits, p freezes the view while predictions go on, s switches smoothing, t hides
the thumbnails); `edgehar record`'s number keys label the session; a display that is
named but cannot be reached falls back to headless instead of aborting the process.
Each key's effect is awaited on the screen itself (Xvfb keeps its framebuffer in a file)
or in the JSON log / recorded session before the next key is pressed: OpenCV keeps only
the last key pressed between two polls, and a loaded machine polls seldom.
`make test` installs xvfb and xdotool.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgehar.app import display
from edgehar.firmware_bridge.session import read_session
from live_helpers import tiny_bundle
from waiting import wait_for

WAIT_S = 30.0  # for an effect to show; generous: a loaded 2-core machine runs a hop in seconds
POLL_S = 0.2  # between looks at the screen or the windows (each costs a process or a 4 MB read)


@dataclass
class VirtualDisplay:
    """A running Xvfb: its DISPLAY (for child processes) and its screen."""

    name: str  # ":N"
    framebuffer: Path  # the screen as an XWD file, kept current by Xvfb (-fbdir)

    def xdotool(self, *args: str) -> str:
        for _ in range(5):  # a loaded Xvfb now and then refuses a connection: try again
            result = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=10,
                                    env={**os.environ, "DISPLAY": self.name})
            if "Can't open display" not in result.stderr:
                break
            time.sleep(0.1)
        return result.stdout.strip()

    def screen(self) -> np.ndarray:
        """The whole screen now, (H, W, 3) BGR."""
        raw = self.framebuffer.read_bytes()
        head = np.frombuffer(raw[:100], ">u4")  # XWD header, big-endian CARD32 fields
        header_size, width, height, bytes_per_line, ncolors = (int(head[i]) for i in (0, 4, 5, 12, 19))
        assert int(head[11]) == 32 and int(head[7]) == 0, "expected 32-bit LSB-first pixels (-screen ...x24)"
        pixels = np.frombuffer(raw, np.uint8, bytes_per_line * height, header_size + 12 * ncolors)
        return pixels.reshape(height, bytes_per_line // 4, 4)[:, :width, :3]


@pytest.fixture(scope="module")
def x_display(tmp_path_factory):
    """A virtual X display for this module's tests (yields a VirtualDisplay).

    Xvfb picks a free display number itself (-displayfd) and writes it once it accepts
    connections, so runs on one machine never collide. Only child processes get DISPLAY:
    this pytest process stays without one.
    """
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the window tests need {' and '.join(missing)}: `make test` installs them "
                    "(Debian: apt-get install -y xvfb xdotool)")
    fbdir = tmp_path_factory.mktemp("xvfb")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp",
                               "-fbdir", str(fbdir)], pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 30)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            pytest.fail(f"Xvfb did not start (exit status {server.poll()})")
        yield VirtualDisplay(f":{number}", fbdir / "Xvfb_screen0")
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundles"))


def _launch(x: VirtualDisplay, title: str, opened: Path, *args: str) -> tuple[subprocess.Popen, str, tuple[int, int]]:
    """Start `edgehar *args` on the display and find its window, whose title starts with
    `title`, once it is visible with the view's size (Qt maps it before OpenCV resizes it):
    (process, window id, (x, y) of its top-left corner).

    The window is looked for only once `opened` exists (a file the program writes after
    opening its window): a loaded Xvfb now and then closes a new connection unanswered
    (seen here under heavy load, more often while other clients connect many times a
    second), and Qt aborts the program when its own connection is the one closed. That,
    and only that, is tried once more.
    """
    for attempt in (1, 2):
        proc = subprocess.Popen([sys.executable, "-m", "edgehar.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "DISPLAY": x.name})
        wait_for(lambda: opened.exists() or proc.poll() is not None, 90, POLL_S)
        found: list[str] = []
        geometry = ""

        def ready() -> bool:
            nonlocal geometry
            found[:] = x.xdotool("search", "--onlyvisible", "--name", f"^{title}").split()
            geometry = x.xdotool("getwindowgeometry", found[0]) if found else ""
            return f"Geometry: {display.VIEW_SIZE[0]}x{display.VIEW_SIZE[1]}" in geometry or proc.poll() is not None

        if proc.poll() is None:
            wait_for(ready, 90, POLL_S)
        position = re.search(r"Position: (\d+),(\d+)", geometry)
        if proc.poll() is None and position is not None and "x".join(map(str, display.VIEW_SIZE)) in geometry:
            return proc, found[0], (int(position.group(1)), int(position.group(2)))
        named = x.xdotool("search", "--name", f"^{title}")  # mapped or not
        proc.kill()
        out, err = proc.communicate(timeout=30)
        if attempt == 1 and proc.returncode == -signal.SIGABRT and "could not connect to display" in err:
            continue
        pytest.fail(f"no visible window {title!r} of the view's size (windows so named: {named!r}, last geometry "
                    f"{geometry!r}; exit {proc.returncode}):\n{out[-1000:]}\n{err[-2000:]}")


def _press(x: VirtualDisplay, window: str, key: str) -> tuple[float, float]:
    """Press `key` in `window`; returns the host monotonic times just before and after."""
    before = time.monotonic()
    x.xdotool("key", "--window", window, key)
    return before, time.monotonic()


def _thumbnail_std(view: np.ndarray) -> float:
    return float(view[290:520, 730:1270].std())


def _shows_thumbnails(view: np.ndarray) -> bool:
    """The thumbnail area holds the colour-mapped GAF tiles and frames (not a plain panel)."""
    return _thumbnail_std(view) > 20


def _state(proc: subprocess.Popen, logged: int, view: np.ndarray) -> str:
    """What a failed wait saw, so a rare failure on a loaded machine can be told apart from
    a dead program, a silent model or a blank view."""
    status = "running" if proc.poll() is None else f"exited {proc.returncode}: {proc.stderr.read()[-1000:]!r}"
    return f"program {status}; {logged} predictions logged; thumbnail area std {_thumbnail_std(view):.1f}"


def _paused(view: np.ndarray) -> bool:
    """The header clock turns to the accent colour, with PAUSED, only while paused."""
    header = view[0:38, 1000:1280].astype(int)
    return int(np.sum(np.all(np.abs(header - np.array(display.ACCENT)) <= 40, axis=-1))) > 20


def _activity_lit(view: np.ndarray) -> bool:
    """`record`: the activity being labelled is highlighted in the list of number keys."""
    panel = view[150:400, 655:1270].astype(int)
    return int(np.sum(np.all(np.abs(panel - np.array(display.BAR)) <= 30, axis=-1))) > 50


def test_demo_window_opens_and_its_keys_work(x_display, bundle, tmp_path):
    x, log = x_display, tmp_path / "p.jsonl"
    proc, window, (wx, wy) = _launch(x, "edgehar demo", log,  # shown 1:1: no toolbar shrinks the view
                                     "demo", "--model", str(bundle), "--seconds", "120", "--window", "--json", str(log))
    started = time.monotonic()
    try:

        def view() -> np.ndarray:
            return x.screen()[wy : wy + display.VIEW_SIZE[1], wx : wx + display.VIEW_SIZE[0]]

        def lines() -> list[dict]:
            return [json.loads(l) for l in log.read_text().splitlines()] if log.is_file() else []

        # the window shows the rendered view: thumbnails of what the model saw once it predicts
        assert wait_for(lambda: len(lines()) >= 2 and _shows_thumbnails(view()), WAIT_S, POLL_S), \
            f"no view on screen ({_state(proc, len(lines()), view())})"
        _press(x, window, "s")
        assert wait_for(lambda: lines()[-1]["smoothed"]["mode"] == "EMA over 5", WAIT_S, POLL_S), "s: no EMA"
        _press(x, window, "t")
        assert wait_for(lambda: not _shows_thumbnails(view()), WAIT_S, POLL_S), "t did not hide the thumbnails"
        _press(x, window, "p")
        assert wait_for(lambda: _paused(view()), WAIT_S, POLL_S), "p did not pause"
        frozen, logged = view(), len(lines())
        # paused: the model goes on predicting and logging, the view stays as it was
        assert wait_for(lambda: len(lines()) >= logged + 3, WAIT_S, POLL_S), "predictions stopped while paused"
        assert np.array_equal(view(), frozen), "the paused view changed"
        _press(x, window, "p")
        assert wait_for(lambda: not _paused(view()), WAIT_S, POLL_S), "the second p did not resume"
        assert not _shows_thumbnails(view())  # t's choice outlives the pause
        _press(x, window, "q")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 110, "q did not end the run"
    assert "Traceback" not in err and "showing the headless view" not in out
    assert "QFontDatabase" not in err, err  # Qt is pointed at a font folder that exists (display._qt_env)
    predictions = lines()
    assert f"edgehar demo: {len(predictions)} predictions" in out
    modes = [p["smoothed"]["mode"] for p in predictions]
    switch = modes.index("EMA over 5")
    assert set(modes[:switch]) == {"majority of 5"} and set(modes[switch:]) == {"EMA over 5"}


def test_record_number_keys_label_the_session(x_display, tmp_path):
    x, folder = x_display, tmp_path / "s"
    proc, window, (wx, wy) = _launch(x, "edgehar record", folder / "meta.json", "record", "--out", str(folder),
                                     "--simulate", "--activities", "neutral,hammer,screwdriver", "--seconds", "120")
    try:
        t0 = json.loads((folder / "meta.json").read_text())["recording"]["host_monotonic_t0"]

        def view() -> np.ndarray:
            return x.screen()[wy : wy + display.VIEW_SIZE[1], wx : wx + display.VIEW_SIZE[0]]

        def labelling(activity: str) -> bool:  # labels.csv holds the label in progress too
            rows = (folder / "labels.csv").read_text().strip().splitlines()
            return rows[-1].endswith(f",{activity}") and _activity_lit(view())

        # the view is on screen, nothing labelled yet
        assert wait_for(lambda: not _activity_lit(view()) and view().std() > 20, WAIT_S, POLL_S)
        sent, seen = {}, {}  # key -> host time it was sent / its effect was seen
        for key, effect, what in (("2", lambda: labelling("hammer"), "2 did not start 'hammer'"),
                                  ("3", lambda: labelling("screwdriver"), "3 did not start 'screwdriver'"),
                                  ("0", lambda: not _activity_lit(view()), "0 did not stop labelling")):
            sent[key] = _press(x, window, key)[0] - t0
            assert wait_for(effect, WAIT_S, POLL_S), what
            seen[key] = time.monotonic() - t0
        _press(x, window, "9")  # no 9th activity: nothing happens
        time.sleep(0.5)
        _press(x, window, "q")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "recording headless" not in err and "Traceback" not in err
    assert "2 labels" in out
    labels = read_session(folder).labels
    assert [a for _, _, a in labels] == ["hammer", "screwdriver"]
    (h0, h1, _), (s0, s1, _) = labels
    assert h1 == s0  # one label ends where the next begins
    # each change is stamped when its key arrives: after it was sent, before its effect was seen
    for stamp, key in ((h0, "2"), (s0, "3"), (s1, "0")):
        assert sent[key] - 1e-3 <= stamp <= seen[key], (key, sent[key], stamp, seen[key])


def test_a_display_that_cannot_be_reached_falls_back_to_headless(monkeypatch, x_display):
    """DISPLAY names a display with no server: OpenCV would abort the process at the first
    window; the check answers (False, why) from a child process and this process goes on."""
    taken = {p.name[1:] for p in Path("/tmp/.X11-unix").glob("X*")}
    unused = f":{next(n for n in range(150, 1000) if str(n) not in taken and not Path(f'/tmp/.X{n}-lock').exists())}"
    monkeypatch.setenv("DISPLAY", unused)
    ok, why = display.gui_available()
    assert not ok and f"cannot use display '{unused}'" in why, why
    assert display.open_window("auto", "edgehar test") == (None, why)
    with pytest.raises(display.ViewError, match="cannot open a window: cannot use display"):
        display.open_window("window", "edgehar test")
    monkeypatch.setenv("DISPLAY", x_display.name)
    assert display.gui_available() == (True, "")


# Installed as sitecustomize: cv2 as opencv-python-headless builds it. Its build information
# says "GUI: NONE" and its window functions raise cv2.error "The function is not implemented"
# (seen with opencv-python-headless 5.1.0).
HEADLESS_OPENCV = """
import re
import cv2

_info = cv2.getBuildInformation()
cv2.getBuildInformation = lambda: re.sub(r"GUI:[^\\n]*", "GUI:                           NONE", _info)

def _not_implemented(*args, **kwargs):
    raise cv2.error("OpenCV(5.1.0) window.cpp:1256: error: (-2:Unspecified error) The function is not implemented. "
                    "Rebuild the library with Windows, GTK+ 2.x or Cocoa support.")

for _name in ("namedWindow", "imshow", "waitKey", "resizeWindow", "destroyWindow", "destroyAllWindows"):
    setattr(cv2, _name, _not_implemented)
"""


def test_a_headless_opencv_falls_back_even_where_a_display_answers(x_display, bundle, tmp_path):
    """The display answers, but the OpenCV cannot draw a window (the headless wheel): the
    demo says why in one line and goes on in the terminal view; --window refuses in one line."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HEADLESS_OPENCV)
    env = {**os.environ, "DISPLAY": x_display.name, "PYTHONPATH": str(site)}
    log = tmp_path / "p.jsonl"
    demo = [sys.executable, "-m", "edgehar", "demo", "--model", str(bundle), "--seconds", "4", "--json", str(log)]
    result = subprocess.run(demo, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    notice = [line for line in result.stdout.splitlines() if "no GUI backend" in line]
    assert len(notice) == 1 and notice[0].startswith("edgehar demo: this OpenCV") \
        and notice[0].endswith("; showing the headless view"), result.stdout
    assert len(log.read_text().splitlines()) >= 3  # predicted all the same
    refused = subprocess.run(demo + ["--window"], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and refused.stderr.startswith("edgehar demo: error: cannot open a window: this OpenCV")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
