"""``footswitch`` / ``footswitch_evdev``: trigger sources (screenshots and other actions).

Three ways to press, all emitting :class:`~surgbox.types.Trigger` items stamped with
``clock.now_ns()`` when the press was seen:

* programmatic: ``source.press(action="snapshot", **detail)`` from any thread (always available);
* a serial line (``port=``: a device such as ``/dev/ttyUSB0`` or any pyserial URL such as
  ``rfc2217://host:port``; ``baudrate``), read in one of these ``mode``\\ s:

  - ``"byte"`` (default): each received byte equal to ``byte`` is a press (``byte=None``: any
    byte). ``detail = {"byte": <int>}``.
  - ``"line"``: each received line (``\\n``-terminated, stripped; CR tolerated) is a press when it
    equals ``match`` (``match=None``: any non-empty line). ``detail = {"line": <text>}``.
  - ``"cts"`` / ``"dsr"`` / ``"cd"`` / ``"ri"``: a rising edge of that modem status line, polled
    every ``poll_s`` (a switch wired between RTS/DTR and CTS/DSR). ``detail = {"line": "cts"}``.

* an evdev key device (``evdev=/dev/input/eventN``, optional package ``evdev``): a key-down of
  one of ``keys`` (``("KEY_B",)``; empty: any key) is a press. ``detail = {"key": "KEY_B"}``.

Device presses closer than ``debounce_s`` to the previous one are ignored (contact bounce);
programmatic presses are never debounced. Every device press uses ``action``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from surgbox.capture import ThreadedSource
from surgbox.errors import SourceError
from surgbox.types import Trigger

from ._common import non_negative, positive

log = logging.getLogger(__name__)

SERIAL_MODES = ("byte", "line", "cts", "dsr", "cd", "ri")
MAX_LINE = 4096  # a line longer than this without a newline is discarded (bounded memory)


def _byte(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        if not 0 <= value <= 255:
            raise ValueError(f"footswitch byte must be 0..255, got {value}")
        return value
    raw = value.encode("latin-1").decode("unicode_escape").encode("latin-1") if isinstance(value, str) else bytes(value)
    if len(raw) != 1:
        raise ValueError(f"footswitch byte {value!r} must be one byte, e.g. 'B', '\\r' or 13")
    return raw[0]


@attrs.define(eq=False)
class FootSwitch(ThreadedSource):
    """Trigger source: programmatic presses plus an optional serial line or evdev device.

    Options: ``port`` (serial device or pyserial URL), ``baudrate`` (9600), ``mode``
    (``"byte"``), ``byte`` (``None``: any; ``"B"``, ``"\\r"`` or an int), ``match`` (line mode),
    ``poll_s`` (0.02, modem-line modes), ``evdev`` (event device path), ``keys``
    (``("KEY_B",)``), ``action`` (``"snapshot"``), ``debounce_s`` (0.3), ``queue_size`` (64).
    With neither ``port`` nor ``evdev`` only :meth:`press` triggers.
    """

    media: ClassVar[str] = "trigger"
    path_options: ClassVar[tuple[str, ...]] = ("port", "evdev")

    port: str | None = attrs.field(default=None, kw_only=True)
    baudrate: int = attrs.field(default=9600, kw_only=True, converter=int, validator=positive)
    mode: str = attrs.field(default="byte", kw_only=True, validator=attrs.validators.in_(SERIAL_MODES))
    byte: int | None = attrs.field(default=None, kw_only=True, converter=_byte)
    match: str | None = attrs.field(default=None, kw_only=True)
    poll_s: float = attrs.field(default=0.02, kw_only=True, converter=float, validator=positive)
    evdev: str | None = attrs.field(default=None, kw_only=True)
    keys: Sequence[str] = attrs.field(default=("KEY_B",), kw_only=True, converter=lambda v: (v,) if isinstance(v, str) else tuple(v))
    action: str = attrs.field(default="snapshot", kw_only=True)
    debounce_s: float = attrs.field(default=0.3, kw_only=True, converter=float, validator=non_negative)

    _serial: Any = attrs.field(init=False, default=None, alias="_serial")
    _input: Any = attrs.field(init=False, default=None, alias="_input")
    _line: bytearray = attrs.field(init=False, factory=bytearray, alias="_line")
    _level: bool | None = attrs.field(init=False, default=None, alias="_level")
    _last_press: int | None = attrs.field(init=False, default=None, alias="_last_press")
    _presses: int = attrs.field(init=False, default=0, alias="_presses")
    _bounces: int = attrs.field(init=False, default=0, alias="_bounces")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.port is not None and self.evdev is not None:
            raise ValueError(f"footswitch {self.name!r}: give port= (serial) or evdev= (key device), not both")

    def describe(self) -> str:
        where = f"serial {self.port}" if self.port else f"evdev {self.evdev}" if self.evdev else "programmatic"
        return f"source {self.name!r} ({where})"

    # -- programmatic ---------------------------------------------------------------------------
    def press(self, action: str = "snapshot", **detail: Any) -> Trigger:
        """Emit a trigger now (thread-safe); returns it. Raises :class:`SourceError` before ``start``."""
        if self.clock is None:
            raise SourceError(f"{self.describe()}: press() before start(clock); start the source (or the recorder) first")
        trigger = Trigger(self.name, self.clock.now_ns(), action, dict(detail))
        self.put(trigger)
        return trigger

    def _device_press(self, **detail: Any) -> Trigger | None:
        assert self.clock is not None
        now = self.clock.now_ns()
        if self._last_press is not None and now - self._last_press < self.debounce_s * 1e9:
            self._bounces += 1
            return None
        self._last_press = now
        self._presses += 1
        return Trigger(self.name, now, self.action, detail)

    # -- device ---------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.port is not None:
            self._open_serial()
        elif self.evdev is not None:
            self._open_evdev()

    def _open_serial(self) -> None:
        import serial

        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=min(0.1, self.poll_s) if self.mode in ("cts", "dsr", "cd", "ri") else 0.1)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise SourceError(
                f"{self.describe()} could not open: {exc}; check the port (ls /dev/ttyUSB* /dev/ttyACM*, "
                f"or /dev/serial/by-id/), that no other program holds it, and permissions (group 'dialout')"
            ) from exc
        if self.mode in ("cts", "dsr", "cd", "ri"):
            try:
                self._serial.rts = True  # power the switch from RTS/DTR when it is wired that way
                self._serial.dtr = True
                self._level = bool(getattr(self._serial, self.mode))
            except (OSError, serial.SerialException) as exc:
                self._serial.close()
                raise SourceError(f"{self.describe()}: cannot read the {self.mode.upper()} line ({exc}); this port has no modem lines, use mode='byte' or 'line'") from exc

    def _open_evdev(self) -> None:
        try:
            import evdev
        except ImportError as exc:
            raise SourceError(f"{self.describe()}: needs the Python package evdev: pip install evdev") from exc
        try:
            self._input = evdev.InputDevice(self.evdev)
        except OSError as exc:
            raise SourceError(
                f"{self.describe()} could not open: {exc}; list key devices with `python -m evdev.evtest`, "
                f"use /dev/input/by-id/..., and check permissions (group 'input')"
            ) from exc

    def _close(self) -> None:
        for dev in (self._serial, self._input):
            if dev is not None:
                dev.close()
        self._serial = self._input = None

    def _capture(self) -> Trigger | None:
        if self._serial is not None:
            return self._read_serial()
        if self._input is not None:
            return self._read_evdev()
        self.wait(0.2)  # programmatic only: press() queues directly
        return None

    def _read_serial(self) -> Trigger | None:
        ser = self._serial
        if self.mode in ("cts", "dsr", "cd", "ri"):
            level = bool(getattr(ser, self.mode))
            rising = level and not self._level
            self._level = level
            if rising:
                return self._device_press(line=self.mode)
            self.wait(self.poll_s)
            return None
        data = ser.read(1)
        if not data:
            return None
        if self.mode == "byte":
            if self.byte is None or data[0] == self.byte:
                return self._device_press(byte=data[0])
            return None
        if data == b"\n":
            text = self._line.decode("utf-8", "replace").strip()
            self._line.clear()
            if text and (self.match is None or text == self.match):
                return self._device_press(line=text)
            return None
        self._line += data
        if len(self._line) > MAX_LINE:
            log.warning("%s: discarding a %d-byte line without newline", self.describe(), len(self._line))
            self._line.clear()
        return None

    def _read_evdev(self) -> Trigger | None:
        import select

        import evdev

        ready, _, _ = select.select([self._input.fd], [], [], 0.1)
        if not ready:
            return None
        for event in self._input.read():
            if event.type == evdev.ecodes.EV_KEY and event.value == 1:
                names = evdev.ecodes.KEY.get(event.code, str(event.code))
                names = names if isinstance(names, list) else [names]
                if not self.keys or any(n in self.keys for n in names):
                    trigger = self._device_press(key=names[0])
                    if trigger is not None:
                        self.put(trigger)
        return None

    def stats(self) -> dict[str, Any]:
        s = dict(super().stats())
        s.update(presses=self._presses, bounces=self._bounces)
        return s


@attrs.define(eq=False)
class EvdevFootSwitch(FootSwitch):
    """``footswitch_evdev``: a USB foot pedal that shows up as a keyboard (``device=/dev/input/eventN``)."""

    path_options: ClassVar[tuple[str, ...]] = ("device", "evdev")

    device: str = attrs.field(default="", kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.device:
            raise ValueError(f"footswitch_evdev {self.name!r}: set device=/dev/input/by-id/...-event-kbd")
        self.evdev = self.device
        super().__attrs_post_init__()
