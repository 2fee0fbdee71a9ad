"""Issue 17: split at keyframes, de-identify each segment with context, join by stream copy —
the same frames, timestamps and audit as a single-pass ``surgbox deid``."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_fixtures import face_video
from surgbox.cluster import segments as S
from surgbox.cluster.task import run_segment
from surgbox.deid import DeidOptions
from surgbox.deid.audit import read_audit
from surgbox.errors import DeidError

DETECTOR = ["--detector", "retinaface", "--detector-option", "scale=1.0", "--region", "full"]


def _opts() -> DeidOptions:
    return DeidOptions(region="full", detector="retinaface", detector_options={"scale": 1.0})


def _hidden(frames: list[dict]) -> list[tuple]:
    """Which boxes were hidden in which frame (track ids are per run, so left out)."""
    return [(f["frame"], f["pts"], f["time"], [(tuple(round(v, 3) for v in r["box"]), r["kind"]) for r in f["regions"]])
            for f in frames]


def _times(path: Path) -> tuple[list, list]:
    import av

    with av.open(str(path)) as c:
        video = [f.pts * f.time_base for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]
    return video, audio


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    src = face_video(d / "case.mp4", frames=60, fps=10, gop=10)
    out = d / "case.deid.mp4"
    r = subprocess.run([sys.executable, "-m", "surgbox", "deid", str(src), str(out), *DETECTOR, "--quiet",
                        "--audit", str(d / "case.jsonl")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return src, out, d / "case.jsonl"


def test_plan_cuts_at_keyframes_with_context(single):
    src = single[0]
    p = S.plan(src, seconds=2.0, context=5)
    assert p.frames == 60 and p.keyframes == (0, 10, 20, 30, 40, 50)
    assert [(s.first, s.start, s.stop, s.end) for s in p.segments] == [(0, 0, 20, 30), (10, 20, 40, 50), (30, 40, 60, 60)]
    assert S.plan(src, seconds=0, context=5).segments == (S.Segment(0, 0, 0, 60, 60),)
    assert S.context_frames(_opts()) > _opts().carry + _opts().max_gap


def test_split_join_matches_a_single_pass(single, tmp_path):
    src, ref, ref_audit = single
    opts = _opts()
    p = S.plan(src, seconds=2.0, context=S.context_frames(opts))
    assert len(p.segments) == 3
    results = []
    for seg in p.segments:
        data = S.split(src, seg, p)
        results.append(run_segment(data, seg, opts))
    out = tmp_path / "joined.mp4"
    n = S.join(p, [(s, (lambda r=r: io.BytesIO(r.data))) for s, r in zip(p.segments, results)], str(out),
               fragmented=False, audio_src=src)
    assert n == 60
    # the same audit: every frame, its time and what was hidden in it
    _, want, _ = read_audit(ref_audit)
    got = [f for r in results for f in r.audit]
    assert sum(bool(f["regions"]) for f in want) >= 30  # the face is found
    assert _hidden(got) == _hidden(want)
    # same frame count and timestamps, audio copied once and unchanged
    v_ref, a_ref = _times(ref)
    v_out, a_out = _times(out)
    assert len(v_out) == len(v_ref) == 60 and v_out == v_ref
    assert a_out == a_ref and len(a_out) > 0
    # decodes without errors, one codec configuration
    if shutil.which("ffmpeg"):
        r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr.strip() == ""
    if shutil.which("ffprobe"):
        r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,codec_name", "-of", "csv=p=0", str(out)], capture_output=True, text=True)
        assert r.stdout.strip() == "h264,60" and r.stderr.strip() == ""


def test_join_refuses_a_segment_with_the_wrong_frame_count(single, tmp_path):
    src = single[0]
    opts = _opts()
    p = S.plan(src, seconds=4.0, context=S.context_frames(opts))  # 40 + 20 frames
    r0 = run_segment(S.split(src, p.segments[0], p), p.segments[0], opts)
    parts = [(p.segments[0], lambda: io.BytesIO(r0.data)), (p.segments[1], lambda: io.BytesIO(r0.data))]
    with pytest.raises(DeidError, match="segment 1 holds"):
        S.join(p, parts, str(tmp_path / "x.mp4"), fragmented=False, audio_src=src)


def test_an_input_that_is_not_a_video_is_one_clear_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DeidError, match="not a readable video"):
        S.plan(bad, seconds=2, context=5)
