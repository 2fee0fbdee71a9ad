"""The exact GStreamer pipeline descriptions of every profile, as strings (no GStreamer needed).

The ``jetson`` and ``nvidia`` strings cannot run here (no Jetson, no NVENC): these tests pin what
the plugins build, and docs/backends.md shows the same strings (checked below).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from surgbox_ext.gst import pipelines
from surgbox_ext.gst.profiles import PROFILES, ROLES, get_profile

DOCS = Path(__file__).resolve().parents[1] / "docs" / "backends.md"
HEAD = 'appsrc name=src format=time is-live=false do-timestamp=false caps="video/x-raw,format=I420,width=1920,height=1080,framerate=30/1"'
TAIL = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"

ENCODERS_1080P30 = {
    "cpu": (f"{HEAD} ! x264enc name=enc speed-preset=veryfast key-int-max=30 bframes=0 b-adapt=false threads=0 pass=qual "
            f'quantizer=23 option-string="scenecut=0" ! video/x-h264,profile=high ! {TAIL}'),
    "jetson": (f"{HEAD} ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc name=enc bitrate=8000000 "
               "control-rate=0 iframeinterval=30 idrinterval=30 insert-sps-pps=true insert-vui=true num-B-Frames=0 profile=4 "
               f"preset-level=1 maxperf-enable=true ! {TAIL}"),
    "nvidia": (f"{HEAD} ! nvh264enc name=enc preset=hq gop-size=30 rc-mode=vbr const-quality=23.0 ! video/x-h264,profile=high ! "
               f"{TAIL}"),
}


@pytest.mark.parametrize("profile", sorted(ENCODERS_1080P30))
def test_encoder_pipeline_of_each_profile_at_1080p30(profile):
    got = pipelines.encoder_pipeline(profile, width=1920, height=1080, fps=Fraction(30), gop=30)
    assert got == ENCODERS_1080P30[profile]


def test_encoder_pipelines_with_a_bitrate_gop_and_profile():
    kw = dict(width=1280, height=720, fps=Fraction(30000, 1001), gop=60, bitrate=6_000_000, h264_profile="main")
    cpu = pipelines.encoder_pipeline("cpu", **kw, preset="faster", threads=2, tune="film", options="ref=2")
    assert "framerate=30000/1001" in cpu
    assert ("x264enc name=enc speed-preset=faster key-int-max=60 bframes=0 b-adapt=false threads=2 pass=cbr bitrate=6000 "
            'vbv-buf-capacity=2000 psy-tune=film option-string="scenecut=0:ref=2" ! video/x-h264,profile=main') in cpu
    assert "tune=zerolatency" in pipelines.encoder_pipeline("cpu", **kw, tune="zerolatency")
    jetson = pipelines.encoder_pipeline("jetson", **kw, preset="2")
    assert ("nvv4l2h264enc name=enc bitrate=6000000 control-rate=1 iframeinterval=60 idrinterval=60 insert-sps-pps=true "
            "insert-vui=true num-B-Frames=0 profile=2 preset-level=2 maxperf-enable=true") in jetson
    nvidia = pipelines.encoder_pipeline("nvidia", **kw, extra={"rc-lookahead": 8})
    assert "nvh264enc name=enc preset=hq gop-size=60 rc-mode=cbr bitrate=6000 rc-lookahead=8 ! video/x-h264,profile=main" in nvidia


def test_encoder_pipeline_refuses_bad_values():
    with pytest.raises(ValueError, match="profiles: cpu, jetson, nvidia"):
        pipelines.encoder_pipeline("vaapi", width=64, height=64, fps=Fraction(30), gop=30)
    with pytest.raises(ValueError, match="H.264 profile 'high10'"):
        pipelines.encoder_pipeline("cpu", width=64, height=64, fps=Fraction(30), gop=30, h264_profile="high10")
    with pytest.raises(ValueError, match="gop must be >= 1"):
        pipelines.encoder_pipeline("cpu", width=64, height=64, fps=Fraction(30), gop=0)


def test_source_pipelines_of_each_capture_element_and_profile():
    assert (pipelines.testsrc_head(width=1280, height=720, fps=Fraction(25), pattern="ball") + " ! " + pipelines.source_tail("cpu")
            == "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=25/1 ! videoconvert ! "
               "videoscale ! video/x-raw,format=I420 ! appsink name=sink max-buffers=2 drop=true sync=false emit-signals=false")
    assert pipelines.v4l2_head(device="/dev/video2") == "v4l2src device=/dev/video2"
    assert (pipelines.v4l2_head(device="/dev/video0", width=1920, height=1080, fps=Fraction(60))
            == "v4l2src device=/dev/video0 ! video/x-raw,width=1920,height=1080,framerate=60/1")
    assert (pipelines.v4l2_head(device="/dev/video0", width=1280, height=720, mjpeg=True)
            == "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720 ! jpegdec")
    assert pipelines.v4l2_head(device="/dev/video0", mjpeg=True, profile="jetson").endswith("image/jpeg ! nvv4l2decoder mjpeg=1")
    assert (pipelines.argus_head(sensor_id=1) + " ! " + pipelines.source_tail("jetson")
            == "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),format=NV12,width=1920,height=1080,framerate=30/1 ! "
               "nvvidconv ! video/x-raw,format=I420 ! appsink name=sink max-buffers=2 drop=true sync=false emit-signals=false")
    assert (pipelines.uri_head(uri="file:///srv/or 3/case.mp4") + " ! " + pipelines.source_tail("nvidia", width=640, height=360, sync=True)
            == 'uridecodebin uri="file:///srv/or 3/case.mp4" expose-all-streams=false caps="video/x-raw(ANY)" ! videoconvert ! '
               "videoscale ! video/x-raw,format=I420,width=640,height=360 ! appsink name=sink max-buffers=2 drop=true sync=true "
               "emit-signals=false")


def test_values_are_quoted_only_when_the_launch_syntax_needs_it():
    assert pipelines.quote("veryfast") == "veryfast" and pipelines.quote(True) == "true" and pipelines.quote(30) == "30"
    assert pipelines.quote("a b") == '"a b"' and pipelines.quote('say "hi" \\ ok') == '"say \\"hi\\" \\\\ ok"'
    assert pipelines.quote("x ! fakesink") == '"x ! fakesink"'


def test_profiles_name_elements_for_every_role():
    for prof in PROFILES.values():
        assert set(prof.elements) == set(ROLES)
        assert prof.needed("encoder")[0] == "appsrc" and prof.needed("encoder")[-1] == "appsink"
    assert get_profile("jetson").needed("source", ("nvarguscamerasrc",)) == ("nvarguscamerasrc", "nvvidconv", "appsink")
    assert "nvh264dec" in get_profile("nvidia").needed("decoder") and "nvv4l2decoder" in get_profile("jetson").needed("decoder")
    with pytest.raises(ValueError, match="roles: encoder, source, decoder, display"):
        get_profile("cpu").needed("muxer")


def test_docs_show_the_exact_encoder_strings_and_say_which_are_not_hardware_tested():
    text = DOCS.read_text()
    for profile, desc in ENCODERS_1080P30.items():
        assert desc in " ".join(text.split()), f"docs/backends.md lacks the {profile} encoder pipeline"
    assert re.search(r"not hardware-tested", text, re.I)


DECODERS = {
    "cpu": "avdec_h264 ! videoconvert",
    "jetson": "nvv4l2decoder ! nvvidconv",
    "nvidia": "nvh264dec ! videoconvert",
}
DEC_SINK = "video/x-raw,format=I420 ! appsink name=sink sync=false max-buffers=4 drop=false emit-signals=false"
APPSRC_1080P30 = ('appsrc name=src format=time is-live=true do-timestamp=false block=false '
                  'caps="video/x-raw,format=I420,width=1920,height=1080,framerate=30/1"')
DISPLAYS_1080P30 = {
    "cpu": f"{APPSRC_1080P30} ! videoconvert ! autovideosink sync=false",
    "jetson": f"{APPSRC_1080P30} ! nvvidconv ! video/x-raw(memory:NVMM) ! nveglglessink sync=false",
    "nvidia": f"{APPSRC_1080P30} ! videoconvert ! autovideosink sync=false",
}


@pytest.mark.parametrize("profile", sorted(DECODERS))
def test_decoder_pipeline_of_each_profile(profile):
    got = pipelines.decoder_pipeline(profile)
    assert got == f"filesrc name=file ! qtdemux name=demux demux.video_0 ! h264parse ! {DECODERS[profile]} ! {DEC_SINK}"
    for element in get_profile(profile).needed("decoder"):  # the profile probes exactly what the string uses
        assert element in got
    assert pipelines.decoder_pipeline(profile, location="/srv/or 3/case.mp4").startswith('filesrc name=file location="/srv/or 3/case.mp4" ! ')


@pytest.mark.parametrize("profile", sorted(DISPLAYS_1080P30))
def test_display_pipeline_of_each_profile(profile):
    got = pipelines.display_pipeline(profile, width=1920, height=1080, fps=Fraction(30))
    assert got == DISPLAYS_1080P30[profile]
    for element in get_profile(profile).needed("display"):
        assert element in got


def test_display_pipeline_with_a_sink_of_your_own():
    kw = dict(width=1920, height=1080, fps=Fraction(30))
    assert pipelines.display_pipeline("cpu", sink="kmssink", **kw).endswith("! videoconvert ! kmssink sync=false")
    assert pipelines.display_pipeline("jetson", sink="kmssink", **kw).endswith("! videoconvert ! kmssink sync=false")
    assert pipelines.display_pipeline("cpu", sink="fakesink sync=true", **kw).endswith("! fakesink sync=true")
    assert "nvvidconv ! video/x-raw(memory:NVMM) ! nv3dsink" in pipelines.display_pipeline("jetson", sink="nv3dsink", **kw)


def test_docs_show_the_decoder_and_display_strings():
    text = " ".join(DOCS.read_text().split())
    for profile in DECODERS:
        assert pipelines.decoder_pipeline(profile) in text
        assert DISPLAYS_1080P30[profile] in text
