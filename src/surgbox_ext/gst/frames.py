"""Pictures across the GStreamer boundary: ``yuv420p`` ``av.VideoFrame`` <-> I420 ``Gst.Buffer``.

GStreamer lays I420 out as three planes in one buffer with its own strides and offsets
(``GstVideo.VideoInfo``, or a ``GstVideoMeta`` on the buffer); PyAV's planes are separate with
their own line sizes. When they agree (1920x1080 and every width that is a multiple of 8 with
PyAV's default alignment) each plane is copied once; otherwise the rows are repacked with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import runtime


def _plane(buf: np.ndarray, offset: int, stride: int, width: int, height: int) -> np.ndarray:
    return buf[offset : offset + stride * height].reshape(height, stride)[:, :width]


def _plane_sizes(width: int, height: int) -> list[tuple[int, int]]:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    return [(width, height), (cw, ch), (cw, ch)]


def _av_planes(frame: Any) -> list[np.ndarray]:
    out = []
    for p in frame.planes:
        arr = np.frombuffer(p, np.uint8)
        out.append(arr[: p.line_size * p.height].reshape(p.height, p.line_size)[:, : p.width])
    return out


def i420_info(width: int, height: int) -> Any:
    """``GstVideo.VideoInfo`` of ``width``x``height`` I420 (GStreamer's default strides)."""
    GstVideo = runtime.video()
    info = GstVideo.VideoInfo()
    info.set_format(GstVideo.VideoFormat.I420, width, height)
    return info


def to_buffer(frame: Any, info: Any) -> Any:
    """A new ``Gst.Buffer`` holding the ``yuv420p`` ``frame`` laid out as ``info`` (I420, same size)."""
    Gst = runtime.load()
    strides, offsets = list(info.stride)[:3], list(info.offset)[:3]
    planes = frame.planes
    if all(p.line_size == s for p, s in zip(planes, strides)) and all(
            offsets[i] + strides[i] * planes[i].height <= (offsets[i + 1] if i < 2 else info.size) for i in range(3)):
        buf = Gst.Buffer.new_allocate(None, info.size, None)
        for p, off in zip(planes, offsets):
            buf.fill(off, bytes(p))
        return buf
    out = np.zeros(info.size, np.uint8)
    for src, off, stride, (w, h) in zip(_av_planes(frame), offsets, strides, _plane_sizes(frame.width, frame.height)):
        _plane(out, off, stride, w, h)[:] = src[:h, :w]
    return Gst.Buffer.new_wrapped(out.tobytes())


def from_sample(sample: Any) -> Any:
    """The ``yuv420p`` ``av.VideoFrame`` of an appsink ``Gst.Sample`` whose caps are I420."""
    import av

    GstVideo = runtime.video()
    buf = sample.get_buffer()
    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    meta = GstVideo.buffer_get_video_meta(buf)
    strides = list(meta.stride)[:3] if meta is not None else list(info.stride)[:3]
    offsets = list(meta.offset)[:3] if meta is not None else list(info.offset)[:3]
    w, h = info.width, info.height
    data = np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8)
    sizes = _plane_sizes(w, h)
    if w % 2 == 0 and h % 2 == 0 and strides == [w, w // 2, w // 2] and offsets == [0, w * h, w * h + w * h // 4]:
        return av.VideoFrame.from_ndarray(data[: w * h * 3 // 2].reshape(h * 3 // 2, w), format="yuv420p")
    frame = av.VideoFrame(w, h, "yuv420p")
    for dst, off, stride, (pw, ph) in zip(_av_planes(frame), offsets, strides, sizes):
        dst[:ph, :pw] = _plane(data, off, stride, pw, ph)
    return frame
