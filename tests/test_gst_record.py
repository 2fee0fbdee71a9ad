"""``surgbox record`` with the GStreamer source and encoder (profile cpu), as a user runs it:
a valid 1080p H.264 + AAC file, and crash-safe under ``kill -9`` like the PyAV encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import decoded_video_seconds, ffprobe_json, kill_9_when_recorded
from gst_support import needs_elements

pytestmark = needs_elements("videotestsrc", "x264enc", "h264parse", "appsrc", "appsink", "videoconvert")

CONFIG = """
fps = 30
audio = "mic"

[output]
path = "case.mp4"

[encoder]
plugin = "gst_x264"
preset = "ultrafast"
gop_seconds = 1.0

[layout]
preset = "paper"
sources = {{ endoscope = "endo", room = "room", vitals = "vitals" }}

[sources.endo]
plugin = "gst_testsrc"
width = {w}
height = {h}
fps = 30

[sources.room]
plugin = "gst_testsrc"
pattern = "ball"
width = 320
height = 180
fps = 25

[sources.vitals]
plugin = "gst_testsrc"
pattern = "snow"
width = 320
height = 180
fps = 15

[sources.mic]
plugin = "tone"
"""


def config(tmp_path: Path, w: int = 640, h: int = 360) -> Path:
    path = tmp_path / "record.toml"
    path.write_text(CONFIG.format(w=w, h=h))
    return path


def surgbox(*args: str, **kw):
    exe = Path(sys.executable).with_name("surgbox")
    env = {**os.environ, "SURGBOX_HOME": str(kw.pop("home"))}
    return [str(exe), *args], env


def test_record_with_gstreamer_source_and_encoder_makes_valid_1080p_h264_aac(tmp_path):
    cmd, env = surgbox("record", "--config", str(config(tmp_path)), "--duration", "3", home=tmp_path / "home")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "case.mp4"
    probe = ffprobe_json(out)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert (streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]) == ("h264", 1920, 1080)
    assert streams["video"]["r_frame_rate"] == "30/1" and streams["audio"]["codec_name"] == "aac"
    assert abs(float(probe["format"]["duration"]) - 3.0) < 0.1
    decode = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert decode.returncode == 0 and decode.stderr == "", decode.stderr
    sidecar = json.loads((tmp_path / "case.mp4.json").read_text())
    assert sidecar["status"] == "complete" and sidecar["encoder"]["name"] == "x264enc"
    assert [s["name"] for s in sidecar["sources"]] == ["endo", "room", "vitals", "mic"]
    assert sidecar["stats"]["encoder"]["gst_profile"] == "cpu"


def test_kill_9_leaves_every_completed_second_playable(tmp_path):
    cmd, env = surgbox("record", "--config", str(config(tmp_path, 320, 180)), home=tmp_path / "home")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = kill_9_when_recorded(proc, 6, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = tmp_path / "case.mp4"
    probe = ffprobe_json(out)
    assert {s["codec_type"] for s in probe["streams"]} == {"video", "audio"}
    assert probe["streams"][0]["width"] == 1920
    assert decoded_video_seconds(out) >= seen - 1  # at most the fragment being written is lost
    sidecar = json.loads((tmp_path / "case.mp4.json").read_text())
    assert sidecar["status"] == "recording"  # the crash left the start-time sidecar, as documented
