"""The NVENC probe: ``h264_nvenc`` is available only where a tiny encoder really opens and
encodes; otherwise ``surgbox plugins`` says why in words (no driver, a GPU without NVENC) and
carries FFmpeg's own error. Runs the real probe on this machine (no NVIDIA GPU here: unavailable)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from surgbox import nvidia
from surgbox_ext.encoders import nvenc


def test_the_probe_really_opens_an_encoder_and_the_check_explains_its_failure():
    failure = nvenc.open_probe()
    info = nvidia.probe()
    reason = nvenc.nvenc_check()
    if failure is None:  # a GPU with NVENC: available
        assert reason is None and info.present
        return
    assert reason is not None and f"(FFmpeg: {failure})" in reason and "libx264" in reason
    if not info.present:
        assert reason.startswith("no NVIDIA driver") or "no usable GPU" in reason or "reports no GPU" in reason


def test_a_codec_that_does_not_exist_is_reported_as_missing_from_the_ffmpeg_build():
    failure = nvenc.open_probe("h264_no_such_encoder")
    assert failure == "this FFmpeg build has no h264_no_such_encoder encoder"
    assert "install a PyAV/FFmpeg built with NVENC" in nvenc.explain(failure, nvidia.GpuInfo(("NVIDIA L4",)))


def test_gpus_without_an_encoder_are_named():
    why = nvenc.explain("PermissionError: x", nvidia.GpuInfo(("NVIDIA H200",)))
    assert why.startswith("the GPU (NVIDIA H200) has no NVENC video encoder") and "(FFmpeg: PermissionError: x)" in why
    assert "has no NVENC" in nvenc.explain("E", nvidia.GpuInfo(("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB")))
    mixed = nvenc.explain("E", nvidia.GpuInfo(("NVIDIA H100 PCIe", "NVIDIA L40S")))
    assert "did not open on 2 GPUs: NVIDIA H100 PCIe, NVIDIA L40S" in mixed  # the L40S has NVENC: the error decides
    # look-alike names keep their encoder: A10 is not an A100, RTX A3000 is not an A30
    assert nvidia.GpuInfo(("NVIDIA A10", "NVIDIA RTX A3000 Laptop GPU", "NVIDIA GeForce RTX 4090")).without_nvenc() == ()


def test_the_driver_probe_names_what_is_missing(tmp_path):
    assert nvidia.probe("libcuda-does-not-exist.so").reason.startswith("no NVIDIA driver: libcuda-does-not-exist.so")
    assert "is not the CUDA driver library" in nvidia.probe("libc.so.6").reason
    info = nvidia.probe()
    assert info.present or info.reason


def test_surgbox_plugins_shows_the_reason():
    exe = Path(sys.executable).with_name("surgbox")
    rows = json.loads(subprocess.run([str(exe), "plugins", "--json", "--kind", "encoder"], capture_output=True, text=True,
                                     check=True).stdout)
    row = next(r for r in rows if r["name"] == "h264_nvenc")
    assert row["reason"] == nvenc.nvenc_check() and row["available"] is (row["reason"] is None)
