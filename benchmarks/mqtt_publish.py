"""What `--mqtt` adds to the hop: the publish call's own time on the hop thread.

The hop loop hands each prediction (its JSON line) and the streams' health to
`MqttPublisher.predicted`; paho's own thread does the network. This measures that call
where it runs, against a real mosquitto on a free loopback port (benchmarks/mosquitto.py):

- live: the demo's live run in this process (the shipped LiteRT bundle, simulated
  devices, headless: what `edgehar demo` runs) for --seconds per QoS, every `predicted` call timed; the same run's
  prediction totals (deadline -> prediction) give the ratio. A baseline run times an
  empty Python call at the same place: what the clock and the process add by themselves
  (entering a Python function is where CPython hands the GIL to a thread that waited
  for it, here the simulated devices' threads; other processes share the cores);
- paced: the last live line and health published --calls times at 100 Hz (more samples
  for p99), with the broker up and with it stopped (paho refuses or queues at once).

    python benchmarks/mqtt_publish.py [--seconds 30] [--calls 2000] [--out FILE]

Writes JSON (default results/mqtt_publish.json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgehar.app.backends import load_bundle
from edgehar.app.live import LiveOptions, run_live
from edgehar.app.mqtt import MqttPublisher, parse_mqtt_url
from edgehar.app.sources import Sources
from edgehar.benchmarks.mosquitto import LocalBroker
from edgehar.simulator.devices.rig import SimulatedRig

DEFAULT_OUT = Path(__file__).parent / "results" / "mqtt_publish.json"
SHIPPED_LITERT = Path(__file__).resolve().parents[1] / "edgehar" / "bundles" / "default-mmtsa-v1" / "litert-int8"
PACE_S = 0.01  # paced calls: 100 Hz, 25x the demo's hop rate


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 4), "p90": round(float(np.percentile(a, 90)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "max": round(float(a.max()), 4)}


class _Timed(MqttPublisher):
    """The publisher with each `predicted` call timed (and its last arguments kept for the paced
    runs); with `publish` off, the timed call is an empty one (the baseline)."""

    calls_ms: list[float] = []
    last: tuple = ()
    publish = True

    def predicted(self, line, health) -> None:
        t0 = time.perf_counter()
        (super().predicted if _Timed.publish else _empty)(line, health)
        _Timed.calls_ms.append((time.perf_counter() - t0) * 1e3)
        _Timed.last = (line, health)


def _empty(_line, _health) -> None:
    """The baseline's call: a Python function that does nothing."""


def live(broker: LocalBroker, bundle: Path, qos: int | None, seconds: float, log: Path) -> dict:
    """One demo run publishing at `qos`; None: the baseline (connected, nothing published)."""
    import edgehar.app.live as live_module

    _Timed.calls_ms, _Timed.publish = [], qos is not None
    live_module.MqttPublisher = _Timed  # the run builds its publisher by this name
    try:
        manifest, backend = load_bundle(bundle)
        options = LiveOptions(seconds=seconds, json_path=log, view="headless",
                              mqtt=parse_mqtt_url(f"{broker.url}/bench?qos={qos or 0}"))
        sources = Sources(camera_name="camera", feed=SimulatedRig(tuple(s.name for s in manifest.streams)))
        run_live(manifest, backend, sources, options, out=io.StringIO(), verb="demo")
    finally:
        live_module.MqttPublisher = MqttPublisher
    totals = [json.loads(line)["latency_ms"]["total"] for line in log.read_text().splitlines()]
    publish, hop = _stats(_Timed.calls_ms), _stats(totals)
    return {"qos": "baseline" if qos is None else qos, "seconds": seconds, "publish_ms": publish, "prediction_total_ms": hop,
            "publish_p99_over_total_p50": round(publish["p99"] / hop["p50"], 3)}


def paced(broker: LocalBroker, qos: int, calls: int, broker_up: bool) -> dict:
    line, health = _Timed.last
    if not broker_up:
        broker.stop()
    publisher = MqttPublisher(parse_mqtt_url(f"{broker.url}/paced?qos={qos}"), note=lambda _text: None).start()
    try:
        if broker_up:
            deadline = time.monotonic() + 10
            while not publisher.client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.01)
        ms = []
        for _ in range(calls):
            t0 = time.perf_counter()
            publisher.predicted(line, health)
            ms.append((time.perf_counter() - t0) * 1e3)
            time.sleep(PACE_S)
    finally:
        publisher.close()
        if not broker_up:
            broker.start()
    return {"qos": qos, "broker": "up" if broker_up else "stopped", "calls": calls, "publish_ms": _stats(ms),
            "dropped": publisher.dropped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="live demo seconds per QoS (default 30)")
    ap.add_argument("--calls", type=int, default=2000, help="paced calls per condition (default 2000)")
    ap.add_argument("--model", type=Path, default=SHIPPED_LITERT, help="bundle (default: the shipped LiteRT int8)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        lives = [live(broker, args.model, qos, args.seconds, Path(tmp) / f"live-{qos}.jsonl") for qos in (None, 0, 1)]
        pace = [paced(broker, qos, args.calls, up) for up in (True, False) for qos in (0, 1)]
    result = {"benchmark": "mqtt_publish", "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "command": f"python benchmarks/mqtt_publish.py --seconds {args.seconds:g} --calls {args.calls}",
              "load_average": os.getloadavg(), "live": lives, "paced": pace}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| run | QoS | broker | calls | call p50 / p90 / p99 / max ms | prediction total p50 ms | p99 / total p50 |")
    print("|---|---|---|---:|---|---:|---:|")
    for r in lives:
        p = r["publish_ms"]
        print(f"| live demo | {r['qos']} | up | {p['n']} | {p['p50']:.3f} / {p['p90']:.3f} / {p['p99']:.3f} / {p['max']:.3f} "
              f"| {r['prediction_total_ms']['p50']:.2f} | {r['publish_p99_over_total_p50']:.2f} |")
    for r in pace:
        p = r["publish_ms"]
        print(f"| paced 100 Hz | {r['qos']} | {r['broker']} | {p['n']} | {p['p50']:.3f} / {p['p90']:.3f} / {p['p99']:.3f} / "
              f"{p['max']:.3f} | | |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
