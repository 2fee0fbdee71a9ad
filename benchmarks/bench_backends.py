"""PyAV vs GStreamer (profile ``cpu``): the same short recording through each backend, as ratios.

Two levels, each measured against its PyAV baseline in the same run:

* **Encoder**: 90 ready-made 1080p composites (the paper layout, moving content) through the
  packet API into the crash-safe muxer (in memory): ``libx264`` (PyAV) vs ``gst_x264``
  (``x264enc``), same preset (``veryfast``), CRF 23, 1 s GOP. Reported: frames per second and
  process CPU seconds per frame (GStreamer's threads are in the process), GStreamer / PyAV.
* **Recording**: ``surgbox record`` in a subprocess for ``RECORD_S`` seconds from three synthetic
  cameras and a tone, three ways: PyAV sources + ``libx264`` (the baseline), PyAV sources +
  ``gst_x264``, GStreamer sources (``gst_testsrc``) + ``gst_x264``. Reported: core-seconds
  (user + system of the recorder) per recorded second and the output frame rate, as ratios to
  the baseline.
* **De-identification decode**: a 1080p composite clip (4 s, ``libx264`` with B-frames) decoded
  alone by PyAV (software) and by GStreamer ``cpu`` (``GstVideoReader``), pictures per second,
  and the same whole ``deidentify()`` run (the default detector on the room-camera slot) with
  ``decoder="pyav:software"`` and ``decoder="gstreamer:cpu"``: wall seconds, GStreamer / PyAV.
* **NVIDIA** (skipped with the reason where there is no NVIDIA GPU): NVDEC decode fps vs
  software in the same run, and whether NVENC opens.

Run (the numbers mean something only on a quiet machine):
``pytest benchmarks/bench_backends.py --benchmark-only -s``.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from surgbox import layouts
from surgbox.mux import Mp4Muxer
from surgbox_ext.compositor import DefaultCompositor
from surgbox_ext.encoders import X264Encoder
from surgbox_ext.gst import runtime

if runtime.reason() is not None:
    pytest.skip(f"GStreamer is not usable here: {runtime.reason()}", allow_module_level=True)

from bench_record import moving  # noqa: E402 - the same moving test content as the recording benchmark
from surgbox_ext.gst.encoder import GstX264Encoder  # noqa: E402 - after the skip

FRAMES = 90  # 3 s of 30 fps
RECORD_S = 8
NS = 1_000_000_000
RESULTS: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def composites():
    endo, room, vitals = moving("endoscope", 1280, 720, 30), moving("room", 1920, 1080, 25), moving("vitals", 800, 600, 30)
    comp = DefaultCompositor()
    comp.configure(layouts.paper())
    return [comp.compose({"endoscope": endo[k % 30], "room": room[k % 25], "vitals": vitals[k % 30]}, {}, {"id": "bench"}, k * NS // 30)
            for k in range(30)]


def encode(make, pictures) -> float:
    """Encode ``FRAMES`` pictures with audio into an in-memory fragmented MP4; returns process CPU seconds."""
    cpu0 = time.process_time()
    enc = make()
    streams = enc.open_codecs(width=1920, height=1080, fps=30, audio_rate=48000)
    mux = Mp4Muxer(io.BytesIO())
    mux.open(streams)
    silence = np.zeros((1, 1600), np.float32)
    for k in range(FRAMES):
        t = k * NS // 30
        mux.mux(enc.encode(pictures[k % len(pictures)], t))
        mux.mux(enc.encode_audio(silence, t))
    mux.mux(enc.flush())
    mux.close()
    enc.close()
    return time.process_time() - cpu0


def _encoder_case(benchmark, key, make, pictures):
    cpu = []
    benchmark.pedantic(lambda: cpu.append(encode(make, pictures)), rounds=3, iterations=1, warmup_rounds=1)
    fps = FRAMES / benchmark.stats.stats.mean
    RESULTS[key] = {"fps": fps, "cpu_per_frame_ms": 1000 * float(np.median(cpu)) / FRAMES}
    benchmark.extra_info.update(RESULTS[key])
    print(f"\n{key}: {fps:.1f} fps, {RESULTS[key]['cpu_per_frame_ms']:.1f} ms CPU per frame")


def test_encoder_pyav_libx264_baseline(benchmark, composites):
    _encoder_case(benchmark, "encoder_pyav", lambda: X264Encoder(preset="veryfast"), composites)


def test_encoder_gstreamer_x264enc(benchmark, composites):
    _encoder_case(benchmark, "encoder_gst", lambda: GstX264Encoder(preset="veryfast"), composites)
    base = RESULTS.get("encoder_pyav")
    if base:
        gst = RESULTS["encoder_gst"]
        print(f"gst_x264 / libx264: throughput {gst['fps'] / base['fps']:.2f}x, CPU per frame "
              f"{gst['cpu_per_frame_ms'] / base['cpu_per_frame_ms']:.2f}x")


CONFIG = """
fps = 30
audio = "mic"
[output]
path = "{out}"
[encoder]
plugin = "{encoder}"
preset = "veryfast"
[layout]
preset = "paper"
sources = {{ endoscope = "endo", room = "room", vitals = "vitals" }}
[sources.endo]
plugin = "{source}"
width = 1280
height = 720
fps = 30
[sources.room]
plugin = "{source}"
width = 1920
height = 1080
fps = 25
[sources.vitals]
plugin = "{source}"
width = 800
height = 600
fps = 30
[sources.mic]
plugin = "tone"
"""


def record(tmp: Path, encoder: str, source: str) -> dict[str, float]:
    cfg = tmp / f"{encoder}-{source}.toml"
    out = tmp / f"{encoder}-{source}.mp4"
    cfg.write_text(CONFIG.format(out=out.name, encoder=encoder, source=source))
    exe = Path(sys.executable).with_name("surgbox")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(exe), "record", "--config", str(cfg), "--duration", str(RECORD_S), "--overwrite"],
                   check=True, capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    core_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = json.loads(Path(str(out) + ".json").read_text())["stats"]
    frames = stats["frames"]
    return {"core_s_per_s": core_s / RECORD_S, "frames": frames, "fps_out": frames / RECORD_S}


@pytest.mark.parametrize("encoder, source", [("libx264", "testsrc"), ("gst_x264", "testsrc"), ("gst_x264", "gst_testsrc")])
def test_record(benchmark, tmp_path, encoder, source):
    key = f"record_{encoder}_{source}"
    got: list[dict[str, float]] = []
    benchmark.pedantic(lambda: got.append(record(tmp_path, encoder, source)), rounds=1, iterations=1)
    RESULTS[key] = got[0]
    benchmark.extra_info.update(got[0])
    line = f"\n{encoder} + {source}: {got[0]['core_s_per_s']:.2f} core-s per recorded s, {got[0]['fps_out']:.1f} fps out"
    base = RESULTS.get("record_libx264_testsrc")
    if base and key != "record_libx264_testsrc":
        line += (f" | vs PyAV: CPU {got[0]['core_s_per_s'] / base['core_s_per_s']:.2f}x, "
                 f"frames {got[0]['frames'] / max(1, base['frames']):.2f}x")
    print(line)


# ---- de-identification decoders -------------------------------------------------------------------

DEID_FRAMES = 120


@pytest.fixture(scope="module")
def clip(tmp_path_factory, composites) -> Path:
    """4 s of the 1080p composite, as a recording's encoder would write it but with B-frames."""
    import av

    out = tmp_path_factory.mktemp("decode") / "composite.mp4"
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "veryfast", "bf": "2", "g": "30"})
        s.width, s.height, s.pix_fmt = 1920, 1080, "yuv420p"
        for k in range(DEID_FRAMES):
            f = composites[k % len(composites)]
            f = f.reformat(format="yuv420p") if hasattr(f, "reformat") else av.VideoFrame.from_ndarray(f, format="rgb24")
            f.pts = k
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return out


def _decode_pyav(path: Path, hwaccel=None) -> int:
    import av

    with av.open(str(path), hwaccel=hwaccel) as c:
        return sum(1 for _ in c.decode(video=0))


def _decode_gst(path: Path) -> int:
    import av

    from surgbox_ext.gst.decoder import GstVideoReader

    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
    with GstVideoReader(str(path), tb, "cpu") as reader:
        return sum(1 for _ in reader.frames())


def _timed(benchmark, key: str, fn, frames: int, rounds: int = 3) -> None:
    n: list[int] = []
    benchmark.pedantic(lambda: n.append(fn()), rounds=rounds, iterations=1, warmup_rounds=1)
    assert n[-1] == frames
    RESULTS[key] = {"fps": frames / benchmark.stats.stats.mean, "seconds": benchmark.stats.stats.mean}
    benchmark.extra_info.update(RESULTS[key])
    print(f"\n{key}: {RESULTS[key]['fps']:.1f} fps ({RESULTS[key]['seconds']:.2f} s)")


def _ratio(key: str, base: str, what: str = "fps") -> None:
    if base in RESULTS and key in RESULTS:
        print(f"{key} / {base}: {what} {RESULTS[key][what] / RESULTS[base][what]:.2f}x")


def test_decode_pyav_software_baseline(benchmark, clip):
    _timed(benchmark, "decode_pyav", lambda: _decode_pyav(clip), DEID_FRAMES)


def test_decode_gstreamer_cpu(benchmark, clip):
    _timed(benchmark, "decode_gst", lambda: _decode_gst(clip), DEID_FRAMES)
    _ratio("decode_gst", "decode_pyav")


def _deid(clip: Path, out: Path, decoder: str) -> int:
    from surgbox import layouts
    from surgbox.deid import deidentify

    room = next(s for s in layouts.paper().slots if s.name == "room")
    region = ",".join(str(v) for v in room.rect.as_xywh())
    return deidentify(clip, out, region=region, decoder=decoder, overwrite=True).frames


@pytest.mark.parametrize("decoder", ["pyav:software", "gstreamer:cpu"])
def test_deid(benchmark, clip, tmp_path, decoder):
    key = f"deid_{decoder.replace(':', '_')}"
    _timed(benchmark, key, lambda: _deid(clip, tmp_path / "out.mp4", decoder), DEID_FRAMES, rounds=1)
    _ratio(key, "deid_pyav_software", "seconds") if decoder != "pyav:software" else None


def test_nvdec_vs_software_decode(benchmark, clip):
    from surgbox import nvidia
    from surgbox.deid.decoders import nvdec_absence

    why = nvdec_absence(nvidia.probe())
    if why is not None:
        pytest.skip(f"NVDEC not measured: {why}")
    from av.codec.hwaccel import HWAccel

    _timed(benchmark, "decode_nvdec", lambda: _decode_pyav(clip, HWAccel("cuda", allow_software_fallback=False)), DEID_FRAMES)
    _ratio("decode_nvdec", "decode_pyav")


def test_nvenc_exists():
    from surgbox_ext.encoders import nvenc_check

    why = nvenc_check()
    if why is not None:
        pytest.skip(f"NVENC not measured: {why}")
    print("\nNVENC: a tiny h264_nvenc encoder opened and encoded a frame")
