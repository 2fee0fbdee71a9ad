"""The encrypted raw copy of a source hidden live (``keep_raw = "<purpose>"``, issue 15 item 3).

With live hiding on, a source's raw frames are never encoded into the recording. A source table
may ask for one exception: ``keep_raw = "complication review"`` (the purpose, free text kept in
the sidecar) keeps the raw frames of that source as a file of its own, ``<video>.raw-<source>.mp4``
(H.264 in fragmented MP4, the source's own size and rate), written only to an encrypted
destination: a :class:`~surgbox.recording.store_sink.StoreSink` (object kind ``raw``) or a
catalog event (:class:`~surgbox.catalog.recording_sink.EventSink`: file kind ``raw``, which only
roles with the ``view_raw`` permission may read, export or play; ``docs/security.md``). A
plain-file output refuses it (:class:`~surgbox.errors.ConfigError`): plaintext raw video must not
rest on disk.

:class:`RawCopy` is the writer: the live source calls :meth:`RawCopy.write` with each raw frame
(its capture thread) before hiding anything, and the recorder calls :meth:`RawCopy.close` while
it finishes (before the destination closes). Its timestamps are the frames' capture times from
the first one, so the copy runs in step with the recording.
"""

from __future__ import annotations

import logging
import threading
from typing import IO, Any

import attrs

from ..clock import NS_PER_S
from ..errors import ConfigError, SurgboxError
from ..mux import EncodedOutput, Mp4Muxer

log = logging.getLogger(__name__)

RAW_ENCODER = "libx264"
RAW_OPTIONS = {"preset": "ultrafast", "crf": 20}  # one 640x360 stream: a few ms a frame


def check_purpose(value: Any, where: str) -> str | None:
    """``keep_raw``'s value: a non-empty purpose (``None``/``False``: no raw copy)."""
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ConfigError(f"{where}.keep_raw must be the purpose of the encrypted raw copy (text up to 200 "
                          f"characters, e.g. keep_raw = \"complication review\"), got {value!r}")
    return value.strip()


def raw_name(video: str, source: str) -> str:
    """The raw copy's name beside the recording's video (``segment-0001.mp4.raw-room.mp4``)."""
    return f"{video}.raw-{source}.mp4"


@attrs.define(eq=False)
class RawCopy:
    """Encodes one source's raw frames into ``target`` (a writable binary file object of an
    encrypted destination); ``encoder``: an opened-by-us :class:`~surgbox.interfaces.Encoder`
    (default ``libx264`` ultrafast). Thread-safe: :meth:`write` (capture thread) and
    :meth:`close` (recorder thread); frames after :meth:`close` or after an error are counted in
    ``dropped`` and never stored anywhere else."""

    target: IO[bytes]
    name: str
    encoder: Any
    frames: int = 0
    dropped: int = 0
    error: str | None = None
    _out: EncodedOutput | None = attrs.field(default=None, init=False, alias="_out")
    _t0: int | None = attrs.field(default=None, init=False, alias="_t0")
    _last: int = attrs.field(default=0, init=False, alias="_last")  # ns after the first frame
    _closed: bool = attrs.field(default=False, init=False, alias="_closed")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, alias="_lock")

    def write(self, image: Any, capture_ns: int, fps: float) -> None:
        """Encode one raw frame (``av.VideoFrame``) captured at ``capture_ns``."""
        with self._lock:
            if self._closed or self.error is not None:
                self.dropped += 1
                return
            try:
                if self._out is None:
                    self.encoder.open_codecs(width=image.width, height=image.height, fps=fps, label=self.name)
                    self._out = EncodedOutput(self.encoder, Mp4Muxer(self.target))
                    self._out.open()
                    self._t0 = capture_ns
                assert self._t0 is not None
                t = capture_ns - self._t0
                if self.frames and t <= self._last:
                    t = self._last + 1  # the encoder needs rising times
                self._last = t
                self._out.write_video(image, t)
                self.frames += 1
            except Exception as exc:  # the copy stops; the recording goes on (the sidecar says so)
                self.error = f"{type(exc).__name__}: {exc}"
                self.dropped += 1
                log.error("raw copy %s failed: %s; its later frames are dropped", self.name, self.error)

    def close(self) -> None:
        """Finish the file (flush the codec, close the target); safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            out, self._out = self._out, None
        try:
            if out is not None:
                out.close()
        except SurgboxError as exc:
            self.error = self.error or str(exc)
            log.error("raw copy %s could not be finished: %s", self.name, exc)
        finally:
            try:
                self.encoder.close()
            except Exception:  # pragma: no cover - best effort
                pass
            if not getattr(self.target, "closed", False):
                self.target.close()

    def stats(self) -> dict[str, Any]:
        return {"file": self.name, "frames": self.frames, "dropped": self.dropped, "error": self.error,
                "duration_s": None if not self.frames else round(self._last / NS_PER_S, 3)}
