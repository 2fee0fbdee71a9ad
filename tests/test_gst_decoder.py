"""The GStreamer de-identification decoder (``cpu`` profile, for real): the same pictures, frame
count and timestamps (pts, time base) as PyAV, on files with B-frames, odd and open GOPs and edit
lists; ``surgbox deid --decoder gstreamer`` keeps the audio as the PyAV path does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffprobe_json
from gst_support import needs_elements

from surgbox.deid import deidentify, read_audit
from surgbox.errors import ConfigError, DeidError
from surgbox.interfaces import Detector
from surgbox.types import Detections

pytestmark = needs_elements("filesrc", "qtdemux", "h264parse", "avdec_h264", "videoconvert", "appsink")


def ffmpeg(*args: str) -> None:
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def bframes(tmp_path_factory) -> Path:
    """75 frames at 25 fps with B-frames (pyramid), an odd open GOP of 13, and AAC audio: the MP4
    muxer writes an edit list for the reordering delay."""
    out = tmp_path_factory.mktemp("gstdec") / "bframes.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000",
           "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "3", "-g", "13",
           "-x264-params", "open-gop=1:b-pyramid=normal:scenecut=0", "-c:a", "aac", str(out))
    return out


def pyav_frames(path: Path) -> tuple[list, object]:
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [(f.pts, f.to_ndarray()) for f in c.decode(vs)], vs.time_base


def gst_frames(path: Path, time_base) -> list:
    from surgbox_ext.gst.decoder import GstVideoReader

    with GstVideoReader(str(path), time_base, "cpu") as reader:
        return [(f.pts, f.to_ndarray()) for f in reader.frames()]


def assert_same_pictures(path: Path) -> int:
    ref, tb = pyav_frames(path)
    got = gst_frames(path, tb)
    assert [p for p, _ in got] == [p for p, _ in ref]  # same count, same pts in the same time base
    for (_, a), (_, b) in zip(got, ref):
        assert np.array_equal(a, b)  # avdec_h264 is FFmpeg's decoder: the very same pixels
    return len(ref)


def test_the_reader_gives_pyavs_pictures_and_pts_with_b_frames_and_open_gops(bframes):
    with av.open(str(bframes)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert any(p.pts != p.dts for p in packets)  # reordered: B-frames are really there
    assert sum(p.is_keyframe for p in packets) == 6  # 75 frames, a GOP of 13
    assert assert_same_pictures(bframes) == 75


def test_an_edit_list_that_hides_leading_frames_is_refused_not_decoded_differently(tmp_path, bframes, default_plugins):
    """``ffmpeg -ss 0.5 -c copy`` keeps the GOP's head hidden by an edit list: FFmpeg shows 62 of
    its 75 pictures, GStreamer's qtdemux another 54 with other times; the GStreamer decoder refuses."""
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", "0.5", "-i", str(bframes), "-c", "copy", str(cut))
    ref, tb = pyav_frames(cut)
    assert 0 < len(ref) < 75 and len(gst_frames(cut, tb)) != len(ref)  # the two demuxers really disagree
    dst = tmp_path / "o.mp4"
    with pytest.raises(DeidError, match="edit list that hides pictures .* use --decoder pyav"):
        deidentify(cut, dst, region="full", decoder="gstreamer", detector=NoFaces(), plugins=default_plugins)
    assert not dst.exists() and [p.name for p in tmp_path.iterdir()] == ["cut.mp4"]
    assert deidentify(cut, dst, region="full", decoder="pyav", detector=NoFaces(), plugins=default_plugins).frames == len(ref)


def test_deid_through_gstreamer_matches_pyav_frames_times_and_audio(tmp_path, bframes, default_plugins):
    outs = {}
    for dec in ("pyav:software", "gstreamer"):
        dst = tmp_path / f"{dec.replace(':', '-')}.mp4"
        audit = tmp_path / f"{dec.replace(':', '-')}.jsonl"
        result = deidentify(bframes, dst, region="full", decoder=dec, audit=audit, plugins=default_plugins,
                            detector=NoFaces())
        outs[dec] = (result, dst, read_audit(audit))
    (ra, da, aa), (rb, db, ab) = outs["pyav:software"], outs["gstreamer"]
    assert ra.frames == rb.frames == 75
    assert rb.report["decoder"]["label"] == "gstreamer cpu" and ab[0]["decoder"]["label"] == "gstreamer cpu"
    assert ra.report["decoder"]["label"] == "pyav software"
    assert [(f["frame"], f["pts"], f["time"]) for f in aa[1]] == [(f["frame"], f["pts"], f["time"]) for f in ab[1]]
    assert aa[0]["time_base"] == ab[0]["time_base"]
    for stream in ("v:0", "a:0"):
        assert _packet_times(da, stream) == _packet_times(db, stream)
    assert _audio_bytes(da) == _audio_bytes(db) == _audio_bytes(bframes)  # copied untouched


def test_the_cli_prints_the_decoder_line(tmp_path, bframes):
    exe = Path(sys.executable).with_name("surgbox")
    out = subprocess.run([str(exe), "deid", str(bframes), str(tmp_path / "o.mp4"), "--region", "1,1,8,8", "--decoder",
                          "gstreamer:cpu", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "decoder: gstreamer cpu (asked for with --decoder gstreamer:cpu)" in out.stderr
    assert json.loads(out.stdout)[0]["decoder"]["mode"] == "cpu"


def test_inputs_the_gstreamer_decoder_cannot_read_are_one_clear_error(tmp_path, bframes, default_plugins):
    mkv = tmp_path / "x.mkv"
    ffmpeg("-i", str(bframes), "-c", "copy", str(mkv))
    with pytest.raises(ConfigError, match="the GStreamer decoder reads H.264 in MP4/MOV only; use --decoder pyav"):
        deidentify(mkv, tmp_path / "o.mp4", region="full", decoder="gstreamer", detector=NoFaces(), plugins=default_plugins)
    with open(bframes, "rb") as f, pytest.raises(ConfigError, match="reads files by path"):
        deidentify(f, tmp_path / "o2.mp4", region="full", decoder="gstreamer", detector=NoFaces(), plugins=default_plugins)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o2.mp4").exists()


def _packet_times(path: Path, stream: str) -> list:
    data = ffprobe_json(path, "-select_streams", stream, "-show_entries", "packet=pts,dts,duration")
    return [(p.get("pts"), p.get("dts"), p.get("duration")) for p in data["packets"]]


def _audio_bytes(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


class NoFaces(Detector):
    """A detector that finds nothing (the decoders are under test, not detection)."""

    name = "no-faces"

    def detect(self, images):
        return [Detections(np.zeros((0, 4)), []) for _ in images]


def test_a_recording_cut_by_a_crash_gives_the_same_frames_and_warning_through_both(tmp_path, bframes, default_plugins):
    frag = tmp_path / "frag.mp4"
    ffmpeg("-i", str(bframes), "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-bf", "0", "-an",
           "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(frag))
    cut = tmp_path / "cut.mp4"
    data = frag.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # a power cut in the middle of a fragment
    results = {dec: deidentify(cut, tmp_path / f"{dec}.mp4", region="full", decoder=dec, detector=NoFaces(),
                               plugins=default_plugins) for dec in ("pyav", "gstreamer")}
    a, b = results["pyav"], results["gstreamer"]
    assert 0 < a.frames == b.frames < 75
    assert a.report["warnings"] == b.report["warnings"] and "is incomplete" in a.report["warnings"][0]
    assert _packet_times(tmp_path / "pyav.mp4", "v:0") == _packet_times(tmp_path / "gstreamer.mp4", "v:0")
