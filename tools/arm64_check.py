"""aarch64, proven: edgehar's deploy-only install and shipped LiteRT bundle on arm64 Debian.

    make arm64-check        # = .venv/bin/python tools/arm64_check.py (root, Debian host)
    .venv/bin/python tools/arm64_check.py [--rootfs DIR] [--demo-seconds 20] [--seed 0]
        [--out docs/arm64.json] [--doc docs/arm64.md]

1. installs debootstrap, qemu-user-static and binfmt-support with apt-get when missing and
   lets the kernel run aarch64 binaries through QEMU (binfmt_misc);
2. builds an arm64 Debian bookworm root file system once and caches it
   (`$EDGEHAR_HOME/arm64-rootfs`, default ~/.cache/edgehar/arm64-rootfs);
3. builds a wheel of this checkout on the host and installs it there, with the
   deploy-only extras (LiteRT, headless OpenCV, no torch), into a fresh venv from wheels
   only (no source build);
4. runs `edgehar demo --headless` for `--demo-seconds` there (the shipped LiteRT bundle
   on simulated devices) and checks it predicts known activities;
5. runs the shipped LiteRT bundle on the same fixed inputs on both sides -- every test
   window of a seeded simulated data set, built once on the host into an .npz -- and
   requires the same top-1 on every window, reporting the largest logit difference;
6. writes the result as JSON (`--out`) and as the generated part of `--doc`.

Exit 0: passed; 1: a check failed (the JSON says which); 2: a setup step failed (one
line naming it). Under emulation latencies mean nothing, so none is reported.
Takes 10-30 min the first time (debootstrap and pip under emulation), less once cached.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from arm64_rootfs import (MIRROR, QEMU_CPU, SUITE, RootfsError, aarch64_cpuinfo, build_rootfs,
                          chroot_check, chroot_run, configure_rootfs, enable_binfmt, ensure_host_packages,
                          in_private_mount_namespace, mounted)

ROOT = Path(__file__).resolve().parents[1]
VENV = "/opt/edgehar"  # the deploy venv inside the rootfs
WORK = "/tmp/edgehar-arm64-check"  # inside the rootfs: wheel, this script, inputs, outputs
TOOL_FILES = ("arm64_check.py", "arm64_rootfs.py")
BUNDLE = "litert-int8"  # the shipped bundle a torch-free board runs
# The deploy-only install of a Pi OS Lite-like board: LiteRT, no torch, OpenCV without X or GL
# (the minbase rootfs has none of their libraries, so the check also shows none is needed).
EXTRAS = "litert,headless"
DOC_BEGIN, DOC_END = "<!-- arm64-check:begin -->", "<!-- arm64-check:end -->"


# -- fixed inputs and the logits of the shipped bundle (the part that runs on both sides) --
def shipped_litert() -> Path:
    """The shipped LiteRT bundle of the edgehar this interpreter imports."""
    from edgehar.cli.demo import SHIPPED_DIR

    return SHIPPED_DIR / BUNDLE


def write_windows(path: Path, seed: int, subjects: int = 2) -> int:
    """Every evaluation window of a freshly simulated data set (`seed`), built by the
    project's input pipeline for the shipped bundle, saved as float32 arrays (one per
    modality, (W, N, C, H, W)) with their labels. Returns the number of windows."""
    from edgehar.contract.bundle import read_manifest
    from edgehar.models.datasets import WindowSampler, load_data
    from edgehar.simulator.world import generate_dataset

    manifest = read_manifest(shipped_litert())
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(Path(tmp) / "sim", subjects=subjects, repeats=1, seed=seed, progress=False)
        data = load_data(str(Path(tmp) / "sim"), frame_resize=manifest.frame_resize, progress=False)
        windows = WindowSampler(manifest, data.recordings, train=False)
        arrays, labels = windows.inputs(windows.eval_windows)
    np.savez_compressed(path, labels=labels, **{f"input_{i}": a for i, a in enumerate(arrays)})
    return len(labels)


def bundle_logits(inputs: Path, bundle: Path) -> dict[str, Any]:
    """The bundle's logits for every window in `inputs`, one window at a time (batch 1,
    as live), with what ran them: machine, Python, package versions, model file sha256."""
    import edgehar
    from edgehar.app.backends import load_bundle
    from edgehar.benchmarks.bench import machine_info
    from edgehar.contract.bundle import model_path

    manifest, backend = load_bundle(bundle, num_threads=1)
    with np.load(inputs) as npz:
        arrays = [npz[f"input_{i}"] for i in range(len(manifest.modalities))]
    logits = [np.asarray(backend.run(tuple(a[w:w + 1] for a in arrays)))[0] for w in range(len(arrays[0]))]
    info = machine_info()
    return {
        "machine": platform.machine(), "python": info["python"],
        "packages": {"edgehar": edgehar.__version__, **info["versions"]},
        "model_sha256": hashlib.sha256(model_path(bundle, manifest).read_bytes()).hexdigest(),
        "logits": np.stack(logits).astype(np.float32).tolist(),
    }


def compare_logits(host: np.ndarray, arm: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement and the largest absolute logit difference, window by window."""
    if host.shape != arm.shape:
        return {"windows": int(host.shape[0]), "same_shape": False, "top1_equal": 0, "top1_differs_at": [],
                "max_abs_logit_diff": None, "bit_identical": False}
    differs = np.flatnonzero(host.argmax(1) != arm.argmax(1))
    return {"windows": int(host.shape[0]), "same_shape": True, "top1_equal": int(host.shape[0] - differs.size),
            "top1_differs_at": differs.tolist(), "max_abs_logit_diff": float(np.abs(host - arm).max(initial=0.0)),
            "bit_identical": bool(np.array_equal(host, arm))}


def summarise_demo(jsonl: str, labels: tuple[str, ...]) -> dict[str, Any]:
    """Predictions in a demo's JSON log: how many, which labels, any label the bundle does
    not have (a corrupted output), how many were degraded (a stream had no sample in the
    window) and how many agree with the simulated truth, over all and over the complete ones."""
    preds = [json.loads(line) for line in jsonl.splitlines() if line.strip()]
    seen: dict[str, int] = {}
    for p in preds:
        seen[p["label"]] = seen.get(p["label"], 0) + 1
    complete = [p for p in preds if not p.get("degraded")]
    return {"predictions": len(preds), "labels": dict(sorted(seen.items())),
            "unknown_labels": sorted(set(seen) - set(labels)), "agreement": _agreement(preds),
            "degraded": len(preds) - len(complete), "agreement_complete": _agreement(complete)}


def _agreement(preds: list[dict[str, Any]]) -> float | None:
    scored = [p for p in preds if p.get("truth") is not None]
    return round(sum(p["truth"] == p["label"] for p in scored) / len(scored), 4) if scored else None


def verdict(demo: dict[str, Any], fidelity: dict[str, Any]) -> list[str]:
    """What failed, one phrase each; empty when the check passed."""
    failures = []
    if demo.get("exit") != 0:
        failures.append(f"the demo exited {demo.get('exit')}")
    if demo.get("predictions", 0) == 0:
        failures.append("the demo made no prediction")
    elif demo.get("degraded") == demo.get("predictions"):
        failures.append("no demo prediction had every stream")
    if demo.get("unknown_labels"):
        failures.append(f"the demo predicted labels the bundle lacks: {demo['unknown_labels']}")
    if not fidelity.get("same_shape"):
        failures.append("the arm64 logits have another shape than the host's")
    elif fidelity["top1_equal"] != fidelity["windows"]:
        failures.append(f"top-1 differs on {fidelity['windows'] - fidelity['top1_equal']} of {fidelity['windows']} windows")
    if fidelity.get("model_sha256_equal") is False:
        failures.append("the arm64 install holds another model file than the host's")
    return failures


# -- the report ---------------------------------------------------------------------------
def render_markdown(report: dict[str, Any]) -> str:
    """The generated part of docs/arm64.md: command, date, machines, result."""
    t, d, f = report["target"], report["demo"], report["fidelity"]
    pkgs = ", ".join(f"{k} {v}" for k, v in t["packages"].items())
    diff = f["max_abs_logit_diff"]
    lines = [
        f"**{'PASSED' if report['passed'] else 'FAILED'}**"
        + ("" if report["passed"] else f": {'; '.join(report['failures'])}"),
        "",
        f"`{report['command']}`, {report['date']}, host {report['host']['cpu']} "
        f"({report['host']['machine']}, {report['host']['cores']} cores, {report['host']['os']}, "
        f"Python {report['host']['python']}); took {report['durations_s']['total']:.0f} s, "
        f"{next((k for k in report['durations_s'] if k.startswith('rootfs')), 'rootfs')}.",
        "",
        "| | |",
        "|---|---|",
        f"| target | {t['os']}, {t['machine']}, Python {t['python']}, under {t['emulation']} "
        f"(`QEMU_CPU={t['qemu_cpu']}`) |",
        f"| installed | `pip install --only-binary=:all: 'edgehar[{t['extras']}]'` (a wheel of this checkout): {pkgs}; "
        f"venv {t['venv_mb']:.0f} MB |",
        f"| demo | `edgehar demo --headless --seconds {d['seconds']:g}`: exit {d['exit']}, {d['predictions']} predictions, "
        f"{_percent(d['agreement'])} agree with the simulated truth; {d['degraded']} degraded (a stream had no "
        f"sample in the window), {_percent(d['agreement_complete'])} of the other {d['predictions'] - d['degraded']} agree |",
        f"| same inputs | {f['windows']} windows of a simulated data set (seed {f['seed']}), shipped `{f['bundle']}` "
        f"({'the same model file on both, sha256 ' if f['model_sha256_equal'] else 'DIFFERENT model files; host sha256 '}"
        f"`{f['model_sha256'][:16]}…`): "
        f"top-1 equal on {f['top1_equal']} of {f['windows']}, max abs logit difference "
        f"{'n/a' if diff is None else f'{diff:.3g}'}{' (bit-identical)' if f['bit_identical'] else ''}; "
        f"top-1 is the simulated activity on {100 * f['accuracy_host']:.1f} % (x86-64) and "
        f"{100 * f['accuracy_arm64']:.1f} % (arm64) |",
    ]
    return "\n".join(lines) + "\n"


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def replace_block(doc: str, block: str) -> str:
    """`doc` with the text between the arm64-check markers replaced by `block`."""
    start, end = doc.find(DOC_BEGIN), doc.find(DOC_END)
    if start < 0 or end < start:
        raise ValueError(f"no {DOC_BEGIN} ... {DOC_END} block to replace")
    return doc[:start + len(DOC_BEGIN)] + "\n" + block + doc[end:]


def host_info() -> dict[str, Any]:
    from edgehar.benchmarks.bench import machine_info

    info = machine_info()
    return {"cpu": info["cpu"], "machine": platform.machine(), "cores": info["cores"], "python": info["python"],
            "os": info["os"]}


# -- the run ------------------------------------------------------------------------------
def build_wheel(out: Path) -> Path:
    """A wheel of this checkout as it is (shipped bundles included), built on the host from
    a copy of its files (deploy_footprint's copy_tree), so the build leaves nothing in the tree."""
    from edgehar.benchmarks.deploy_footprint import copy_tree

    with tempfile.TemporaryDirectory() as tmp:
        try:
            copy_tree(Path(tmp))
        except subprocess.CalledProcessError as exc:
            raise RootfsError(f"listing the checkout's files failed: {(exc.stderr or b'').decode().strip()[-300:]}") from None
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), tmp],
                              capture_output=True, text=True)
    wheels = sorted(out.glob("edgehar-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RootfsError(f"building the edgehar wheel failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return wheels[-1]


def install(root: Path, wheel: Path, log: Path) -> dict[str, Any]:
    """A fresh deploy venv in the rootfs (what a board gets, never an upgraded one), this
    wheel and its dependencies from wheels only; pip's download cache stays in the rootfs."""
    chroot_check(root, ["python3", "-m", "venv", "--clear", VENV], "python3 -m venv", log=log)
    chroot_check(root, [f"{VENV}/bin/pip", "install", "--quiet", "--only-binary=:all:", f"{WORK}/{wheel.name}[{EXTRAS}]"],
                 f"pip install edgehar[{EXTRAS}]", log=log)
    chroot_check(root, [f"{VENV}/bin/edgehar", "--version"], "edgehar --version", log=log)
    venv_bytes = sum(p.stat().st_size for p in (root / VENV.lstrip("/")).rglob("*") if p.is_file() and not p.is_symlink())
    return {"extras": EXTRAS, "venv_mb": round(venv_bytes / 2**20, 1)}


def run_demo(root: Path, seconds: float, labels: tuple[str, ...], log: Path) -> dict[str, Any]:
    """`edgehar demo --headless` in the rootfs for `seconds`, summarised from its JSON log."""
    jsonl = f"{WORK}/demo.jsonl"
    proc = chroot_run(root, [f"{VENV}/bin/edgehar", "demo", "--headless", "--seconds", f"{seconds:g}", "--json", jsonl],
                      timeout_s=seconds + 600, log=log)
    written = root / jsonl.lstrip("/")
    return {"seconds": seconds, "exit": proc.returncode,
            **summarise_demo(written.read_text() if written.is_file() else "", labels)}


def fidelity_report(host: dict[str, Any], arm: dict[str, Any], windows: Path, seed: int) -> dict[str, Any]:
    """The two sides' logits on the same windows compared, with the model files' hashes
    and how often each side's top-1 is the simulated activity."""
    with np.load(windows) as npz:
        truth = npz["labels"]
    host_logits, arm_logits = (np.asarray(side["logits"], np.float32) for side in (host, arm))
    return {"bundle": f"{shipped_litert().parent.name}/{BUNDLE}", "seed": seed,
            "accuracy_host": round(float((host_logits.argmax(1) == truth).mean()), 4),
            "accuracy_arm64": round(float((arm_logits.argmax(1) == truth).mean()), 4),
            "model_sha256": host["model_sha256"], "model_sha256_equal": arm["model_sha256"] == host["model_sha256"],
            **compare_logits(host_logits, arm_logits)}


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Every step of the check (module docstring); the report as docs/arm64.json holds it."""
    from edgehar.contract.bundle import read_manifest

    durations: dict[str, float] = {}
    t_start = t = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t
        durations[name], t = round(time.monotonic() - t, 1), time.monotonic()

    root = Path(args.rootfs)
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / "arm64-check.log"
    log.write_text("")
    flags = enable_binfmt()
    print(f"arm64-check: binfmt_misc runs aarch64 with qemu-aarch64-static (flags {flags})", flush=True)
    print(f"arm64-check: arm64 Debian {SUITE} rootfs in {root} (log: {log})", flush=True)
    lap("rootfs (built now)" if build_rootfs(root, args.mirror, log) else "rootfs (cached)")

    work = root / WORK.lstrip("/")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in TOOL_FILES:
        shutil.copyfile(ROOT / "tools" / name, work / name)
    wheel = build_wheel(work)
    print(f"arm64-check: built {wheel.name}; fixed inputs from a simulated data set (seed {args.seed})", flush=True)
    n_windows = write_windows(work / "windows.npz", args.seed)
    host = bundle_logits(work / "windows.npz", shipped_litert())
    lap("host")

    with mounted(root, aarch64_cpuinfo(os.cpu_count() or 1)):
        configure_rootfs(root)
        print(f"arm64-check: pip install edgehar[{EXTRAS}] in a fresh venv in the rootfs (wheels only)", flush=True)
        target = install(root, wheel, log)
        lap("install")
        print(f"arm64-check: edgehar demo --headless --seconds {args.demo_seconds:g} in the rootfs", flush=True)
        demo = run_demo(root, args.demo_seconds, read_manifest(shipped_litert()).labels, log)
        lap("demo")
        print(f"arm64-check: the shipped bundle on the {n_windows} fixed windows in the rootfs", flush=True)
        chroot_check(root, [f"{VENV}/bin/python", f"{WORK}/arm64_check.py", "logits",
                            "--inputs", f"{WORK}/windows.npz", "--out", f"{WORK}/arm64-logits.json"],
                     "the logits run", log=log)
        arm = json.loads((work / "arm64-logits.json").read_text())
        lap("logits")

    fidelity = fidelity_report(host, arm, work / "windows.npz", args.seed)
    failures = verdict(demo, fidelity)
    durations["total"] = round(time.monotonic() - t_start, 1)
    rootfs_os = (root / "etc/debian_version").read_text().strip()
    return {
        "passed": not failures, "failures": failures,
        "date": datetime.date.today().isoformat(), "command": "make arm64-check", "host": host_info(),
        "target": {"os": f"Debian {rootfs_os} ({SUITE})", "machine": arm["machine"], "python": arm["python"],
                   "emulation": f"qemu-user-static {_qemu_version()}", "qemu_cpu": QEMU_CPU,
                   "packages": arm["packages"], **target},
        "demo": demo, "fidelity": fidelity, "durations_s": durations,
    }


def _qemu_version() -> str:
    out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout
    return out.split("version", 1)[-1].split()[0] if "version" in out else "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["logits"]:  # the part that runs inside the rootfs (and only needs edgehar + numpy)
        ap = argparse.ArgumentParser(prog="arm64_check.py logits")
        ap.add_argument("--inputs", type=Path, required=True)
        ap.add_argument("--out", type=Path, required=True)
        a = ap.parse_args(argv[1:])
        a.out.write_text(json.dumps(bundle_logits(a.inputs, shipped_litert())))
        return 0
    from edgehar.models.datasets import cache_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", default=str(cache_dir() / "arm64-rootfs"), help="the cached rootfs (built when missing)")
    ap.add_argument("--mirror", default=MIRROR, help="Debian mirror for debootstrap")
    ap.add_argument("--demo-seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated data set the fixed inputs come from")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/arm64.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs/arm64.md", help="its generated block is rewritten")
    args = ap.parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise RootfsError("needs root (apt-get, mount, chroot): run it as root, e.g. with sudo")
        ensure_host_packages()
        in_private_mount_namespace([str(Path(__file__).resolve()), *argv])
        report = run_check(args)
    except RootfsError as exc:
        print(f"arm64-check: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    block = render_markdown(report)
    if args.doc.is_file() and DOC_BEGIN in args.doc.read_text():
        args.doc.write_text(replace_block(args.doc.read_text(), block))
    print(block, end="")
    print(f"arm64-check: {'passed' if report['passed'] else 'FAILED'}; wrote {args.out}", flush=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
