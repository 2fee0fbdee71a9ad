"""Out-of-body detection for the endoscope view: is the laparoscope filming the room instead of the patient?

When the surgeon pulls the laparoscope out (to clean the lens, to change ports), it films the
room, the team and the patient's face: a known privacy gap of surgical video (CAMMA's OoBNet).
:class:`OutOfBodyClassifier` is a documented colour statistic, no model: inside the body the
picture is lit tissue — red, pink, dark red, some yellow fat, grey metal instruments, white
specular highlights, a dark border around the scope's circular field — and almost never a
saturated cool colour; a room has walls, scrubs, drapes, screens (blue, green, cyan, neutral
greys) and skin that is paler than tissue.

On the frame's YUV 4:2:0 planes, sampled on a grid of about ``grid`` points (no conversion, no
copy of the picture), with ``u = Cb - 128``, ``v = Cr - 128`` and ``sat = hypot(u, v)``, among
the *lit* points (luma >= ``dark``):

* ``tissue``: fraction that is warm, saturated and deep: ``u <= 0``, ``v >= min_v``,
  ``sat >= min_sat`` and ``v >= redness * luma`` (red, pink, dark red: blood-filled tissue under
  the scope's light is far more saturated for its brightness than skin under room light, whose
  ``v / luma`` is about 0.2 against 0.4-0.6 for tissue);
* ``cool``: fraction with a saturated cool colour, ``(u > cool_u or v < -cool_v)`` and
  ``sat >= cool_sat`` (blue, green, cyan);

A frame is **in the body** when ``tissue >= min_tissue`` and ``cool <= max_cool``, or when it is
dark (fewer than ``min_lit`` of the points are lit: nothing identifiable is shown). Everything
else is **out of the body** and hidden: the rule errs on the side of hiding (a pale, bloodless
view inside the body is hidden too, which loses surgical video, never privacy).
:class:`OutOfBodyGate` adds the temporal rule: a frame is hidden when it, or any frame within
``carry`` frames before or after it, is out of the body (the scope passes the trocar in a few
frames; a face caught in the transition stays hidden).

    >>> clf = OutOfBodyClassifier()
    >>> clf.features(planes)          # doctest: +SKIP
    {'tissue': 0.93, 'cool': 0.0, 'lit': 0.71}
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from ..errors import ConfigError
from .anonymize import frame_planes
from .hide import hide_regions, region_views
from .regions import layout_from_metadata, layout_from_sidecar, slot_rects


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"out-of-body {attribute.name} must be a fraction in [0, 1], got {value!r}")


@attrs.frozen
class OutOfBodyClassifier:
    """The colour rule of the module docstring; every threshold is an option (chroma in
    ``Cb/Cr - 128`` units, luma 0-255, fractions of the sampled points)."""

    dark: int = 30
    min_lit: float = attrs.field(default=0.05, validator=_fraction)
    min_v: float = 8.0
    min_sat: float = 22.0
    redness: float = 0.3
    cool_u: float = 6.0
    cool_v: float = 6.0
    cool_sat: float = 14.0
    min_tissue: float = attrs.field(default=0.4, validator=_fraction)
    max_cool: float = attrs.field(default=0.04, validator=_fraction)
    grid: int = 4096  # points sampled per picture (64 x 64 for a square one)

    def features(self, planes: Sequence[np.ndarray]) -> dict[str, float]:
        """``{"tissue", "cool", "lit"}`` of one picture given as ``[Y, U, V]`` planes (4:2:0; a
        region's views from :func:`~surgbox.deid.hide.region_views` work too)."""
        y, u, v = planes[0], planes[1], planes[2]
        ch, cw = u.shape
        step = max(1, int(np.sqrt(ch * cw / self.grid)))
        us = u[::step, ::step].astype(np.int16) - 128
        vs = v[::step, ::step].astype(np.int16) - 128
        ys = y[: 2 * us.shape[0] * step: 2 * step, : 2 * us.shape[1] * step: 2 * step]
        h, w = min(ys.shape[0], us.shape[0]), min(ys.shape[1], us.shape[1])
        ys, us, vs = ys[:h, :w], us[:h, :w], vs[:h, :w]
        lit = ys >= self.dark
        n = int(lit.sum())
        if n == 0:
            return {"tissue": 0.0, "cool": 0.0, "lit": 0.0}
        sat = np.hypot(us, vs)
        tissue = lit & (vs >= self.min_v) & (us <= 0) & (sat >= self.min_sat) & (vs >= self.redness * ys)
        cool = lit & ((us > self.cool_u) | (vs < -self.cool_v)) & (sat >= self.cool_sat)
        return {"tissue": round(float(tissue.sum()) / n, 4), "cool": round(float(cool.sum()) / n, 4),
                "lit": round(n / lit.size, 4)}

    def out_of_body(self, planes: Sequence[np.ndarray]) -> bool:
        """True when the picture is not an in-body view (see the module docstring)."""
        return self.decide(self.features(planes))

    def decide(self, f: dict[str, float]) -> bool:
        """The verdict for :meth:`features` ``f``: True when out of the body."""
        if f["lit"] < self.min_lit:
            return False  # dark: nothing identifiable
        return not (f["tissue"] >= self.min_tissue and f["cool"] <= self.max_cool)

    def settings(self) -> dict[str, Any]:
        return {"classifier": "colour-statistics", **attrs.asdict(self)}


@attrs.define(eq=False)
class OutOfBodyGate:
    """Frames in, frames out ``carry`` frames later with their verdict: :meth:`push` a frame's
    ``out_of_body`` flag (and any payload), get back ``(payload, hide)`` for the frame
    ``carry`` behind it, where ``hide`` is True when it or any frame within ``carry`` before or
    after it was out of the body; :meth:`flush` the rest at the end."""

    carry: int = 5
    _flags: collections.deque = attrs.field(factory=collections.deque, alias="_flags")  # (payload, flag)
    _recent: collections.deque = attrs.field(factory=collections.deque, alias="_recent")  # flags of released frames

    def __attrs_post_init__(self) -> None:
        if isinstance(self.carry, bool) or not isinstance(self.carry, int) or not 0 <= self.carry <= 120:
            raise ConfigError(f"out-of-body carry must be an integer in [0, 120] frames, got {self.carry!r}")

    def push(self, flag: bool, payload: Any = None) -> list[tuple[Any, bool]]:
        self._flags.append((payload, bool(flag)))
        out = []
        while len(self._flags) > self.carry:
            out.append(self._release())
        return out

    def flush(self) -> list[tuple[Any, bool]]:
        return [self._release() for _ in range(len(self._flags))]

    def _release(self) -> tuple[Any, bool]:
        payload, flag = self._flags.popleft()
        ahead = any(f for _, f in list(self._flags)[: self.carry])
        hide = flag or ahead or any(self._recent)
        self._recent.append(flag)
        while len(self._recent) > self.carry:
            self._recent.popleft()
        return payload, hide


ENDOSCOPE_ROLE = "endoscope"  # the layout role of the slot checked (surgbox.layouts)


@attrs.define(eq=False)
class OutOfBodyCheck:
    """The out-of-body step of ``surgbox deid`` (``out_of_body=True`` with ``region="auto"``):
    each frame's endoscope ``rects`` are classified, and ``carry`` frames later (the gate) a frame
    whose verdict is *hide* has those rects hidden whole by ``anonymizer`` and
    ``item.out_of_body`` set (the audit sidecar records it per frame). Items are the pipeline's
    :class:`~surgbox.deid.handoff.Item`; :meth:`push` returns those now final, :meth:`flush` the rest."""

    rects: list[Any]
    anonymizer: Any
    classifier: OutOfBodyClassifier = attrs.field(factory=OutOfBodyClassifier)
    gate: OutOfBodyGate = attrs.field(factory=OutOfBodyGate)

    def push(self, item: Any) -> list[Any]:
        planes = frame_planes(item.frame, writable=False)
        flag = any(self.classifier.out_of_body(region_views(planes, r)) for r in self.rects)
        return [self._finish(it, hide) for it, hide in self.gate.push(flag, item)]

    def flush(self) -> list[Any]:
        return [self._finish(it, hide) for it, hide in self.gate.flush()]

    def _finish(self, item: Any, hide: bool) -> Any:
        if hide:
            hide_regions(self.anonymizer, item.frame, self.rects, [], whole=True)
            item.out_of_body = True
        return item


def out_of_body_check(options: Any, width: int, height: int, metadata: Any, path: Any, stats: Any) -> OutOfBodyCheck | None:
    """The :class:`OutOfBodyCheck` of a run with ``options.out_of_body``: the endoscope slots of
    the recording's layout (``region="auto"`` only; else, or without a layout or an endoscope
    slot, ``None`` with a warning in the report)."""
    if not options.out_of_body:
        return None
    if options.region.kind != "auto":
        stats.warn("out_of_body needs region='auto' (the layout's endoscope slot): not checked")
        return None
    layout = layout_from_metadata(metadata or {}) or (layout_from_sidecar(path) if path is not None else None)
    rects = [] if layout is None else slot_rects(layout, ENDOSCOPE_ROLE, width, height)
    if not rects:
        stats.warn("out_of_body: the input has no surgbox layout with an endoscope slot: not checked")
        return None
    return OutOfBodyCheck(rects, options.make_anonymizer())
