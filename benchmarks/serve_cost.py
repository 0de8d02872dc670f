"""What the browser view (`--serve`) costs: page-to-prediction lag and server CPU.

    python benchmarks/serve_cost.py [--viewers 3] [--seconds 20] [--out benchmarks/results/serve_cost.json]
        [--screenshot docs/serve.png]

Runs `edgehar demo --serve` as a user would (the default bundle: the shipped LiteRT int8, headless,
the view at its default 10 fps) and watches it from Debian's chromium, headless, driven
by playwright (`executable_path`, no browser download):

- server CPU: the demo process's user + system CPU (Linux /proc) over `--seconds` with
  the port open and nobody watching, then over as long with `--viewers` pages open;
  what serving costs is the difference, in % of one core. Nothing is drawn for the page
  while nobody watches, so the first phase costs what a run without `--serve` does.
- lag: for every prediction, from the moment it was made (the wall clock of the demo,
  sent with the frame) to the moment the page has decoded the frame that shows it
  (the page's `edgehar:frame` event, Date.now() in the browser: same machine, same clock).

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

from edgehar.benchmarks.live_path import cpu_seconds

DEFAULT_OUT = Path(__file__).parent / "results" / "serve_cost.json"
CHROMIUM = "/usr/bin/chromium"  # Debian's
# Chromium as root on a machine with a closed network: no sandbox, no GPU, no background calls home.
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
# Installed in every page: counts frames and the lag of each newly shown prediction.
PAGE_PROBE = """
window.__frames = 0; window.__lags = []; let made = null;
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


def measure(viewers: int, seconds: float, screenshot: Path | None) -> dict:
    from playwright.sync_api import sync_playwright

    proc, url, _ = start_served_demo("--seconds", str(3 * seconds + 60))
    try:
        time.sleep(4.0)  # the first window fills; the process settles
        idle = _cpu_share(proc.pid, seconds)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                context = browser.new_context(viewport={"width": 1300, "height": 1000})
                context.add_init_script(PAGE_PROBE)
                pages = [context.new_page() for _ in range(viewers)]
                for page in pages:
                    page.goto(url)
                for page in pages:
                    page.wait_for_function("window.__frames >= 5", timeout=60_000)
                    page.evaluate("window.__lags = []")
                frames0 = [page.evaluate("window.__frames") for page in pages]
                t0 = time.monotonic()
                served = _cpu_share(proc.pid, seconds)
                elapsed = time.monotonic() - t0
                fps = [(page.evaluate("window.__frames") - f0) / elapsed for page, f0 in zip(pages, frames0)]
                lags_ms = [1e3 * lag for page in pages for lag in page.evaluate("window.__lags")]
                if screenshot is not None:
                    pages[0].screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
    finally:
        stop_demo(proc)
    return {
        "viewers": viewers, "seconds": seconds, "view_fps": 10.0,
        "cpu_pct_one_core": {"nobody_watching": round(idle, 1), "watched": round(served, 1),
                             "serving": round(served - idle, 1)},
        "frames_per_s_per_viewer": [round(f, 1) for f in fps],
        "lag_ms": {"n": len(lags_ms), "p50": _pct(lags_ms, 50), "p90": _pct(lags_ms, 90), "p99": _pct(lags_ms, 99),
                   "max": round(max(lags_ms), 1) if lags_ms else None},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", type=int, default=3, help="pages watching at once (default 3)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each CPU phase (default 20)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--screenshot", type=Path, help="also write the first page as a PNG (docs/serve.png)")
    args = p.parse_args(argv)
    result = measure(args.viewers, args.seconds, args.screenshot)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result["command"] = "python benchmarks/serve_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
