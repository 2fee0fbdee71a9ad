"""``url``: IP cameras and network streams (RTSP, HTTP, UDP, TCP...) with reconnect.

The first connection is made at ``start`` (failure raises :class:`~surgbox.errors.SourceError`).
Afterwards a stall longer than ``read_timeout_s``, a network error or the end of the stream
closes the input and reconnects, waiting ``backoff_initial_s``, then twice as long after each
failed attempt up to ``backoff_max_s``; the wait restarts from ``backoff_initial_s`` once a
frame arrives. While disconnected no frames are produced (the recorder shows a slate). After
``max_retries`` failed attempts in a row (default: never give up) the source stops with
``error`` set.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import attrs

from surgbox.errors import SourceError

from ._avinput import AVInputSource
from ._common import positive, reconnect

log = logging.getLogger(__name__)

_CREDENTIALS = re.compile(r"(?<=://)[^/@]*@")


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for messages and logs)."""
    return _CREDENTIALS.sub("***@", url)


@attrs.define(eq=False)
class UrlSource(AVInputSource):
    """A network video stream.

    Options: ``url`` (``rtsp://cam/stream``, ``http://host/x.ts``, ``udp://127.0.0.1:5000``...;
    credentials in the URL are redacted in messages), ``input_format`` (force a demuxer, e.g.
    ``"mpegts"``), ``backoff_initial_s`` (0.5), ``backoff_max_s`` (10), ``max_retries`` (None =
    forever), plus ``options`` (FFmpeg demuxer/protocol options; RTSP defaults to
    ``rtsp_transport=tcp``), ``open_timeout_s``, ``read_timeout_s``, ``queue_size``.
    ``capture_ns`` is the clock time at which the frame was decoded.
    """

    media: ClassVar[str] = "video"
    kind_label: ClassVar[str] = "stream"

    url: str = attrs.field(kw_only=True, converter=str)
    force_format: str | None = attrs.field(default=None, kw_only=True, alias="input_format")
    backoff_initial_s: float = attrs.field(default=0.5, kw_only=True, converter=float, validator=positive)
    backoff_max_s: float = attrs.field(default=10.0, kw_only=True, converter=float, validator=positive)
    max_retries: int | None = attrs.field(default=None, kw_only=True)

    _reconnects: int = attrs.field(init=False, default=0, alias="_reconnects")
    _attempts: int = attrs.field(init=False, default=0, alias="_attempts")
    _last_error: str | None = attrs.field(init=False, default=None, alias="_last_error")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if "://" not in self.url:
            raise ValueError(f"url source {self.name!r}: url {self.url!r} is not a URL like rtsp://host/stream or udp://0.0.0.0:5000")

    @property
    def input_format(self) -> str | None:  # type: ignore[override]
        return self.force_format

    @property
    def target(self) -> str:
        return self.url

    def describe(self) -> str:
        return f"source {self.name!r} ({redact(self.url)})"

    def scrub(self, text: str) -> str:
        return redact(text)

    def demuxer_options(self) -> dict[str, str]:
        defaults = {"rtsp_transport": "tcp"} if self.url.lower().startswith(("rtsp://", "rtsps://")) else {}
        return {**defaults, **self.options}

    def explain(self, exc: BaseException) -> str:
        return (f"{exc}; check that the camera is on and reachable, the URL and credentials, and the firewall "
                f"(waited {self.open_timeout_s:g} s; raise open_timeout_s for slow cameras)")

    def wrap(self, frame: Any) -> Any:
        self._attempts = 0  # a frame arrived: the next failure starts the backoff afresh
        return super().wrap(frame)

    def on_failure(self, exc: BaseException) -> None:
        self._last_error = redact(str(exc))
        log.info("%s lost (%s); reconnecting", self.describe(), exc)
        self.close_input()
        reconnect(self, self.open_input, log)
        return None

    def stats(self) -> dict[str, Any]:
        s = super().stats()
        s.update(target=redact(self.url), reconnects=self._reconnects, failed_attempts=self._attempts, last_error=self._last_error)
        return s
