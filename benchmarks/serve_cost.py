"""What the browser view (`--serve`) costs: page-to-prediction lag and server CPU.

    python benchmarks/serve_cost.py [--viewers 3] [--seconds 15] [--cycles 3] [--frames 400]
        [--out benchmarks/results/serve_cost.json] [--screenshot docs/serve.png]

Runs `edgehar demo --serve` as a user would (the default bundle: the shipped LiteRT int8, headless,
the view at its default 10 fps) and watches it from Debian's chromium, headless, driven
by playwright (`executable_path`, no browser download):

- server CPU: the demo process's user + system CPU (Linux /proc) over `--seconds` with
  the port open and nobody watching, then over as long with `--viewers` pages open, and
  again, `--cycles` times; what serving costs is each cycle's difference, in % of one
  core, and its median over the cycles (`measure`). Nothing is drawn for the page while
  nobody watches, so those phases cost what a run without `--serve` does.
- lag: for every prediction, from the moment it was made (the wall clock of the demo,
  sent with the state) to the moment the page has drawn the state that shows it
  (the page's `edgehar:frame` event, Date.now() in the browser: same machine, same clock).
- per frame, both ways, in this process (`frame_costs`; with the simulated 160x120 camera
  and with its frames scaled to a 640x480 camera's): what the page is sent now
  (`WebView.publish`: state JSON, the traces' new samples, the camera JPEG when new,
  the segments when a prediction changed them) against the window's whole 1280x720 view
  drawn and JPEG-encoded (what `--serve` sent before), on the same states of a
  simulated run, interleaved frame by frame: a ratio that load beside it weighs on alike.

Writes JSON to --out (and, with --screenshot, the first page as a PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edgehar.argtypes import positive_int
from edgehar.benchmarks.live_path import cpu_seconds

DEFAULT_OUT = Path(__file__).parent / "results" / "serve_cost.json"
CHROMIUM = "/usr/bin/chromium"  # Debian's
# Chromium as root on a machine with a closed network: no sandbox, no GPU, no background calls home.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
# Installed in every page: counts frames (states drawn) and camera images, and the lag of each newly shown prediction.
PAGE_PROBE = """
window.__frames = 0; window.__camera = 0; window.__lags = []; let made = null;
document.addEventListener('edgehar:camera', () => { window.__camera++; });
document.addEventListener('edgehar:frame', (ev) => {
  window.__frames++;
  const s = ev.detail;
  if (s && s.made && s.made !== made) { made = s.made; window.__lags.push(Date.now() / 1000 - s.made); }
});
"""


def launch_chromium(playwright):
    """Debian's chromium, headless, through playwright (which downloads no browser of its own)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))


def start_served_demo(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """`edgehar demo --serve 127.0.0.1:0 --headless ARGS` on the default bundle (the shipped
    one, as `make demo` runs it): (process, its page's URL, its output so far, kept growing
    by a thread). Stop it with `stop_demo`."""
    proc = subprocess.Popen([sys.executable, "-m", "edgehar.cli", "demo", "--serve", "127.0.0.1:0",
                             "--headless", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DISPLAY": ""})
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"live view at (\S+)", line)
        if found:
            threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # keep the pipe drained
            return proc, found.group(1), lines
    stop_demo(proc)
    raise RuntimeError("the demo printed no live view URL:\n" + "".join(lines))


def stop_demo(proc: subprocess.Popen) -> None:
    """Ctrl-C (the demo's own clean stop), then kill if it does not stop."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_share(pid: int, seconds: float) -> float:
    """% of one core the process used over the next `seconds`."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0)


def _pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 1) if len(values) else float("nan")


def frame_costs(frames: int = 400, fps: float = 10.0, camera_size: tuple[int, int] | None = None) -> dict:
    """The server's work per view frame, the page's messages against the window's view as
    a JPEG, timed alternately on the same states: `frames` frames at `fps` of a simulated
    person (seed 0) seen through the shipped bundle's contract, a new prediction's
    segments every hop (their colour-mapping, done once per prediction for the window and
    the page alike, is left out of both). The server's loop thread, which only queues the
    bytes for the viewers (none here), is not counted. `camera_size` (w, h): the simulated
    camera's frames scaled to a real camera's size first (its JPEG is most of the cost)."""
    from types import SimpleNamespace

    import cv2

    from edgehar.app.display import ViewState, render_view
    from edgehar.app.liveview import thumbnails, traces
    from edgehar.app.ringbuffer import SensorRing
    from edgehar.app.webmessages import JPEG_QUALITY, camera_part, segments_part
    from edgehar.app.webview import WebView
    from edgehar.benchmarks.mqtt_publish import SHIPPED_LITERT
    from edgehar.contract.manifest import Manifest
    from edgehar.contract.preprocess.inputs import build_inputs
    from edgehar.contract.preprocess.sampling import SegmentSampler
    from edgehar.contract.series import between
    from edgehar.firmware_bridge.health import StreamHealth
    from edgehar.simulator.subject import make_subject
    from edgehar.simulator.world import SimulatedWorld

    manifest = Manifest.load(SHIPPED_LITERT)
    start = 0.0
    rec = SimulatedWorld(make_subject(0, 0), seed=0).next_chunk(manifest.window_s + frames / fps + 1.0)
    rings = {}
    for s in manifest.streams:
        if s.kind == "sensor":
            series = rec.series[s.name]
            rings[s.name] = SensorRing(s.channels, capacity=len(series.timestamps) + 1)
            rings[s.name].append(series.timestamps, series.values.astype(np.float32))
    camera = rec.series["camera"]
    camera_frames = camera.frames if camera_size is None else np.stack(
        [cv2.resize(f, camera_size, interpolation=cv2.INTER_LINEAR) for f in camera.frames])
    sampler = SegmentSampler.for_manifest(manifest, train=False)
    rng = np.random.default_rng(0)
    health = {s.name: StreamHealth(s.name, f"sim://{s.name}", "connected", rate_hz=s.rate_hz, battery_pct=90)
              for s in manifest.streams}
    state = ViewState(title="edgehar demo", subtitle=str(SHIPPED_LITERT), labels=manifest.labels, smoothing="majority of 5",
                      health=health)
    web = WebView("127.0.0.1", 0)
    web.start()
    per_hop = max(1, round(fps * manifest.hop_s))
    old, new = [], []
    try:
        for k in range(frames):
            now = manifest.window_s + k / fps
            state.now = now - start
            state.frame = camera_frames[max(0, np.searchsorted(camera.timestamps, now) - 1)]
            state.traces = traces(manifest, rings, now, start)
            if k % per_hop == 0:  # a prediction: its tiles, probabilities and latency
                window = {n: between(rec.series[n], now - manifest.window_s, now) for n in rec.series}
                inputs = build_inputs(manifest, window, now - manifest.window_s, now, sampler)
                state.thumbnails = thumbnails(manifest, SimpleNamespace(inputs=inputs))
                state.probs = rng.dirichlet(np.ones(len(manifest.labels)))
                state.label = state.smoothed = manifest.labels[int(np.argmax(state.probs))]
                state.smoothed_confidence = float(state.probs.max())
                state.latency_ms = {"sampling": 0.1, "gaf": 0.3, "frames": 0.2, "inference": 1.0, "total": 1.6}
            for way in ((0, 1) if k % 2 else (1, 0)):  # alternate which goes first
                # this thread's CPU time, not the wall clock: waking the server's loop thread
                # can hand it the GIL mid-call, which costs the publisher wall time, not work
                t0 = time.thread_time()
                if way == 0:
                    cv2.imencode(".jpg", render_view(state), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                else:
                    web.publish(state, made=time.time())
                (old if way == 0 else new).append(time.thread_time() - t0)
        view_jpeg = cv2.imencode(".jpg", render_view(state), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
        sizes = {"state_json": len(web._latest["state"]), "camera_jpeg": len(camera_part(state.frame)[1]),
                 "segments_jpeg": len(segments_part(state.thumbnails)[1]), "whole_view_jpeg": len(view_jpeg)}
    finally:
        web.close()
    old_ms, new_ms = 1e3 * np.median(old), 1e3 * np.median(new)
    return {"frames": frames, "camera": f"{camera_frames.shape[2]}x{camera_frames.shape[1]}",
            "whole_view_ms_p50": round(old_ms, 3), "page_messages_ms_p50": round(new_ms, 3),
            "whole_view_ms_mean": round(1e3 * float(np.mean(old)), 3),
            "page_messages_ms_mean": round(1e3 * float(np.mean(new)), 3),
            "ratio_p50": round(old_ms / new_ms, 1), "bytes": sizes}


def measure(viewers: int, seconds: float, screenshot: Path | None, cycles: int = 3) -> dict:
    """`cycles` times: `seconds` with nobody watching, then `seconds` with `viewers` pages
    open (closed again after). Serving's cost is each cycle's watched minus nobody-watching
    CPU, and the median over cycles: the demo's own load drifts as its simulated person
    moves from activity to activity, and two phases measured once each, one after the
    other, differed by several points from one run to the next."""
    from playwright.sync_api import sync_playwright

    proc, url, _ = start_served_demo("--seconds", str(cycles * (2 * seconds + 30) + 60))
    phases, rates, lags_ms = [], [], []
    try:
        time.sleep(4.0)  # the first window fills; the process settles
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                for cycle in range(cycles):
                    idle = _cpu_share(proc.pid, seconds)
                    context = browser.new_context(viewport={"width": 1300, "height": 1000})
                    context.add_init_script(PAGE_PROBE)
                    pages = [context.new_page() for _ in range(viewers)]
                    for page in pages:
                        page.goto(url)
                    for page in pages:
                        page.wait_for_function("window.__frames >= 5", timeout=60_000)
                        page.evaluate("window.__lags = []")
                    count = "[window.__frames, window.__camera]"
                    counts0 = [page.evaluate(count) for page in pages]
                    t0 = time.monotonic()
                    served = _cpu_share(proc.pid, seconds)
                    elapsed = time.monotonic() - t0
                    rates += [[(b - a) / elapsed for a, b in zip(c0, page.evaluate(count))]
                              for page, c0 in zip(pages, counts0)]
                    lags_ms += [1e3 * lag for page in pages for lag in page.evaluate("window.__lags")]
                    phases.append({"nobody_watching": round(idle, 1), "watched": round(served, 1),
                                   "serving": round(served - idle, 1)})
                    if screenshot is not None and cycle == 0:
                        pages[0].screenshot(path=str(screenshot), full_page=True)
                    context.close()  # the pages go: the next cycle's first phase has nobody watching
            finally:
                browser.close()
    finally:
        stop_demo(proc)
    return {
        "viewers": viewers, "seconds": seconds, "cycles": cycles, "view_fps": 10.0,
        "cpu_pct_one_core": {k: round(float(np.median([p[k] for p in phases])), 1)
                             for k in ("nobody_watching", "watched", "serving")},  # medians over the cycles
        "cycles_cpu_pct_one_core": phases,
        "frames_per_s_per_viewer": round(float(np.mean([f for f, _ in rates])), 1),  # states drawn: view slots + predictions
        "camera_images_per_s_per_viewer": round(float(np.mean([c for _, c in rates])), 1),
        "lag_ms": {"n": len(lags_ms), "p50": _pct(lags_ms, 50), "p90": _pct(lags_ms, 90), "p99": _pct(lags_ms, 99),
                   "max": round(max(lags_ms), 1) if lags_ms else None},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", type=int, default=3, help="pages watching at once (default 3)")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each CPU phase (default 15)")
    p.add_argument("--cycles", type=positive_int, default=3, help="nobody-watching / watched phase pairs (default 3)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--screenshot", type=Path, help="also write the first page as a PNG (docs/serve.png)")
    p.add_argument("--frames", type=int, default=400, help="view frames timed both ways in this process (default 400)")
    args = p.parse_args(argv)
    result = measure(args.viewers, args.seconds, args.screenshot, args.cycles)
    result["per_frame"] = [frame_costs(args.frames), frame_costs(args.frames, camera_size=(640, 480))]
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result["command"] = "python benchmarks/serve_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
