"""file source: a real MP4 written with PyAV, played back in real time, looped, audio and video in step."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import numpy as np
import pytest

from surgbox.clock import NS_PER_S, Clock
from surgbox.errors import SourceError
from surgbox_ext.sources.file import FileSource

FPS = 10
SECONDS = 1.5


def write_clip(path, audio: bool = True) -> None:
    """1.5 s of 64x48 H.264 at 10 fps whose frame i has luma 20 + 12 * i, plus 48 kHz AAC."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "qp": "0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for i in range(int(SECONDS * FPS)):
            img = np.full((72, 64), 128, np.uint8)
            img[:48] = 20 + 12 * i
            frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode())
        if a is not None:
            n = int(SECONDS * 48000)
            t = np.arange(n) / 48000
            pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, s : s + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, s
                out.mux(a.encode(af))
            out.mux(a.encode())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("file") / "clip.mp4"
    write_clip(path)
    return path


def drain(sources, seconds, clock):
    got = {s.name: [] for s in sources}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for s in sources:
            while (item := s.get()) is not None:
                got[s.name].append((clock.now_ns(), item))
        time.sleep(0.005)
    return got


def luma_index(frame) -> int:
    return round((float(frame.to_ndarray("yuv420p")[:48].mean()) - 20) / 12)


def test_file_plays_in_real_time_and_loops(clip):
    clock = Clock()
    src = FileSource("clip", path=str(clip), loop=True, anchor="start")
    src.start(clock)
    got = drain([src], 3.4, clock)["clip"]
    src.stop()
    assert src.error is None
    frames = [f for _, f in got]
    indices = [luma_index(f.image) for f in frames]
    n = int(SECONDS * FPS)
    assert indices[: 2 * n] == list(range(n)) * 2  # whole file, then again from the start
    assert src.stats()["loops"] >= 2
    t0 = frames[0].capture_ns
    duration_ns = av.open(str(clip)).duration * 1000
    for k, f in enumerate(frames):
        assert f.capture_ns == t0 + (k // n) * duration_ns + (k % n) * NS_PER_S // FPS
    arrivals = np.array([a for a, _ in got])
    captures = np.array([f.capture_ns for f in frames])
    assert (arrivals >= captures).all(), "released before its time"
    assert np.median(arrivals - captures) < 20_000_000  # paced to real time, not read ahead
    assert abs((arrivals[-1] - arrivals[0]) - (captures[-1] - captures[0])) < 60_000_000


def test_file_video_and_audio_sources_share_the_clock_anchor(clip):
    clock = Clock()
    video = FileSource("v", path=str(clip), loop=True)
    time.sleep(0.05)  # start order and gaps must not matter with anchor="clock"
    audio = FileSource("a", path=str(clip), stream="audio", loop=True)
    assert (video.media, audio.media) == ("video", "audio")
    video.start(clock)
    time.sleep(0.03)
    audio.start(clock)
    got = drain([video, audio], 1.8, clock)
    video.stop()
    audio.stop()
    frames = [f for _, f in got["v"]]
    chunks = [c for _, c in got["a"]]
    assert frames and chunks and video.error is None and audio.error is None
    for f in frames:  # frame i of the file is at origin + i/fps (+ loop passes)
        rel = (f.capture_ns - clock.origin_ns) % (av.open(str(clip)).duration * 1000)
        assert abs(rel - luma_index(f.image) * NS_PER_S // FPS) < 1_000_000
    for prev, nxt in zip(chunks, chunks[1:]):  # contiguous, across the loop point too
        assert 0 <= nxt.capture_ns - prev.end_ns < NS_PER_S // 48000
        assert prev.samples.dtype == np.float32 and prev.samples.shape[0] == 1 and prev.sample_rate == 48000
    assert audio.stats()["loops"] >= 1
    # The 440 Hz tone is there (AAC round trip).
    x = np.concatenate([c.samples[0] for c in chunks[2:12]])
    assert abs(np.argmax(np.abs(np.fft.rfft(x))) * 48000 / len(x) - 440) < 15
    # The audio chunk covering a frame's time starts no later than that frame: A and V are in step.
    first = frames[len(frames) // 2].capture_ns
    assert any(c.capture_ns <= first < c.end_ns for c in chunks)


def test_file_without_loop_ends_normally(clip):
    clock = Clock()
    src = FileSource("clip", path=str(clip), anchor="start", sample_rate=16000, stream="audio")
    src.start(clock)
    got = drain([src], 2.0, clock)["clip"]
    assert not src.running and src.ended and src.error is None and src.stats()["ended"]
    total = sum(c.samples.shape[1] for _, c in got)
    assert got[0][1].sample_rate == 16000 and abs(total - SECONDS * 16000) < 2048


def test_file_errors_name_the_file_and_the_fix(clip, tmp_path):
    clock = Clock()
    with pytest.raises(SourceError, match=r"source 'x' \(file .*nope.mp4\): no such file"):
        FileSource("x", path=str(tmp_path / "nope.mp4")).start(clock)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="could not open.*media file"):
        FileSource("x", path=str(junk)).start(clock)
    silent = tmp_path / "silent.mp4"
    write_clip(silent, audio=False)
    with pytest.raises(SourceError, match="has no audio stream"):
        FileSource("x", path=str(silent), stream="audio").start(clock)
    old = Clock(origin_ns=time.monotonic_ns() - 60 * NS_PER_S)
    with pytest.raises(SourceError, match="past the file's end.*loop=true or anchor='start'"):
        FileSource("x", path=str(clip)).start(old)


def test_file_clock_anchor_joins_a_running_clock_mid_file(clip):
    """With anchor='clock' and loop, a source started late plays what the clock says is 'now'."""
    duration_ns = av.open(str(clip)).duration * 1000
    clock = Clock(origin_ns=time.monotonic_ns() - 10 * duration_ns - duration_ns // 2)
    src = FileSource("clip", path=str(clip), loop=True)
    src.start(clock)
    got = drain([src], 0.5, clock)["clip"]
    src.stop()
    first = got[0][1]
    assert abs(luma_index(first.image) - int(SECONDS * FPS) // 2) <= 1
    assert first.capture_ns >= clock.origin_ns + 10 * duration_ns + duration_ns // 2 - NS_PER_S // FPS
    assert Fraction(first.capture_ns - clock.origin_ns - 10 * duration_ns, NS_PER_S // FPS).denominator == 1
