"""The web view's server (`--serve`) without a browser: its address rules, who may see and
drive the view (token, Origin, Host), what the page is sent (state with the traces every
frame, the camera only when new, the segments only when a prediction changed them; one
message per frame), a
slow viewer that must not slow anything, and the CLI's one-line errors.
tests/test_serve_browser.py drives the page in Chromium. Every socket here is on loopback."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edgehar.app.display import ViewError, ViewState
from edgehar.app.webmessages import CAMERA_BOX, TRACE_POINTS, decimate, frame_message, split_frame, trace_samples
from edgehar.app.webview import WebView, bind, is_loopback, page_token
from edgehar.argtypes import host_port
from waiting import wait_for


@pytest.mark.parametrize("text, expect", [
    ("8080", ("127.0.0.1", 8080)), ("0", ("127.0.0.1", 0)), ("0.0.0.0:8080", ("0.0.0.0", 8080)),
    ("localhost:80", ("localhost", 80)), ("[::1]:9000", ("::1", 9000)),
])
def test_serve_address_defaults_to_loopback(text, expect):
    assert host_port(text) == expect


@pytest.mark.parametrize("text", ["", "http", "80x", "65536", ":8080", "::1:8080", "host:", "-1"])
def test_a_bad_serve_address_names_the_value_and_the_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"is not \[HOST:\]PORT with a port from 0 to 65535"):
        host_port(text)


def test_only_a_non_loopback_host_gets_a_token_unasked():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("board.local")
    assert page_token("127.0.0.1", None) is None
    assert page_token("127.0.0.1", "mine") == "mine"  # given on loopback: required too
    made = page_token("0.0.0.0", None)
    assert made and len(made) >= 20 and made != page_token("0.0.0.0", None)
    assert page_token("192.168.1.20", "mine") == "mine"


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ViewError, match=rf"^--serve 127.0.0.1:{port}: port {port} is in use"):
            bind("127.0.0.1", port)
    with pytest.raises(ViewError, match="cannot resolve host 'no-such-host.invalid'"):
        bind("no-such-host.invalid", 0)


# --------------------------------------------------------------------------- a served view

IMAGE = np.full((72, 128, 3), 90, np.uint8)


@pytest.fixture
def serve():
    """serve(token=None, keys=...) -> a started WebView on 127.0.0.1 (its own loop thread)."""
    views = []

    def start(token=None, **kw):
        web = WebView("127.0.0.1", 0, token=token, **kw)
        views.append(web)
        web.start()
        return web

    yield start
    for web in views:
        web.close()


def _run(coro):
    return asyncio.run(coro)


async def _get(web, path="/", headers=None):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{web.port}{path}", headers=headers or {}) as r:
            return r.status, await r.text()


async def _connect(web, query="", origin="same", actions=(), frames=1, errors=0):
    """Open the page's WebSocket, send `actions`, read `frames` frames and `errors` error
    replies; returns (hello, errors, states of the frames) or the refused handshake's status."""
    import aiohttp

    headers = {} if origin is None else {"Origin": f"http://127.0.0.1:{web.port}" if origin == "same" else origin}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(f"http://127.0.0.1:{web.port}/ws{query}", headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        async with ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            replies = []
            for action in actions:
                await ws.send_str(json.dumps(action))
            states = []
            while len(states) < frames or len(replies) < errors:
                msg = await ws.receive(timeout=10)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    header, parts = split_frame(msg.data)
                    assert header["type"] == "frame"
                    for head, jpeg in parts:
                        assert head["kind"] in ("camera", "segments") and (jpeg[:2] == b"\xff\xd8" or not jpeg)
                    if header["state"] is not None:
                        states.append(header["state"])
                    continue
                data = json.loads(msg.data)
                assert data["type"] == "error", data
                replies.append(data)
            return hello, replies, states


def _publisher(web, n=1000):
    """Publish frames (now = 0, 1, ...) from another thread, as the live loop does, until stopped."""
    stop = threading.Event()

    def run():
        for i in range(n):
            if stop.wait(0.02):
                return
            web.publish(ViewState(now=i, frame=IMAGE))

    threading.Thread(target=run, daemon=True).start()
    return stop


def test_loopback_view_checks_host_and_origin_and_takes_keys(serve):
    web = serve()
    assert web.url == f"http://127.0.0.1:{web.port}/" and web.token is None
    status, page = _run(_get(web))
    assert status == 200 and "<title>edgehar live view</title>" in page
    # DNS rebinding: a foreign name that resolves to 127.0.0.1 is not this view's
    status, text = _run(_get(web, headers={"Host": f"attacker.example:{web.port}"}))
    assert status == 403 and "loopback names only" in text
    # another site open in the same browser cannot open the socket
    assert _run(_connect(web, origin="http://attacker.example")) == 403
    stop = _publisher(web)
    try:
        hello, replies, states = _run(_connect(web, actions=[{"key": "p"}, {"key": "x"}, {"nokey": 1}], frames=2,
                                               errors=2))
    finally:
        stop.set()
    assert hello["keys"] == {"p": "pause", "s": "smoothing", "t": "thumbnails"} and not hello["token_required"]
    assert states[0]["seq"] >= 1 and states[0]["now"] >= 0
    assert [r["error"] for r in replies] == ["key 'x' is not one of p, s, t", 'expected {"key": ...}, got \'{"nokey": 1}\'']
    assert web.key() == "p" and web.key() == ""
    assert _run(_connect(web, origin=None, frames=0))[0]["type"] == "hello"  # a script sends no Origin: allowed


def test_a_page_key_wakes_the_live_loop(serve):
    """The live loop sleeps through a whole view frame or hop (`LiveView.sleep`); a key
    from a page ends the sleep at once instead of waiting for it to run out."""
    web = serve()
    started = time.monotonic()
    web.wait_key(0.05)
    assert time.monotonic() - started >= 0.05  # no key: the whole timeout
    pressed = threading.Timer(0.2, lambda: _run(_connect(web, actions=[{"key": "t"}], frames=0)))
    pressed.start()
    started = time.monotonic()
    web.wait_key(30.0)
    assert time.monotonic() - started < 10.0 and web.key() == "t"
    pressed.join()


def test_a_token_guards_the_page_the_socket_and_the_keys(serve):
    web = serve(token="s3cret")
    assert web.url.endswith("/?token=s3cret")
    assert _run(_get(web))[0] == 403
    assert _run(_get(web, "/?token=wrong"))[0] == 403
    assert _run(_get(web, "/?token=s3cret"))[0] == 200
    assert _run(_connect(web)) == 403
    assert _run(_connect(web, "?token=nope")) == 403
    hello, replies, _ = _run(_connect(web, "?token=s3cret", actions=[{"key": "t"}, {"key": "s", "token": "s3cret"}],
                                      frames=0, errors=1))
    assert hello["token_required"]
    assert [r["error"] for r in replies] == ["this action needs the token"]
    assert wait_for(lambda: len(web._pressed) == 1, 10)
    assert web.key() == "s" and web.key() == "", "the key without the token was refused"


async def _watch(web, steps, traces=None):
    """Connect, then for each (state, made[, camera]) publish it and read its frame message:
    returns per step the frame's image parts ([(header, jpeg)]) and its state; each frame's
    traces go to the list `traces`. Each step waits for its frame, so nothing is replaced
    before it is sent."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{web.port}/ws") as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
            for state, made, *camera in steps:
                web.publish(state, made=made, camera=camera[0] if camera else True)
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.BINARY
                header, parts = split_frame(msg.data)
                if header["traces"] is not None and traces is not None:
                    traces.append(header["traces"])
                out.append((parts, header["state"]))
    return out


def _tiles(n, h, w, value):
    return np.full((n, h, w, 3), value, np.uint8)


def test_images_are_sent_only_when_they_change(serve):
    """The camera goes when the frame is a new one (shrunk to the page's camera box, never
    enlarged) and the frame is a slot of the view's rate, the segments when a new
    prediction brought new tiles (not per frame), one empty segments part when they are
    hidden; the state goes every frame; all of a frame in one message."""
    web = serve()
    big = np.zeros((720, 1280, 3), np.uint8)
    small = np.zeros((120, 160, 3), np.uint8)
    first = [("rgb", _tiles(3, 56, 56, 200)), ("glove", _tiles(3, 40, 52, 90))]
    second = [("rgb", _tiles(3, 56, 56, 30)), ("glove", _tiles(3, 40, 52, 250))]
    s = ViewState(frame=big, thumbnails=first, smoothed="walking", label="walking", smoothed_confidence=0.8)
    steps = [(s, 1.0)]
    s = ViewState(frame=big, thumbnails=first, smoothed="walking", now=0.1)  # same objects: a frame, no new prediction
    steps.append((s, 1.0))
    steps.append((ViewState(frame=small, thumbnails=second, now=0.15), 2.0, False))  # a prediction between slots
    steps.append((ViewState(frame=small, thumbnails=second, now=0.2), 2.0))  # the slot: its camera frame
    steps.append((ViewState(frame=None, thumbnails=[], show_thumbnails=False, now=0.4), 2.0))  # stale camera, hidden
    steps.append((ViewState(frame=None, thumbnails=[], show_thumbnails=False, now=0.5), 2.0))
    got = _run(_watch(web, steps))
    kinds = [[h["kind"] for h, _ in parts] for parts, _ in got]
    assert kinds == [["segments", "camera"], [], ["segments"], ["camera"], ["segments", "camera"], []]
    assert [state["seq"] for _, state in got] == [1, 2, 3, 4, 5, 6]
    assert [state["made"] for _, state in got] == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert got[0][1]["label"] == "walking" and got[0][1]["confidence"] == 0.8

    (seg, seg_jpeg), (cam, cam_jpeg) = got[0][0]
    assert (cam["width"], cam["height"]) == (640, 360) and cam_jpeg[:2] == b"\xff\xd8"  # fitted into CAMERA_BOX
    assert cv2.imdecode(np.frombuffer(cam_jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
    assert (got[3][0][0][0]["width"], got[3][0][0][0]["height"]) == (160, 120)  # smaller: its own size
    assert [r["name"] for r in seg["rows"]] == ["rgb", "glove"]
    sheet = cv2.imdecode(np.frombuffer(seg_jpeg, np.uint8), cv2.IMREAD_COLOR)
    for row, (_, tiles) in zip(seg["rows"], first):
        assert len(row["tiles"]) == 3
        for (x, y, w, h), tile in zip(row["tiles"], tiles):
            assert (w, h) == tile.shape[1::-1]
            assert np.abs(sheet[y:y + h, x:x + w].astype(int) - tile).mean() < 3  # each tile where the header says
    assert got[4][0][0][0]["rows"] == [] and got[4][0][1] == ({"kind": "camera", "width": 0, "height": 0, "bytes": 0}, b"")
    assert CAMERA_BOX == (640, 480)


def _glove_series(rate_hz, seconds, spike_at=None):
    """The shipped bundle's manifest and a glove's jittered samples on the host clock."""
    from edgehar.cli.demo import SHIPPED_DIR
    from edgehar.contract.manifest import Manifest

    manifest = Manifest.load(SHIPPED_DIR / "litert-int8")
    n = int(rate_hz * seconds)
    t = 100.0 + np.arange(n) / rate_hz + np.random.default_rng(1).uniform(0, 0.2 / rate_hz, n)
    values = np.sin(np.outer(t, np.arange(1, len(manifest.stream("glove").channels) + 1))).astype(np.float32)
    if spike_at is not None:
        values[spike_at, :5] = 5.0  # one sample on every finger
    return manifest, t, values


def _rings(manifest, capacity):
    from edgehar.app.ringbuffer import SensorRing

    return {s.name: SensorRing(s.channels, capacity) for s in manifest.streams if s.kind == "sensor"}


def _merge(kept, msg):
    """What the page does with a traces message: the whole window replaces, a chunk adds
    the samples newer than those it has; 5 s kept."""
    if msg["full"]:
        kept.clear()
    for chunk in msg["chunks"]:
        for tr in chunk:
            t, v = trace_samples(tr)
            old_t, old_v = kept.get(tr["name"], (np.zeros(0), np.zeros((0, len(tr["channels"])))))
            new = t > (old_t[-1] if len(old_t) else -np.inf)
            t, v = np.concatenate([old_t, t[new]]), np.concatenate([old_v, v[new]])
            keep = t >= t[-1] - tr["window_s"] if len(t) else slice(None)
            kept[tr["name"]] = (t[keep], v[keep])


def test_the_traces_sent_are_the_rings_data(serve):
    """Frame by frame at 10 fps, a glove at 100 Hz: the first frame brings the whole
    window, each later one only the new samples, and what the page holds is the ring's
    last 5 s: every sample, its time within half a millisecond, its value within half a
    level of its chunk's range. A second viewer that comes late starts from the whole window."""
    from edgehar.app.liveview import traces

    manifest, t, values = _glove_series(100.0, 8.0)
    rings = _rings(manifest, len(t))
    start, frames = 90.0, [105.5 + 0.1 * k for k in range(25)]  # 5.5 s of samples before the first frame
    steps, given = [], 0
    for now in frames:
        upto = int(np.searchsorted(t, now, side="right"))
        rings["glove"].append(t[given:upto], values[given:upto])
        given = upto
        steps.append((ViewState(now=now - start, traces=traces(manifest, rings, now, start)), 0.0))
    web = serve()
    got = []
    _run(_watch(web, steps, traces=got))
    assert [m["full"] for m in got] == [True] + [False] * 24
    kept: dict = {}
    for msg in got:
        _merge(kept, msg)
    glove, imu = steps[-1][0].traces
    assert imu.name == "imu accelerometer" and len(kept["imu accelerometer"][0]) == 0  # no data: said, not faked
    sent_t, sent_v = kept[glove.name]
    # the page keeps the 5 s before its newest sample; the ring's window is the 5 s before now
    assert 0 <= glove.t[0] - sent_t[0] <= 0.1 and sent_t[-1] == glove.t[-1]
    sent_t, sent_v = sent_t[sent_t >= glove.t[0] - 0.0005], sent_v[sent_t >= glove.t[0] - 0.0005]
    assert 499 <= len(glove.t) <= 501 and len(sent_t) == len(glove.t)
    assert np.abs(sent_t - glove.t).max() <= 0.0005 + 1e-9
    assert np.abs(sent_v - glove.values).max() <= (glove.values.max() - glove.values.min()) / 999 / 2 + 1e-6
    chunk_sizes = [len(json.dumps(m)) for m in got[1:]]
    assert max(chunk_sizes) < 2_500 < len(json.dumps(got[0])), chunk_sizes  # a frame's samples, not 5 s of them
    # a viewer that comes now starts from the whole window
    late = []
    _run(_watch(web, [steps[-1]], traces=late))
    assert late[0]["full"] and len(late) == 1
    kept = {}
    _merge(kept, late[0])
    assert np.abs(kept[glove.name][0] - glove.t).max() <= 0.0005 + 1e-9


def test_a_viewer_far_behind_gets_the_whole_window_again():
    from edgehar.app.webview import _MAX_TRACE_CHUNKS, _Viewer

    viewer = _Viewer(ws=None, transport=None, full_traces=lambda: '"whole"')
    assert viewer._traces() == '"whole"' and viewer._traces() is None  # a new viewer: the whole window, once
    viewer.offer({"traces": "[1]", "state": '{"seq":1}'})
    viewer.offer({"traces": "[2]", "state": '{"seq":2}', "camera": ('{"kind":"camera"}', b"jpeg")})
    header, parts = split_frame(viewer._message())  # all that is pending, as one message
    assert header == {"type": "frame", "state": {"seq": 2}, "traces": {"full": False, "chunks": [[1], [2]]},
                      "parts": [{"kind": "camera", "bytes": 4}]} and parts[0][1] == b"jpeg"
    assert viewer.dropped == 1 and viewer.sent == 1 and viewer._message() is None
    for _ in range(_MAX_TRACE_CHUNKS + 1):
        viewer.offer({"traces": "[3]"})
    assert viewer._traces() == '"whole"' and viewer.trace_chunks == []


def test_a_frame_message_splits_back_into_its_pieces():
    parts = [('{"kind":"segments","rows":[]}', b""), ('{"kind":"camera","width":2,"height":1}', b"\xff\xd8ab")]
    message = frame_message('{"seq":3}', None, parts)
    assert int.from_bytes(message[:4], "big") == len(message) - 4 - 4  # the header, then the parts' 4 bytes
    header, got = split_frame(message)
    assert header["state"] == {"seq": 3} and header["traces"] is None
    assert got == [({"kind": "segments", "rows": [], "bytes": 0}, b""),
                   ({"kind": "camera", "width": 2, "height": 1, "bytes": 4}, b"\xff\xd8ab")]


def test_a_fast_trace_is_decimated_to_the_plot_width_keeping_its_spikes():
    """A 1 kHz sensor: 5000 samples become at most TRACE_POINTS (the page's plot width),
    each run's minimum and maximum, so a one-sample spike is still drawn."""
    from edgehar.app.liveview import traces

    manifest, t, values = _glove_series(1000.0, 5.0, spike_at=3210)
    rings = _rings(manifest, len(t))
    rings["glove"].append(t, values)
    glove = traces(manifest, rings, float(t[-1]), 90.0)[0]
    t, v = decimate(glove.t, glove.values)
    assert len(t) <= TRACE_POINTS and len(glove.t) > 8 * TRACE_POINTS
    assert np.all(np.diff(t) >= 0) and t[0] == glove.t[0] and t[-1] == glove.t[-1]
    assert v.max(0).tolist() == glove.values.max(0).tolist() and v.min(0).tolist() == glove.values.min(0).tolist()
    spike_t = glove.t[3210]
    near = np.abs(t - spike_t) <= 5000 / TRACE_POINTS * 2 / 1000 + 1e-9
    assert (v[near, 0] == 5.0).any()
    short_t, short_v = decimate(glove.t[:300], glove.values[:300])  # fewer than the plot's pixels: untouched
    assert np.array_equal(short_t, glove.t[:300]) and np.array_equal(short_v, glove.values[:300])


def test_a_slow_viewer_drops_frames_and_holds_up_no_one(serve):
    """A viewer that stops reading (its TCP window full) gets the newest frame when it
    reads again and misses the rest; publishing never waits for it, and a viewer beside
    it gets every frame's successor."""
    web = serve()
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)  # ~0.4 MB as a JPEG
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", web.port))
    key = base64.b64encode(os.urandom(16)).decode()
    slow.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b"101" in slow.recv(12)  # upgraded; from here on it reads nothing
    assert wait_for(lambda: len(web.stats()) == 1, 10)
    published = 40
    try:
        for i in range(published):  # returns at once each time: the loop thread does the sending
            web.publish(ViewState(now=i, frame=noise if i % 2 else noise[::-1].copy()))
        assert wait_for(lambda: web.stats()[0]["dropped"] > 0, 30), web.stats()
        # a viewer that reads gets the newest frame while the slow one still stalls
        hello, _, states = _run(_connect(web, frames=1))
        assert states[0]["now"] == published - 1 and states[0]["seq"] == published
        stalled = web.stats()
        assert any(s["sent"] < published - 1 and s["dropped"] > 0 for s in stalled), stalled
    finally:
        slow.close()


def test_a_stalled_viewer_does_not_slow_the_hops(tmp_path):
    """A whole live run with a viewer that never reads beside one that does: the hops go
    on to the run's end (were the live loop to wait for the stalled viewer, it would stop
    once the socket's buffers filled, and the run would never end) and the reading viewer
    gets frames throughout. (How many frames the kernel's buffers absorb before the stall
    shows depends on the machine's load; the test above stalls one for certain.)"""
    from edgehar.app.backends import load_bundle
    from edgehar.app.live import LiveOptions, run_live
    from edgehar.app.sources import Sources
    from edgehar.simulator.devices.rig import SimulatedRig
    from live_helpers import tiny_bundle

    manifest, backend = load_bundle(tiny_bundle(tmp_path))
    out = io.StringIO()
    got = {"states": 0, "camera": 0, "segments": 0, "stalled": None}

    def viewers():
        if not wait_for(lambda: "live view at" in out.getvalue(), 60):
            return
        port = int(out.getvalue().split("live view at ", 1)[1].split()[0].rsplit(":", 1)[1].strip("/"))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
        stalled.connect(("127.0.0.1", port))
        stalled.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        got["stalled"] = stalled

        async def watch():
            import aiohttp

            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            header, parts = split_frame(msg.data)
                            got["states"] += header["state"] is not None
                            for head, _ in parts:
                                got[head["kind"]] += 1

        asyncio.run(watch())

    thread = threading.Thread(target=viewers, daemon=True)
    thread.start()
    seconds = 5.0
    try:
        summary = run_live(manifest, backend, Sources(feed=SimulatedRig(("camera", "glove", "imu"), seed=0)),
                           LiveOptions(seconds=seconds, view="headless", serve=("127.0.0.1", 0),
                                       json_path=tmp_path / "p.jsonl"), out=out)
        thread.join(30)
    finally:
        if got["stalled"] is not None:
            got["stalled"].close()
    times = [json.loads(l)["t"] for l in (tmp_path / "p.jsonl").read_text().splitlines()]
    start = times[0] - manifest.window_s
    # the last hops may be skipped on a loaded machine (a hop that falls behind is skipped,
    # not queued), never the second half of the run: the stall began within its first second
    assert summary.predictions == len(times) and times[-1] >= start + seconds - 2.5, (start, times)
    assert got["stalled"] is not None and got["states"] >= 10, got  # ~10 fps for the seconds it watched
    # the segments go per prediction (at most, plus the one a new viewer starts with), not per frame
    assert 1 <= got["segments"] <= summary.predictions + 1 < got["states"], (got, summary.predictions)
    assert got["camera"] >= 10, got
