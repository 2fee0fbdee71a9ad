"""A source that wraps another and hands on processed items: the base of the live privacy wrappers.

:class:`WrappedSource` starts and stops the wrapped source ``inner`` itself (nobody else sees
its raw items), takes its name, forwards what the recorder reads of it (``fps``, ``width``,
``height``, ``sample_rate``, ``channels``) and runs :meth:`_take` on its own capture thread
(:class:`~surgbox.capture.ThreadedSource`). A subclass sets ``needs`` (the media it wraps),
``what`` (for messages) and implements :meth:`_item` and :meth:`_flush_end`.
"""

from __future__ import annotations

from fractions import Fraction
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..capture import ThreadedSource
from ..errors import ConfigError, SourceError
from ..interfaces import Source

FALLBACK_FPS = 30


@attrs.define(eq=False)
class WrappedSource(ThreadedSource):
    """Items of ``inner``, processed by the subclass (see the module docstring)."""

    needs: ClassVar[str] = "video"
    what: ClassVar[str] = "processed"

    inner: Source = attrs.field(kw_only=True)
    name: str = attrs.field(default="", kw_only=True)

    def __attrs_post_init__(self) -> None:
        media = getattr(self.inner, "media", None)
        if media != self.needs:
            raise ConfigError(f"source {getattr(self.inner, 'name', '?')!r}: {self.what} needs a {self.needs} source, not {media}")
        if not self.name:
            self.name = self.inner.name
        super().__attrs_post_init__()

    @property
    def media(self) -> str:  # type: ignore[override]
        return self.needs

    def _inner_attr(self, name: str) -> Any:
        return getattr(self.inner, name, None)

    fps = property(lambda self: self._inner_attr("fps"))
    width = property(lambda self: self._inner_attr("width"))
    height = property(lambda self: self._inner_attr("height"))
    sample_rate = property(lambda self: self._inner_attr("sample_rate"))
    channels = property(lambda self: self._inner_attr("channels"))

    def fps_or_default(self) -> float:
        """``inner``'s frame rate as a float, :data:`FALLBACK_FPS` when it does not say."""
        f = self.fps
        ok = isinstance(f, (int, float, Fraction)) and not isinstance(f, bool) and f > 0
        return float(f) if ok else float(FALLBACK_FPS)

    def describe(self) -> str:
        inner = getattr(self.inner, "describe", None)
        return (str(inner()) if callable(inner) else f"source {self.name!r}") + f" ({self.what})"

    # -- ThreadedSource ---------------------------------------------------------------------------
    def _open(self) -> None:
        assert self.clock is not None
        self.start_inner()

    def start_inner(self) -> None:
        """Start ``inner``, its queue first raised (never lowered) to this wrapper's: the recorder
        sizes only the queue it sees, and a busy wrapper thread must not make ``inner`` drop."""
        size = getattr(self.inner, "queue_size", None)
        if isinstance(size, int) and not isinstance(size, bool) and size < self.queue_size:
            self.inner.queue_size = self.queue_size  # type: ignore[attr-defined]
        assert self.clock is not None
        self.inner.start(self.clock)

    def inner_sidecar_info(self) -> dict[str, Any]:
        """``inner``'s own sidecar fields (a wrapper around a wrapper keeps both; ``{}``: none)."""
        info = getattr(self.inner, "sidecar_info", None)
        return dict(info()) if callable(info) else {}

    def attach_sink(self, sink: Any) -> None:
        """The recorder's destination, handed on to ``inner`` (a live source that writes files of its own)."""
        attach = getattr(self.inner, "attach_sink", None)
        if callable(attach):
            attach(sink)

    def finish_outputs(self) -> None:
        """Finish ``inner``'s own files (the recorder calls it before its destination closes)."""
        finish = getattr(self.inner, "finish_outputs", None)
        if callable(finish):
            finish()

    def stats(self) -> Mapping[str, Any]:
        """ThreadedSource's counters, with the wrapped source's under ``inner``."""
        base = dict(super().stats())
        try:
            base["inner"] = dict(self.inner.stats())
        except Exception:  # a plugin's broken stats() must not break ours
            base["inner"] = None
        return base

    def _close(self) -> None:
        self.inner.stop()

    def _capture(self) -> Any:
        item = self.inner.get(0.02)
        if item is not None:
            self._item(item)
        elif self.inner.error is not None:
            raise SourceError(f"{self.describe()}: {self.inner.error}")
        elif getattr(self.inner, "ended", False):
            if self._flush_end():
                raise StopIteration
            self.wait(0.005)  # the wrapped source's get() no longer waits
            return None
        self._tick()
        return None

    def _tick(self) -> None:
        """Called after each wait for an item (at least every 20 ms): time-outs go here."""

    def _item(self, item: Any) -> None:
        """Process one item of ``inner`` (capture thread); :meth:`put` what goes on."""
        raise NotImplementedError

    def _flush_end(self) -> bool:
        """``inner`` has ended: flush; True when done (False: call again shortly)."""
        return True
