"""The live view in a browser (`--serve [HOST:]PORT`), for boards without a screen.

The page (web/live.html, one static file shipped with the package: no build step, no
CDN) shows the view the window shows: each frame is `display.render_view`'s image,
the same renderer as the window and `--save-video`, sent as a JPEG over a WebSocket,
with the state behind it (smoothed label, top-3, per-stage latency, stream health,
pause / smoothing / thumbnails) as a JSON message before it. The page's buttons and
keys send the window's keys back (p, s, t; in `record` the labelling keys), which the
live loop reads like the window's.

Why aiohttp: one well-kept package gives both HTTP and WebSocket servers on asyncio,
and it runs as a guest on a loop it does not own (AppRunner + SockSite), so it shares
the DeviceHub's loop thread with the devices instead of adding a thread and a loop of
its own (starlette + uvicorn is three packages, and uvicorn expects to own the loop
and the process's signals).

Cost and slow viewers: frames are drawn and encoded only while a viewer is connected,
once per frame whatever the number of viewers, in the live loop's thread (where the
window's are drawn); the loop thread only queues bytes. Each viewer has a queue of one
(the newest frame replaces one not yet sent), so a viewer on a slow link misses frames
and never holds up the others, the devices or the hops.

Safe by default: no listener unless asked; 127.0.0.1 unless a host is given. A
non-loopback host needs a token (`--token`, else a random one printed in the URL) to
load the page, open the socket and send keys; a token given on loopback is required
too. The WebSocket's Origin must be the page's own (another site open in the same
browser cannot drive the board), and on loopback the Host header must name loopback
(DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import secrets
import socket
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from .display import ViewError, ViewState

PAGE = Path(__file__).with_name("web") / "live.html"
JPEG_QUALITY = 75
LIVE_KEYS = {"p": "pause", "s": "smoothing", "t": "thumbnails"}  # the window's keys the page offers
_STOP_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 1.0  # a viewer that does not answer the close in this long is cut off


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_token(host: str, token: str | None) -> str | None:
    """The token the page needs: the one given, else a random one where others can
    connect (a non-loopback host), else none."""
    return token or (None if is_loopback(host) else secrets.token_urlsafe(16))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a ViewError saying in one line why not."""
    where = f"--serve {'[' + host + ']' if ':' in host else host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ViewError(f"{where}: cannot resolve host {host!r} ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: a port in use stays refused
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        why = {errno.EADDRINUSE: f"port {port} is in use (another program listens there; pick another port, "
                                 "or 0 for any free one)",
               errno.EACCES: f"port {port} needs privileges here (pick one above 1023)",
               errno.EADDRNOTAVAIL: f"{host} is not an address of this machine"}.get(exc.errno, exc.strerror)
        raise ViewError(f"{where}: {why}") from None
    sock.setblocking(False)
    return sock


def page_state(s: ViewState) -> dict:
    """What the page shows beside the image, from the state the image was drawn from."""
    top3 = [] if s.probs is None else [[s.labels[i], round(float(s.probs[i]), 4)]
                                       for i in np.argsort(s.probs)[::-1][:3]]
    return {
        "now": round(s.now, 2), "paused": s.paused, "thumbnails": s.show_thumbnails, "smoothing": s.smoothing,
        "label": s.smoothed, "confidence": round(float(s.smoothed_confidence), 4), "raw": s.label, "top3": top3,
        "missing": list(s.missing), "latency_ms": {k: round(v, 2) for k, v in s.latency_ms.items()},
        "streams": {n: {"state": h.state, "rate_hz": None if h.rate_hz is None else round(h.rate_hz, 1),
                        "lost_blocks": h.lost_blocks, "battery_pct": h.battery_pct} for n, h in s.health.items()},
        "recording": s.recording, "banner": s.banner,
    }


class _Viewer:
    """One connected page: a queue of one (the newest frame wins) and the task that sends it."""

    def __init__(self, ws, transport) -> None:
        self.ws, self.transport = ws, transport
        self.pending: tuple[str, bytes] | None = None
        self.ready = asyncio.Event()
        self.sent = 0
        self.dropped = 0  # frames replaced before they could be sent (a slow viewer)

    def offer(self, frame: tuple[str, bytes]) -> None:
        self.dropped += self.pending is not None
        self.pending = frame
        self.ready.set()

    async def close(self) -> None:
        """Tell the page the run ended; a viewer too stalled to hear it is cut off."""
        try:
            await asyncio.wait_for(self.ws.close(message=b"the run ended"), _CLOSE_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError):
            if self.transport is not None:
                self.transport.abort()

    async def send_frames(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            (state, jpeg), self.pending = self.pending, None
            await self.ws.send_str(state)  # awaits the socket draining: only this viewer waits
            await self.ws.send_bytes(jpeg)
            self.sent += 1


class WebView:
    """The page's server: bound when made (errors before the devices start), served
    once `start(loop)` is called, until `close()`.

    `publish(state, image)` hands it a frame from the live loop's thread; `key()`
    returns a key a page sent ('' if none); `watched` says whether anyone looks.
    """

    def __init__(self, host: str, port: int, token: str | None = None, title: str = "edgehar",
                 keys: Mapping[str, str] = LIVE_KEYS):
        self.host = host
        self.loopback = is_loopback(host)
        self.token = page_token(host, token)
        self.title, self.keys = title, dict(keys)
        self._sock = bind(host, port)
        self.port = self._sock.getsockname()[1]
        self._viewers: set[_Viewer] = set()
        self._latest: tuple[str, bytes] | None = None
        self._pressed: deque[str] = deque(maxlen=32)
        self._jpeg: tuple[np.ndarray, bytes] | None = None  # the last image encoded (a paused view repeats it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_thread: threading.Thread | None = None
        self._runner = None

    # -- the live loop's side ------------------------------------------------------------
    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    @property
    def watched(self) -> bool:
        return bool(self._viewers)

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve on `loop` (the devices', running in another thread); without one, on a
        loop thread of its own (a run with no device streams)."""
        from aiohttp import web

        if loop is None:
            loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=loop.run_forever, name="web-view", daemon=True)
            self._own_thread.start()
        self._loop = loop
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._socket)

        async def serve():
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, self._sock).start()
            return runner

        self._runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(_STOP_TIMEOUT_S)

    def publish(self, state: dict, image: np.ndarray) -> None:
        """Send one frame (the state and the rendered view) to every viewer; never blocks."""
        if self._loop is None:
            return
        if self._jpeg is None or self._jpeg[0] is not image:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            self._jpeg = (image, buf.tobytes())
        frame = (json.dumps({"type": "state", **state}), self._jpeg[1])
        self._loop.call_soon_threadsafe(self._offer, frame)

    def stats(self) -> list[dict[str, int]]:
        """Per connected viewer: frames sent and frames dropped (replaced before they were sent)."""
        return [{"sent": v.sent, "dropped": v.dropped} for v in list(self._viewers)]

    def key(self) -> str:
        """The oldest key a page sent and the live loop has not read, or ''."""
        try:
            return self._pressed.popleft()
        except IndexError:
            return ""

    def close(self) -> None:
        """Stop serving (viewers are told the run ended) and release the port; idempotent."""
        loop, runner, self._runner = self._loop, self._runner, None
        if runner is not None and loop is not None and loop.is_running():
            async def stop():
                await asyncio.gather(*(v.close() for v in list(self._viewers)))
                await runner.cleanup()

            try:
                asyncio.run_coroutine_threadsafe(stop(), loop).result(_STOP_TIMEOUT_S)
            except (TimeoutError, OSError):  # a viewer that does not answer the close: the port is freed below
                pass
        if self._own_thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._own_thread.join(_STOP_TIMEOUT_S)
            self._own_thread = None
        self._sock.close()

    # -- the server's side (on the loop) -------------------------------------------------
    def _offer(self, frame: tuple[str, bytes]) -> None:
        self._latest = frame
        for viewer in self._viewers:
            viewer.offer(frame)

    def _refuse(self, request, control: bool = False) -> str | None:
        """Why this request may not see (or drive) the view, or None."""
        from aiohttp import hdrs

        host_header = request.headers.get(hdrs.HOST, "")
        if self.loopback and not is_loopback(urlsplit(f"//{host_header}").hostname or ""):
            return f"this view answers to loopback names only, not {host_header!r}"
        origin = request.headers.get(hdrs.ORIGIN)
        if control and origin is not None and urlsplit(origin).netloc != host_header:
            return f"WebSocket from another site ({origin}) refused"
        if self.token is not None and not _same(request.query.get("token", ""), self.token):
            return "this view needs the token printed when it started (add ?token=... to the address)"
        return None

    async def _page(self, request):
        from aiohttp import web

        why = self._refuse(request)
        if why is not None:
            raise web.HTTPForbidden(text=f"edgehar: {why}\n")
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def _socket(self, request):
        from aiohttp import WSMsgType, web

        why = self._refuse(request, control=True)
        if why is not None:
            raise web.HTTPForbidden(text=f"edgehar: {why}\n")
        # no permessage-deflate: JPEGs do not shrink, and deflating them would cost the CPU this view must not take
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False, timeout=_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "title": self.title, "keys": self.keys,
                                      "token_required": self.token is not None}))
        viewer = _Viewer(ws, request.transport)
        if self._latest is not None:
            viewer.offer(self._latest)
        self._viewers.add(viewer)
        sender = asyncio.ensure_future(viewer.send_frames())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    error = self._control(msg.data)
                    if error:
                        await ws.send_str(json.dumps({"type": "error", "error": error}))
        finally:
            self._viewers.discard(viewer)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        return ws

    def _control(self, text: str) -> str | None:
        """A key from a page ({"key": "p", "token": ...}): queued for the live loop, or why not."""
        try:
            msg = json.loads(text)
            key = str(msg["key"])
        except (ValueError, KeyError, TypeError):
            return f"expected {{\"key\": ...}}, got {text[:40]!r}"
        if key not in self.keys:
            return f"key {key!r} is not one of {', '.join(self.keys)}"
        if self.token is not None and not _same(str(msg.get("token", "")), self.token):
            return "this action needs the token"
        self._pressed.append(key)
        return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
