"""The GStreamer encoder (``gst_x264``, profile cpu) for real: packets, timestamps, keyframes, errors."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from surgbox.errors import EncoderError
from surgbox.mux import Mp4Muxer
from surgbox_ext.encoders import X264Encoder
from surgbox_ext.gst import h264
from surgbox_ext.gst.encoder import GstJetsonEncoder, GstNvidiaEncoder, GstX264Encoder

from conftest import ffprobe_json
from gst_support import needs_elements, needs_gst

pytestmark = needs_elements("x264enc", "h264parse", "appsrc", "appsink")

W, H, FPS = 320, 180, 30


def picture(k: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[:, (k * 4) % W : (k * 4) % W + 16] = (255, 200, 0)  # a moving bar: real motion to encode
    return img


def run(enc, times_ns, audio=True):
    streams = enc.open_codecs(width=W, height=H, fps=FPS, audio_rate=48000 if audio else None)
    packets = []
    for k, t in enumerate(times_ns):
        packets += enc.encode(picture(k), t)
        if audio:
            packets += enc.encode_audio(np.zeros((1, 1600), np.float32), t)
    packets += enc.flush()
    enc.close()
    return streams, packets


def test_packets_carry_the_timestamps_pyav_gives_and_a_keyframe_every_gop():
    # irregular times (a late frame, a gap): output times come from time_ns, never from counting
    times = [round(k * 1e9 / FPS) for k in range(40)] + [round(41.5 * 1e9 / FPS), round(47 * 1e9 / FPS)]
    streams, packets = run(GstX264Encoder(preset="ultrafast"), times)
    _, reference = run(X264Encoder(preset="ultrafast"), times)
    video = [p for p in packets if p.stream == "video"]
    ref_video = [p for p in reference if p.stream == "video"]
    assert [p.pts for p in video] == [p.pts for p in ref_video] == [round(t * 90000 / 1e9) for t in times]
    assert [p.time_ns for p in video] == [p.time_ns for p in ref_video]
    assert [k for k, p in enumerate(video) if p.keyframe] == [0, 30]  # gop_seconds=1 at 30 fps, no scene-cut keyframes
    assert all(h264.is_idr(p.data) == p.keyframe for p in video)
    spec = streams[0]
    assert (spec.kind, spec.codec, spec.width, spec.height, spec.rate, spec.time_base) == ("video", "h264", W, H, Fraction(30), Fraction(1, 90000))
    # the extradata probed at open time is exactly what every IDR carries in-band
    assert spec.extradata and all(h264.parameter_sets(p.data) == spec.extradata for p in video if p.keyframe)
    audio = [p for p in packets if p.stream == "audio"]
    assert [p.pts for p in audio] == [p.pts for p in reference if p.stream == "audio"]  # the same AAC path


def test_muxed_file_has_one_fragment_per_gop_and_decodes_without_errors(tmp_path):
    enc = GstX264Encoder(preset="veryfast", gop_seconds=0.5)  # ultrafast would need no more than Constrained Baseline
    streams = enc.open_codecs(width=W, height=H, fps=FPS, audio_rate=48000)
    frags = []
    out = tmp_path / "gst.mp4"
    mux = Mp4Muxer(out, on_fragment=frags.append)
    mux.open(streams)
    for k in range(60):
        t = round(k * 1e9 / FPS)
        mux.mux(enc.encode(picture(k), t))
        mux.mux(enc.encode_audio(np.full((1, 1600), 0.1, np.float32), t))
    mux.mux(enc.flush())
    mux.close()
    enc.close()
    assert [(f.start_ns, f.end_ns) for f in frags] == [(i * 500_000_000, (i + 1) * 500_000_000) for i in range(4)]
    probe = ffprobe_json(out)
    kinds = {s["codec_type"]: s for s in probe["streams"]}
    assert kinds["video"]["codec_name"] == "h264" and kinds["video"]["profile"] == "High"
    assert kinds["audio"]["codec_name"] == "aac"
    assert abs(float(probe["format"]["duration"]) - 2.0) < 0.05
    err = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True)
    assert err.returncode == 0 and err.stderr == ""
    assert enc.stats()["keyframes"] == 4 and enc.stats()["video_frames"] == 60


def test_one_call_path_writes_a_plain_mp4_like_the_pyav_encoder(tmp_path):
    enc = GstX264Encoder(preset="ultrafast", fragmented=False)
    enc.open_output(str(tmp_path / "plain.mp4"), width=W, height=H, fps=FPS, metadata={"title": "ev-1"})
    for k in range(15):
        enc.write_video(picture(k), round(k * 1e9 / FPS))
    enc.close()
    probe = ffprobe_json(tmp_path / "plain.mp4", "-count_frames", "-show_streams", "-show_format")
    assert probe["streams"][0]["nb_read_frames"] == "15" and probe["format"]["tags"]["title"] == "ev-1"


def test_timestamps_that_do_not_increase_are_refused_with_the_reason():
    enc = GstX264Encoder(preset="ultrafast")
    enc.open_codecs(width=W, height=H, fps=FPS)
    try:
        enc.encode(picture(0), 0)
        with pytest.raises(EncoderError, match="not after the previous pts"):
            enc.encode(picture(1), 0)
    finally:
        enc.close()


def test_a_bad_element_option_fails_at_open_naming_it():
    enc = GstX264Encoder(codec_options={"no-such-property": "1"})
    with pytest.raises(EncoderError, match="no-such-property"):
        enc.open_codecs(width=W, height=H, fps=FPS)
    enc.close()


def test_an_odd_size_is_refused():
    with pytest.raises(EncoderError, match="must be positive and even"):
        GstX264Encoder().open_codecs(width=321, height=180, fps=FPS)


@needs_gst
@pytest.mark.parametrize("cls, element", [(GstJetsonEncoder, "nvv4l2h264enc"), (GstNvidiaEncoder, "nvh264enc")])
def test_hardware_profiles_fail_at_open_naming_the_missing_element_and_package(cls, element):
    from surgbox_ext.gst import runtime

    if runtime.has_element(element):
        pytest.skip(f"{element} exists here: this test is for machines without it")
    with pytest.raises(EncoderError, match=f"lacks .*{element}.*(JetPack package nvidia-l4t-gstreamer|gstreamer1.0-plugins-bad)"):
        cls().open_codecs(width=W, height=H, fps=FPS)
