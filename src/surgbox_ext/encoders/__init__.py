"""Encoder plugins on PyAV (FFmpeg): ``libx264`` (CPU) and ``h264_nvenc`` (NVIDIA, with a real
probe), muxed as crash-safe fragmented MP4 with AAC audio."""

from .nvenc import NvencEncoder, nvenc_check
from .pyav import PyAVEncoder, X264Encoder

__all__ = ["NvencEncoder", "PyAVEncoder", "X264Encoder", "nvenc_check"]
