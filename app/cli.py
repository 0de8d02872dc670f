"""`edgehar` command line: one verb per job (demo, train, simulate, models).

Verbs import what they need when they run, so `edgehar --help` and the runtime verbs
start without torch. Errors a user can cause (`EdgeharError`) print one line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import EdgeharError


def _number(kind: type, ok: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: parse `kind` and check it, with a one-line reason."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
        return value

    return parse


_positive_float = _number(float, lambda v: v > 0, "> 0")
_positive_int = _number(int, lambda v: v > 0, "> 0")
_probability = _number(float, lambda v: 0.0 <= v <= 1.0, "within [0, 1]")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names, e.g. rgb,glove")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgehar",
        description="Live multimodal activity recognition (glove + IMU + camera) on edge boards.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    demo = verbs.add_parser("demo", help="run the live path on simulated devices (no hardware needed)")
    demo.add_argument("--model", type=Path, metavar="BUNDLE",
                      help="bundle folder to run (default: the cached default MMTSA, trained on first use)")
    demo.add_argument("--seconds", type=_positive_float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    demo.add_argument("--json", type=Path, metavar="PATH", help="write one JSON line per prediction, with the simulated truth")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated world (default 0)")
    demo.add_argument("--threads", type=_positive_int, metavar="N", help="inference threads (default: the runtime's)")
    demo.add_argument("--transport", choices=("serial", "ble"), default="serial",
                      help="how the simulated glove and IMU reach the app: a pty read with pyserial (default) "
                           "or BLE via bleak and an emulated BlueZ")
    demo.add_argument("--glove", metavar="URL", help="use a real glove instead of the simulated one, "
                      "e.g. serial:///dev/ttyACM0?baud=921600 or ble://name=Glove")
    demo.add_argument("--imu", metavar="URL", help="use a real wrist IMU instead of the simulated one")
    demo.set_defaults(run=_demo)

    train = verbs.add_parser("train", help="train a model on simulated, recorded or BasicMotions data; writes a bundle")
    train.add_argument("--data", default="sim", metavar="SOURCE",
                       help="'sim' (default; generated once), 'basicmotions', or a folder of recorded sessions")
    train.add_argument("--model", default="mmtsa", help="registered model name (see `edgehar models`)")
    train.add_argument("--modalities", type=_names, default=(), metavar="A,B",
                       help="train on these modalities only (default: all the data has)")
    train.add_argument("--ablation", action="store_true",
                       help="also train each modality alone and write ablation.md (the paper's table)")
    train.add_argument("--epochs", type=_positive_int, help="training epochs")
    train.add_argument("--batch-size", type=_positive_int, help="batch size")
    train.add_argument("--windows-per-bout", type=_positive_int, metavar="N",
                       help="random training windows drawn per labelled bout per epoch")
    train.add_argument("--lr", type=_positive_float, help="peak learning rate")
    train.add_argument("--segments", type=_positive_int, dest="num_segments", help="N sparse segments per window")
    train.add_argument("--gaf-k", type=_positive_int, dest="gaf_k", help="K samples per GAF window")
    train.add_argument("--gaf-scaling", choices=("window", "range"), dest="gaf_scaling",
                       help="rescale GAF windows per window (official MMTSA) or over ranges calibrated on the training data")
    train.add_argument("--window", type=_positive_float, dest="window_s", metavar="S", help="observation window (s)")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--threads", type=_positive_int, metavar="N", help="torch threads (default: all cores)")
    train.add_argument("--out", default="runs/train", help="output folder (bundle/, metrics.json, confusion.csv)")
    train.set_defaults(run=_train)

    sim = verbs.add_parser("simulate", help="simulated devices and data")
    what = sim.add_subparsers(dest="what", required=True, metavar="WHAT")
    dataset = what.add_parser("dataset", help="write a simulated multi-subject data set in the session format")
    dataset.add_argument("--out", type=Path, required=True, help="folder to write the sessions into")
    dataset.add_argument("--subjects", type=_positive_int, default=10, help="number of subjects (default 10)")
    dataset.add_argument("--repeats", type=_positive_int, default=3, help="bouts of each activity per subject (default 3)")
    dataset.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    dataset.set_defaults(run=_simulate_dataset)
    for kind in ("glove", "imu"):
        dev = what.add_parser(kind, help=f"run a simulated {kind} that streams the wire protocol in real time")
        link = dev.add_mutually_exclusive_group(required=True)
        link.add_argument("--serial", action="store_true", help="on a new pseudo-terminal (prints its path)")
        link.add_argument("--ble", action="store_true",
                          help="as a BLE peripheral on an emulated BlueZ (prints the D-Bus address to export)")
        dev.add_argument("--seed", type=int, default=0, help="seed (default 0)")
        dev.add_argument("--seconds", type=_positive_float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
        dev.add_argument("--drift-ppm", type=float, metavar="PPM", help="device clock drift (default: random within ±100)")
        dev.add_argument("--loss", type=_probability, default=0.0, metavar="P", help="probability of dropping a block")
        dev.add_argument("--corrupt", type=_probability, default=0.0, metavar="P", help="probability of corrupting a frame")
        dev.add_argument("--format", choices=("binary", "csv"), default="binary",
                         help="wire format (--serial only): binary protocol v1 or CSV lines")
        dev.set_defaults(run=_simulate_device, kind=kind)

    models = verbs.add_parser("models", help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mmtsa*'")
    models.set_defaults(run=_models)
    return p


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    devices = {name: url for name, url in (("glove", args.glove), ("imu", args.imu)) if url}
    run_demo(args.model, args.seconds, args.json, seed=args.seed, threads=args.threads,
             transport=args.transport, devices=devices)
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..models.train import TrainConfig, train, train_ablation

    given = {k: getattr(args, k) for k in ("epochs", "batch_size", "windows_per_bout", "lr", "num_segments", "gaf_k", "gaf_scaling", "window_s", "seed", "threads")}
    cfg = replace(TrainConfig(data=args.data, model=args.model, modalities=args.modalities, out=args.out),
                  **{k: v for k, v in given.items() if v is not None})
    if args.ablation:
        train_ablation(cfg)
        print(Path(args.out, "ablation.md").read_text())
    else:
        m = train(cfg)
        print(f"test accuracy {100 * m['accuracy']:.1f}%  macro-F1 {100 * m['macro_f1']:.1f}%  "
              f"({m['test_windows']} windows; bundle in {Path(args.out, 'bundle')})")
    return 0


def _simulate_dataset(args: argparse.Namespace) -> int:
    from ..firmware_bridge.sim.world import generate_dataset

    paths = generate_dataset(args.out, subjects=args.subjects, repeats=args.repeats, seed=args.seed)
    print(f"wrote {len(paths)} sessions to {args.out}")
    return 0


def _simulate_device(args: argparse.Namespace) -> int:
    options = dict(seed=args.seed, drift_ppm=args.drift_ppm, loss=args.loss, corrupt=args.corrupt)
    if args.serial:
        from ..firmware_bridge.sim.firmware import serve_serial

        def ready(path: str) -> None:
            print(f"simulated {args.kind} streaming on {path}  ->  --{args.kind} serial://{path}"
                  + ("?format=csv" if args.format == "csv" else ""), flush=True)

        serve_serial(args.kind, on_ready=ready, seconds=args.seconds, fmt=args.format, **options)
    else:
        if args.format != "binary":
            raise EdgeharError("--format csv is for --serial; BLE carries the binary protocol")
        from ..firmware_bridge.sim.ble_peripheral import serve_ble

        serve_ble(args.kind, duration_s=args.seconds, on_ready=lambda info: print(info, flush=True), **options)
    return 0


def _models(args: argparse.Namespace) -> int:
    from ..models import list_models

    for name in list_models(args.pattern):
        print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeharError as exc:
        print(f"edgehar {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
