"""`serial://PORT?baud=921600&format=binary|csv` or `?profile=NAME`: a USB/UART serial port via pyserial.

pyserial reads block, so a reader thread (like pyserial's own `ReaderThread`) does
"read, timestamp, enqueue" and nothing else; the async side decodes. `format` is read
by the device layer, and so is `profile` (a device that is not wire v1), whose
[serial] baud is the default baud then. This transport only moves bytes. Errors:

- the port does not exist -> DeviceNotFoundError naming it and the ports that do exist;
- permission denied / busy -> TransportError with the reason;
- hot unplug, pty closed (SerialException / OSError while reading or writing)
  -> ConnectionLost from the chunk iterator, so the device layer can reconnect.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import threading
from collections.abc import AsyncIterator

from ..profiles import load_profile
from ..transport import Chunk, ConnectionLost, DeviceNotFoundError, DeviceURL, Transport, TransportError

DEFAULT_BAUD = 921600
# pyserial hands a non-standard rate to the OS as a C int (termios2 on Linux, IOSSIOSPEED on
# macOS): a larger one overflows. Real UARTs stop far below; pseudo-terminals take any.
MAX_BAUD = 2**31 - 1
READ_TIMEOUT_S = 0.05  # how often the reader thread checks for close()
_CLOSED = object()


def available_ports() -> list[str]:
    """Serial ports the OS lists (USB CDC, UARTs); pseudo-terminals are not listed."""
    try:
        from ..discovery import serial_ports

        return [p.device for p in serial_ports()]
    except Exception:  # listing is a courtesy in an error message; never the error itself
        return []


class SerialTransport(Transport):
    """Bytes from a serial port, read in a thread and stamped on arrival."""

    def __init__(self, url: DeviceURL):
        super().__init__(url)
        self.port = url.target
        if not self.port:
            raise TransportError(url.url, "no port given; expected serial:///dev/ttyACM0 or serial://COM3")
        default_baud = DEFAULT_BAUD
        if "profile" in url.options:
            profile = load_profile(url.options["profile"])
            if profile.serial_baud is None:
                raise TransportError(url.url, f"profile {profile.name!r} ({profile.path}) describes no serial "
                                              "device (it has no [serial] table)")
            default_baud = profile.serial_baud
        baud = float(url.number("baud", default_baud))
        # Checked here, not left to pyserial: it takes any int and only fails when the port
        # opens, with an OverflowError (past a C int) or "Invalid argument" from the OS.
        if not (math.isfinite(baud) and baud.is_integer() and 1 <= baud <= MAX_BAUD):
            raise TransportError(url.url, f"baud={url.options.get('baud')!r} is not an integer in 1..{MAX_BAUD}")
        self.baud = int(baud)
        url.option("format", "binary", allowed=("binary", "csv"))  # validated here, used by the device layer
        self._serial = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: asyncio.Queue | None = None

    async def connect(self) -> None:
        import serial  # pyserial; imported here so other transports never need it

        if self._serial is not None:
            return
        if self.port.startswith("/") and not os.path.exists(self.port):
            raise DeviceNotFoundError(self.url.url, f"no serial port {self.port}", available_ports())
        try:
            ser = serial.Serial(self.port, self.baud, timeout=READ_TIMEOUT_S, write_timeout=1.0)
        except serial.SerialException as exc:
            err = getattr(exc, "errno", None)
            if err in (errno.ENOENT, errno.ENXIO, errno.ENODEV) or "FileNotFoundError" in str(exc):
                raise DeviceNotFoundError(self.url.url, f"no serial port {self.port}", available_ports()) from None
            if err in (errno.EACCES, errno.EPERM):
                raise TransportError(self.url.url, f"permission denied on {self.port} (on Linux: add yourself to the "
                                     "'dialout' group, then log in again)") from None
            raise TransportError(self.url.url, f"cannot open {self.port}: {exc}") from None
        self._serial = ser
        self._stop = threading.Event()
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._read_loop, args=(ser, loop, self._queue, self._stop),
                                        name=f"serial-rx {self.port}", daemon=True)
        self._thread.start()

    def _read_loop(self, ser, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, stop: threading.Event) -> None:
        """Reader thread: read, timestamp, enqueue. Nothing else."""
        clock = self.clock
        item: object = _CLOSED
        try:
            while not stop.is_set():
                data = ser.read(ser.in_waiting or 1)  # returns after 1 byte or READ_TIMEOUT_S
                if not data:
                    continue
                t = clock()
                more = ser.in_waiting  # the rest of what arrived together
                if more:
                    data += ser.read(more)
                loop.call_soon_threadsafe(queue.put_nowait, Chunk(t, data))
        except Exception as exc:  # SerialException / OSError: unplugged, pty closed
            item = exc if not stop.is_set() else _CLOSED
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is already closed: nobody is listening
            pass

    async def chunks(self) -> AsyncIterator[Chunk]:
        if self._queue is None:
            raise TransportError(self.url.url, "not connected; call connect() first")
        queue = self._queue
        while True:
            item = await queue.get()
            if item is _CLOSED:
                return
            if isinstance(item, BaseException):
                raise ConnectionLost(self.url.url, f"serial port {self.port} lost ({item})")
            yield item

    async def send(self, data: bytes) -> None:
        ser = self._serial
        if ser is None:
            raise TransportError(self.url.url, "not connected; call connect() first")
        try:
            await asyncio.get_running_loop().run_in_executor(None, ser.write, data)
        except Exception as exc:
            raise ConnectionLost(self.url.url, f"write to {self.port} failed ({exc})") from None

    async def close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is None:
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 2 * READ_TIMEOUT_S + 1)
        try:
            ser.close()
        except Exception:
            pass
        if self._queue is not None:
            self._queue.put_nowait(_CLOSED)
