"""The master clock: one monotonic nanosecond time base for every capture timestamp.

All frames, audio chunks, readings and triggers carry ``capture_ns`` on this clock. Output
timestamps are derived from it (never from counting frames), so long recordings do not drift.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import attrs


@attrs.define(eq=False)
class Clock:
    """Monotonic clock in integer nanoseconds, anchored to wall-clock time once at creation.

    ``now_ns()`` reads ``time.monotonic_ns()``: it never jumps when the system time is set.
    ``wall_time(ns)`` converts a clock reading to an aware UTC datetime using the anchor taken
    at construction (for metadata and reports only; never for ordering).
    """

    origin_ns: int = attrs.field(factory=time.monotonic_ns)
    origin_wall: datetime = attrs.field(factory=lambda: datetime.now(timezone.utc))

    def now_ns(self) -> int:
        """Current monotonic time in ns (same base as ``time.monotonic_ns``)."""
        return time.monotonic_ns()

    def elapsed_ns(self, ns: int | None = None) -> int:
        """Nanoseconds from the clock's origin to ``ns`` (default: now)."""
        return (self.now_ns() if ns is None else ns) - self.origin_ns

    def wall_time(self, ns: int) -> datetime:
        """UTC wall-clock time of a monotonic reading ``ns``."""
        return self.origin_wall + timedelta(microseconds=(ns - self.origin_ns) / 1000)

    def sleep_until(self, ns: int) -> None:
        """Sleep until the clock reads at least ``ns`` (returns at once if already past)."""
        delay = (ns - self.now_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)


NS_PER_S = 1_000_000_000
