"""ThreadedSource: bounded drop-oldest queue, error capture, stop."""

from __future__ import annotations

import threading

import attrs
import pytest

from surgbox import Clock
from surgbox.capture import ThreadedSource
from surgbox.errors import SourceError
from surgbox.types import Trigger


@attrs.define(eq=False)
class Counter(ThreadedSource):
    media = "trigger"
    limit: int = 100
    fail_at: int | None = None
    n: int = 0
    done: threading.Event = attrs.field(factory=threading.Event)

    def _capture(self):
        if self.n == self.fail_at:
            raise OSError("cable pulled")
        if self.n >= self.limit:
            self.done.set()
            self.wait(0.01)
            return None
        self.n += 1
        return Trigger(self.name, self.clock.now_ns(), detail={"n": self.n})


def test_queue_is_bounded_and_drops_oldest():
    src = Counter("t", queue_size=10, limit=100)
    src.start(Clock())
    assert src.done.wait(5)
    stats = src.stats()
    assert stats["captured"] == 100 and stats["dropped"] == 90 and stats["queued"] == 10
    first = src.get()
    assert first.detail["n"] == 91  # the oldest 90 were dropped, capture never waited
    src.stop()
    assert not src.running


def test_error_in_capture_is_reported_not_raised():
    src = Counter("t", fail_at=3)
    src.start(Clock())
    items = [src.get(timeout=2) for _ in range(3)]
    assert [i.detail["n"] for i in items] == [1, 2, 3]
    assert src.get(timeout=2) is None  # woken by the dead thread, not by a timeout
    assert isinstance(src.error, OSError) and "cable pulled" in str(src.error)
    src.stop()


def test_double_start_and_bad_queue_size():
    src = Counter("t")
    src.start(Clock())
    with pytest.raises(SourceError, match="already started"):
        src.start(Clock())
    src.stop()
    with pytest.raises(ValueError, match="queue_size must be >= 1"):
        Counter("t", queue_size=0)
