"""What was read against what the input claims (issue 18 item 11): a cut or crashed
fragmented MP4 is reported (warning; ``strict``: error), extra streams are refused or dropped
explicitly, never silently."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_deid_pipeline import WhiteSquareDetector, make_video

from surgbox.deid import deidentify
from surgbox.errors import ConfigError, DeidError


def recorded(path: Path, frames: int = 150) -> Path:
    """A fragmented MP4 as ``surgbox record`` writes it (the libx264 plugin: 1 s fragments, AAC)."""
    from surgbox_ext.encoders import X264Encoder

    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    enc = X264Encoder()
    enc.open_output(str(path), width=320, height=240, fps=30, audio_rate=44100)
    for i in range(frames):
        enc.write_video(tex[i % 50:i % 50 + 240, i % 60:i % 60 + 320].copy(), round(i * 1e9 / 30))
        enc.write_audio((0.1 * np.sin(np.arange(1470) / 10)).astype(np.float32)[None], round(i * 1e9 / 30))
    enc.close()
    return path


@pytest.fixture
def run(tmp_path, default_plugins):
    def _run(src, name="out.mp4", **kw):
        kw.setdefault("detector", WhiteSquareDetector())
        kw.setdefault("region", "full")
        return deidentify(src, tmp_path / name, plugins=default_plugins, **kw)

    return _run


def test_a_complete_recording_is_complete(tmp_path, run):
    from surgbox.deid.bmff import scan_boxes

    src = recorded(tmp_path / "rec.mp4")
    with open(src, "rb") as f:
        scan = scan_boxes(f)
        assert f.tell() == 0
    assert scan.fragmented and scan.has_mfra and scan.truncated is None
    result = run(src)
    inp = result.report["input"]
    assert result.frames == 150 and inp["problem"] is None and result.report["warnings"] == []
    assert inp["frames_read"] == 150 and inp["duration_read_s"] == pytest.approx(5.0, abs=0.01)
    assert inp["duration_declared_s"] == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("cut", [0.5, "fragment"])
def test_a_cut_recording_is_reported_and_fails_with_strict(tmp_path, run, cut):
    """A fragmented MP4 cut at 50 % (or at a fragment boundary, as a kill -9 can leave it)
    gave rc 0 with fewer frames and no word."""
    full = recorded(tmp_path / "full.mp4").read_bytes()
    if cut == "fragment":  # end just before the third 'moof' box
        pos = [i - 4 for i in range(len(full)) if full[i:i + 4] == b"moof"]
        data = full[:pos[2]]
    else:
        data = full[: len(full) // 2]
    src = tmp_path / "cut.mp4"
    src.write_bytes(data)
    result = run(src)
    inp = result.report["input"]
    assert 0 < result.frames < 150 and inp["frames_read"] == result.frames
    expected = "ends inside its 'mdat' box" if cut == 0.5 else "lacks the closing fragment index"
    assert expected in inp["problem"]
    (warning,) = result.report["warnings"]
    assert warning.startswith("input ") and "is incomplete" in warning and f"the {result.frames} frames" in warning
    with pytest.raises(DeidError, match=f"is incomplete: .*{expected}"):
        run(src, name="strict.mp4", strict=True)
    assert not (tmp_path / "strict.mp4").exists()
    # the CLI prints the warning, and fails with --strict
    cli = [sys.executable, "-m", "surgbox", "deid", str(src), "--region", "full", "--quiet"]
    proc = subprocess.run([*cli, str(tmp_path / "cli.mp4")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "warning: input" in proc.stderr and "is incomplete" in proc.stderr, proc.stderr
    proc = subprocess.run([*cli, str(tmp_path / "cli2.mp4"), "--strict"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "is incomplete" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cli2.mp4").exists()


def test_a_plain_mp4_is_complete(tmp_path, run):
    src = make_video(tmp_path / "in.mp4", frames=30)
    result = run(src)
    assert result.report["input"]["problem"] is None and result.report["warnings"] == []


def test_an_edit_list_is_not_an_incomplete_input(tmp_path, run):
    full = make_video(tmp_path / "full.mp4", frames=60, audio=False)
    cut = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "0.5", "-i", str(full), "-c", "copy", str(cut)], check=True)
    result = run(cut)
    assert result.report["input"]["problem"] is None and result.report["warnings"] == []


def _ffmpeg(*args: str) -> None:
    subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-y", *args], check=True)


def test_a_second_video_stream_is_refused_or_dropped_explicitly(tmp_path, run):
    a = make_video(tmp_path / "a.mp4", frames=10)
    b = make_video(tmp_path / "b.mp4", frames=10, size=(160, 120), audio=False)
    two = tmp_path / "two.mp4"
    _ffmpeg("-i", str(a), "-i", str(b), "-map", "0:v", "-map", "0:a", "-map", "1:v", "-c", "copy", str(two))
    with pytest.raises(ConfigError) as e:
        run(two)
    msg = str(e.value)
    assert "#2 video h264 160x120" in msg and "--extra-streams drop" in msg and "two.mp4" in msg
    assert not (tmp_path / "out.mp4").exists()
    result = run(two, extra_streams="drop")
    assert result.report["input"]["dropped_streams"] == ["#2 video h264 160x120"]
    assert result.report["warnings"] == ["stream #2 video h264 160x120 of the input was left out (extra_streams='drop')"]
    with open(tmp_path / "out.mp4", "rb"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json",
                                str(tmp_path / "out.mp4")], capture_output=True, text=True, check=True)
    assert [s["codec_type"] for s in json.loads(probe.stdout)["streams"]] == ["video", "audio"]


def test_a_data_stream_is_refused_or_dropped_explicitly(tmp_path, run):
    src = make_video(tmp_path / "a.mp4", frames=10)
    tc = tmp_path / "timecode.mov"
    _ffmpeg("-i", str(src), "-timecode", "01:00:00:00", "-c", "copy", str(tc))
    with pytest.raises(ConfigError, match=r"#2 data"):
        run(tc)
    proc = subprocess.run([sys.executable, "-m", "surgbox", "deid", str(tc), str(tmp_path / "cli.mp4"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "--extra-streams drop" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    result = run(tc, name="dropped.mp4", extra_streams="drop")
    assert result.frames == 10 and result.report["input"]["dropped_streams"][0].startswith("#2 data")


def test_box_walk_of_other_files(tmp_path):
    from surgbox.deid.bmff import scan_boxes

    (tmp_path / "x.bin").write_bytes(b"not an mp4 at all, just text " * 10)
    with open(tmp_path / "x.bin", "rb") as f:
        assert scan_boxes(f) is None
    src = make_video(tmp_path / "in.mp4", frames=5)
    data = src.read_bytes()
    with open(src, "rb") as f:
        s = scan_boxes(f)
    assert not s.fragmented and s.truncated is None and s.boxes >= 3
    (tmp_path / "padded.mp4").write_bytes(data + b"\xff\xee\x01\x02\x8a\x00\x01\x02" * 4)  # trailing junk: not a cut
    with open(tmp_path / "padded.mp4", "rb") as f:
        assert scan_boxes(f).truncated is None
    (tmp_path / "cut.mp4").write_bytes(data[:-10])
    with open(tmp_path / "cut.mp4", "rb") as f:
        t = scan_boxes(f).truncated
    assert t is not None and t.missing == 10
