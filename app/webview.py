"""The live view in a browser (`--serve [HOST:]PORT`), for boards without a screen.

The page (web/live.html, one static file shipped with the package: no build step, no
CDN) shows what the window shows -- camera with the smoothed label, top-3 bars, the
sampled segments, 5 s traces, stream status, per-stage latency -- and draws it itself,
in canvas and DOM, from one message per frame (app.webmessages): the view's state as
JSON, the traces' new samples, the camera image as a JPEG when it is a new one (at the
view's slots), the segments' tiles when a prediction changed them. The page's buttons
and keys send the window's keys back (p, s, t; in `record` the labelling keys), which
the live loop reads like the window's.

Why aiohttp: one well-kept package gives both HTTP and WebSocket servers on asyncio,
and it runs as a guest on a loop it does not own (AppRunner + SockSite), so it shares
the DeviceHub's loop thread with the devices instead of adding a thread and a loop of
its own (starlette + uvicorn is three packages, and uvicorn expects to own the loop
and the process's signals).

Cost and slow viewers: a frame's pieces are made only while a viewer is connected, once
whatever the number of viewers, in the live loop's thread (where the window's view is
drawn); the loop thread only joins them into one message per viewer and queues it.
Each viewer keeps one of each piece not yet sent (the newest state, camera image or
segments replaces an older one), so a viewer on a slow link misses frames and never
holds up the others, the devices or the hops, and still gets the newest of each kind.
The traces' new samples are kept for it in order, as text already made, up to 50
frames; past that, and when it first connects, it is sent the traces' whole window.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .display import Trace, ViewError, ViewState
from .webmessages import Part, camera_part, frame_message, page_state, segments_part, trace_json, traces_json

PAGE = Path(__file__).with_name("web") / "live.html"
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


_MAX_TRACE_CHUNKS = 50  # a viewer this many frames behind gets the whole 5 s again instead of the chunks


class _Viewer:
    """One connected page: one of each piece of a frame not yet sent (the newest wins),
    and the task that sends them, joined, as one message."""

    def __init__(self, ws, transport, full_traces: Callable[[], str]) -> None:
        self.ws, self.transport = ws, transport
        self.pending: dict[str, str | Part] = {}
        # the traces' new samples are not replaced but kept in order (each frame's chunk
        # holds only that frame's samples); a viewer that falls too far behind, or has
        # just come, is sent the whole window instead (`full_traces`)
        self.trace_chunks: list[str] = []
        self.full_traces, self.resync = full_traces, True
        self.ready = asyncio.Event()
        self.sent = 0  # frames with a state sent
        self.dropped = 0  # states replaced before they could be sent (a slow viewer)

    def offer(self, pieces: Mapping[str, str | Part]) -> None:
        self.dropped += "state" in pieces and "state" in self.pending
        chunk = pieces.get("traces")
        if chunk is not None and not self.resync:
            self.trace_chunks.append(chunk)
            if len(self.trace_chunks) > _MAX_TRACE_CHUNKS:
                self.trace_chunks, self.resync = [], True
        self.pending.update((k, m) for k, m in pieces.items() if k != "traces")
        self.ready.set()

    def _traces(self) -> str | None:
        """The traces due now: the whole window, the chunks come since, or none."""
        if self.resync:
            self.trace_chunks, self.resync = [], False
            return self.full_traces()
        if not self.trace_chunks:
            return None
        chunks, self.trace_chunks = self.trace_chunks, []
        return traces_json(chunks, full=False)

    def _message(self) -> bytes | None:
        """Everything pending, as one frame message (None: nothing is)."""
        parts = [self.pending.pop(kind) for kind in ("segments", "camera") if kind in self.pending]
        state, traces = self.pending.pop("state", None), self._traces()
        if state is None and traces is None and not parts:
            return None
        self.sent += state is not None
        return frame_message(state, traces, parts)

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
            message = self._message()
            if message is not None:
                await self.ws.send_bytes(message)  # awaits the socket draining: only this viewer waits


class WebView:
    """The page's server: bound when made (errors before the devices start), served
    once `start(loop)` is called, until `close()`.

    `publish(state)` hands it a frame from the live loop's thread; `key()`
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
        self._latest: dict[str, str | Part] = {}  # the newest piece of each kind: a new viewer starts with them
        self._pressed: deque[str] = deque(maxlen=32)
        self._key_sent = threading.Event()  # set when a page sends a key: wakes the live loop (`wait_key`)
        # what the last pieces were made from: a camera frame, segments or traces that are
        # the same objects (a paused view, a stalled camera, no new prediction) are not made again
        self._sent_frame: object = _NOTHING
        self._sent_thumbnails: object = _NOTHING
        self._traces: list[Trace] = []  # the newest traces published (a new viewer gets their whole window)
        self._trace_end: dict[str, float] = {}  # per trace, its last sample already sent
        self._seq = 0
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

    def publish(self, state: ViewState, made: float = 0.0, camera: bool = True) -> None:
        """Send one frame of the view to every viewer; never blocks. `made`: the wall time
        the prediction it shows was made (the page's lag is measured from it); `camera`:
        False leaves the camera image out of this frame (one between the view's slots)."""
        if self._loop is None:
            return
        pieces: dict[str, str | Part] = {}
        if camera and state.frame is not self._sent_frame:
            pieces["camera"] = camera_part(state.frame)
            self._sent_frame = state.frame
        thumbnails = state.thumbnails or None  # hidden or none yet: one empty part, not one per frame
        if thumbnails is not self._sent_thumbnails:
            pieces["segments"] = segments_part(state.thumbnails)
            self._sent_thumbnails = thumbnails
        if state.traces is not self._traces:  # (a paused view keeps its traces: nothing new)
            chunk = [trace_json(tr, self._trace_end.get(tr.name)) for tr in state.traces]
            self._trace_end.update((tr.name, float(tr.t[-1])) for tr in state.traces if len(tr.t))
            self._traces = state.traces
            pieces["traces"] = json.dumps(chunk, separators=(",", ":"))
        self._seq += 1
        pieces["state"] = json.dumps({"seq": self._seq, "made": made, **page_state(state)}, separators=(",", ":"))
        self._loop.call_soon_threadsafe(self._offer, pieces)

    def stats(self) -> list[dict[str, int]]:
        """Per connected viewer: frames sent and frames dropped (replaced before they were sent)."""
        return [{"sent": v.sent, "dropped": v.dropped} for v in list(self._viewers)]

    def key(self) -> str:
        """The oldest key a page sent and the live loop has not read, or ''."""
        try:
            return self._pressed.popleft()
        except IndexError:
            return ""

    def wait_key(self, timeout: float) -> None:
        """Return after `timeout` seconds, or as soon as a page sends a key (for `key()`)."""
        if self._key_sent.wait(timeout):
            self._key_sent.clear()

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
    def _offer(self, pieces: dict[str, str | Part]) -> None:
        self._latest.update((k, m) for k, m in pieces.items() if k != "traces")
        for viewer in self._viewers:
            viewer.offer(pieces)

    def _full_traces(self) -> str:
        """Every trace's whole window, as published last (for one viewer: made on the loop
        thread, only when a viewer comes or falls too far behind)."""
        traces = self._traces  # one read: the live loop's thread may replace it meanwhile
        return traces_json([json.dumps([trace_json(tr) for tr in traces], separators=(",", ":"))], full=True)

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
        # no permessage-deflate: JPEGs do not shrink, and deflating the state's traces for
        # each viewer would cost the CPU this view must not take
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False, timeout=_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "title": self.title, "keys": self.keys,
                                      "token_required": self.token is not None}))
        viewer = _Viewer(ws, request.transport, self._full_traces)
        if self._latest:
            viewer.offer(self._latest)  # (no traces: it starts with their whole window)
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
        self._key_sent.set()
        return None


_NOTHING = object()  # nothing sent yet (None is a message: no camera frame)


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
