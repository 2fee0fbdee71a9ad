"""Recording performance budgets (not in the default test run).

* Compose + encode throughput at 1080p30 from three sources (paper layout, default x264 preset):
  >= 1.5x real time (45 fps) on 2 cores. The baseline in the same run is a plain encode of
  ready-made 1080p frames with the same encoder settings, so the ratio shows what compositing costs.
* Packets teed to a second muxer (the file plus a preview or an upload) cost about what one
  encode costs: the ratio to the plain encode measured in the same run stays >= 0.9 (encoding
  twice would be 0.5).
* The tick thread's wait in ``encode()`` at 30 fps: with x264's frame threads (the default) a
  frame's encoding overlaps the next ticks, so the recorder's tick thread waits <= 0.7x as long
  per frame as with slice threads (``sliced_threads=True``, PyAV's own default), in the same run.
* ``surgbox demo`` CPU cost: <= 1.2 core-seconds per recorded second (a 20 s demo in a
  subprocess, user + system time of it and its children). The baseline in the same run is the
  ffmpeg CLI encoding 20 s of a 1080p30 test pattern with the same x264 preset.

Run: ``pytest benchmarks/bench_record.py --benchmark-only -s``.
"""

from __future__ import annotations

import io
import resource
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest

from surgbox import layouts
from surgbox.types import VideoFrame
from surgbox_ext.compositor import DefaultCompositor
from surgbox_ext.encoders import X264Encoder

FRAMES = 150  # 5 s of 30 fps output
NS = 1_000_000_000


def moving(name: str, w: int, h: int, n: int) -> list[VideoFrame]:
    """``n`` frames of a gradient with a moving box and noise (so the encoder has work to do)."""
    rng = np.random.default_rng(0)
    base = (np.add.outer(np.arange(h), np.arange(w)) % 220 + 16).astype(np.uint8)
    out = []
    for k in range(n):
        y = base.copy()
        x0 = (k * 13) % (w - 100)
        y[h // 3 : h // 3 + 100, x0 : x0 + 100] = 235
        y += rng.integers(0, 4, y.shape, dtype=np.uint8)
        uv = np.full((h // 2, w // 2), 128, np.uint8)
        arr = np.concatenate([y, uv.reshape(h // 4, w), uv.reshape(h // 4, w)])
        out.append(VideoFrame(name, k, av.VideoFrame.from_ndarray(arr, format="yuv420p"), k))
    return out


@pytest.fixture(scope="module")
def inputs():
    endo = moving("endoscope", 1280, 720, 30)
    room = moving("room", 1920, 1080, 25)
    vitals = moving("vitals", 800, 600, 60)
    comp = DefaultCompositor()
    comp.configure(layouts.paper())
    composites = [comp.compose({"endoscope": endo[k % 30], "room": room[k % 25], "vitals": vitals[k % 60]}, {}, {"id": "bench"}, k * NS // 30) for k in range(30)]
    return endo, room, vitals, composites


def encode(frames_for_tick) -> None:
    enc = X264Encoder()  # the default preset
    enc.open_output(io.BytesIO(), fps=30)
    for k in range(FRAMES):
        enc.write_video(frames_for_tick(k), k * NS // 30)
    enc.close()


def test_plain_encode_baseline(benchmark, inputs):
    composites = inputs[3]
    benchmark.pedantic(encode, args=(lambda k: composites[k % 30],), rounds=3, iterations=1)
    fps = FRAMES / benchmark.stats.stats.mean
    benchmark.extra_info["fps"] = fps
    pytest.plain_fps = fps
    print(f"\nplain 1080p encode: {fps:.1f} fps")


def test_compose_and_encode_three_sources(benchmark, inputs):
    endo, room, vitals, _ = inputs
    comp = DefaultCompositor()
    comp.configure(layouts.paper())

    def tick(k: int):
        # 30 fps, 25 fps and 60 fps sources: the newest frame at or before tick k
        frames = {"endoscope": endo[k % 30], "room": room[(k * 25 // 30) % 25], "vitals": vitals[(k * 2) % 60]}
        return comp.compose(frames, {}, {"id": "bench"}, k * NS // 30)

    benchmark.pedantic(encode, args=(tick,), rounds=3, iterations=1)
    fps = FRAMES / benchmark.stats.stats.mean
    plain = getattr(pytest, "plain_fps", None)
    benchmark.extra_info["fps"] = fps
    benchmark.extra_info["ratio_to_plain_encode"] = fps / plain if plain else None
    print(f"\ncompose+encode 1080p30 from 3 sources: {fps:.1f} fps = {fps / 30:.2f}x real time"
          + (f", {fps / plain:.2f}x the plain encode" if plain else ""))
    assert fps >= 45, f"{fps:.1f} fps < 45 fps (1.5x real time)"


def encode_wait(sliced: bool, composites) -> float:
    """Seconds the caller spends inside ``encode()`` for :data:`FRAMES` 1080p composites handed
    over at 30 fps, as the recorder's ticks do (a caller that feeds frames as fast as it can
    waits for x264 either way)."""
    import time

    enc = X264Encoder(sliced_threads=sliced)
    enc.open_codecs(width=1920, height=1080, fps=30)
    waited = 0.0
    start = time.perf_counter()
    for k in range(FRAMES):
        time.sleep(max(0.0, start + k / 30 - time.perf_counter()))
        t = time.perf_counter()
        enc.encode(composites[k % 30], k * NS // 30)
        waited += time.perf_counter() - t
    enc.flush()
    enc.close()
    return waited


def test_encode_wait_slice_threads_baseline(benchmark, inputs):
    waited = benchmark.pedantic(encode_wait, args=(True, inputs[3]), rounds=3, iterations=1)
    pytest.slice_wait_ms = 1000 * waited / FRAMES
    benchmark.extra_info["wait_ms_per_frame"] = pytest.slice_wait_ms
    print(f"\nslice threads: the caller waits {pytest.slice_wait_ms:.1f} ms per 1080p frame in encode()")


def test_encode_wait_frame_threads(benchmark, inputs):
    waited = benchmark.pedantic(encode_wait, args=(False, inputs[3]), rounds=3, iterations=1)
    ms = 1000 * waited / FRAMES
    base = getattr(pytest, "slice_wait_ms", None)
    benchmark.extra_info.update(wait_ms_per_frame=ms, ratio_to_slice_threads=ms / base if base else None)
    print(f"\nframe threads (default): the caller waits {ms:.1f} ms per 1080p frame in encode()"
          + (f" = {ms / base:.2f}x slice threads" if base else ""))
    if base:
        assert ms / base <= 0.7, f"frame threads wait {ms / base:.2f}x as long as slice threads"


def encode_teed(frames_for_tick) -> None:
    """The recorder's path: packets out of the encoder, muxed into two MP4 consumers."""
    from surgbox.mux import Mp4Muxer
    from surgbox.packets import PacketTee

    enc = X264Encoder()
    tee = PacketTee(Mp4Muxer(io.BytesIO()), [Mp4Muxer(io.BytesIO())])
    tee.open(enc.open_codecs(width=1920, height=1080, fps=30))
    for k in range(FRAMES):
        tee.mux(enc.encode(frames_for_tick(k), k * NS // 30))
    tee.mux(enc.flush())
    tee.close()
    enc.close()


def test_packets_teed_to_two_muxers(benchmark, inputs):
    composites = inputs[3]
    benchmark.pedantic(encode_teed, args=(lambda k: composites[k % 30],), rounds=3, iterations=1)
    fps = FRAMES / benchmark.stats.stats.mean
    plain = getattr(pytest, "plain_fps", None)
    benchmark.extra_info["fps"] = fps
    benchmark.extra_info["ratio_to_plain_encode"] = fps / plain if plain else None
    print(f"\nencode once, mux twice (tee): {fps:.1f} fps" + (f" = {fps / plain:.2f}x the plain encode" if plain else ""))
    if plain:
        assert fps / plain >= 0.9, f"teeing costs {1 - fps / plain:.0%} of the encode"


DEMO_SECONDS = 20
CPU_BUDGET = 1.2  # core-seconds per recorded second


def children_cpu(cmd: list[str]) -> float:
    """User + system CPU seconds of ``cmd`` (run to completion) and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_ffmpeg_encode_cpu_baseline(benchmark):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI not installed")
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={DEMO_SECONDS}",
           "-c:v", "libx264", "-preset", "veryfast", "-f", "null", "-"]
    cpu = benchmark.pedantic(children_cpu, args=(cmd,), rounds=1, iterations=1)
    pytest.ffmpeg_core_s = cpu / DEMO_SECONDS
    benchmark.extra_info["core_s_per_s"] = pytest.ffmpeg_core_s
    print(f"\nffmpeg testsrc2 1080p30 libx264 veryfast: {pytest.ffmpeg_core_s:.2f} core-s per second of video")


def test_demo_cpu_per_recorded_second(benchmark, tmp_path):
    cmd = [sys.executable, "-m", "surgbox", "demo", "--duration", str(DEMO_SECONDS), "--out", str(tmp_path / "demo.mp4"), "--quiet"]
    cpu = benchmark.pedantic(children_cpu, args=(cmd,), rounds=1, iterations=1)
    per_second = cpu / DEMO_SECONDS
    base = getattr(pytest, "ffmpeg_core_s", None)
    benchmark.extra_info.update(core_s_per_s=per_second, budget=CPU_BUDGET, ratio_to_ffmpeg_encode=per_second / base if base else None)
    print(f"\nsurgbox demo: {cpu:.1f} core-s for {DEMO_SECONDS} s = {per_second:.2f} core-s per recorded second"
          f" (budget {CPU_BUDGET})" + (f", {per_second / base:.2f}x the plain ffmpeg encode" if base else ""))
    assert per_second <= CPU_BUDGET
