"""A BIS Vista simulator: a scripted anaesthesia course written in the real ASCII format.

The course (times scale with ``course_s``, the length of one whole course; it repeats):

==========  ===========  =====================================================
phase       share        BIS (channel 12)
==========  ===========  =====================================================
awake       0 - 8 %      ~95
induction   8 - 18 %     falls to ~45 (40-60)
maintenance 18 - 80 %    40-60, slow waves, brief burst suppression when < 40
emergence   80 - 95 %    rises to ~90
awake       95 - 100 %   ~95
==========  ===========  =====================================================

Artifact episodes (deterministic from ``seed``) drop SQI and make BIS invalid, raise EMG, or
lift an electrode (impedance invalid). Invalid values are written as ``-3276.8``: the public
captures do not show how the monitor prints an invalid value in this format, so the simulator
uses the scaled 16-bit invalid code, which :mod:`surgbox_ext.bis.parser` reads as missing.

Records go to a pty (:class:`PtyPort`) or to TCP clients (:class:`TcpPort`); optional line
noise (NUL bytes, stray line breaks inside fields, lost leading bytes) reproduces what real
loggers record.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import random
import select
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from surgbox.errors import SurgboxError

log = logging.getLogger(__name__)

INVALID = "-3276.8"
CHANNELS = ("1", "2", "12")
COLUMNS = ("SR12", "SEF08", "BISBIT00", "BIS", "TOTPOW08", "EMGLOW01", "SQI10", "IMPEDNCE", "ARTF2")
GLOBALS = ("TIME", "DSC", "PIC", "Filters", "Alarm", "Lo-Limit", "Hi-Limit", "Silence")
SYSTEM = "SYS 3.30"

PHASES = (("awake", 0.0, 0.08), ("induction", 0.08, 0.18), ("maintenance", 0.18, 0.80), ("emergence", 0.80, 0.95), ("awake", 0.95, 1.0))


def _cell(text: str, width: int = 8) -> str:
    return text.rjust(width)


def _num(v: float | None) -> str:
    return INVALID if v is None else f"{v:.1f}"


def phase_at(fraction: float) -> str:
    """Name of the course phase at ``fraction`` (0..1) of the course."""
    for name, a, b in PHASES:
        if a <= fraction < b:
            return name
    return "awake"


def _smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


@attrs.define(eq=False)
class BISSimulator:
    """Generates BIS Vista ASCII records.

    ``rate``: records per second (the real monitor sends one every 1 or 5 s); ``course_s``:
    seconds of output per whole anaesthesia course; ``seed``: artifacts and noise;
    ``artifacts``: include artifact episodes; ``noise``: probability per record of a line fault
    (NUL byte, a stray CR LF inside a field, a lost leading byte).
    """

    rate: float = attrs.field(default=1.0, converter=float)
    course_s: float = attrs.field(default=600.0, converter=float)
    seed: int = 0
    artifacts: bool = True
    noise: float = 0.0
    _episodes: list[tuple[float, float, str]] = attrs.field(factory=list, init=False, alias="_episodes")

    def __attrs_post_init__(self) -> None:
        if not (self.rate > 0 and self.course_s > 0):
            raise SurgboxError(f"simulator: rate ({self.rate}) and course_s ({self.course_s}) must be > 0")
        rng = random.Random(self.seed)
        t = rng.uniform(0.04, 0.08) * self.course_s
        while self.artifacts and t < self.course_s:
            kind = rng.choice(("sqi", "emg", "electrode"))
            length = max(2.0 / self.rate, rng.uniform(0.006, 0.015) * self.course_s)
            self._episodes.append((t, length, kind))
            t += length + rng.uniform(0.08, 0.16) * self.course_s

    def artifact_at(self, t: float) -> str | None:
        """The artifact active at course time ``t`` seconds (``"sqi"``, ``"emg"``, ``"electrode"``) or None."""
        t = t % self.course_s
        for start, length, kind in self._episodes:
            if start <= t < start + length:
                return kind
        return None

    def bis_at(self, t: float) -> float:
        """The scripted (artifact-free) BIS of channel 12 at output time ``t`` seconds."""
        f = (t % self.course_s) / self.course_s
        wave = 6.0 * math.sin(2 * math.pi * f * 7.0) + 3.0 * math.sin(2 * math.pi * f * 23.0)
        if f < 0.08:
            return 95.0 + 1.5 * math.sin(2 * math.pi * f * 40)
        if f < 0.18:
            return 95.0 - 50.0 * _smooth((f - 0.08) / 0.10)
        if f < 0.80:
            return 47.0 + wave
        if f < 0.95:
            return 47.0 + wave * (1 - _smooth((f - 0.80) / 0.15)) + 43.0 * _smooth((f - 0.80) / 0.15)
        return 93.0 + 1.5 * math.sin(2 * math.pi * f * 40)

    def channel_values(self, index: int) -> dict[str, dict[str, float | int | None]]:
        """Per-channel values of record ``index`` (t = index / rate): SR, SEF, BISBIT, BIS,
        TOTPOW, EMGLOW, SQI, IMPEDNCE, ARTF2 -- ``None`` for an invalid value."""
        t = index / self.rate
        rng = random.Random(self.seed * 1_000_003 + index)
        bis = self.bis_at(t) + rng.gauss(0, 1.0)
        awake = (bis - 40.0) / 55.0
        emg = 27.0 + 18.0 * max(0.0, awake) ** 2 + rng.gauss(0, 0.5)
        sqi = min(100.0, 92.0 + rng.gauss(0, 3.0))
        sr = max(0.0, (40.0 - bis) * 2.5) if bis < 40 else 0.0
        sef = 10.0 + 15.0 * max(0.0, min(1.0, awake)) + rng.gauss(0, 0.4)
        totpow = 62.0 - 6.0 * max(0.0, awake) + rng.gauss(0, 0.5)
        imp = [5.0 + rng.uniform(-0.5, 0.5), 7.0 + rng.uniform(-0.5, 0.5)]
        artf = 0
        art = self.artifact_at(t)
        bis_v: float | None = bis
        if art == "sqi":
            sqi = rng.uniform(3.0, 14.0)
            bis_v, artf = None, 0x00000080
        elif art == "emg":
            emg, sqi, artf = 55.0 + rng.gauss(0, 2.0), 45.0 + rng.gauss(0, 5.0), 0x00000008
        elif art == "electrode":
            imp[0], sqi, artf = None, 0.0, 0x02000000  # type: ignore[call-overload]
            bis_v = None
        out: dict[str, dict[str, float | int | None]] = {}
        for ch in CHANNELS:
            b = bis_v
            if b is not None and ch == "2":
                b = b + rng.gauss(0, 1.5)
            out[ch] = {
                "SR": round(sr, 1),
                "SEF": round(sef, 1),
                "BISBIT": 0,
                "BIS": None if b is None else round(min(100.0, max(0.0, b)), 1),
                "TOTPOW": round(totpow, 1),
                "EMGLOW": round(emg, 1),
                "SQI": round(max(0.0, sqi), 1),
                "IMPEDNCE": 0 if ch == "12" else (None if imp[int(ch) - 1] is None else round(imp[int(ch) - 1])),
                "ARTF2": artf,
            }
        return out

    def header(self) -> bytes:
        """The two header lines (``S_HDR3`` with channel labels, then ``TIME|...``)."""
        labels = [SYSTEM] + [""] * (len(GLOBALS) - 2)
        for ch in CHANNELS:
            labels += [f"Ch. {ch}"] + [""] * (len(COLUMNS) - 1)
        shdr = "S_HDR3".ljust(19) + "|" + "".join(_cell(lab.ljust(8)) + "|" for lab in labels)
        cols = "TIME".ljust(19) + "|" + "".join(c.ljust(8) + "|" for c in GLOBALS[1:] + COLUMNS * len(CHANNELS))
        return (shdr + "\r\n" + cols + "\r\n").encode("ascii")

    def record(self, index: int, when: datetime) -> bytes:
        """Record ``index`` as the monitor prints it, device time ``when``."""
        parts = [when.strftime("%m/%d/%Y %H:%M:%S"), _cell("10", 9), _cell("0"), "On      ", "None    ", "Off     ", "Off     ", "No      "]
        for ch, v in self.channel_values(index).items():
            for name in ("SR", "SEF"):
                parts.append(_cell(_num(v[name])))  # type: ignore[arg-type]
            parts.append(_cell(f"{v['BISBIT']:04x}"))
            for name in ("BIS", "TOTPOW", "EMGLOW", "SQI"):
                parts.append(_cell(_num(v[name])))  # type: ignore[arg-type]
            imp = v["IMPEDNCE"]
            parts.append(_cell(INVALID if imp is None else str(imp)))
            parts.append(f"{v['ARTF2']:08x}")
        data = ("|".join(parts) + "|\r\n").encode("ascii")
        if self.noise > 0:
            data = self._add_noise(data, random.Random(self.seed * 7_919 + index))
        return data

    def _add_noise(self, data: bytes, rng: random.Random) -> bytes:
        if rng.random() >= self.noise:
            return data
        fault = rng.choice(("nul", "split", "lost"))
        if fault == "nul":
            return b"\x00" + data
        if fault == "split":
            cut = rng.randrange(20, len(data) - 3)
            return data[:cut] + b"\r\n" + data[cut:]
        return data[1:]  # the first byte of the record was lost

    def run(self, port: Any, *, duration: float | None = None, stop: threading.Event | None = None,
            now: Callable[[], datetime] = datetime.now, on_record: Callable[[int], None] | None = None) -> int:
        """Write a record every ``1/rate`` s to ``port`` (``.write(bytes)``) until ``duration``
        seconds passed or ``stop`` is set; returns the number of records written. Timing comes
        from ``time.monotonic`` (record ``i`` at ``start + i/rate``), so the rate does not drift."""
        stop = stop or threading.Event()
        start = time.monotonic()
        i = 0
        while not stop.is_set():
            due = start + i / self.rate
            if duration is not None and due - start >= duration:
                break
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            port.write(self.record(i, now().replace(microsecond=0)))
            if on_record is not None:
                on_record(i)
            i += 1
        return i


@attrs.define(eq=False)
class PtyPort:
    """A pseudo-terminal the simulator writes to; another process opens :attr:`name` (or the
    ``link`` symlink) as if it were a serial port.

    The slave is put in raw mode. Writes never block: when nobody reads and more than
    ``backlog`` bytes are waiting, the waiting bytes are discarded (a real serial line keeps no
    backlog for an absent reader), and a full buffer drops the record (counted in ``dropped``).
    """

    link: Path | None = None
    backlog: int = 4096
    name: str = ""
    dropped: int = 0
    _master: int = attrs.field(default=-1, alias="_master")
    _slave: int = attrs.field(default=-1, alias="_slave")
    _header: bytes = attrs.field(default=b"", alias="_header")

    @classmethod
    def open(cls, link: str | Path | None = None, header: bytes = b"") -> PtyPort:
        """Create the pty (and the symlink ``link`` -> ``/dev/pts/N``, replacing an old symlink;
        an existing file that is not a symlink is an error). ``header`` is written first."""
        self = cls(Path(link) if link else None)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.name = os.ttyname(self._slave)
        if self.link is not None:
            if self.link.is_symlink():
                self.link.unlink()
            elif self.link.exists():
                self.close()
                raise SurgboxError(f"simulator: {self.link} exists and is not a symlink; pick another --port path")
            try:
                os.symlink(self.name, self.link)
            except OSError as exc:
                self.close()
                where = self.link.parent
                why = f"folder {where} does not exist" if not where.is_dir() else (exc.strerror or str(exc))
                raise SurgboxError(f"simulator: cannot link the pty at {self.link}: {why}; pick another --port path") from None
        if header:
            self.write(header)
        return self

    def _waiting(self) -> int:
        buf = bytearray(4)
        fcntl.ioctl(self._slave, termios.FIONREAD, buf)
        return int.from_bytes(buf, "little")

    def write(self, data: bytes) -> None:
        if self._master < 0:
            raise SurgboxError("simulator: the pty is closed")
        if self._waiting() > self.backlog:
            termios.tcflush(self._slave, termios.TCIFLUSH)
        self._drain_input()
        try:
            os.write(self._master, data)
        except BlockingIOError:
            self.dropped += 1

    def _drain_input(self) -> None:
        """Read (and ignore) what the reader sent, e.g. request bytes, so it never fills up."""
        try:
            while os.read(self._master, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.name:
            self.link.unlink()
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.define(eq=False)
class TcpPort:
    """A TCP server the simulator writes to: every connected client gets every record
    (readers use ``socket://HOST:PORT``). A new client first gets ``header``. Clients that
    disconnect are dropped; the server keeps accepting. ``port=0`` picks a free port (see
    :attr:`address`)."""

    host: str = "127.0.0.1"
    port: int = 0
    header: bytes = b""
    _server: socket.socket | None = attrs.field(default=None, alias="_server")
    _clients: list[socket.socket] = attrs.field(factory=list, alias="_clients")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, alias="_lock")

    @classmethod
    def open(cls, host: str = "127.0.0.1", port: int = 0, header: bytes = b"") -> TcpPort:
        self = cls(host, int(port), header)
        srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind((host, self.port))
        except OSError as exc:
            srv.close()
            raise SurgboxError(f"simulator: cannot listen on tcp://{host}:{port}: {exc.strerror}; pick a free port") from exc
        srv.listen(8)
        srv.setblocking(False)
        self._server = srv
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.getsockname()[:2]
        return host, port

    @property
    def clients(self) -> int:
        return len(self._clients)

    def accept(self) -> None:
        """Accept waiting clients (called by :meth:`write`; call it to accept sooner)."""
        if self._server is None:
            return
        while True:
            try:
                conn, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(1.0)
            with self._lock:
                self._clients.append(conn)
            if self.header:
                self._send(conn, self.header)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if readable and not conn.recv(4096, socket.MSG_DONTWAIT):
                raise ConnectionResetError(errno.ECONNRESET, "peer closed")
            conn.sendall(data)
        except (OSError, ValueError):
            with self._lock:
                if conn in self._clients:
                    self._clients.remove(conn)
            conn.close()

    def write(self, data: bytes) -> None:
        self.accept()
        for conn in list(self._clients):
            self._send(conn, data)

    def disconnect_clients(self) -> None:
        """Close every client connection (the server keeps listening): simulates a cable pull."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        self.disconnect_clients()
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> TcpPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_port(target: str, header: bytes = b"") -> PtyPort | TcpPort:
    """``tcp://HOST:PORT`` -> :class:`TcpPort`; anything else is a path for a :class:`PtyPort` symlink."""
    if target.startswith("tcp://"):
        hostport = target[len("tcp://"):]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise SurgboxError(f"simulator: {target!r} is not tcp://HOST:PORT (e.g. tcp://127.0.0.1:4001)")
        if int(port) > 65535:
            raise SurgboxError(f"simulator: port {port} of {target!r} is out of range; use 1-65535 (0 picks a free port)")
        return TcpPort.open(host.strip("[]") or "127.0.0.1", int(port), header)
    if "://" in target:
        raise SurgboxError(f"simulator: {target!r} is not a --port this simulator serves; give a path for the pty's "
                           "symlink (e.g. /tmp/bis) or tcp://HOST:PORT")
    return PtyPort.open(target, header)


__all__ = ["BISSimulator", "PtyPort", "TcpPort", "open_port", "phase_at", "INVALID"]
