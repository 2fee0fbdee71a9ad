"""Encoder plugins on PyAV (FFmpeg): ``libx264`` (CPU) and ``h264_nvenc`` (NVIDIA), muxed as
crash-safe fragmented MP4 with AAC audio."""

from .pyav import NvencEncoder, PyAVEncoder, X264Encoder, nvenc_check

__all__ = ["NvencEncoder", "PyAVEncoder", "X264Encoder", "nvenc_check"]
