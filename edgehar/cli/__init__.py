"""`edgehar` command line: one verb per job (demo, live, record, train, evaluate, simulate, export, bench, info, models,
devices).

Verbs import what they need when they run, and every verb's flags are defined here
(the parser imports nothing but the torch-free contract), so `edgehar --help` and the
runtime verbs start without torch, models, quantize or benchmarks. Errors a user can cause (`EdgeharError`) print one line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from ..argtypes import host_port, non_negative_float, positive_float, positive_int, probability
from ..errors import EdgeharError, EdgeharWarning
from ..app.config import SMOOTHING_MODES, STALE_S
from ..app.mqtt import parse_mqtt_url
from ..contract.formats import FORMATS, MAX_ACCURACY_DROP, MIN_AGREEMENT, PRECISIONS


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names, e.g. rgb,glove")
    return names


class _Parser(argparse.ArgumentParser):
    """argparse as users of git or pip expect it: a flag is never matched by a prefix of
    its name (`--sec` is not `--seconds`: a prefix that matched today breaks when a flag
    is added tomorrow), and a mistyped verb or flag gets a did-you-mean."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        super().error(message + _did_you_mean(message, self))


def _did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """'; did you mean ...?' for argparse's invalid-choice and unrecognized-arguments errors."""
    import difflib
    import re

    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        bad, known = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
    elif message.startswith("unrecognized arguments: "):
        flags = [w.split("=")[0] for w in message.split(": ", 1)[1].split() if w.startswith("-")]
        bad, known = (flags[0] if flags else ""), list(parser._option_string_actions)
    else:
        return ""
    close = difflib.get_close_matches(bad, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the verb that was given: `simulate glove`'s, not `simulate`'s."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, sub.dest, None) not in sub.choices:
            return parser
        parser = sub.choices[getattr(args, sub.dest)]


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("edgehar")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="edgehar",
        description="Live multimodal activity recognition (glove + IMU + camera) on edge boards.",
    )
    p.add_argument("--version", action="version", version=f"edgehar {_version()}")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    demo = verbs.add_parser("demo", help="run the live path on simulated devices (no hardware needed)")
    demo.add_argument("--model", type=Path, metavar="BUNDLE",
                      help="bundle folder to run (default: the cached default MMTSA, trained on first use)")
    demo.add_argument("--seconds", type=positive_float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    demo.add_argument("--json", type=Path, metavar="PATH", help="write one JSON line per prediction, with the simulated truth")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated world (default 0)")
    demo.add_argument("--threads", type=positive_int, metavar="N", help="inference threads (default: the runtime's)")
    _add_providers_option(demo)
    demo.add_argument("--transport", choices=("serial", "ble"), default="serial",
                      help="how the simulated glove and IMU reach the app: a pty read with pyserial (default) "
                           "or BLE via bleak and an emulated BlueZ")
    demo.add_argument("--glove", metavar="URL", help="use a real glove instead of the simulated one, "
                      "e.g. serial:///dev/ttyACM0?baud=921600 or ble://name=Glove")
    demo.add_argument("--imu", metavar="URL", help="use a real wrist IMU instead of the simulated one")
    demo.add_argument("--camera", metavar="INDEX|PATH|PIPELINE", help="use a real camera (or a video file) instead of the simulated one")
    _add_mqtt_option(demo)
    _add_view_options(demo)
    demo.set_defaults(run=_demo)

    live = verbs.add_parser("live", help="run a bundle live on real devices: glove, IMUs, camera")
    live.add_argument("--config", type=Path, metavar="FILE", help="TOML or YAML file holding any of these options (flags win)")
    live.add_argument("--model", metavar="BUNDLE", help="bundle folder to run")
    live.add_argument("--glove", metavar="URL", help="glove URL, e.g. serial:///dev/ttyACM0?baud=921600 or ble://name=Glove")
    live.add_argument("--imu", metavar="URL", action="append", help="IMU URL; repeat for more IMUs (streams imu, imu2, ...)")
    live.add_argument("--device", metavar="NAME=URL", action="append", type=_device,
                      help="any other stream of the bundle by name")
    live.add_argument("--camera", metavar="INDEX|PATH|PIPELINE",
                      help="camera index, video file, or GStreamer pipeline (needs an OpenCV built with GStreamer)")
    live.add_argument("--seconds", type=positive_float, metavar="S", help="stop after S seconds (default: until q / Ctrl-C)")
    live.add_argument("--json", metavar="PATH", help="write one JSON line per prediction")
    live.add_argument("--threads", type=positive_int, metavar="N", help="inference threads (default: the runtime's)")
    _add_providers_option(live)
    live.add_argument("--check", action="store_true",
                      help="validate config, devices, camera, bundle and the --mqtt broker, then exit")
    _add_mqtt_option(live)
    _add_view_options(live, defaults=False)
    live.set_defaults(run=_live)

    record = verbs.add_parser("record", help="record every stream (and labels) into a session folder for training")
    record.add_argument("--out", type=Path, required=True, metavar="DIR", help="new session folder")
    record.add_argument("--glove", metavar="URL", help="glove URL")
    record.add_argument("--imu", metavar="URL", action="append", help="IMU URL; repeat for more IMUs")
    record.add_argument("--device", metavar="NAME=URL", action="append", type=_device, help="any other stream by name")
    record.add_argument("--camera", metavar="INDEX|PATH|PIPELINE", help="camera index, video file or GStreamer pipeline")
    record.add_argument("--simulate", action="store_true",
                        help="record the simulated glove, IMU and camera (a simulated person follows --protocol)")
    record.add_argument("--transport", choices=("serial", "ble"), default="serial", help="how simulated devices connect")
    record.add_argument("--seed", type=int, default=0, help="seed of the simulated world (default 0)")
    record.add_argument("--protocol", metavar="A:S,B:S|FILE",
                        help="scripted protocol: activities and seconds, shown on screen and labelled as they run")
    record.add_argument("--activities", type=_names, default=(), metavar="A,B,...",
                        help="activities on number keys 1..9 (window) or the stdin prompt (headless)")
    record.add_argument("--subject", default="anonymous", help="who is recorded (default 'anonymous')")
    record.add_argument("--split", choices=("train", "val", "test"),
                        help="split of this session (default none: the trainer splits each bout by time)")
    record.add_argument("--seconds", type=positive_float, metavar="S", help="stop after S seconds (default: protocol end / q / Ctrl-C)")
    record.add_argument("--headless", action="store_true", help="no window: label with a prompt on stdin")
    _add_serve_options(record)
    record.set_defaults(run=_record)

    train = verbs.add_parser("train", help="train a model on simulated, recorded or BasicMotions data; writes a bundle")
    train.add_argument("--data", default="sim", metavar="SOURCE",
                       help="'sim' (default; generated once), 'sim-hard' (the same world with nuisance factors: docs/sim-hard.md), "
                            "'basicmotions', a folder of recorded sessions, or a public "
                            "data set: utd-mhad:PATH, mmact:PATH, mmact-session:PATH, egocentric:PATH (docs/datasets.md)")
    train.add_argument("--model", default="mmtsa", help="registered model name (see `edgehar models`)")
    train.add_argument("--modalities", type=_names, default=(), metavar="A,B",
                       help="train on these modalities only (default: all the data has)")
    train.add_argument("--ablation", action="store_true",
                       help="also train each modality alone and write ablation.md (the paper's table)")
    train.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                       help="train in N processes on this machine (DistributedDataParallel; "
                            "more machines: torchrun, see docs/distributed.md)")
    _add_recipe_args(train)
    train.add_argument("--out", default="runs/train", help="output folder (bundle/, metrics.json, confusion.csv)")
    train.set_defaults(run=_train)

    evaluate = verbs.add_parser("evaluate", help="train every model fused and on each modality alone; write the ablation table")
    evaluate.add_argument("--data", default="sim", metavar="SOURCE",
                          help="'sim' (default), 'sim-hard', 'basicmotions', a folder of sessions, or a public data set as for train")
    evaluate.add_argument("--models", type=_names, default=(), metavar="A,B",
                          help="registered model names (default: the papers' models and the baselines)")
    evaluate.add_argument("--components", action="store_true",
                          help="run each model's component ablations from its paper instead of the modality ablation "
                               "(resumable: runs already in --out with the same recipe are not trained again)")
    evaluate.add_argument("--seeds", type=positive_int, metavar="N",
                          help="--components: train every row with seeds 0..N-1, report mean ± std (default 3)")
    evaluate.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                          help="train N models (--components: N runs) at once, each in its own process (default 1)")
    _add_recipe_args(evaluate)
    evaluate.add_argument("--out", default="runs/evaluate", help="output folder (evaluation.md, evaluation.json, one folder per run)")
    evaluate.set_defaults(run=_evaluate)

    sim = verbs.add_parser("simulate", help="simulated devices and data")
    what = sim.add_subparsers(dest="what", required=True, metavar="WHAT")
    dataset = what.add_parser("dataset", help="write a simulated multi-subject data set in the session format")
    dataset.add_argument("--out", type=Path, required=True, help="folder to write the sessions into")
    dataset.add_argument("--subjects", type=positive_int, default=10, help="number of subjects (default 10)")
    dataset.add_argument("--repeats", type=positive_int, default=3, help="bouts of each activity per subject (default 3)")
    dataset.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    dataset.add_argument("--imus", type=_names, default=("wrist",), metavar="P,Q",
                         help="where the IMUs are worn, in stream order (imu, imu2, ...): wrist, forearm, chest, ankle "
                              "(default wrist)")
    dataset.add_argument("--rate", type=positive_float, default=100.0, metavar="HZ",
                         help="glove and IMU sample rate (default 100, the simulated devices' datasheet rate)")
    dataset.set_defaults(run=_simulate_dataset)
    for kind in ("glove", "imu"):
        dev = what.add_parser(kind, help=f"run a simulated {kind} that streams the wire protocol in real time")
        link = dev.add_mutually_exclusive_group(required=True)
        link.add_argument("--serial", action="store_true", help="on a new pseudo-terminal (prints its path)")
        link.add_argument("--ble", action="store_true",
                          help="as a BLE peripheral on an emulated BlueZ (prints the D-Bus address to export)")
        dev.add_argument("--seed", type=int, default=0, help="seed (default 0)")
        dev.add_argument("--seconds", type=positive_float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
        dev.add_argument("--drift-ppm", type=float, metavar="PPM", help="device clock drift (default: random within ±100)")
        dev.add_argument("--loss", type=probability, default=0.0, metavar="P", help="probability of dropping a block")
        dev.add_argument("--corrupt", type=probability, default=0.0, metavar="P", help="probability of corrupting a frame")
        dev.add_argument("--format", choices=("binary", "csv"), default="binary",
                         help="wire format (--serial only): binary protocol v1 or CSV lines")
        dev.set_defaults(run=_simulate_device, kind=kind)

    export = verbs.add_parser("export", help="export an eager bundle to ExecuTorch / LiteRT / ONNX at fp32 or int8, "
                                             "checking its fidelity against the fp32 model")
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="eager bundle written by `edgehar train`")
    export.add_argument("--format", required=True, choices=[f.name for f in FORMATS], help="target format")
    export.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default) or int8 (static, calibrated: PT2E; ONNX Runtime's quantizer for onnx)")
    export.add_argument("--out", type=Path, required=True, help="folder of the new bundle")
    export.add_argument("--calibration", type=positive_int, default=256, metavar="N",
                        help="training windows used to calibrate int8 (default 256)")
    export.add_argument("--data", metavar="SOURCE", help="data the windows come from (default: the bundle's own)")
    export.add_argument("--eval-windows", type=positive_int, metavar="N", help="cap on held-out windows for the fidelity check")
    export.add_argument("--threads", type=positive_int, metavar="N", help="threads when running the exported model")
    export.add_argument("--min-agreement", type=probability, default=MIN_AGREEMENT, metavar="P",
                        help=f"fidelity floor: top-1 agreement with the fp32 model, 0..1 (default {MIN_AGREEMENT:g}); "
                             "a lowered floor is recorded in the bundle's manifest")
    export.add_argument("--max-accuracy-drop", type=probability, default=MAX_ACCURACY_DROP, metavar="D",
                        help=f"fidelity floor: accuracy lost against the fp32 model, 0..1 (default {MAX_ACCURACY_DROP:g})")
    export.set_defaults(run=_export)

    bench = verbs.add_parser("bench", help="one table: bundle x format x precision -> accuracy, latency per stage, "
                                           "memory, energy")
    _add_bench_args(bench)
    bench.set_defaults(run=_bench)

    info = verbs.add_parser("info", help="what a bundle holds: input pipeline, model tensors, labels; checks its sha256")
    info.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle folder (any format)")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON instead")
    info.set_defaults(run=_info)

    models = verbs.add_parser("models", help="list the registered models")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mmtsa*'")
    models.set_defaults(run=_models)

    devices = verbs.add_parser("devices", help="list serial ports and BLE devices in range, with the URL to connect to each; "
                                               "--probe URL: what one device sends")
    devices.add_argument("--seconds", type=positive_float, default=5.0, metavar="S",
                         help="BLE scan time, or how long --probe streams (default 5)")
    devices.add_argument("--probe", metavar="URL", help="connect to this device for --seconds and report what it sends: "
                         "descriptor or profile match, rate, channel ranges, loss")
    devices.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    devices.set_defaults(run=_devices)
    return p


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    """The `edgehar bench` flags; `_bench` hands them to `benchmarks.bench.run_bench`."""
    p.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE", help="bundle folders to measure (any format)")
    p.add_argument("--export-all", action="store_true",
                   help="first export each eager BUNDLE to every format x precision (into OUT/bundles), then measure all")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for bench.md, bench.json, bench.png")
    p.add_argument("--runs", type=positive_int, default=200,
                   help="at least this many timed single-stream queries per bundle (default 200), and one per test window")
    p.add_argument("--max-runs", type=positive_int, default=2000, help="stop here even if p90 is not stable (default 2000)")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries first (default 20)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="inference threads (default: the runtime's)")
    p.add_argument("--data", metavar="SOURCE", help="test data for every bundle (default: each manifest's metrics.data)")
    energy = p.add_mutually_exclusive_group()
    energy.add_argument("--meter", default="auto",
                        help="auto (default), none, rapl, ina3221[:RAIL], battery or nvml")
    energy.add_argument("--energy-estimate", type=positive_float, metavar="WATTS",
                        help="no meter here: ESTIMATE energy as process CPU time x WATTS (labelled 'estimate')")
    p.add_argument("--idle-s", type=non_negative_float, default=0.0, metavar="S",
                   help="measure idle power for S seconds first and also report energy above idle")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="skip MMTSA sparse-vs-dense segments (needs torch and an eager bundle)")
    p.add_argument("--gaf-reps", type=int, default=20, metavar="N",
                   help="repetitions of our GAF vs the official pyts pipeline (0: skip; needs pyts)")


def _add_providers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--providers", type=_names, metavar="A,B",
                   help="onnx bundles: ONNX Runtime execution providers, best first, e.g. cuda,cpu or "
                        "TensorrtExecutionProvider (default: the manifest's, else TensorRT, CUDA, CPU as available)")


def _add_view_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """What the live view shows and writes (demo and live)."""
    d = (lambda v: v) if defaults else (lambda v: None)  # live: None = "not given", the config may set it
    p.add_argument("--headless", action="store_true", help="no window: a live terminal view (the default without a display)")
    p.add_argument("--window", action="store_true", help="require a window (fail if none can be opened)")
    p.add_argument("--save-video", type=Path, metavar="PATH", help="write the annotated view to a video (.mp4/.avi; works headless)")
    p.add_argument("--video-fps", type=positive_float, default=d(10.0), metavar="FPS", help="frames per second of the view / video (default 10)")
    p.add_argument("--smoothing", choices=SMOOTHING_MODES, default=d("majority"),
                   help="how the shown label is smoothed over hops (default majority; raw results stay in the log)")
    p.add_argument("--smoothing-k", type=positive_int, default=d(5), metavar="K", help="hops the smoothing spans (default 5)")
    p.add_argument("--no-thumbnails", action="store_true", help="start with the GAF / frame thumbnails hidden")
    p.add_argument("--snapshot", type=Path, metavar="PNG", help="write the view at the end as an image (works headless)")
    _add_serve_options(p)


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    """The view as a web page (demo, live, record)."""
    p.add_argument("--serve", type=host_port, metavar="[HOST:]PORT",
                   help="also show the view as a web page on PORT (127.0.0.1 unless HOST is given; 0: any free port)")
    p.add_argument("--token", metavar="TOKEN",
                   help="the page's token (required with a non-loopback HOST; default: a random one, printed)")


def _add_mqtt_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt", type=_mqtt_url, metavar="URL",
                   help="publish each prediction and the streams' health to an MQTT broker: "
                        "mqtt://[user:pass@]host[:port]/prefix[?qos=0|1|2], mqtts:// for TLS (docs/mqtt.md)")


def _mqtt_url(text: str):
    try:
        return parse_mqtt_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _device_flags(stream: str, streams: list[str]) -> str:
    """The flags that give a device for `stream`: --glove, the k-th --imu, or --device NAME=URL."""
    from ..contract.manifest import imu_stream

    imus = {imu_stream(k): k + 1 for k in range(len(streams))}
    if stream == "glove":
        return "--glove URL or --device glove=URL"
    if stream in imus:
        more = f" once per IMU (stream {stream!r} is --imu number {imus[stream]})" if imus[stream] > 1 else ""
        return f"--imu URL{more} or --device {stream}=URL"
    return f"--device {stream}=URL"


def _device(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name.strip() or "://" not in url:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=URL, e.g. imu_ankle=ble://name=AnkleIMU")
    return name.strip(), url.strip()


def _view_options(args: argparse.Namespace, cfg: dict | None = None):
    from ..app.live import LiveOptions

    cfg = cfg or {}
    smoothing = cfg.get("smoothing", {})

    def pick(flag, key, default, given=None):
        value = getattr(args, flag, None) if given is None else given
        return value if value is not None else cfg.get(key, default)

    view = "headless" if args.headless else "window" if args.window else cfg.get("view", "auto")
    save = args.save_video if args.save_video is not None else cfg.get("save_video")
    json_path = getattr(args, "json", None) or cfg.get("json")
    return LiveOptions(
        seconds=pick("seconds", "seconds", None),
        json_path=Path(json_path) if json_path else None,
        view=view,
        save_video=Path(save) if save else None,
        video_fps=pick("video_fps", "video_fps", 10.0),
        smoothing=args.smoothing if args.smoothing is not None else smoothing.get("mode", "majority"),
        smoothing_k=args.smoothing_k if args.smoothing_k is not None else smoothing.get("k", 5),
        thumbnails=False if args.no_thumbnails else cfg.get("thumbnails", True),
        stale_s=cfg.get("stale_s", STALE_S),
        snapshot=args.snapshot,
        serve=args.serve or cfg.get("serve"),
        token=args.token or cfg.get("token"),
        mqtt=args.mqtt if args.mqtt is not None else cfg.get("mqtt"),
    )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    devices = {name: url for name, url in (("glove", args.glove), ("imu", args.imu)) if url}
    run_demo(args.model, args.seconds, args.json, seed=args.seed, threads=args.threads, providers=args.providers or (),
             transport=args.transport, devices=devices, camera=args.camera, options=_view_options(args))
    return 0


def _live(args: argparse.Namespace) -> int:
    from ..app.backends import load_bundle
    from ..app.config import ConfigError, device_urls, load_config
    from ..app.live import run_live
    from ..app.mqtt import check_broker
    from ..app.opencv_build import opencv_build
    from ..app.sources import Sources

    cfg = load_config(args.config) if args.config else {}
    model = args.model or cfg.get("model")
    if not model:
        raise ConfigError("", "model", "no bundle given: pass --model BUNDLE or set model in --config")
    devices = device_urls(args.glove or cfg.get("glove"), args.imu or cfg.get("imu"),
                          {**cfg.get("devices", {}), **dict(args.device or [])})
    camera = args.camera if args.camera is not None else cfg.get("camera")
    manifest, backend = load_bundle(model, num_threads=args.threads or cfg.get("threads"),
                                    providers=args.providers or cfg.get("providers") or ())
    cam = next((s.name for s in manifest.streams if s.kind == "camera"), None)
    needed = [s.name for s in manifest.streams if s.kind == "sensor"]
    missing = [n for n in needed if n not in devices]
    if missing:
        raise EdgeharError(f"the bundle reads stream {missing[0]!r} but no device was given for it "
                           f"({_device_flags(missing[0], needed)}; the bundle reads {needed})")
    unknown = [n for n in devices if n not in needed]
    if unknown:
        raise EdgeharError(f"device {unknown[0]!r} is not a sensor stream of the bundle (it reads {needed})")
    if cam is not None and camera is None:
        raise EdgeharError(f"the bundle reads camera stream {cam!r}: give --camera INDEX|PATH|PIPELINE")
    if cam is None and camera is not None:
        raise EdgeharError("--camera given, but the bundle reads no camera stream")
    sources = Sources(devices=devices, camera=camera, camera_name=cam or "camera")
    if args.check:
        options = _view_options(args, cfg)
        if options.serve is not None:  # the cheapest check first: a port in use fails before any device opens
            from ..app.webview import bind

            bind(*options.serve).close()
        shape = sources.open()
        try:
            sources.start(expect={s.name: s for s in manifest.streams if s.kind == "sensor"})
            health = sources.health()
        finally:
            sources.stop()
        broker = None if options.mqtt is None else check_broker(options.mqtt)
        print(f"edgehar live --check: ok: bundle {model} ({manifest.model}, {backend.name}, {manifest.precision}, "
              f"labels {len(manifest.labels)})")
        for name, h in health.items():
            print(f"  {name}: {h.device or h.url} ({h.state})"
                  + (f", frames {shape[1]}x{shape[0]}" if name == cam and shape else ""))
        print(f"  opencv: {opencv_build().summary()}")  # which cv2: pip's wheel or the board's own
        if options.serve is not None:
            from ..app.webview import is_loopback

            host, port = options.serve
            print(f"  serve: {host}:{port} can be bound"
                  + ("" if is_loopback(host) or options.token else "; not loopback: a token will be printed at start"))
        if broker is not None:
            print(f"  mqtt: {broker}")
        return 0
    run_live(manifest, backend, sources, _view_options(args, cfg))
    return 0


def _record(args: argparse.Namespace) -> int:
    from ..app.config import device_urls
    from ..app.record import RecordOptions, parse_protocol, run_record
    from ..app.sources import Sources
    from ..simulator.devices.rig import SimulatedRig

    devices = device_urls(args.glove, args.imu, dict(args.device or []))
    simulate: tuple[str, ...] = ()
    if args.simulate:
        simulate = tuple(s for s in ("glove", "imu", "camera") if s not in devices and not (s == "camera" and args.camera))
    if not devices and not simulate and args.camera is None:
        raise EdgeharError("nothing to record: give --glove/--imu/--device URLs, --camera, or --simulate")
    protocol = parse_protocol(args.protocol) if args.protocol else []
    rig = SimulatedRig(simulate, transport=args.transport, seed=args.seed, protocol=protocol) if simulate else None
    sources = Sources(devices=devices, camera=args.camera, feed=rig)
    run_record(sources, RecordOptions(out=args.out, subject=args.subject, split=args.split, seconds=args.seconds,
                                      protocol=protocol, activities=args.activities,
                                      view="headless" if args.headless else "auto", serve=args.serve, token=args.token))
    return 0


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """The training recipe flags `train` and `evaluate` share; unset ones keep TrainConfig's / the model's defaults."""
    parser.add_argument("--epochs", type=positive_int, help="training epochs")
    parser.add_argument("--batch-size", type=positive_int, help="batch size")
    parser.add_argument("--windows-per-bout", type=positive_int, metavar="N",
                       help="random training windows drawn per labelled bout per epoch")
    parser.add_argument("--lr", type=positive_float, help="peak learning rate")
    parser.add_argument("--segments", type=positive_int, dest="num_segments", help="N sparse segments per window (default: the model's recipe)")
    parser.add_argument("--gaf-k", type=positive_int, dest="gaf_k", help="K samples per sensor window (default: the model's recipe)")
    parser.add_argument("--gaf-scaling", choices=("window", "range"), dest="gaf_scaling",
                       help="rescale sensor windows per window (official MMTSA) or over ranges calibrated on the training data (default: the model's recipe)")
    parser.add_argument("--window", type=positive_float, dest="window_s", metavar="S", help="observation window (s)")
    parser.add_argument("--recipe", choices=("edge", "paper"),
                        help="input recipe of GAF models: 'edge' (default, the shipped bundles') or 'paper', MMTSA's own: "
                             "one 3-channel image per sensor, eq. 5 grey levels, 224 px, windows inside their segment, "
                             "a wider backbone (docs/results.md); the flags below override single options")
    parser.add_argument("--sensor-images", choices=("stream", "sensor"), dest="sensor_images",
                        help="one GAF image per stream (all its channels) or per sensor (x/y/z as 3 channels)")
    parser.add_argument("--gaf-size", type=int, dest="gaf_size", metavar="PX", help="GAF image side (8..512; 0 = K, no resize)")
    parser.add_argument("--gaf-grey", choices=("float", "uint8"), dest="gaf_grey",
                        help="feed the float field, or MMTSA eq. 5 grey levels truncated to uint8")
    parser.add_argument("--window-bounds", choices=("window", "segment"), dest="window_bounds",
                        help="keep each K-sample window inside the observation window or inside its segment (MMTSA eq. 6)")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="torch threads (default: all cores)")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE",
                        help="a model-config or input-pipeline setting, e.g. fusion=concat or gaf_kind=difference; "
                             "repeat for more (an unknown key lists the valid ones)")


def _recipe(args: argparse.Namespace, cfg):
    """`cfg` (a TrainConfig) with the recipe flags the user gave."""
    from dataclasses import replace

    given = {k: getattr(args, k) for k in ("epochs", "batch_size", "windows_per_bout", "lr", "num_segments", "gaf_k", "gaf_scaling", "window_s", "seed", "threads",
                                          "recipe", "sensor_images", "gaf_size", "gaf_grey", "window_bounds")}
    return replace(cfg, **{k: v for k, v in given.items() if v is not None})


def _with_settings(args: argparse.Namespace, cfg):
    """`cfg` with the `--set` items, checked against `cfg.model`'s config class."""
    from ..models.settings import apply_settings

    return apply_settings(cfg, args.settings)


def _train(args: argparse.Namespace) -> int:
    from ..models.train import TrainConfig, train, train_ablation

    cfg = _with_settings(args, _recipe(args, TrainConfig(data=args.data, model=args.model, modalities=args.modalities, out=args.out)))
    run = train_ablation if args.ablation else train
    if args.nproc > 1:
        from ..models.distributed import launch

        m = launch(run, (cfg,), args.nproc)
    else:
        m = run(cfg)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 reports
        return 0
    if args.ablation:
        print(Path(args.out, "ablation.md").read_text())
    else:
        print(f"test accuracy {100 * m['accuracy']:.1f}%  macro-F1 {100 * m['macro_f1']:.1f}%  "
              f"({m['test_windows']} windows; bundle in {Path(args.out, 'bundle')})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..models.distributed import Workers, launched
    from ..models.evaluate import DEFAULT_MODELS, evaluate_components, evaluate_models
    from ..models.registry import ModelNotFoundError, list_models
    from ..models.train import TrainConfig

    for name in args.models:
        if name not in list_models():
            raise ModelNotFoundError(name, list_models())
    cfg = _recipe(args, TrainConfig(data=args.data, out=args.out))
    models = tuple(args.models) or tuple(m for m in DEFAULT_MODELS if m in list_models())
    for name in models:  # every model must take the settings, checked before hours of training start
        _with_settings(args, replace(cfg, model=name))
    if args.seeds is not None and not args.components:
        raise EdgeharError("--seeds is for --components (the modality table trains each run once)")
    if launched() and args.jobs > 1:
        raise EdgeharError(f"--jobs {args.jobs} under torchrun: the ranks already train each run together; "
                           "use one or the other")
    if args.components:
        evaluate_components(cfg, models=models, seeds=args.seeds or 3, settings=tuple(args.settings), jobs=args.jobs)
    else:
        evaluate_models(cfg, models=models, settings=tuple(args.settings), jobs=args.jobs)
    if Workers.from_env().is_main:
        print(Path(args.out, "evaluation.md").read_text())
    return 0


def _simulate_dataset(args: argparse.Namespace) -> int:
    from ..simulator.world import SensorLayout, generate_dataset

    try:
        layout = SensorLayout(args.imus, args.rate)
    except (KeyError, ValueError) as exc:
        raise EdgeharError(exc.args[0]) from None
    paths = generate_dataset(args.out, subjects=args.subjects, repeats=args.repeats, seed=args.seed, layout=layout)
    print(f"wrote {len(paths)} sessions to {args.out}")
    return 0


def _simulate_device(args: argparse.Namespace) -> int:
    options = dict(seed=args.seed, drift_ppm=args.drift_ppm, loss=args.loss, corrupt=args.corrupt)
    if args.serial:
        from ..simulator.devices.firmware import serve_serial

        def ready(path: str) -> None:
            print(f"simulated {args.kind} streaming on {path}  ->  --{args.kind} serial://{path}"
                  + ("?format=csv" if args.format == "csv" else ""), flush=True)

        serve_serial(args.kind, on_ready=ready, seconds=args.seconds, fmt=args.format, **options)
    else:
        if args.format != "binary":
            raise EdgeharError("--format csv is for --serial; BLE carries the binary protocol")
        from ..simulator.devices.ble_peripheral import serve_ble

        serve_ble(args.kind, duration_s=args.seconds, on_ready=lambda info: print(info, flush=True), **options)
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..quantize import export_bundle

    result = export_bundle(args.bundle, args.out, args.format, args.precision, calibration=args.calibration,
                           data=args.data, eval_windows=args.eval_windows, threads=args.threads,
                           min_agreement=args.min_agreement, max_accuracy_drop=args.max_accuracy_drop)
    print(result.summary())
    return 0 if result.ok else 1


def _bench(args: argparse.Namespace) -> int:
    from ..benchmarks.bench import run_bench
    from ..benchmarks.report import to_markdown

    if args.export_all:
        from ..quantize import export_bundle, export_targets

        exported = []
        for source, stem in zip(args.bundles, _export_stems(args.bundles)):
            for fmt, precision in export_targets():
                result = export_bundle(source, args.out / "bundles" / f"{stem}-{fmt}-{precision}", fmt, precision,
                                       data=args.data, threads=args.threads)
                print(result.summary(), file=sys.stderr)
                if result.ok:
                    exported.append(result.out_dir)
        args.bundles = [*args.bundles, *exported]
    meter = f"estimate:{args.energy_estimate}" if args.energy_estimate else args.meter
    table = run_bench(args.bundles, runs=args.runs, warmup=args.warmup, threads=args.threads, meter=meter,
                      out_dir=args.out, data=args.data, max_runs=args.max_runs, idle_s=args.idle_s,
                      dense=args.dense, gaf_reps=args.gaf_reps, log=lambda m: print(m, file=sys.stderr))
    print(to_markdown(table))
    # The table is written either way; a row that could not be measured still fails the
    # run (status 1), so a script or CI job never takes a table of errors for results.
    failed = [r for r in table.rows if not r.ok]
    for r in failed:
        print(f"edgehar bench: error: {r.bundle}: {r.status}", file=sys.stderr)
    return 1 if failed else 0


def _export_stems(sources: list[Path]) -> list[str]:
    """Folder name stem of each source's exports: its model name, numbered where several
    sources hold the same model (bundles are usually all called `bundle`, so the folder
    name alone would make the exports of one model overwrite another's)."""
    from ..contract.bundle import read_manifest

    models = [read_manifest(s).model for s in sources]
    return [m if models.count(m) == 1 else f"{m}-{models[:i].count(m) + 1}" for i, m in enumerate(models)]


def _info(args: argparse.Namespace) -> int:
    from .info import run_info

    return run_info(args.bundle, as_json=args.json)


def _models(args: argparse.Namespace) -> int:
    """One line per model: name, the inputs its recipe feeds it, parameters at its default
    config, and what it is (the model class's docstring)."""
    from ..models import create_model, list_models
    from ..models.registry import ModelNotFoundError

    names = list_models(args.pattern)
    if not names:
        raise ModelNotFoundError(args.pattern, list_models())
    width = max((len(n) for n in names), default=0)
    for name in names:
        model = create_model(name)
        r = model.config.input_recipe
        params = sum(p.numel() for p in model.parameters())
        doc = (type(model).__doc__ or "").strip().splitlines()
        print(f"{name:<{width}}  {r.sensor_type:<6} N={r.num_segments:<2} K={r.k:<3} {params:>9,} params  "
              f"{doc[0] if doc else ''}")
    return 0


def _devices(args: argparse.Namespace) -> int:
    from .devices import run_devices, run_probe

    if args.probe:
        return run_probe(args.probe, args.seconds, args.json)
    return run_devices(args.seconds, args.json)


def _one_line_warnings(verb: str) -> None:
    """Print the project's own warnings (EdgeharWarning: a repaired input...) as one line,
    like its errors; any other warning keeps Python's format (it points at code)."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, EdgeharWarning):
            print(f"edgehar {verb}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


# The extra that installs a package a verb may import only when it runs: a deploy-only
# board (`pip install 'edgehar[litert]'`) has no torch, and a verb that needs it says
# what to install in one line instead of a ModuleNotFoundError traceback.
_EXTRA_OF = {"torch": "train", "torchvision": "train", "torchao": "train", "pyts": "train",
             "executorch": "executorch", "litert_torch": "export", "ai_edge_litert": "litert", "yaml": "yaml",
             "paho": "mqtt", "onnxruntime": "onnx", "onnx": "export", "onnxscript": "export"}


# OpenCV is in no extra's place of its own: a board may have its own cv2 (JetPack's, built
# with GStreamer), and either of two extras installs pip's.
NEEDS_OPENCV = ("pip install 'edgehar[headless]' (no window) or 'edgehar[gui]' (OpenCV's window), "
                "or use the system's OpenCV (a venv made with --system-site-packages)")


def _missing_extra(exc: ImportError) -> str | None:
    """'needs torch (pip install ...)' when `exc` is a package one of our extras installs."""
    if _raised_by_opencv(exc):
        return _opencv_problem(exc)
    top = (exc.name or "").split(".")[0]
    if top not in _EXTRA_OF or not isinstance(exc, ModuleNotFoundError):
        return None
    return f"this needs {top}, which is not installed here: pip install 'edgehar[{_EXTRA_OF[top]}]'"


def _raised_by_opencv(exc: ImportError) -> bool:
    """Whether importing cv2 raised `exc`: cv2 is missing or its binary failed to load
    (the error names it), or code in the cv2 package raised it."""
    if (exc.name or "").split(".")[0] == "cv2":
        return True
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}cv2{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _opencv_problem(exc: ImportError) -> str:
    """What to do about a cv2 that is missing or cannot be loaded, in one line."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "cv2":
        return f"this needs OpenCV (cv2), which is not installed here: {NEEDS_OPENCV}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "numpy" in first.lower():  # a cv2 built for NumPy 1.x (JetPack's, Debian's) under NumPy 2
        import numpy

        return (f"OpenCV (cv2) cannot be loaded ({first}): it was built for NumPy 1.x and NumPy {numpy.__version__} "
                "is installed here: pip install 'numpy<2'")
    # its shared libraries are missing: opencv-python on a minimal image without libGL
    return (f"OpenCV (cv2) is installed but cannot be loaded ({first}): apt-get install libgl1 libglib2.0-0 "
            "libxcb1 (what opencv-python needs), or use opencv-python-headless")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare `edgehar`: what it can do, not an error
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # the verb's usage and a did-you-mean from its flags, not the top level's
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    _one_line_warnings(args.verb)
    try:
        return args.run(args)
    except EdgeharError as exc:
        print(f"edgehar {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # ModuleNotFoundError, or a package whose shared libraries are missing
        why = _missing_extra(exc)
        if why is None:  # not an extra of ours: a bug, keep the traceback
            raise
        print(f"edgehar {args.verb}: error: {why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

