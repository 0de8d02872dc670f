"""The deploy-only install as a board gets it: its size on disk, the demo's peak memory and
how soon it predicts.

    python benchmarks/deploy_footprint.py [--python python3] [--extras litert,headless]
        [--seconds 20] [--out benchmarks/results/deploy_footprint.json]

Builds a fresh venv in a temporary folder with `pip install '<a copy of this tree>[EXTRAS]'`
(not editable: the wheel a board installs; pip's cache may serve the downloads), measures the
venv on disk (blocks allocated, every file once) and each installed distribution (the
files its RECORD lists, so `opencv_python_headless.libs/` counts with OpenCV), then runs
`edgehar demo --headless --seconds S` from that venv, outside the source tree, with no
display, as a user would. From the demo: seconds from starting the process to its first
prediction line (imports, loading the shipped bundle, the simulated devices connecting
and the first window filling) and its peak RSS (wait4's ru_maxrss of the demo process
itself: the simulated devices' firmware threads are in it, the Python interpreter the
venv points at is not on the venv's disk). Checked against issue 14's figures: install
<= 250 MB, peak RSS <= 200 MB, first prediction <= 5 s. Writes JSON to --out and
markdown beside it (.md).

`--python python3.10` builds the same install for JetPack 6's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).parent / "results" / "deploy_footprint.json"
TARGETS = {"install_mb": 250.0, "peak_rss_mb": 200.0, "first_prediction_s": 5.0}  # issue 14's figures
MB = 1e6
TOP_PACKAGES = 8

# Run by the venv's own interpreter: every installed distribution and the disk its files use.
_PACKAGE_SIZES = """
import importlib.metadata as md, json, os
seen, rows = set(), []
for dist in md.distributions():
    total = 0
    for f in dist.files or ():
        path = os.path.realpath(f.locate())
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        total += os.stat(path).st_blocks * 512
    rows.append([dist.metadata["Name"], dist.version, total])
print(json.dumps(rows))
"""


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk to the files under `folder` (each hard-linked file once;
    symbolic links not followed: a venv's python is a link to the system's)."""
    seen, total = set(), 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def package_sizes(python: Path | str) -> list[dict]:
    """[{name, version, mb}] of every distribution installed for `python`, largest first."""
    out = subprocess.run([str(python), "-c", _PACKAGE_SIZES], capture_output=True, text=True, check=True).stdout
    rows = [{"name": n, "version": v, "mb": round(b / MB, 1)} for n, v, b in json.loads(out)]
    return sorted(rows, key=lambda r: -r["mb"])


def copy_tree(dest: Path) -> Path:
    """The files a clone of this tree holds (git's tracked and not ignored ones), copied to
    `dest`: pip builds the wheel there, so no build/ folder is left in the tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def build_venv(python: str, extras: str, venv: Path, source: Path) -> float:
    """A fresh venv at `venv` with the tree at `source` installed with `extras`; seconds it took."""
    started = time.monotonic()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{source}[{extras}]"], check=True)
    return time.monotonic() - started


PREDICTION = re.compile(r"^t=\s*\d")  # the demo's line per prediction off a terminal
SUMMARY = re.compile(r"(\d+) predictions, ([\d.]+)% agree")


def run_demo(edgehar: Path, seconds: float, cwd: Path) -> dict:
    """`edgehar demo --headless` from the deploy venv: first prediction, peak RSS, predictions."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    env["EDGEHAR_HOME"] = str(cwd / "edgehar-home")  # nothing cached from an earlier run
    started = time.monotonic()
    proc = subprocess.Popen([str(edgehar), "demo", "--headless", "--seconds", str(seconds)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first: list[float] = []
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            if not first and PREDICTION.match(line):
                first.append(time.monotonic() - started)
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # wait4 reaps the demo with its own rusage: the peak RSS of this process alone
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    err = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(f"edgehar demo exited with {proc.returncode}: {err.strip()[-800:]}")
    summary = next((SUMMARY.search(l) for l in reversed(lines) if SUMMARY.search(l)), None)
    return {"first_prediction_s": round(first[0], 2) if first else None,
            "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # ru_maxrss: KiB on Linux
            "predictions": int(summary.group(1)) if summary else sum(bool(PREDICTION.match(l)) for l in lines),
            "agreement_pct": float(summary.group(2)) if summary else None,
            "wall_s": round(time.monotonic() - started, 2)}


def verdicts(result: dict) -> dict[str, bool]:
    """Each of issue 14's figures: met or not (a figure that could not be measured is not met)."""
    measured = {"install_mb": result["install_mb"], **{k: result["demo"][k] for k in ("peak_rss_mb", "first_prediction_s")}}
    return {k: measured[k] is not None and measured[k] <= limit for k, limit in TARGETS.items()}


def to_markdown(result: dict) -> str:
    demo, ok = result["demo"], result["verdicts"]
    mark = lambda key: "met" if ok[key] else "**not met**"
    rows = [
        "| figure | measured | target | |",
        "|---|---:|---:|---|",
        f"| install on disk (venv: {result['extras']}) | {result['install_mb']:.0f} MB | ≤ {TARGETS['install_mb']:.0f} MB | {mark('install_mb')} |",
        f"| demo peak RSS | {demo['peak_rss_mb']:.0f} MB | ≤ {TARGETS['peak_rss_mb']:.0f} MB | {mark('peak_rss_mb')} |",
        f"| first prediction after start | {demo['first_prediction_s']} s | ≤ {TARGETS['first_prediction_s']:g} s | {mark('first_prediction_s')} |",
    ]
    largest = ["| package | version | on disk |", "|---|---|---:|"]
    largest += [f"| {p['name']} | {p['version']} | {p['mb']:.1f} MB |" for p in result["packages"][:TOP_PACKAGES]]
    rest = sum(p["mb"] for p in result["packages"][TOP_PACKAGES:])
    largest.append(f"| {len(result['packages']) - TOP_PACKAGES} others | | {rest:.1f} MB |")
    return (f"Deploy-only install, {result['machine']}\n\n    {result['command']}\n\n"
            + "\n".join(rows) + f"\n\nDemo: {demo['predictions']} predictions in {result['seconds']:g} s "
            f"({demo['agreement_pct']}% agree with the simulated activity); install took {result['install_s']:.0f} s "
            "(pip cache warm).\n\nLargest installed distributions:\n\n" + "\n".join(largest) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter of the new venv (default: this one)")
    ap.add_argument("--extras", default="litert,headless", help="edgehar extras to install (default litert,headless)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of demo (default 20)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--keep", action="store_true", help="keep the temporary venv (its path is printed)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edgehar-deploy-"))
    try:
        venv = work / "venv"
        install_s = build_venv(args.python, args.extras, venv, copy_tree(work / "source"))
        python = venv / "bin" / "python"
        version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        result = {
            "command": " ".join(["python benchmarks/deploy_footprint.py", *(argv if argv is not None else sys.argv[1:])]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}, venv Python {version}",
            "date": time.strftime("%Y-%m-%d"), "extras": args.extras, "seconds": args.seconds,
            "install_s": round(install_s, 1), "install_mb": round(disk_bytes(venv) / MB, 1),
            "packages": package_sizes(python),
            "demo": run_demo(venv / "bin" / "edgehar", args.seconds, work),
        }
        result["verdicts"] = verdicts(result)
    finally:
        if args.keep:
            print(f"deploy_footprint: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(result))
    print(to_markdown(result))
    print(f"deploy_footprint: wrote {args.out} (.md)")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
