"""The ``bis`` source: BIS Vista / A-2000 ASCII output over any pyserial URL.

``url`` is anything :func:`serial.serial_for_url` opens: ``/dev/ttyUSB0``, ``COM3``,
``socket://host:port`` (a serial-to-Ethernet bridge or the simulator), ``rfc2217://host:port``,
``loop://``. Each completed record becomes a :class:`~surgbox.types.Reading` stamped with
``clock.now_ns()`` right after the read that delivered its last byte. Unplugging, EOF and read
errors close the port and reopen it with exponential backoff; nothing the device sends can
stop the capture thread.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from surgbox.capture import ThreadedSource
from surgbox.errors import SourceError
from surgbox.types import Reading

from .parser import BISParser

log = logging.getLogger(__name__)

PARITIES = {"N": "N", "E": "E", "O": "O", "M": "M", "S": "S", "NONE": "N", "EVEN": "E", "ODD": "O", "MARK": "M", "SPACE": "S"}


def parse_request(value: bytes | str | None) -> bytes:
    """Request bytes from configuration: ``bytes`` as is; a ``str`` with Python escapes
    (``"D"``, ``"\\r"``, ``"\\x44\\r\\n"``) encoded as Latin-1; ``None`` -> nothing."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return codecs.decode(str(value), "unicode_escape").encode("latin-1")
    except (UnicodeError, ValueError) as exc:
        raise SourceError(f"bis source: request {value!r} is not valid (use text with escapes such as 'D' or '\\\\x44\\\\r'): {exc}") from exc


def _parity(value: str) -> str:
    p = PARITIES.get(str(value).upper())
    if p is None:
        raise ValueError(f"parity {value!r} must be one of N, E, O, M, S")
    return p


def _positive_float(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"bis source: {attribute.name} must be > 0, got {value}")


@attrs.define(eq=False)
class BISSource(ThreadedSource):
    """BIS monitor on a serial port (or any pyserial URL).

    Options: ``url`` (required), ``baudrate`` (9600), ``bytesize`` (8), ``parity`` (``"N"``),
    ``stopbits`` (1), ``request`` (bytes sent after every connect, e.g. ``"D"``; empty by
    default), ``request_interval`` (resend the request every so many seconds; 0 = only on
    connect), ``main_channel`` (``"12"``: whose values go to ``Reading.values``),
    ``reconnect_min``/``reconnect_max`` (backoff bounds, s), ``silence_timeout`` (reopen the port
    when nothing arrived for this long; 0 = never), ``require_device`` (``start`` fails when the
    port cannot be opened; set False to keep retrying in the background instead).
    """

    media: ClassVar[str] = "data"
    path_options: ClassVar[tuple[str, ...]] = ("url",)  # a tty path (a URL with :// stays as it is)

    url: str = attrs.field(default="", kw_only=True)
    baudrate: int = attrs.field(default=9600, converter=int, kw_only=True)
    bytesize: int = attrs.field(default=8, converter=int, validator=attrs.validators.in_((5, 6, 7, 8)), kw_only=True)
    parity: str = attrs.field(default="N", converter=_parity, kw_only=True)
    stopbits: float = attrs.field(default=1, converter=float, validator=attrs.validators.in_((1.0, 1.5, 2.0)), kw_only=True)
    request: bytes = attrs.field(default=b"", converter=parse_request, kw_only=True)
    request_interval: float = attrs.field(default=0.0, converter=float, kw_only=True)
    main_channel: str = attrs.field(default="12", converter=str, kw_only=True)
    reconnect_min: float = attrs.field(default=0.5, converter=float, validator=_positive_float, kw_only=True)
    reconnect_max: float = attrs.field(default=10.0, converter=float, validator=_positive_float, kw_only=True)
    silence_timeout: float = attrs.field(default=0.0, converter=float, kw_only=True)
    require_device: bool = attrs.field(default=True, kw_only=True)
    read_timeout: float = attrs.field(default=0.05, converter=float, validator=_positive_float, kw_only=True)

    _port: Any = attrs.field(default=None, init=False, alias="_port")
    _parser: BISParser = attrs.field(factory=BISParser, init=False, alias="_parser")
    _backoff: float = attrs.field(default=0.0, init=False, alias="_backoff")
    _last_request: float = attrs.field(default=0.0, init=False, alias="_last_request")
    _last_data: float = attrs.field(default=0.0, init=False, alias="_last_data")
    _pending: list = attrs.field(factory=list, init=False, alias="_pending")
    _connects: int = attrs.field(default=0, init=False, alias="_connects")
    _disconnects: int = attrs.field(default=0, init=False, alias="_disconnects")
    _last_error: str | None = attrs.field(default=None, init=False, alias="_last_error")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.url:
            raise SourceError(f"bis source {self.name!r}: no url given; set url to a serial port (/dev/ttyUSB0) or socket://HOST:PORT")

    # -- connection -------------------------------------------------------------------------------
    def _connect(self) -> None:
        import serial

        port = serial.serial_for_url(
            self.url,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=self.read_timeout,
            write_timeout=1.0,
        )
        self._port = port
        self._connects += 1
        self._parser.discard_partial()  # a record cut by the disconnect must not join the new bytes
        now = time.monotonic()
        self._last_data = now
        self._last_request = 0.0
        self._send_request(now)
        log.info("bis source %r connected to %s", self.name, self.url)

    def _send_request(self, now: float) -> None:
        if not self.request or self._port is None:
            return
        self._port.write(self.request)
        self._last_request = now

    def _disconnect(self, reason: str) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - a port that fails to close is gone anyway
                pass
            self._disconnects += 1
        self._last_error = reason
        self._backoff = min(self.reconnect_max, self._backoff * 2) if self._backoff else self.reconnect_min
        log.warning("bis source %r (%s): %s; reconnecting in %.1f s", self.name, self.url, reason, self._backoff)

    def _open(self) -> None:
        try:
            self._connect()
        except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException, OSError, ValueError
            if self.require_device:
                raise SourceError(
                    f"bis source {self.name!r}: cannot open {self.url}: {exc}; check the cable/adapter and the "
                    f"port name (and permissions: add the user to the 'dialout' group), or set require_device=False "
                    f"to start anyway and retry in the background"
                ) from exc
            self._disconnect(f"cannot open: {exc}")

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001
                pass

    # -- capture ----------------------------------------------------------------------------------
    def _capture(self) -> Reading | None:
        if self._pending:
            return self._pending.pop(0)
        if self._port is None:
            if self.wait(self._backoff):
                return None
            try:
                self._connect()
            except Exception as exc:  # noqa: BLE001
                self._disconnect(f"cannot open: {exc}")
            return None
        try:
            port = self._port
            data = port.read(max(1, port.in_waiting))
            now_ns = self.clock.now_ns() if self.clock is not None else time.monotonic_ns()
            now = time.monotonic()
            if data:
                self._last_data = now
                self._backoff = 0.0
            elif self.silence_timeout and now - self._last_data > self.silence_timeout:
                self._disconnect(f"no data for {self.silence_timeout:g} s")
                return None
            if self.request_interval and now - self._last_request >= self.request_interval:
                self._send_request(now)
        except Exception as exc:  # noqa: BLE001 - SerialException, OSError: unplugged, EOF
            self._disconnect(str(exc) or type(exc).__name__)
            return None
        if not data:
            return None
        readings = [r.to_reading(self.name, now_ns, self.main_channel) for r in self._parser.feed(data)]
        if not readings:
            return None
        self._pending.extend(readings[1:])
        return readings[0]

    def stats(self) -> Mapping[str, Any]:
        s = dict(super().stats())
        s.update(
            connected=self._port is not None,
            connects=self._connects,
            disconnects=self._disconnects,
            last_error=self._last_error,
            parser=self._parser.stats.to_dict(),
        )
        return s
