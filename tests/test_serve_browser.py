"""`edgehar demo --serve` in a real headless Chromium: the page loads and draws the view
from the board's messages (camera, segments, traces, top-3, streams), shows the label
and the latency changing, its buttons and keys do what the window's keys do, several
pages watch at once, and the token keeps out a page without it.

Chromium is Debian's (/usr/bin/chromium, which `make test` installs), driven by the
Python `playwright` package through `executable_path`: a pip install from PyPI with no
browser download and no Node.js project beside this Python one (selenium would need
Debian's chromedriver as well). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgehar.benchmarks.serve_cost import CHROMIUM, PAGE_PROBE, launch_chromium, start_served_demo, stop_demo

WAIT_MS = 45_000  # for an effect to show; a loaded 2-core machine runs a hop in seconds
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def demo_url():
    """A demo serving its view on a free loopback port, with a token; yields its URL."""
    proc, url, _ = start_served_demo("--token", TOKEN, "--seconds", "120", "--seed", "1")
    try:
        yield url
    finally:
        stop_demo(proc)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail("the browser test needs Debian's chromium: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            yield chromium
        finally:
            chromium.close()


def _text(page, selector: str) -> str:
    return page.text_content(selector) or ""


def _wait_text_change(page, selector: str, before: str) -> str:
    page.wait_for_function("([sel, before]) => document.querySelector(sel).textContent !== before",
                           arg=[selector, before], timeout=WAIT_MS)
    return _text(page, selector)


def _frames(page) -> int:
    return page.evaluate("window.__frames")


def _wait_frames(page, n: int) -> None:
    start = _frames(page)
    page.wait_for_function(f"window.__frames >= {start + n}", timeout=WAIT_MS)


def test_the_page_shows_the_live_view_and_its_keys_work(demo_url, browser, tmp_path):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    context.add_init_script(PAGE_PROBE)
    page, other = context.new_page(), context.new_page()

    refused = page.goto(demo_url.split("?")[0])  # without the token
    assert refused.status == 403 and "needs the token" in page.content()

    page.goto(demo_url)
    other.goto(demo_url)
    page.wait_for_function("document.getElementById('label').textContent !== 'waiting for the first window...'",
                           timeout=WAIT_MS)
    label = _text(page, "#label")
    assert re.fullmatch(r"[a-z_]+", label) and _text(page, "#conn") == "live"
    assert re.match(r"\d+%$", _text(page, "#confidence"))
    # the page drew the view from the messages: the camera image at its own size (the
    # simulated camera's 160 x 120), every modality's segments, both traces, the top-3 bars
    page.wait_for_function("document.getElementById('camera').dataset.frame === '160x120'", timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('segments').dataset.rows === 'rgb glove imu'", timeout=WAIT_MS)
    page.wait_for_function("[...document.querySelectorAll('#traces canvas')].map((c) => +c.dataset.points)"
                           ".filter((n) => n > 450).length === 2", timeout=WAIT_MS)  # 5 s of glove and IMU at 100 Hz
    assert page.evaluate("document.querySelectorAll('#top3 .bar').length") == 3
    assert re.fullmatch(r"(\w+ connected \d+ Hz lost \d+(?: batt \d+%)?){3}", _text(page, "#streams")), _text(page, "#streams")
    # the latency changes every hop, the label when the simulated person changes activity
    latency = _text(page, "#latency")
    assert re.search(r"inference [\d.]+ \| .* total [\d.]+$", latency), latency
    _wait_text_change(page, "#latency", latency)
    _wait_text_change(page, "#label", label)
    _wait_frames(other, 3)  # a second viewer at the same time

    # p pauses: the view and its numbers freeze while frames keep coming, then go on
    page.click("#key-p")
    page.wait_for_function("document.getElementById('paused').textContent === 'PAUSED'", timeout=WAIT_MS)
    assert page.get_attribute("#key-p", "aria-pressed") == "true"
    frozen = _text(page, "#latency"), _text(page, "#now")
    _wait_frames(page, 3)
    assert (_text(page, "#latency"), _text(page, "#now")) == frozen
    assert _text(other, "#paused") == "PAUSED"  # one view, whoever watches it
    page.click("#key-p")
    _wait_text_change(page, "#now", frozen[1])
    assert _text(page, "#paused") == "" and page.get_attribute("#key-p", "aria-pressed") == "false"

    # s switches the smoothing, as the window's key does
    assert _text(page, "#smoothing") == "majority of 5"
    page.click("#key-s")
    assert _wait_text_change(page, "#smoothing", "majority of 5") == "EMA over 5"

    # t hides the thumbnails; the keyboard works as the buttons do
    page.click("#key-t")
    page.wait_for_function("document.getElementById('key-t').getAttribute('aria-pressed') === 'true'", timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('segments').dataset.rows === ''", timeout=WAIT_MS)
    assert _text(page, "#segments-title") == "thumbnails hidden (t)"
    page.keyboard.press("t")
    page.wait_for_function("document.getElementById('key-t').getAttribute('aria-pressed') === 'false'", timeout=WAIT_MS)
    page.wait_for_function("document.getElementById('segments').dataset.rows === 'rgb glove imu'", timeout=WAIT_MS)

    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # the view, not an empty page
    context.close()


def test_the_record_page_labels_with_its_buttons(browser, tmp_path):
    """`edgehar record --serve`: the page shows the camera with REC, the labelling keys as
    buttons, and a click starts the activity in the recording, as the window's key does."""
    out = tmp_path / "session"
    proc = subprocess.Popen([sys.executable, "-m", "edgehar.cli", "record", "--out", str(out), "--simulate",
                             "--activities", "reach,grasp", "--seconds", "120", "--headless", "--serve", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "DISPLAY": ""})
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "live view at" in line:
                break
        url = re.search(r"live view at (\S+)", "".join(lines)).group(1)
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('camera').dataset.frame === '160x120'", timeout=WAIT_MS)
        assert [page.text_content(f"#key-{k}") for k in "012"] == ["stop 0", "reach 1", "grasp 2"]
        assert _text(page, "#label") == "no activity"
        page.click("#key-2")
        page.wait_for_function("document.getElementById('label').textContent === 'grasp'", timeout=WAIT_MS)
        assert page.get_attribute("#key-2", "aria-pressed") == "true" and "2  grasp" in _text(page, "#protocol")
        page.close()
    finally:
        stop_demo(proc)
    assert re.search(r"wrote .*; 1 labels\)", "".join(lines)), "".join(lines)
