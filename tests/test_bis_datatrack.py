"""The per-recording data track (JSON Lines sidecar): write, read back, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from surgbox.errors import SurgboxError
from surgbox.readings import DataTrackWriter, data_track_path, read_data_track
from surgbox.types import Reading
from surgbox_ext.bis.parser import parse_bytes

from test_bis_parser import record  # tests/ is on sys.path (pytest rootdir-relative import)

START = 5_000_000_000


def readings():
    data = record(when="07/03/2015 13:39:45") + record(when="07/03/2015 13:39:50", ch1={"bis": ""}, ch12={"bis": "---", "imp": "0"})
    recs, _ = parse_bytes(data)
    return [r.to_reading("bis", START + 250_000_000 + i * 5_000_000_000) for i, r in enumerate(recs)]


def test_write_and_read_back(tmp_path):
    path = data_track_path(tmp_path / "case.mp4")
    assert path.name == "case.mp4.data.jsonl"
    with DataTrackWriter.open(path, START) as w:
        for r in readings():
            assert w.write(r)
        w.write(Reading("vitals", START - 100_000_000, "vitals", {"HR": 72.0, "SpO2": float("nan")}))
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "surgbox-data-track", "version": 1, "start_ns": START}
    first = json.loads(lines[1])
    assert first["t"] == 0.25 and first["device_time"] == "2015-07-03T13:39:45" and first["values"]["BIS"] == 36.2
    assert first["channels"]["2"]["BIS"] == 32.8
    track = read_data_track(path)
    assert track.start_ns == START and track.skipped_lines == 0 and track.sources() == ["bis", "vitals"]
    assert [p.t for p in track.points] == [0.25, 5.25, -0.1]
    assert track.points[1].device_time == datetime(2015, 7, 3, 13, 39, 50)
    assert track.series("BIS", source="bis") == [(0.25, 36.2), (5.25, None)]  # invalid stays a gap
    assert track.series("BIS", channel="1") == [(0.25, 36.2), (5.25, None)]
    assert track.points[2].values == {"HR": 72.0, "SpO2": None}  # NaN is never written as a number


def test_truncated_last_line_is_ignored(tmp_path):
    path = tmp_path / "t.data.jsonl"
    w = DataTrackWriter.open(path, START)
    for r in readings():
        w.write(r)
    w.close()
    w.close()  # idempotent
    with open(path, "a") as f:
        f.write('{"t": 9.0, "source": "bis", "kind": "bis", "val')  # the crash hit mid-line
    track = read_data_track(path)
    assert len(track.points) == 2 and track.skipped_lines == 1


CRASH_WRITER = """
import sys, time
from surgbox.readings import DataTrackWriter
from surgbox.types import Reading
w = DataTrackWriter.open(sys.argv[1], 0, fsync_interval_s=3600)
i = 0
while True:
    w.write(Reading("bis", i * 1_000_000, "bis", {"BIS": float(i % 100), "SQI": 90.0}))
    i += 1
    if i == 50:
        print("ready", flush=True)
    time.sleep(0.0005)
"""


def test_killed_writer_loses_at_most_the_line_being_written(tmp_path):
    path = tmp_path / "crash.data.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    track = read_data_track(path)
    n = len(track.points)
    assert n >= 50 and track.skipped_lines <= 1
    assert [p.t for p in track.points] == [i / 1000 for i in range(n)]  # every complete line, in order, no gaps


def test_full_disk_does_not_raise_and_recovers(tmp_path):
    path = tmp_path / "full.data.jsonl"
    w = DataTrackWriter.open(path, START)
    good = w._file
    w._file = open("/dev/full", "wb", buffering=0)  # the disk fills up under the writer
    rs = readings()
    assert w.write(rs[0]) is False and w.failed == 1 and isinstance(w.error, OSError)
    w._file.close()
    w._file = good  # space is freed
    assert w.write(rs[1]) is True
    w.close()
    track = read_data_track(path)
    assert [p.t for p in track.points] == [5.25]


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "x.data.jsonl"
    DataTrackWriter.open(path, 0).close()
    with pytest.raises(SurgboxError, match="already exists"):
        DataTrackWriter.open(path, 0)
    with pytest.raises(SurgboxError, match="cannot create data track"):
        DataTrackWriter.open(tmp_path / "no" / "such" / "dir.jsonl", 0)
    with pytest.raises(SurgboxError, match="does not exist"):
        read_data_track(tmp_path / "missing.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(SurgboxError, match="not a surgbox data track"):
        read_data_track(other)
    w = DataTrackWriter.open(tmp_path / "closed.jsonl", 0)
    w.close()
    with pytest.raises(SurgboxError, match="closed"):
        w.write(readings()[0])
