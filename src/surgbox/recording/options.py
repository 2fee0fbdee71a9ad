"""The recorder's options as one frozen, validated value: :class:`RecorderOptions`.

>>> RecorderOptions(fps=25, duration=60).end_tick
1500
>>> RecorderOptions(duration=float("nan"))
Traceback (most recent call last):
...
surgbox.errors.ConfigError: duration must be a finite number of seconds > 0 (or unset: until stopped), got nan

Options say how a recording runs; they never change while it runs (the running state lives in
the recorder's pipeline). Every error is a :class:`~surgbox.errors.ConfigError` naming the
option and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import ConfigError
from ..types import parse_rate

MAX_FPS = 240
FALLBACK_ITEM_RATE = 64  # items/s assumed for a source that does not say its rate


def _rate(value: Any) -> Fraction:
    try:
        fps = parse_rate(value, "fps")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if fps > MAX_FPS:
        raise ConfigError(f"fps {fps} is out of range; use 1..{MAX_FPS} (default 30)")
    return fps


# The longest a timing option (a timeout, a latency, a budget) may be: beyond it nanosecond and
# queue-size arithmetic overflows (1e308 s), and a day is already far past any sensible setting.
MAX_TIMING_S = 86_400.0


def _seconds(what: str, *, allow_zero: bool = False, hint: str = "", most: float | None = MAX_TIMING_S) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and attribute.default is None:
            return
        ok = isinstance(value, (int, float, Fraction)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (value == 0 and not allow_zero) or (most is not None and value > most):
            bound = ">= 0" if allow_zero else "> 0"
            top = "" if most is None else f" and at most {most:g}"
            raise ConfigError(f"{what} must be a finite number of seconds {bound}{top}{hint}, got {value!r}")

    return check


def _frozen_mapping(value: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _frozenset(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in (value or ()))


@attrs.frozen
class RecorderOptions:
    """How a recording runs. Every field is optional:

    ``fps`` output rate (exact, 1..240; 29.97 is 2997/100); ``duration`` seconds after which
    the recording ends by itself (exactly ``ceil(duration * fps)`` frames, at least one;
    ``None``: until stopped); ``stale_timeout_s`` after which a silent source shows NO SIGNAL;
    ``event`` fields for the panel and metadata (``id``/``place``/``procedure`` ...);
    ``event_id`` (default ``event['id']`` or a new id); ``optional`` source names that may fail
    at start (slate instead of an error); ``audio`` the audio source to record (default the
    first); ``latency_s`` how long after a tick its frames are collected; ``audio_lag_s`` how far
    audio writing trails the clock (late chunks land in place); ``data_timeout_s`` after which a
    reading leaves the panel; ``max_behind_s`` how far the pipeline may fall behind the clock (a
    CPU hiccup: it catches up, every tick written) before it skips ticks to stay live;
    ``stall_budget_s`` how long the disk (the writer thread) may stall, or the pipeline be held
    up, without losing anything: the writer's packet queue and every source's queue are sized to
    hold that long; ``sync_interval_s`` the longest time between two syncs of the destination
    (it is also synced after each finished fragment); ``sidecar``/``snapshots`` paths (default
    beside a path output; a sink names its own); ``source_info`` extra per-source fields for the
    sidecar; ``overwrite`` replace an existing output file (default: refuse).
    """

    fps: Fraction = attrs.field(default=Fraction(30), converter=_rate)
    duration: float | None = attrs.field(default=None, validator=_seconds("duration", hint=" (or unset: until stopped)", most=None))
    stale_timeout_s: float = attrs.field(default=1.0, validator=_seconds("stale_timeout_s"))
    event: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    event_id: str | None = None
    optional: frozenset[str] = attrs.field(factory=frozenset, converter=_frozenset)
    audio: str | None = None
    latency_s: float = attrs.field(default=0.25, validator=_seconds("latency_s", allow_zero=True))
    audio_lag_s: float = attrs.field(default=0.05, validator=_seconds("audio_lag_s", allow_zero=True))
    data_timeout_s: float = attrs.field(default=10.0, validator=_seconds("data_timeout_s"))
    max_behind_s: float = attrs.field(default=3.0, validator=_seconds("max_behind_s"))
    stall_budget_s: float = attrs.field(default=1.0, validator=_seconds("stall_budget_s"))
    sync_interval_s: float = attrs.field(default=1.0, validator=_seconds("sync_interval_s"))
    sidecar: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    snapshots: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    source_info: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_frozen_mapping)
    overwrite: bool = attrs.field(default=False, converter=bool)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(a.name for a in attrs.fields(cls))

    @property
    def period_ns(self) -> Fraction:
        return Fraction(1_000_000_000) / self.fps

    @property
    def end_tick(self) -> int:
        """Ticks in the recording (``ceil(duration * fps)``, at least 1), 0 without a duration."""
        if self.duration is None:
            return 0
        exact = Fraction(self.duration).limit_denominator(1_000_000) * self.fps
        return max(1, -(-exact // 1))

    def queue_items(self, rate: Any = None) -> int:
        """Items a queue fed at ``rate`` items/s needs to ride out ``stall_budget_s`` plus the
        pipeline's ``latency_s`` (:data:`FALLBACK_ITEM_RATE` when the rate is unknown)."""
        r = float(rate) if isinstance(rate, (int, float, Fraction)) and not isinstance(rate, bool) and rate > 0 else FALLBACK_ITEM_RATE
        return math.ceil((self.stall_budget_s + self.latency_s) * r) + 8

    @property
    def writer_queue_items(self) -> int:
        """Capacity of the writer thread's queue: a packet batch per tick plus readings, for
        ``stall_budget_s``."""
        return math.ceil(self.stall_budget_s * (float(self.fps) + FALLBACK_ITEM_RATE)) + 16

    def check_against(self, sources: Sequence[Any], layout: Any) -> None:
        """Raise :class:`ConfigError` unless the sources have unique names, every video slot of
        ``layout`` shows one of them, and ``optional`` / ``audio`` name declared sources."""
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"source name(s) {', '.join(sorted(dup))} used twice; give every source its own name")
        for slot in layout.slots:
            if slot.kind == "video" and (slot.source or slot.name) not in names:
                raise ConfigError(f"layout {layout.name!r} slot {slot.name!r} shows source {slot.source or slot.name!r}, "
                                  f"but no source has that name; sources: {', '.join(names) or '(none)'}")
        unknown = sorted(self.optional - set(names))
        if unknown:
            raise ConfigError(f"optional source(s) {', '.join(unknown)} are not declared; sources: {', '.join(names)}")
        audio = [s.name for s in sources if s.media == "audio"]
        if self.audio is not None and self.audio not in audio:
            raise ConfigError(f"audio source {self.audio!r} is not an audio source; audio sources: {', '.join(audio) or '(none)'}")
