"""The web view's server (`--serve`) without a browser: its address rules, who may see and
drive the view (token, Origin, Host), a slow viewer that must not slow anything, and
the CLI's one-line errors. tests/test_serve_browser.py drives the page in Chromium.
Every socket here is on loopback."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import threading

import numpy as np
import pytest

from edgehar.app.display import ViewError
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
                    assert msg.data[:2] == b"\xff\xd8", "a JPEG"
                    continue
                data = json.loads(msg.data)
                (replies if data["type"] == "error" else states).append(data)
            return hello, replies, states


def _publisher(web, n=1000):
    """Publish frames (seq 0, 1, ...) from another thread, as the live loop does, until stopped."""
    stop = threading.Event()

    def run():
        for i in range(n):
            if stop.wait(0.02):
                return
            web.publish({"seq": i}, IMAGE)

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
    assert states[0]["type"] == "state" and "seq" in states[0]
    assert [r["error"] for r in replies] == ["key 'x' is not one of p, s, t", 'expected {"key": ...}, got \'{"nokey": 1}\'']
    assert web.key() == "p" and web.key() == ""
    assert _run(_connect(web, origin=None, frames=0))[0]["type"] == "hello"  # a script sends no Origin: allowed


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


def test_a_slow_viewer_drops_frames_and_holds_up_no_one(serve):
    """A viewer that stops reading (its TCP window full) gets the newest frame when it
    reads again and misses the rest; publishing never waits for it, and a viewer beside
    it gets every frame's successor."""
    web = serve()
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)  # ~1 MB as a JPEG
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
            web.publish({"seq": i}, noise if i % 2 else noise[::-1])
        assert wait_for(lambda: web.stats()[0]["dropped"] > 0, 30), web.stats()
        # a viewer that reads gets the newest frame while the slow one still stalls
        hello, _, states = _run(_connect(web, frames=1))
        assert states[0]["seq"] == published - 1
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
    got = {"states": 0, "stalled": None}

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
                        got["states"] += msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "state"

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
