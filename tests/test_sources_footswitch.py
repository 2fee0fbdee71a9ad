"""footswitch: serial presses over a real pty, modem-line presses over pyserial's loop://, and
programmatic presses."""

from __future__ import annotations

import os
import threading
import time

import pytest

from surgbox.clock import Clock
from surgbox.errors import SourceError
from surgbox.types import Trigger
from surgbox_ext.sources.footswitch import FootSwitch


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def collect(src, n, timeout=3.0):
    out, end = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        item = src.get(timeout=0.05)
        if item is not None:
            out.append(item)
    return out


def test_serial_byte_mode_over_a_pty_with_debounce(pty):
    master, port = pty
    clock = Clock()
    src = FootSwitch("pedal", port=port, byte="B", debounce_s=1.0)  # long: bounces stay inside it on a slow machine
    src.start(clock)
    try:
        before = clock.now_ns()
        os.write(master, b"xyB")  # only 'B' is a press
        [t] = collect(src, 1)
        assert isinstance(t, Trigger) and t.source == "pedal" and t.action == "snapshot" and t.detail == {"byte": 66}
        assert before <= t.capture_ns <= clock.now_ns()
        os.write(master, b"BB")  # contact bounce within the 1.0 s debounce
        assert collect(src, 1, timeout=0.3) == []
        time.sleep(1.0)
        os.write(master, b"B")
        assert len(collect(src, 1)) == 1
        assert src.stats()["presses"] == 2 and src.stats()["bounces"] == 2 and src.media == "trigger"
    finally:
        src.stop()
    assert not src.running and src.error is None


def test_serial_line_mode_over_a_pty(pty):
    master, port = pty
    src = FootSwitch("pedal", port=port, mode="line", match="PEDAL", action="bookmark", debounce_s=0, baudrate=115200)
    src.start(Clock())
    try:
        os.write(master, b"noise\r\nPED")
        time.sleep(0.05)
        os.write(master, b"AL\r\n\r\nPEDAL\n")  # split across writes, CRLF tolerated
        got = collect(src, 2)
        assert [(t.action, t.detail) for t in got] == [("bookmark", {"line": "PEDAL"})] * 2
    finally:
        src.stop()


def test_serial_cts_mode_rising_edge_over_loop_url():
    """pyserial's loop:// wires RTS to CTS: dropping and raising RTS is a switch press."""
    src = FootSwitch("pedal", port="loop://", mode="cts", poll_s=0.005, debounce_s=0)
    src.start(Clock())
    try:
        assert collect(src, 1, timeout=0.2) == []  # the line starts high: no press
        for _ in range(2):
            src._serial.rts = False
            time.sleep(0.05)
            src._serial.rts = True
            time.sleep(0.05)
        got = collect(src, 2)
        assert [t.detail for t in got] == [{"line": "cts"}] * 2
    finally:
        src.stop()


def test_programmatic_press_from_another_thread():
    src = FootSwitch("api")
    with pytest.raises(SourceError, match="press\\(\\) before start"):
        src.press()
    clock = Clock()
    src.start(clock)
    try:
        threading.Thread(target=lambda: src.press("snapshot", source="room")).start()
        [t] = collect(src, 1)
        assert t.action == "snapshot" and t.detail == {"source": "room"}
        returned = src.press("mark", note="incision")
        assert collect(src, 1) == [returned] and returned.detail == {"note": "incision"}
    finally:
        src.stop()


def test_serial_errors_name_the_port_and_the_fix(tmp_path):
    with pytest.raises(SourceError) as err:
        FootSwitch("pedal", port=str(tmp_path / "ttyUSB9")).start(Clock())
    assert "source 'pedal' (serial" in str(err.value) and "ttyUSB9" in str(err.value) and "dialout" in str(err.value)


def test_pty_has_no_modem_lines(pty):
    _, port = pty
    with pytest.raises(SourceError, match="cannot read the CTS line.*mode='byte' or 'line'"):
        FootSwitch("pedal", port=port, mode="cts").start(Clock())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"byte": "AB"}, "one byte"),
        ({"byte": 300}, "0..255"),
        ({"mode": "dance"}, "mode"),
        ({"port": "loop://", "evdev": "/dev/input/event0"}, "not both"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        FootSwitch("pedal", **options)


def test_byte_option_forms():
    assert FootSwitch("p", byte="\\r").byte == 13
    assert FootSwitch("p", byte="\r").byte == 13
    assert FootSwitch("p", byte=66).byte == 66
