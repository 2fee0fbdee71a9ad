"""``surgbox demo`` / ``surgbox record`` as subprocesses with the real FFmpeg: the issue's must-shows.

* a 20 s demo is H.264 1920x1080 + AAC with 600 +- 1 frames, clean under ffprobe and a full decode;
* flash-to-beep offset measured from the decoded file is <= 1 frame at every 2 s marker;
* (the CPU budget of 1.2 core-seconds per recorded second is a benchmark: benchmarks/bench_record.py);
* kill -9 at ~12 s leaves >= 9 s of playable video;
* the simulated BIS monitor's readings reach the data track;
* ``surgbox record`` stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decoded_video_seconds, ffprobe_json, kill_9_when_recorded

REPO = Path(__file__).resolve().parents[1]
FRAME = 1 / 30
ENDOSCOPE = (0, 0, 1280, 720)  # paper layout; the 30 fps testsrc
ROOM = (1280, 0, 640, 360)  # the 25 fps testsrc


def surgbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "surgbox", *args]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    # --max-behind 20: this test is about the file (frames, streams, sync), not about keeping up in
    # real time on whatever machine runs it. On a shared 2-core CI runner the demo has fallen 3 s
    # (the default) behind and skipped 90 ticks; with 20 s it catches up instead and writes every
    # tick. Keeping up is measured by benchmarks/bench_record.py (CPU per recorded second, encode wait).
    cmd = surgbox("demo", "--duration", "20", "--out", str(out), "--quiet", "--max-behind", "20")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "proc": proc}


def test_demo_is_h264_1080p_aac_with_600_frames(demo):
    out = demo["out"]
    info = ffprobe_json(out, "-count_frames", "-show_streams", "-show_format")
    v, a = info["streams"]
    assert (v["codec_name"], v["width"], v["height"], v["pix_fmt"]) == ("h264", 1920, 1080, "yuv420p")
    assert abs(int(v["nb_read_frames"]) - 600) <= 1  # the spec; no tick is skipped unless > max_behind_s late
    side = json.loads(out.with_name("demo.mp4.json").read_text())
    print(f"\nthe demo fell at most {side['stats']['most_behind_s']} s behind the clock")
    assert side["status"] == "complete" and side["stats"]["skipped_ticks"] == 0
    assert 0 <= side["stats"]["most_behind_s"] < 20
    assert a["codec_name"] == "aac" and int(a["sample_rate"]) == 48000
    assert json.loads(info["format"]["tags"]["surgbox_layout"])["name"] == "paper"
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", str(out)], capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stderr == ""
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert decode.returncode == 0 and decode.stderr == ""
    assert str(out) in demo["proc"].stdout


def flash_times(path: Path, rect: tuple[int, int, int, int]) -> list[float]:
    """Start times of runs of white frames (Y mean > 200) in ``rect``."""
    x, y, w, h = rect
    times, prev = [], False
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            white = float(f.to_ndarray()[y : y + h, x : x + w].mean()) > 200  # raw Y plane
            if white and not prev:
                times.append(float(f.pts * s.time_base))
            prev = white
    return times


def beep_times(path: Path) -> list[float]:
    """Onsets of the 1 kHz beeps: first sample above 0.2 after >= 0.5 s of quiet."""
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
        rate = frames[0].sample_rate
        assert frames[0].pts == 0
        pcm = np.concatenate([f.to_ndarray()[0] for f in frames])
    loud = np.flatnonzero(np.abs(pcm) > 0.2)
    onsets, last = [], -(10**9)
    for i in loud:
        if i - last > rate // 2:
            onsets.append(i / rate)
        last = i
    return onsets


def offsets(flashes: list[float], beeps: list[float]) -> list[float]:
    return [min(flashes, key=lambda f: abs(f - b)) - b if flashes else float("inf") for b in beeps]


def test_flash_to_beep_offset_within_one_frame(demo):
    out = demo["out"]
    beeps = beep_times(out)
    assert 9 <= len(beeps) <= 10  # a marker every 2 s of a 20 s recording
    flashes = flash_times(out, ENDOSCOPE)
    off = offsets(flashes, beeps)
    room = offsets(flash_times(out, ROOM), beeps)
    print(f"\nflash-to-beep offsets (ms), endoscope 30 fps: {[round(float(o) * 1000, 1) for o in off]}")
    print(f"flash-to-beep offsets (ms), room 25 fps: {[round(float(o) * 1000, 1) for o in room]}")
    assert len(flashes) == len(beeps)
    # The bound is one frame (33 ms) at every marker, for every slot. Sources on the
    # clock's 1/fps grid put each flash on the very tick of its beep, so video is never ahead
    # of sound (1 ms detection slack) nor behind by as much as a frame.
    assert all(-0.001 <= o < FRAME for o in off), off
    assert all(-0.001 <= o < FRAME for o in room), room


def test_kill_9_leaves_the_completed_seconds_playable(tmp_path):
    out = tmp_path / "killed.mp4"
    proc = subprocess.Popen(surgbox("demo", "--duration", "60", "--out", str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    side = out.with_name("killed.mp4.json")
    try:
        kill_9_when_recorded(proc, 12)  # ~12 s recorded (status line), however busy the machine
    finally:
        if proc.poll() is None:
            proc.kill()
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", str(out)], capture_output=True, text=True)
    assert probe.returncode == 0
    seconds = decoded_video_seconds(out)
    print(f"\nkill -9 at 12 s: {seconds:.2f} s of video decodable")
    assert seconds >= 9
    assert json.loads(side.read_text())["status"] == "recording"  # the sidecar written at start survives


def test_demo_records_the_simulated_bis_monitor(demo):
    """The demo's BIS simulator (pty) reaches the data track beside --out (about one reading a
    second on the recording's time line); the store default is in test_integration_store.py."""
    from surgbox.readings import read_data_track

    track = read_data_track(demo["out"].with_name("demo.mp4.data.jsonl"))
    series = [(t, v) for t, v in track.series("BIS") if 0 <= t <= 20]
    assert 17 <= len(series) <= 21 and track.skipped_lines == 0
    assert all(v is None or 0 <= v <= 100 for _, v in series)
    side = json.loads(demo["out"].with_name("demo.mp4.json").read_text())
    assert side["data_track"] == "demo.mp4.data.jsonl" and "bis" in [s["name"] for s in side["sources"]]


def test_record_cli_status_line_and_clean_sigterm(tmp_path):
    out = tmp_path / "rec.mp4"
    proc = subprocess.Popen(surgbox("record", "--config", str(REPO / "examples" / "record.toml"), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    side_path = out.with_name("rec.mp4.json")
    deadline = time.monotonic() + 30
    # wait for the first complete fragment (~1 s encoded: the pipeline runs), however slow the
    # interpreter start-up on a busy machine was; then record 3 s more
    while time.monotonic() < deadline and not (out.exists() and b"moof" in out.read_bytes()):
        time.sleep(0.05)
    assert side_path.exists() and b"moof" in out.read_bytes(), "recording did not start"
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "REC 00:00:0" in err and "endo" in err and "A/V" in err and "MB" in err
    side = json.loads(out.with_name("rec.mp4.json").read_text())
    assert side["status"] == "complete" and side["frames"] >= 60
    frames = ffprobe_json(out, "-count_frames", "-show_streams")["streams"][0]["nb_read_frames"]
    assert int(frames) == side["frames"]


def test_record_cli_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sources.cam]\nplugin = 'nosuch'\n[layout]\npreset='single'\nsources={main='cam'}\n")
    proc = subprocess.run(surgbox("record", "--config", str(bad), "--out", str(tmp_path / "x.mp4")), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no source plugin named 'nosuch'" in proc.stderr and "testsrc" in proc.stderr
