"""``surgbox bis parse`` and ``surgbox simulate bis`` through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import serial

from surgbox.cli import main
from surgbox_ext.bis.parser import BISParser

from test_bis_parser import record  # tests/ is on sys.path (pytest rootdir-relative import)

pytestmark = pytest.mark.timeout(60)


def test_parse_json_synthetic(tmp_path, capsys):
    f = tmp_path / "cap.txt"
    f.write_bytes(b"\x00garbage" + record(ch12={"bis": "", "imp": "0"}) + record(when="7/03/2015 13:39:5\r\n0"))
    assert main(["bis", "parse", str(f), "--json"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["time"] for d in lines] == ["2015-07-03T13:39:45", "2015-07-03T13:39:50"]
    assert lines[0]["kind"] == "bis" and lines[0]["values"] == {"DSC": 10, "PIC": 27}
    assert lines[0]["channels"]["12"]["BIS"] is None and lines[0]["channels"]["1"]["BIS"] == 36.2
    assert lines[0]["settings"]["Silence"] == "Yes" and set(lines[0]["channels"]) == {"1", "2", "12"}
    assert "2 records" in err and "1 timestamps repaired" in err


def test_parse_json_real_history(shared_dir, capsys):
    assert main(["bis", "parse", str(shared_dir / "data" / "bis" / "bis_history_head200.txt"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 198
    assert lines[0] == {"time": "2013-11-05T17:34:00", "kind": "bis-history", "channels": {}, "settings": {},
                        "values": {"SENSOR": 27, "AVGBIS": None, "MINBIS": None, "MAXBIS": None, "AVGBISAL": None,
                                   "AVGBISA2": None, "AVGSQI": 0.0, "AVGEMG": 30.0, "AVGSR": None, "AVGIMPD1": 1.4,
                                   "AVGIMPD2": None, "BISBITS": 72, "AVGBURST": None, "RESVAR": None}}


def test_parse_table_real_capture(shared_dir, capsys):
    assert main(["bis", "parse", str(shared_dir / "data" / "bis" / "COM1_02.07.2015_10.11.41.txt")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TIME", "BIS", "SQI", "EMGLOW", "SR", "SEF", "TOTPOW"]
    assert out[1].split() == ["2015-07-02", "10:27:24", "0.0", "0.0", "26.5", "0.0", "30.0", "0.0"]
    assert len(out) == 8


def test_parse_table_of_a_channel_the_capture_lacks_is_refused(shared_dir, capsys):
    """--channel 99 (or a typo) printed channel 12's values under the same headings: now one line
    naming the channels there are; a channel that is there is shown."""
    capture = str(shared_dir / "data" / "bis" / "COM1_02.07.2015_10.11.41.txt")
    for channel in ("99", "abc", "-1"):
        assert main(["bis", "parse", capture, "--channel", channel]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"--channel {channel} is not in" in err and "(its channels: 1, 2, 12)" in err
        assert len(err.strip().splitlines()) == 1
    assert main(["bis", "parse", capture, "--channel", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["bis", "parse", capture, "--channel", "99", "--json"]) == 0  # JSON has every channel


def test_parse_missing_file(tmp_path, capsys):
    assert main(["bis", "parse", str(tmp_path / "nope.txt")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_simulate_pty_cli(tmp_path):
    link = tmp_path / "bis"
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "simulate", "bis", "--port", str(link), "--rate", "20", "--duration", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"linked at {link}" in line and os.path.islink(link) and os.readlink(link).startswith("/dev/pts/")
        parser, records = BISParser(), []
        with serial.serial_for_url(str(link), baudrate=9600, timeout=0.2) as port:
            deadline = time.monotonic() + 5
            while len(records) < 5 and time.monotonic() < deadline:
                records += parser.feed(port.read(4096))
        assert len(records) >= 5 and all(r.channels["12"]["SQI"] is not None for r in records)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.lexists(link)  # removed on exit
    assert "stopped after" in proc.stderr.read()


def test_simulate_tcp_cli_and_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "surgbox", "simulate", "bis", "--port", "tcp://127.0.0.1:0", "--rate", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split("connect with ")[1].strip()
        assert url.startswith("socket://127.0.0.1:")
        parser, records = BISParser(), []
        with serial.serial_for_url(url, timeout=0.2) as port:
            deadline = time.monotonic() + 5
            while len(records) < 3 and time.monotonic() < deadline:
                records += parser.feed(port.read(4096))
        assert len(records) >= 3 and parser.stats.headers == 2  # S_HDR and TIME lines come first
        proc.send_signal(15)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_simulate_refuses_to_replace_a_file(tmp_path, capsys):
    f = tmp_path / "precious.txt"
    f.write_text("keep me")
    assert main(["simulate", "bis", "--port", str(f), "--duration", "0.1"]) == 1
    assert "not a symlink" in capsys.readouterr().err and f.read_text() == "keep me"
