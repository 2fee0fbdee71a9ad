"""Choosing the de-identification decoder: NVDEC through PyAV where an NVIDIA GPU is, GStreamer
where asked (or on a Jetson), software otherwise -- and one line saying which and why, in the
CLI output, the report and the audit sidecar. The fallback from NVDEC to software runs for real
here: there is no GPU, so FFmpeg's CUDA device really fails to start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import av.codec.hwaccel
import numpy as np
import pytest

from surgbox import nvidia
from surgbox.deid import DeidOptions, deidentify, read_audit
from surgbox.deid.decoders import DECODERS, DecoderChoice, choose, confirm, open_container
from surgbox.errors import ConfigError
from surgbox.interfaces import Detector
from surgbox.types import Detections

NO_GPU = nvidia.GpuInfo(reason="no NVIDIA driver: libcuda.so.1 ... is not installed")
L4 = nvidia.GpuInfo(("NVIDIA L4",))
HAS_CUDA_HWACCEL = "cuda" in av.codec.hwaccel.hwdevices_available()


class NoFaces(Detector):
    name = "no-faces"

    def detect(self, images):
        return [Detections(np.zeros((0, 4)), []) for _ in images]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dec") / "clip.mp4"
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for k in range(20):
            f = av.VideoFrame.from_ndarray(np.full((96, 160, 3), 10 * k, np.uint8), format="rgb24")
            f.pts = k
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return out


def test_without_a_gpu_auto_and_pyav_decode_in_software_saying_why():
    for spec in ("auto", "pyav"):
        c = choose(spec, path="x.mp4", gpu=NO_GPU, jetson=False)
        assert (c.backend, c.mode, c.reason) == ("pyav", "software", NO_GPU.reason)
    forced = choose("pyav:nvdec", path="x.mp4", gpu=NO_GPU, jetson=False)
    assert forced.label == "pyav software" and forced.reason.startswith("NVDEC asked for but unavailable: no NVIDIA driver")
    assert choose("pyav:software", path="x.mp4", gpu=L4).line() == "decoder: pyav software (asked for with --decoder pyav:software)"


@pytest.mark.skipif(not HAS_CUDA_HWACCEL, reason="this PyAV's FFmpeg has no CUDA hwaccel")
def test_with_an_nvidia_gpu_auto_picks_nvdec():
    c = choose("auto", path="x.mp4", gpu=L4, jetson=False)
    assert (c.label, c.reason) == ("pyav nvdec", "NVDEC on NVIDIA L4") and c.uses_nvdec()
    assert choose("pyav", path=None, gpu=L4, jetson=True).uses_nvdec()  # a file object: PyAV reads it, on NVDEC


def test_a_forced_gstreamer_decoder_that_cannot_run_is_one_clear_error():
    with pytest.raises(ConfigError, match="reads files by path"):
        choose("gstreamer", path=None)
    from surgbox.deid.decoders import gst_check

    if gst_check("jetson") is not None:
        with pytest.raises(ConfigError, match=r"--decoder gstreamer:jetson cannot run here: .*nvv4l2decoder"):
            choose("gstreamer:jetson", path="x.mp4")
    with pytest.raises(ConfigError, match="decoder must be one of auto, pyav, "):
        DeidOptions(decoder="nvdec")
    assert set(DECODERS) >= {"auto", "pyav", "gstreamer"}


def test_gstreamer_decoding_is_a_plugin_and_without_it_the_choice_says_so(monkeypatch, hermetic_plugins):
    """``--decoder gstreamer`` builds the ``decoder`` plugin ``gstreamer`` (surgbox_ext's by
    default); where no package registers it, ``auto`` decodes with PyAV and a forced GStreamer
    decoder is one line naming the missing plugin."""
    import surgbox.plugins

    from surgbox.deid.decoders import gst_check

    assert surgbox.plugins.get_plugins().entry("decoder", "gstreamer").package == "surgbox"
    monkeypatch.setattr(surgbox.plugins, "_default", hermetic_plugins)
    assert "no decoder plugin 'gstreamer' is installed" in gst_check("cpu")
    with pytest.raises(ConfigError, match=r"--decoder gstreamer:cpu cannot run here: no decoder plugin 'gstreamer'"):
        choose("gstreamer:cpu", path="x.mp4")
    assert choose("auto", path="x.mp4", gpu=nvidia.GpuInfo((), reason="no GPU"), jetson=True).label == "pyav software"


def test_nvdec_that_does_not_start_falls_back_to_software_for_real(clip):
    if nvidia.probe().present:
        pytest.skip("an NVIDIA GPU is here: NVDEC starts, there is nothing to fall back from")
    container, choice = open_container(str(clip), DecoderChoice("pyav", "nvdec", "NVDEC on NVIDIA L4"))
    with container:
        assert sum(1 for _ in container.decode(video=0)) == 20
    assert choice.label == "pyav software"
    assert choice.reason.startswith("NVDEC did not start (") and choice.reason.endswith("; decoded in software")
    with open(clip, "rb") as f:  # a file object is rewound before the software open
        container, choice = open_container(f, DecoderChoice("pyav", "nvdec", "x"))
        with container:
            assert sum(1 for _ in container.decode(video=0)) == 20 and not choice.uses_nvdec()


def test_a_stream_nvdec_declines_is_reported_as_software_decoded():
    nv = DecoderChoice("pyav", "nvdec", "NVDEC on NVIDIA L4")
    soft = confirm(nv, av.VideoFrame(16, 16, "yuv420p"))
    assert soft.label == "pyav software" and "NVDEC declined this stream" in soft.reason
    assert confirm(nv, av.VideoFrame(16, 16, "nv12")) is nv


def test_the_decoder_line_is_in_the_report_the_audit_and_the_cli(tmp_path, clip, default_plugins):
    audit = tmp_path / "a.jsonl"
    result = deidentify(clip, tmp_path / "o.mp4", region="full", detector=NoFaces(), audit=audit, plugins=default_plugins)
    expected = choose("auto", path=str(clip))
    assert result.report["decoder"] == expected.to_dict() == read_audit(audit)[0]["decoder"]
    if not nvidia.probe().present:
        assert result.report["decoder"]["label"] == "pyav software" and result.report["decoder"]["reason"] == nvidia.probe().reason
    exe = Path(sys.executable).with_name("surgbox")
    out = subprocess.run([str(exe), "deid", str(clip), str(tmp_path / "c.mp4"), "--region", "0,0,8,8",
                          "--decoder", "pyav", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    line = choose("pyav", path=str(clip)).line()
    assert line in out.stderr.splitlines() and json.loads(out.stdout)[0]["decoder"]["label"] in line
    quiet = subprocess.run([str(exe), "deid", str(clip), str(tmp_path / "q.mp4"), "--region", "0,0,8,8", "--quiet"],
                           capture_output=True, text=True)
    assert quiet.returncode == 0 and "decoder:" not in quiet.stderr  # --quiet: only in the report and the sidecar
