"""Predictions and stream health over MQTT, for boards without a screen (`--mqtt URL`).

    mqtt://[user:pass@]host[:port]/prefix[?qos=0|1|2&client_id=ID]      (port 1883)
    mqtts://[user:pass@]host[:port]/prefix[?qos=...&cafile=PATH]         (TLS, port 8883, system CAs)

Topics under `prefix` (docs/mqtt.md):

    prefix/prediction       each prediction: the JSON line the --json log writes (QoS from the URL)
    prefix/health/STREAM    the stream's StreamHealth as JSON, retained: on a change of state,
                            else at most once per HEALTH_PERIOD_S, and again after every reconnect
    prefix/status           "online" (retained) at every connect; "offline" (retained) at a clean
                            exit, and as the last will the broker sends when the app dies

The hop loop never waits on the network, nor on paho, nor on another thread: it puts
(line, health) on an outbox and returns; a thread of ours collects the outbox every
OUTBOX_POLL_S and hands the messages to paho-mqtt, whose own thread connects, writes and
reconnects (backoff RECONNECT_S). Measured in the demo on a loaded 2-core machine
(benchmarks/mqtt_publish.py): paho's publish called on the hop cost up to 9 ms there (it
wakes paho's thread through a socket, giving up the GIL mid-hop), and so did waking our
thread from the hop (p99 4-21 ms: the woken thread took the hop's core); a put nobody waits
on costs microseconds. While the broker is
away, QoS 0 messages are dropped (paho keeps none) and QoS 1/2 ones wait in paho's queue
(QUEUE_MESSAGES at most) and go out after the reconnect; whatever is dropped is counted
and said. paho is imported only when MQTT is asked for (the `mqtt` extra).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import EdgeharError
from ..firmware_bridge.health import StreamHealth

SCHEMES = {"mqtt": 1883, "mqtts": 8883}  # scheme -> default port
URL_FORM = "mqtt://[user:pass@]host[:port]/prefix or mqtts://..."
URL_OPTIONS = ("cafile", "client_id", "qos")
DEFAULT_PREFIX = "edgehar"
HEALTH_PERIOD_S = 1.0  # a stream's retained health is refreshed at most this often (changes of state at once)
KEEPALIVE_S = 15  # a silent broker is noticed within about 1.5x this
RECONNECT_S = (1, 30)  # paho's reconnect backoff: first wait, doubling up to the second
QUEUE_MESSAGES = 1200  # QoS 1/2 messages paho holds while the broker is away (5 min of hops at 4 Hz)
OUTBOX_HOPS = 64  # hops waiting for our thread to hand them to paho (it takes each in well under a ms)
OUTBOX_POLL_S = 0.02  # how often our thread collects the outbox: what it adds to a message's way out
CLOSE_WAIT_S = 2.0  # at exit, how long the queued messages and "offline" may take to go out
STATUS_QOS = 1  # "online" / "offline" and the last will: at least once


class MqttError(EdgeharError, ValueError):
    """An --mqtt setting that cannot work: a malformed URL, or (live --check) a broker out of reach."""


@dataclass(frozen=True)
class MqttTarget:
    """Where to publish: a parsed --mqtt URL."""

    host: str
    port: int
    prefix: str
    tls: bool = False
    qos: int = 0
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    client_id: str | None = None  # None: edgehar-HOSTNAME-PID

    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    def __str__(self) -> str:
        """The URL without the password (it is printed)."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(text: str) -> MqttTarget:
    """The target of `text`, or ValueError (an MqttError) saying what is wrong in one line."""

    try:
        url = urlsplit(text.strip())
        shown = text if url.password is None else text.replace(f":{url.password}@", ":***@", 1)
    except ValueError:
        url, shown = None, text

    def bad(why: str) -> MqttError:
        return MqttError(f"{why} in {shown!r} (expected {URL_FORM})")

    if url is None:
        raise bad("not a URL")
    if url.scheme not in SCHEMES:
        raise bad(f"unknown scheme {url.scheme + '://' if url.scheme else '(none)'!r}")
    if not url.hostname:
        raise bad("no broker host")
    try:
        port = url.port or SCHEMES[url.scheme]
    except ValueError:
        raise bad("the port is not a number in 1..65535") from None
    prefix = unquote(url.path).strip("/") or DEFAULT_PREFIX
    if any(c in prefix for c in "+#\0"):
        raise bad(f"topic prefix {prefix!r} holds a wildcard (+ or #)")
    if url.fragment:
        raise bad(f"unexpected #{url.fragment}")
    try:
        query = parse_qs(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
    except ValueError:
        raise bad(f"query {url.query!r} is not key=value&...") from None
    for key, values in query.items():
        if key not in URL_OPTIONS:
            raise bad(f"unknown option {key!r} (known: {', '.join(URL_OPTIONS)})")
        if len(values) > 1:
            raise bad(f"option {key!r} given twice")
    options = {k: v[0] for k, v in query.items()}
    qos = options.get("qos", "0")
    if qos not in ("0", "1", "2"):
        raise bad(f"qos must be 0, 1 or 2, not {qos!r}")
    cafile = options.get("cafile")
    if cafile is not None:
        if url.scheme != "mqtts":
            raise bad("cafile is for mqtts:// (TLS)")
        if not Path(cafile).is_file():
            raise bad(f"cafile {cafile!r}: no such file")
    if options.get("client_id") == "":
        raise bad("client_id is empty")
    return MqttTarget(host=url.hostname, port=port, prefix=prefix, tls=url.scheme == "mqtts", qos=int(qos),
                      username=unquote(url.username) if url.username else None,
                      password=unquote(url.password) if url.password is not None else None,
                      cafile=cafile, client_id=options.get("client_id"))


def _client(target: MqttTarget, client_id: str | None = None):
    """A paho client for `target`: credentials, TLS, and the last will `status = offline`."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id or target.client_id
                    or f"edgehar-{socket.gethostname()}-{os.getpid()}")
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set(ca_certs=target.cafile)  # None: the system's CA certificates
    client.will_set(target.topic("status"), "offline", qos=STATUS_QOS, retain=True)
    return client


class MqttPublisher:
    """Publishes each prediction and the streams' health without making the hop wait.

    `predicted` and `close` are called from the hop loop; `predicted` only puts on the
    outbox. The outbox thread publishes; paho's callbacks run on paho's thread and only
    count, set flags, and write one line per change of link to `note`. Every message
    handed to paho is tracked by its message id until paho reports it sent (QoS 0:
    written to the socket; QoS 1/2: acknowledged by the broker), so what never reached the
    broker is counted, not guessed.
    """

    def __init__(self, target: MqttTarget, note: Callable[[str], None] = lambda text: print(text, file=sys.stderr)):
        from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_QUEUE_SIZE

        self.target, self._note = target, note
        self._no_conn, self._queue_full = MQTT_ERR_NO_CONN, MQTT_ERR_QUEUE_SIZE
        self.client = _client(target)
        self.client.max_queued_messages_set(QUEUE_MESSAGES)
        self.client.reconnect_delay_set(*RECONNECT_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_publish = self._on_publish
        self.published = {"prediction": 0, "health": 0}  # handed to paho
        self.dropped = {"prediction": 0, "health": 0}  # never reached the broker (under _lock)
        # SimpleQueue: put() never blocks nor gives up the GIL; nobody waits on it, so it wakes no one
        self._outbox: SimpleQueue[tuple[str, Mapping[str, StreamHealth]] | None] = SimpleQueue()
        self._outbox_thread = threading.Thread(target=self._drain, name="mqtt-outbox", daemon=True)
        self._lock = threading.Lock()  # never held while calling paho (paho holds its own locks in callbacks)
        self._unsent: dict[int, str] = {}  # message id -> kind, until paho reports it sent
        self._early: set[int] = set()  # ids paho reported sent before publish() returned them here
        self._health_sent: dict[str, tuple[str, float]] = {}  # stream -> (state, monotonic time) last published
        self._connected = threading.Event()
        self._republish = threading.Event()  # set on a connect: the broker may have lost the retained health
        self._down_since: float | None = None
        self._ever_connected = False
        self._closing = False

    # -- the hop loop's side -------------------------------------------------------------
    def start(self) -> MqttPublisher:
        """Connect in the background (paho's thread: DNS, TCP, TLS, retries)."""
        self.client.connect_async(self.target.host, self.target.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._outbox_thread.start()
        return self

    def predicted(self, line: str, health: Mapping[str, StreamHealth]) -> None:
        """One prediction (its JSON line) and the streams' health as the hop saw it: queued
        for the outbox thread (a full outbox drops the hop, counted)."""
        if self._outbox.qsize() >= OUTBOX_HOPS:
            self._count_dropped("prediction")
            return
        self._outbox.put((line, health))

    def close(self) -> None:
        """Say "offline" (retained), give what paho still holds CLOSE_WAIT_S to go out, disconnect;
        whatever is still unsent then counts as dropped."""
        self._closing = True
        if self._outbox_thread.is_alive():
            self._outbox.put(None)
            self._outbox_thread.join()  # it empties the outbox first
        if self._connected.is_set():
            self._publish("status", self.target.topic("status"), "offline", STATUS_QOS, retain=True)
            end = time.monotonic() + CLOSE_WAIT_S
            while self._unsent and self._connected.is_set() and time.monotonic() < end:
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
        self._drop_unsent(lambda kind: True)

    def summary(self) -> str:
        """One line: what was published, and what never reached the broker."""
        p, d = self.published, self.dropped
        line = f"mqtt: {p['prediction']} predictions and {p['health']} health messages to {self.target}"
        if d["prediction"] or d["health"]:
            line += (f"; {d['prediction']} predictions and {d['health']} health messages never reached the broker "
                     "(it was away)")
        return line

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the outbox thread -----------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            time.sleep(OUTBOX_POLL_S)
            while True:
                try:
                    hop = self._outbox.get_nowait()
                except Empty:
                    break
                if hop is None:  # closing, after every hop before it
                    return
                self._publish_hop(*hop)

    def _publish_hop(self, line: str, health: Mapping[str, StreamHealth]) -> None:
        self._publish("prediction", self.target.topic("prediction"), line, self.target.qos)
        now = time.monotonic()
        republish = self._republish.is_set()
        if republish:
            self._republish.clear()
        for name, h in health.items():
            state, sent = self._health_sent.get(name, ("", -HEALTH_PERIOD_S))
            if republish or h.state != state or now - sent >= HEALTH_PERIOD_S:
                self._publish("health", self.target.topic("health", name), json.dumps(h.to_json()),
                              self.target.qos, retain=True)
                self._health_sent[name] = (h.state, now)

    def _publish(self, kind: str, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if kind in self.published:
            self.published[kind] += 1
        if info.rc == self._queue_full or (qos == 0 and info.rc == self._no_conn):
            self._count_dropped(kind)  # not taken: QoS 0 with no connection, or the QoS 1/2 queue is full
            return
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._unsent[info.mid] = kind

    def _count_dropped(self, kind: str) -> None:
        if kind in self.dropped:
            with self._lock:
                self.dropped[kind] += 1

    def _drop_unsent(self, which: Callable[[str], bool]) -> None:
        with self._lock:
            lost = [mid for mid, kind in self._unsent.items() if which(kind)]
            for mid in lost:
                kind = self._unsent.pop(mid)
                if kind in self.dropped:
                    self.dropped[kind] += 1

    # -- paho's thread ---------------------------------------------------------------------
    def _on_publish(self, _client, _userdata, mid, _reason, _properties) -> None:
        with self._lock:
            if self._unsent.pop(mid, None) is None:
                self._early.add(mid)

    def _on_pre_connect(self, _client, _userdata) -> None:
        """paho starts a new connection and has just discarded the QoS 0 messages it had not
        written (QoS 1/2 ones it keeps and sends again)."""
        qos0 = self.target.qos == 0
        self._drop_unsent(lambda kind: qos0 and kind != "status")

    def _on_connect(self, client, _userdata, _flags, reason, _properties) -> None:
        if reason.is_failure:
            self._note(f"mqtt: {self.target.host}:{self.target.port} refused the connection: {reason}; retrying")
            return
        self._publish("status", self.target.topic("status"), "online", STATUS_QOS, retain=True)
        self._republish.set()
        self._connected.set()
        if self._ever_connected:
            self._note(f"mqtt: reconnected to {self.target} after {time.monotonic() - self._down_since:.1f} s")
        else:
            self._note(f"mqtt: connected to {self.target}")
        self._ever_connected, self._down_since = True, None

    def _on_disconnect(self, _client, _userdata, _flags, reason, _properties) -> None:
        self._connected.clear()
        if self._closing or self._down_since is not None:
            return
        self._down_since = time.monotonic()
        held = "dropping QoS 0 messages" if self.target.qos == 0 else f"queueing up to {QUEUE_MESSAGES} messages"
        self._note(f"mqtt: lost the broker ({reason}); reconnecting, {held} meanwhile")

    def _on_connect_fail(self, _client, _userdata) -> None:
        if self._down_since is None:  # say it once per outage; paho keeps trying
            self._down_since = time.monotonic()
            self._note(f"mqtt: cannot reach {self.target.host}:{self.target.port}; retrying every "
                       f"{RECONNECT_S[0]}..{RECONNECT_S[1]} s")


def check_broker(target: MqttTarget, timeout_s: float = 3.0) -> str:
    """Connect once (`edgehar live --check`): one line saying the broker answered, or an
    MqttError naming what is wrong (unreachable, TLS, refused credentials)."""
    client = _client(target, client_id=f"edgehar-check-{socket.gethostname()}-{os.getpid()}")
    client.connect_timeout = timeout_s
    answer: list = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    try:
        client.connect(target.host, target.port, keepalive=KEEPALIVE_S)
        end = time.monotonic() + timeout_s
        while not answer and time.monotonic() < end:
            client.loop(0.1)
    except OSError as exc:  # refused, unknown host, timeout, TLS (ssl.SSLError is an OSError)
        raise MqttError(f"--mqtt {target}: cannot reach the broker: {exc}") from None
    finally:
        client.disconnect()
    if not answer:
        raise MqttError(f"--mqtt {target}: the broker did not answer within {timeout_s:g} s")
    if answer[0].is_failure:
        raise MqttError(f"--mqtt {target}: the broker refused the connection: {answer[0]}")
    return f"broker {target.host}:{target.port} answered; topics under {target.prefix}/"
