"""`edgehar record`: record every stream into a session folder the trainer reads.

Sources are the ones `edgehar live` uses (app.sources): real devices by URL, a camera,
or the simulated devices (`--simulate`). Everything goes through
firmware_bridge.recorder.SessionRecorder: each device's samples with host and device
time, camera frames with their timestamps, stream-health events, labels. It is flushed
every 0.5 s, so `kill -9` loses at most the last flush.

Labels come from one of:
- a scripted protocol (`--protocol "neutral:10,hammer:10"` or a file with one
  `activity seconds` per line): the steps are shown on screen, each labelled as it
  runs, the recording ends after the last (the way data-collection apps guide a
  participant). With `--simulate` the simulated person follows the protocol.
- keys: number keys 1..9 start the activities given by `--activities`, 0 stops, q
  ends (in the window), or a prompt on stdin with `--headless` or without a display
  (type a number or a name; empty line or 0 stops; q ends the recording; anything
  else is refused in one line, the label in progress going on).
  With `--serve` the same keys are buttons on the web page (app.webview), which
  shows what the window shows.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import EdgeharError
from ..firmware_bridge.health import StreamHealth
from ..firmware_bridge.recorder import SessionRecorder
from .sources import Sources

HEALTH_POLL_S = 0.2


class RecordError(EdgeharError, ValueError):
    """Bad recording options (protocol, activities, output folder)."""


@dataclass
class RecordOptions:
    out: Path
    subject: str = "anonymous"
    split: str | None = None
    seconds: float | None = None
    protocol: list[tuple[str, float]] = field(default_factory=list)
    activities: tuple[str, ...] = ()
    view: str = "auto"  # auto | window | headless
    prompt: bool = True  # headless: read labels from stdin
    video_fps: float = 10.0
    serve: tuple[str, int] | None = None  # (host, port): the view as a web page, its buttons label
    token: str | None = None


def parse_protocol(text: str) -> list[tuple[str, float]]:
    """'a:10,b:5' or a file with 'activity seconds' per line -> [(activity, seconds)]."""
    path = Path(text)
    if path.is_file():
        items = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.replace(",", " ").replace(":", " ").split()
            if len(parts) != 2:
                raise RecordError(f"{text}: line {i}: expected 'activity seconds', got {line!r}")
            items.append((parts[0], parts[1]))
    else:
        items = []
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, secs = part.rpartition(":")
            if not sep or not name:
                raise RecordError(f"--protocol: {part!r} is not ACTIVITY:SECONDS (e.g. hammer:10)")
            items.append((name.strip(), secs.strip()))
    protocol = []
    for name, secs in items:
        try:
            seconds = float(secs)
        except ValueError:
            raise RecordError(f"--protocol: {name}: {secs!r} is not a number of seconds") from None
        if seconds <= 0:
            raise RecordError(f"--protocol: {name}: {secs!r} must be > 0 seconds")
        protocol.append((name, seconds))
    if not protocol:
        raise RecordError("--protocol: no steps")
    return protocol


def _refuse_unpaced(devices: dict[str, str]) -> None:
    """A recording is real time: a source that plays faster (replay://...?speed=0 or 4)
    would outrun the session's clock and the view, and only part of it would be kept.
    Refused up front rather than recording a fraction of it; copying a session needs no
    recording."""
    from ..firmware_bridge.transport import open_transport

    for name, url in devices.items():
        if not open_transport(url).realtime:
            raise RecordError(f"--device {name}={url}: this source is not paced in real time; "
                              "record from a real-time source (for a replay: speed=1)")


def run_record(sources: Sources, opts: RecordOptions, out: TextIO = sys.stdout,
               key_source=None) -> SessionRecorder:
    """Record until --seconds, the protocol's end, q, or Ctrl-C; returns the closed recorder."""
    from . import display
    from .webview import WebView

    if opts.protocol and opts.activities:
        raise RecordError("give --protocol or --activities, not both")
    _refuse_unpaced(sources.devices)
    recorder = SessionRecorder(opts.out, subject=opts.subject, split=opts.split,
                               extra={"protocol": [[a, s] for a, s in opts.protocol] or None,
                                      "activities": list(opts.activities) or None,
                                      "simulated": list(sources.feed_names) or None})
    frame_shape = sources.open()
    sources.add_sink(recorder.sink)  # enqueue only; streams not yet declared are ignored
    window, why = display.open_window(opts.view, "edgehar record")
    if why:
        print(f"edgehar record: {why}; recording headless", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        if window is not None:
            stack.callback(window.close)
        web = None
        if opts.serve is not None:
            web = WebView(*opts.serve, token=opts.token, title="edgehar record", keys=label_keys(opts.activities))
            stack.callback(web.close)
        start = sources.start()
        stack.callback(sources.stop)
        if web is not None:
            web.start(sources.loop)
            stack.callback(web.close)  # before the devices' loop it serves on stops
            print(f"edgehar record: live view at {web.url}", file=out, flush=True)
        for name in sources.names:
            if name == sources.camera_name:
                fps = sources.camera.fps if sources.camera is not None else 30.0
                recorder.add_camera(name, fps, frame_shape[1], frame_shape[0],
                                    device={"source": sources.camera_spec or "simulated"})
            else:
                info = sources.device_info(name)
                recorder.add_sensor(name, info.channels, info.rate_hz, info.units, info.device)
        recorder.start(start)
        stack.callback(recorder.close)
        print(f"edgehar record: recording {', '.join(sources.names)} into {opts.out}"
              + (f"; protocol of {len(opts.protocol)} steps, {sum(s for _, s in opts.protocol):g} s" if opts.protocol else ""),
              file=out, flush=True)
        quit_event = threading.Event()
        if window is None and opts.prompt and not opts.protocol and opts.activities:
            _start_prompt(recorder, opts.activities, quit_event, out)
        state = display.ViewState(title="edgehar record", subtitle=str(opts.out), recording=True,
                                  activity_keys=opts.activities)
        step_ends = []
        t = start
        for activity, seconds in opts.protocol:
            t += seconds
            step_ends.append(t)
        step = -1
        end = start + opts.seconds if opts.seconds else (step_ends[-1] if step_ends else None)
        last_health: dict[str, StreamHealth] = {}
        next_poll = next_frame = start
        with contextlib.suppress(KeyboardInterrupt):
            while not quit_event.is_set():
                now = time.monotonic()
                if recorder.error is not None:
                    raise recorder.error
                failure = sources.failure()
                if failure is not None:
                    raise failure
                if end is not None and now >= end:
                    break
                if opts.protocol:  # the step due now
                    due = next((i for i, e in enumerate(step_ends) if now < e), len(step_ends))
                    if due != step:
                        step_start = start if due == 0 else step_ends[due - 1]
                        if due < len(opts.protocol):
                            recorder.start_label(opts.protocol[due][0], step_start)
                            print(f"edgehar record: t={step_start - start:6.1f}s  now: {opts.protocol[due][0]} "
                                  f"for {opts.protocol[due][1]:g} s", file=out, flush=True)
                        else:
                            recorder.stop_label(step_start)
                        step = due
                if now >= next_poll:
                    last_health = _health_events(recorder, sources.health(), last_health, now)
                    next_poll = now + HEALTH_POLL_S
                page = web is not None and web.watched
                if (window is not None or page) and now >= next_frame:
                    _record_state(state, sources, recorder, opts, step, start, last_health)
                    if window is not None:
                        window.show(display.render_view(state))
                        key = window.poll_key() if key_source is None else key_source()
                        _handle_key(key, recorder, opts.activities, quit_event)
                    if page:
                        web.publish(state)  # the page draws itself from the state
                    next_frame = now + 1.0 / opts.video_fps
                elif key_source is not None:
                    _handle_key(key_source(), recorder, opts.activities, quit_event)
                if web is not None:
                    _handle_key(web.key(), recorder, opts.activities, quit_event)
                time.sleep(0.02)
    rec = recorder
    counts = ", ".join(f"{s.name} {s.rows} {'frames' if s.kind == 'camera' else 'samples'}" for s in rec.streams.values())
    print(f"edgehar record: wrote {opts.out} ({rec._newest:.1f} s: {counts}; {len(rec._labels)} labels)", file=out)
    return rec


def label_keys(activities: tuple[str, ...]) -> dict[str, str]:
    """The labelling keys (number -> activity, 0 stops) the window reads and the page offers."""
    return {**{str(i + 1): a for i, a in enumerate(activities[:9])}, **({"0": "stop"} if activities else {})}


def _handle_key(key: str, recorder: SessionRecorder, activities: tuple[str, ...], quit_event: threading.Event) -> None:
    if not key:
        return
    if key == "q":
        quit_event.set()
    elif key in ("0", " "):
        recorder.stop_label(time.monotonic())
    elif key.isdigit() and 1 <= int(key) <= len(activities):
        recorder.start_label(activities[int(key) - 1], time.monotonic())


def _start_prompt(recorder: SessionRecorder, activities: tuple[str, ...], quit_event: threading.Event, out: TextIO) -> None:
    """Headless labelling: one line per change on stdin."""
    menu = "  ".join(f"{i + 1}={a}" for i, a in enumerate(activities))
    print(f"edgehar record: type a number or name to start an activity ({menu}); empty or 0 stops; q ends",
          file=out, flush=True)

    def loop() -> None:
        for line in sys.stdin:
            text = line.strip()
            if text == "q":
                quit_event.set()
                return
            if text in activities:
                recorder.start_label(text, time.monotonic())
            elif text in ("", "0") or (text.isdigit() and 1 <= int(text) <= len(activities)):
                _handle_key(text or "0", recorder, activities, quit_event)
            else:  # a typo must not pass silently for a label change
                print(f"edgehar record: {text!r} is not an activity ({menu}); still labelling "
                      f"{recorder.current_label or 'nothing'}", file=out, flush=True)
                continue
            print(f"edgehar record: labelling {recorder.current_label or 'nothing'}", file=out, flush=True)

    threading.Thread(target=loop, name="label-prompt", daemon=True).start()


def _health_events(recorder: SessionRecorder, health: dict[str, StreamHealth], last: dict[str, StreamHealth],
                   now: float) -> dict[str, StreamHealth]:
    """Record what changed since the last snapshot: state, lost blocks, battery."""
    for name, h in health.items():
        before = last.get(name)
        if before is None or h.state != before.state:
            recorder.event(now, name, h.state, h.last_error if h.state != "connected" else "")
        lost = h.lost_blocks - (before.lost_blocks if before is not None else 0)
        if before is not None and lost > 0:
            recorder.event(now, name, "lost_blocks", str(lost))
        if h.battery_pct is not None and (before is None or h.battery_pct != before.battery_pct):
            recorder.event(now, name, "battery_pct", str(h.battery_pct))
    return health


def _record_state(state, sources: Sources, recorder: SessionRecorder, opts: RecordOptions, step: int,
                  start: float, health: dict[str, StreamHealth]) -> None:
    now = time.monotonic()
    state.now = now - start
    latest = sources.latest_frame()
    state.frame = None if latest is None else latest[1]
    state.health = health
    state.label = recorder.current_label
    state.banner = "REC"
    state.protocol = [(a, s, "done" if i < step else "now" if i == step else "next") for i, (a, s) in enumerate(opts.protocol)]
