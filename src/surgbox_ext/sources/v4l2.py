"""``v4l2``: capture cards and USB cameras on Linux through FFmpeg's video4linux2 input.

Opened as ``av.open(device, format="v4l2", options={"video_size": ..., "framerate": ...,
"input_format": ...})``. Frames are handed on in the device's pixel format (``yuyv422``,
``nv12``, or decoded ``mjpeg`` -> ``yuvj422p``...); the compositor converts with swscale.
"""

from __future__ import annotations

import errno
import os
from typing import Any, ClassVar

import attrs

from ._avinput import AVInputSource


def _size(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        value = f"{int(value[0])}x{int(value[1])}"
    text = str(value).lower()
    w, sep, h = text.partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ValueError(f"v4l2 video_size {value!r} is not WIDTHxHEIGHT (e.g. 1920x1080)")
    return text


@attrs.define(eq=False)
class V4L2Source(AVInputSource):
    """A V4L2 video device.

    Options: ``device`` (default ``/dev/video0``), ``video_size`` (``"1920x1080"`` or
    ``(w, h)``), ``framerate`` (``30``, ``"30000/1001"``), ``input_format`` (the device's pixel
    or compressed format: ``"mjpeg"``, ``"yuyv422"``, ``"h264"``...), plus
    :class:`~surgbox_ext.sources._avinput.AVInputSource`'s ``options``, ``open_timeout_s``,
    ``read_timeout_s``, ``queue_size``. Unset options keep the device's current mode.
    ``capture_ns`` is the clock time at which the frame was decoded.
    """

    media: ClassVar[str] = "video"
    path_options: ClassVar[tuple[str, ...]] = ("device",)
    input_format: ClassVar[str | None] = "v4l2"
    kind_label: ClassVar[str] = "video device"

    device: str = attrs.field(default="/dev/video0", kw_only=True, converter=str)
    video_size: str | None = attrs.field(default=None, kw_only=True, converter=_size)
    framerate: str | None = attrs.field(default=None, kw_only=True, converter=attrs.converters.optional(str))
    pixel_format: str | None = attrs.field(default=None, kw_only=True, alias="input_format")

    @property
    def target(self) -> str:
        return self.device

    def demuxer_options(self) -> dict[str, str]:
        opts = {"video_size": self.video_size, "framerate": self.framerate, "input_format": self.pixel_format}
        return {**{k: v for k, v in opts.items() if v is not None}, **self.options}

    def _open(self) -> None:
        from surgbox.errors import SourceError

        if not os.path.exists(self.device):
            raise SourceError(
                f"{self.describe()}: {self.device} does not exist; connect the capture card or camera, "
                f"list devices with `v4l2-ctl --list-devices` and set device= to one of them"
            )
        super()._open()

    def explain(self, exc: BaseException) -> str:
        code = getattr(exc, "errno", None)
        if code in (errno.EACCES, errno.EPERM):
            return f"{exc}; permission denied: add the user to the 'video' group (or fix the device's permissions)"
        if code == errno.EBUSY:
            return f"{exc}; the device is in use by another program: close it"
        wanted = ", ".join(f"{k}={v}" for k, v in self.demuxer_options().items()) or "the device defaults"
        return (f"{exc}; is {self.device} a V4L2 capture device, and does it support {wanted}? "
                f"List its modes with `v4l2-ctl -d {self.device} --list-formats-ext`")
