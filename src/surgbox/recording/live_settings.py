"""How a source is hidden live: :class:`LiveDeidSettings`, from a recording's ``[deid]`` table.

The detector, its options, the masks and the anonymizer come from :mod:`surgbox.deid.defaults`
(as for ``surgbox deid``); the live values are below. :func:`light_members` is the lighter
detector of ``light = true``. Used by :class:`~surgbox.recording.live_deid.LiveDeidSource`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from ..deid import defaults
from ..deid.detect import detector_label
from ..deid.options import DeidOptions
from ..deid.temporal import TemporalFilter
from ..deid.voice import DEFAULT_SEMITONES, check_semitones
from ..errors import ConfigError
from .live_cadence import Cadence

# Live values (the detector, its options, masks and anonymizer come from surgbox.deid.defaults).
LIVE_EVERY = 3  # detect on every 3rd frame at the fastest: 10 detections/s for a 30 fps room camera
LIVE_MAX_EVERY = 6  # the slowest cadence the detector may fall back to: 5 detections/s at 30 fps
LIVE_MAX_GAP = 10  # frames bridged between two detections (surgbox deid: 20; live, a longer gap is more delay: lookahead / fps)
LIVE_EDGE_CARRY = 10  # frames a face leaving through the picture's edge stays hidden
LATENCY_S = 0.25  # a detection later than this after its frame's capture: fail closed
SLOT_HIDE = ("blur", "fill")

# ``surgbox deid`` option names a [deid] table may use for live hiding (the others, region,
# encoder, queue sizes, are about files); plus the live-only names below.
DEID_NAMES = ("detector", "detector_options", "threshold", "detector_threads", "detect_scale", "every", "carry", "max_gap",
              "confirm_hits", "expand", "feather", "anonymizer", "anonymizer_options")
LIVE_NAMES = ("latency_s", "slot", "edge_carry", "max_every", "light", "semitones")


def _latency(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 5:
        raise ConfigError(f"deid latency_s must be seconds in (0, 5] (how late a detection may be before the slot is "
                          f"hidden whole; default {LATENCY_S}), got {value!r}")


@attrs.frozen
class LiveDeidSettings:
    """How a source is hidden live: ``deid`` (the :class:`~surgbox.deid.options.DeidOptions`
    of ``surgbox deid``: detector, threshold, every, carry, max_gap, expand, feather, anonymizer
    ...; live defaults ``every`` :data:`LIVE_EVERY`, ``max_gap`` :data:`LIVE_MAX_GAP`),
    ``latency_s`` (a detection later than this after its frame's capture fails closed),
    ``slot`` (how a slot failing closed is hidden: ``blur`` or ``fill``) and ``edge_carry``
    (frames a face leaving through the picture's edge stays hidden); ``max_every``: the
    slowest cadence (the detector runs on every N-th frame, N from ``deid.every`` up to this,
    picked from its measured speed; equal to ``every``: a fixed cadence; ``None``: the larger
    of :data:`LIVE_MAX_EVERY` and ``every``); ``semitones``: the shift
    of audio sources with ``voice = "disguise"`` (:mod:`surgbox.recording.live_voice`)."""

    deid: DeidOptions = attrs.field(factory=lambda: DeidOptions(every=LIVE_EVERY, max_gap=LIVE_MAX_GAP))
    latency_s: float = attrs.field(default=LATENCY_S, validator=_latency)
    slot: str = attrs.field(default="blur")
    edge_carry: int = attrs.field(default=LIVE_EDGE_CARRY)
    max_every: int | None = attrs.field(default=None)
    semitones: float = attrs.field(default=DEFAULT_SEMITONES, converter=check_semitones)  # voice = "disguise" sources

    def __attrs_post_init__(self) -> None:
        if self.max_every is None:
            object.__setattr__(self, "max_every", max(LIVE_MAX_EVERY, self.deid.every))
        m = self.max_every
        if isinstance(m, bool) or not isinstance(m, int) or not self.deid.every <= m <= 30:
            raise ConfigError(f"deid max_every must be an integer from every ({self.deid.every}) to 30 (the slowest "
                              f"detector cadence, frames), got {m!r}")

    @slot.validator
    def _check_slot(self, attribute: attrs.Attribute, value: Any) -> None:
        if value not in SLOT_HIDE:
            raise ConfigError(f"deid slot must be one of {', '.join(SLOT_HIDE)} (how a slot failing closed is hidden), got {value!r}")

    @edge_carry.validator
    def _check_edge(self, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120:
            raise ConfigError(f"deid edge_carry must be an integer in [0, 120] (frames), got {value!r}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None, *, where: str = "deid") -> LiveDeidSettings:
        """From a ``[deid]`` table: :data:`DEID_NAMES` (``surgbox deid``'s option names) and
        :data:`LIVE_NAMES`; an unknown name is a :class:`ConfigError` listing the valid ones."""
        m = dict(m or {})
        known = DEID_NAMES + LIVE_NAMES
        unknown = sorted(set(m) - set(known))
        if unknown:
            raise ConfigError(f"unknown key(s) {where}.{f', {where}.'.join(unknown)}; live de-identification takes: {', '.join(known)}")
        live = {k: m.pop(k) for k in LIVE_NAMES if k in m}
        light = live.pop("light", False)
        if not isinstance(light, bool):
            raise ConfigError(f"{where}.light must be true or false (the default ensemble without its native-size "
                              f"member, for a slow machine), got {light!r}")
        if light:
            if m.get("detector", "ensemble") != "ensemble" or "detector_options" in m:
                raise ConfigError(f"{where}.light = true picks the detector itself (the default ensemble's lighter "
                                  f"members); drop {where}.detector / {where}.detector_options, or light")
            m["detector"], m["detector_options"] = "ensemble", {"members": light_members()}
        m.setdefault("every", LIVE_EVERY)
        m.setdefault("max_gap", max(LIVE_MAX_GAP, 2 * m["every"] - 1) if isinstance(m["every"], int) else LIVE_MAX_GAP)
        try:
            deid = DeidOptions(**m)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(deid, **live)

    def temporal(self, width: int, height: int) -> TemporalFilter:
        """A fresh temporal stage for a ``width x height`` picture (its edges are the scan region's)."""
        d = self.deid
        return TemporalFilter(carry=d.carry, max_gap=d.max_gap, every=self.slowest, bounds=((0, 0, width, height),),
                              edge_carry=self.edge_carry, confirm_hits=d.confirm_hits)

    @property
    def slowest(self) -> int:
        """The slowest cadence (``max_every``, resolved)."""
        assert self.max_every is not None
        return self.max_every

    def cadence(self, fps: float) -> Cadence:
        """A fresh cadence controller for a source of ``fps`` frames per second."""
        return Cadence(self.deid.every, self.slowest, fps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings for the sidecar (the detector's own settings are added when it is built)."""
        d = self.deid
        detector = d.detector if isinstance(d.detector, str) else detector_label(d.detector)
        anonymizer = d.anonymizer if isinstance(d.anonymizer, str) else getattr(d.anonymizer, "name", "anonymizer")
        return {"detector": detector, "detector_options": dict(d.detector_factory_options()), "detect_scale": d.detect_scale,
                "every": d.every, "max_every": self.slowest, "carry": d.carry, "max_gap": d.max_gap,
                "confirm_hits": d.confirm_hits, "edge_carry": self.edge_carry, "expand": d.expand, "feather": d.feather,
                "anonymizer": anonymizer, "latency_s": self.latency_s, "slot": self.slot}


def light_members() -> list[dict[str, Any]]:
    """The members of ``[deid] light = true``: the default ensemble's members
    (:mod:`surgbox.deid.defaults`) without the native-size pass (the smallest ``min_face``; it
    costs about 2.5x the other members together, docs/deid.md "Live"), the first remaining
    member on every detection, the others on alternate ones."""
    members = [dict(m) for m in defaults.detector_options("ensemble").get("members") or []]
    if len(members) < 2:
        return members
    smallest = min(m.get("min_face", 0) for m in members)
    rest = [m for m in members if m.get("min_face", 0) != smallest] or members
    for i, m in enumerate(rest):
        m["every"], m["phase"] = (1, 0) if i == 0 else (2, i % 2)
    return rest
