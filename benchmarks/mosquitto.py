"""A private mosquitto broker on a free loopback port, for the MQTT benchmark and tests.

Debian's `mosquitto` (`make test` installs it), never a stand-in: what `--mqtt` is measured
and tested against is a real broker. It listens on 127.0.0.1 only, keeps its files in a
folder of the caller's, and can be stopped and started again on the same port (a broker
restart mid-run). With `persistence` it saves its sessions and retained messages when
stopped and reloads them on start, as a production broker does; with `tls` (a
certificate and its key) it speaks TLS only.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_S = 10.0


def find_mosquitto() -> str | None:
    """The broker's executable: on PATH, or in /usr/sbin where Debian puts it (not on a user's PATH)."""
    found = shutil.which("mosquitto")
    return found or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """`with LocalBroker(folder) as broker:` a running mosquitto at 127.0.0.1:`broker.port`."""

    def __init__(self, folder: Path, persistence: bool = False, queue_qos0: bool = False,
                 tls: tuple[Path, Path] | None = None):
        exe = find_mosquitto()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (Debian: apt-get install -y mosquitto; `make test` does it)")
        self.exe, self.folder, self.port = exe, Path(folder), free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        # run as whoever started it: as root it would switch to the user `mosquitto`, who
        # cannot write the caller's folder (its saved state would be lost on a restart)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", f"user {getpass.getuser()}",
                 f"persistence {'true' if persistence else 'false'}", f"persistence_location {self.folder}/",
                 # offline persistent sessions also get QoS 0 messages (off by default)
                 f"queue_qos0_messages {'true' if queue_qos0 else 'false'}"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.config = self.folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = self.folder / "mosquitto.log"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        with open(self.log, "a") as log:
            self._proc = subprocess.Popen([self.exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with status {self._proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """Stop it as a service manager does (SIGTERM: it closes its clients and saves its state)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
