"""The live detector's cadence: how often it can run, picked from how long it takes.

:class:`Cadence` is fed the wall time of each detector call (on its worker thread, so a CPU
shared with the encoder and the other sources shows up as a slower call) and picks ``every``:
the detector runs on every ``every``-th frame, within ``[fastest, slowest]`` (the ``[deid]``
table's ``every`` and ``max_every``). The rule, with ``t`` the 75th percentile of the last
:data:`WINDOW` calls and ``fps`` the source's rate:

* the detector may be busy at most :data:`LOAD` of the time, so its queue stays empty and a
  detection comes back about ``t`` after its frame: ``every = ceil(t * fps / LOAD)``;
* a slower call raises ``every`` at once; ``every`` comes down only once the slowest of the last
  :data:`WINDOW` calls (all of them since the last change) allows the lower value, so a detector
  that is slow now and then does not make the cadence swing;
* ``every`` never goes past ``slowest``: a detector too slow even for that falls behind, its
  detections come back later than ``latency_s`` and the live source fails closed (the slot is
  hidden whole) as it always does.

The frames in between are covered by the temporal stage (tracks linked across the detected
frames, interpolated and carried; :class:`~surgbox.deid.temporal.TemporalFilter`, built for the
slowest cadence so it bridges the longest gap the cadence can make).

    >>> c = Cadence(fastest=3, slowest=6, fps=30)
    >>> c.observe(0.1)        # 0.1 s a call = 3 frames of 30 fps; at 70 % load: every 5th frame
    5
"""

from __future__ import annotations

import collections
import math

import attrs

LOAD = 0.7  # the share of wall time the detector may be busy (its queue stays short)
WINDOW = 8  # calls the estimate looks at
HISTORY = 100  # cadence changes kept for the stats (bounded)


@attrs.define(eq=False)
class Cadence:
    """Every how many frames the live detector runs (see the module docstring).

    ``fastest`` / ``slowest``: the bounds (frames, ``1 <= fastest <= slowest``); ``fps``: the
    source's frame rate; ``every``: the current cadence (starts at ``fastest``)."""

    fastest: int
    slowest: int
    fps: float
    every: int = attrs.field(init=False)
    changes: list[tuple[int, int]] = attrs.field(factory=list, init=False)  # (calls seen, new every)
    _recent: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=WINDOW), init=False, alias="_recent")
    _since: int = attrs.field(default=0, init=False, alias="_since")  # calls since the last change
    _calls: int = attrs.field(default=0, init=False, alias="_calls")

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.fastest <= self.slowest:
            raise ValueError(f"cadence bounds must satisfy 1 <= fastest <= slowest, got {self.fastest}, {self.slowest}")
        self.every = self.fastest

    def need(self, seconds: float) -> int:
        """The cadence a detector taking ``seconds`` a call sustains at :data:`LOAD` (unclamped)."""
        return max(1, math.ceil(seconds * self.fps / LOAD - 1e-9))

    def _clamp(self, n: int) -> int:
        return min(self.slowest, max(self.fastest, n))

    def observe(self, seconds: float) -> int:
        """Note one call's wall time; returns the (possibly changed) cadence."""
        self._recent.append(float(seconds))
        self._calls += 1
        self._since += 1
        ordered = sorted(self._recent)
        p75 = ordered[min(len(ordered) - 1, math.ceil(0.75 * len(ordered)) - 1)]
        up = self._clamp(self.need(p75))
        new = self.every
        if up > self.every:
            new = up
        elif self._since >= WINDOW:
            down = self._clamp(self.need(ordered[-1]))
            if down < self.every:
                new = down
        if new != self.every:
            self.every = new
            self._since = 0
            self.changes.append((self._calls, new))
            del self.changes[:-HISTORY]
        return self.every

    @property
    def behind(self) -> bool:
        """Whether even the slowest cadence is not enough for the recent calls."""
        return bool(self._recent) and self.every == self.slowest and self.need(sorted(self._recent)[len(self._recent) // 2]) > self.slowest

    def stats(self) -> dict:
        ordered = sorted(self._recent)
        return {"every": self.every, "fastest": self.fastest, "slowest": self.slowest, "calls": self._calls,
                "call_ms_median": round(1000 * ordered[len(ordered) // 2], 1) if ordered else None,
                "behind": self.behind, "changes": len(self.changes), "history": [list(c) for c in self.changes[-10:]]}
