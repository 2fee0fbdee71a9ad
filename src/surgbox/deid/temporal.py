"""Temporal stage: turn per-frame detections into per-frame regions to hide, without flicker.

Frames are pushed in order with their detections (``None`` for a frame the detector skipped,
see ``every``). Detections are linked into tracks (greedy IoU / centre-distance matching
against each track's motion-predicted box). A frame is *finalized* once ``lookahead`` later
frames are known; its regions are then, per track:

* ``detected``: the track's own detection in this frame;
* ``interpolated``: linear interpolation between the track's detections before and after,
  when at most ``max_gap`` frames lie between them (a detector miss or a skipped frame);
* ``carried``: at the start or end of a track, for up to ``carry`` frames, the nearest
  detection, grown to also cover where the face moves at the track's velocity. A track that
  starts or ends at the edge of a scan region (``bounds``) is a face entering or leaving the
  picture, which detectors stop finding once it is cut in half: it is carried for up to
  ``edge_carry`` frames along its motion, but clamped to the region so that at least
  ``edge_band`` of the box (along the axis it leaves by) stays inside — a cut face's box
  shrinks as it goes, so its measured motion runs ahead of the face, which may also slow
  down or turn back at the edge.

So one missed detection never exposes a face, and a face is hidden from ``carry`` frames
before it is first detected. Nothing is carried across a scene cut (``push(..., cut=True)``).
Memory is bounded: only ``lookahead`` frames of state are kept.

Hysteresis (``confirm_score``; ByteTrack's idea, applied before anything is shown): a detector
can then run at a low threshold. A detection scoring at least ``confirm_score`` starts a
*confirmed* track; a lower one extends a track it links to (high-score detections are linked
first) or starts a *tentative* track, which is confirmed by a confident detection or by
``confirm_hits`` detections in all. Only confirmed tracks are hidden — but wholly, from their
first (low-score) detection on, since a frame is final only ``lookahead`` frames later. So a
true face that scores low in most frames is hidden throughout, while a false positive that
flickers at a low score is not. ``confirm_score=None`` confirms every track at once.

    >>> tf = TemporalFilter(carry=2, max_gap=4)
    >>> out = tf.push(0, Detections([[10, 10, 50, 50]], [0.9]))     # [] until lookahead frames follow
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator

import attrs
import numpy as np

from ..metrics import iou_matrix as iou  # the project's one IoU (re-exported here for callers of temporal.iou)
from ..types import Detections
from . import defaults

VELOCITY_SPAN = 8  # frames of track history used to estimate a face's motion


@attrs.frozen
class Region:
    """One box to hide in one frame: ``box`` ``(x1, y1, x2, y2)`` frame pixels, the score of
    the detection it came from, its ``track`` id and ``kind`` (detected/interpolated/carried)."""

    box: tuple[float, float, float, float]
    score: float
    track: int
    kind: str

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "track": self.track, "kind": self.kind}


@attrs.define(eq=False)
class _Track:
    id: int
    obs: collections.OrderedDict = attrs.field(factory=collections.OrderedDict)  # index -> (box, score)
    shot_start: float = float("-inf")  # first frame of the track's shot (after the last cut)
    shot_end: float = float("inf")  # first frame of the next shot (a cut ends every track)
    confirmed: bool = True  # shown (see the module doc: hysteresis)
    hits: int = 0  # detections linked so far

    @property
    def last(self) -> int:
        return next(reversed(self.obs))

    def velocity(self, at: int, forward: bool, span: int = VELOCITY_SPAN) -> np.ndarray:
        """Per-frame box motion at observation ``at``, measured against the farthest observation
        within ``span`` frames before it (``forward``) or after it (a longer baseline than one
        frame, so detector jitter is not mistaken for motion)."""
        if forward:
            other = [i for i in self.obs if at - span <= i < at]
            j = other[0] if other else None
        else:
            other = [i for i in self.obs if at < i <= at + span]
            j = other[-1] if other else None
        if j is None:
            return np.zeros(4)
        a, b = (j, at) if forward else (at, j)
        v = (self.obs[b][0] - self.obs[a][0]) / (b - a)
        box = self.obs[at][0]
        limit = 0.25 * max(box[2] - box[0], box[3] - box[1])  # ignore absurd jumps (bad links)
        return np.clip(v, -limit, limit)

    def largest(self, at: int, forward: bool, span: int = VELOCITY_SPAN) -> np.ndarray:
        """``(width, height)``: the largest of the boxes observed within ``span`` frames before
        observation ``at`` (``forward``) or after it, ``at`` included (a face cut by an edge is
        boxed ever smaller while it is not)."""
        near = [i for i in self.obs if (at - span <= i <= at if forward else at <= i <= at + span)]
        sizes = np.array([self.obs[i][0][2:] - self.obs[i][0][:2] for i in near])
        return sizes.max(axis=0)

    def predict(self, index: int) -> np.ndarray:
        last = self.last
        return self.obs[last][0] + self.velocity(last, True) * (index - last)


def _keep_inside(box: np.ndarray, bounds, share: float) -> np.ndarray:
    """``box`` shifted (not resized) so that at least ``share`` of its width and of its height
    lies inside ``bounds`` ``(x1, y1, x2, y2)``."""
    out = np.array(box, np.float64)
    for lo, hi in ((0, 2), (1, 3)):
        band = share * (out[hi] - out[lo])
        if out[hi] < bounds[lo] + band:
            out[[lo, hi]] += bounds[lo] + band - out[hi]
        elif out[lo] > bounds[hi] - band:
            out[[lo, hi]] -= out[lo] - (bounds[hi] - band)
    return out


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])


@attrs.define(eq=False)
class TemporalFilter:
    """Carry, link and interpolate detections over time (see the module docstring).

    ``carry``: frames before a track's first / after its last detection that stay hidden;
    ``max_gap``: the longest run of frames without a detection that a track bridges (both
    default to :data:`surgbox.deid.defaults.CARRY` and :data:`~surgbox.deid.defaults.MAX_GAP`);
    ``every``: the detector runs on every Nth frame only (``carry`` and ``max_gap`` are raised
    to cover the skipped frames); ``link_iou``: minimum IoU to continue a track (a detection
    whose centre lies within half a face of the prediction also continues it); ``bounds``:
    the scan regions ``(x1, y1, x2, y2)`` in frame pixels and ``edge_carry`` the carry of
    tracks that leave through their edges (see ``_leaving``); ``track_ids``: where track ids
    come from (default 0, 1, 2, ...; filters that share one iterator never reuse an id);
    ``confirm_score`` / ``confirm_hits``: hysteresis (module doc; ``None``: every track is shown);
    ``edge_band``: share of a leaving face's box kept inside the region while it is carried
    (0: the box follows its motion out of the region and the carry ends when it is out).
    """

    carry: int = attrs.field(default=defaults.CARRY, validator=attrs.validators.ge(0))
    max_gap: int = attrs.field(default=defaults.MAX_GAP, validator=attrs.validators.ge(0))
    every: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    link_iou: float = attrs.field(default=0.1)
    bounds: tuple[tuple[float, float, float, float], ...] = attrs.field(
        default=(), converter=lambda v: tuple(tuple(float(c) for c in b) for b in v))
    edge_carry: int = attrs.field(default=defaults.EDGE_CARRY, validator=attrs.validators.ge(0))
    confirm_score: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))
    confirm_hits: int = attrs.field(default=defaults.CONFIRM_HITS, validator=attrs.validators.ge(1))
    edge_band: float = attrs.field(default=defaults.EDGE_BAND, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    _tracks: dict[int, _Track] = attrs.field(factory=dict, init=False, alias="_tracks")
    _ids: Iterator[int] = attrs.field(factory=itertools.count, alias="track_ids", kw_only=True, repr=False)
    _next_in: int | None = attrs.field(default=None, init=False, alias="_next_in")
    _next_out: int | None = attrs.field(default=None, init=False, alias="_next_out")
    _first_in: int = attrs.field(default=0, init=False, alias="_first_in")
    _shot_start: float = attrs.field(default=float("-inf"), init=False, alias="_shot_start")

    @property
    def carry_frames(self) -> int:
        return max(self.carry, self.every - 1)

    @property
    def gap_frames(self) -> int:
        return max(self.max_gap, 2 * self.every - 1)

    @property
    def edge_frames(self) -> int:
        return max(self.edge_carry, self.carry_frames) if self.bounds else self.carry_frames

    @property
    def lookahead(self) -> int:
        """Frames that must follow a frame before it is final (the pipeline holds this many)."""
        return max(self.edge_frames, self.gap_frames + 1) + VELOCITY_SPAN  # + span: backward motion estimate

    def _leaving(self, box: np.ndarray, motion: np.ndarray) -> tuple[float, float, float, float] | None:
        """The scan region that ``box`` is leaving: it touches one of the region's edges (within
        ``max(4 px, 15 % of the face)``: a face cut by the edge is boxed a few pixels inside it)
        and its centre moves (``motion``, per frame) towards that edge."""
        margin = max(4.0, 0.15 * max(box[2] - box[0], box[3] - box[1]))
        vx, vy = (motion[0] + motion[2]) / 2, (motion[1] + motion[3]) / 2
        for b in self.bounds:
            if not (box[0] < b[2] and box[2] > b[0] and box[1] < b[3] and box[3] > b[1]):
                continue
            if (box[0] - b[0] <= margin and vx < 0) or (b[2] - box[2] <= margin and vx > 0) or (
                box[1] - b[1] <= margin and vy < 0
            ) or (b[3] - box[3] <= margin and vy > 0):
                return b
        return None

    def _carry_limit(self, box: np.ndarray, motion: np.ndarray, moved: np.ndarray, frames: int) -> bool:
        """Whether a box carried ``frames`` frames (moving by ``motion`` per frame, to ``moved``)
        still hides something: within ``carry``, or within ``edge_carry`` while leaving a region."""
        if frames <= self.carry_frames:
            return True
        if frames > self.edge_frames:
            return False
        b = self._leaving(box, motion)
        if b is not None and self.edge_band > 0:
            return True  # held at the edge (see _carried)
        return b is not None and moved[0] < b[2] and moved[2] > b[0] and moved[1] < b[3] and moved[3] > b[1]

    def _carried(self, box: np.ndarray, motion: np.ndarray, moved: np.ndarray, frames: int,
                 largest: np.ndarray | None = None) -> tuple[float, ...]:
        """The box hidden ``frames`` frames away from a detection: within ``carry`` both where
        the face was and where its motion takes it; beyond (a face leaving through an edge) the
        moved box grown by ``carry`` frames of motion, so the mask follows it out — with
        ``edge_band``, at least the ``largest`` recent ``(width, height)`` of the track and held
        at the edge (see the module doc)."""
        if frames <= self.carry_frames:
            return tuple(_union(box, moved))
        slack = np.abs(motion) * self.carry_frames
        out = moved + np.array([-slack[0], -slack[1], slack[2], slack[3]])
        b = self._leaving(box, motion)
        if b is not None and self.edge_band > 0:
            if largest is not None:
                c, half = (out[:2] + out[2:]) / 2, np.maximum(out[2:] - out[:2], largest) / 2
                out = np.concatenate([c - half, c + half])
            out = _keep_inside(out, b, self.edge_band)
        return tuple(out)

    def push(self, index: int, detections: Detections | None, cut: bool = False) -> list[tuple[int, list[Region]]]:
        """Add frame ``index`` (consecutive from the first) with its detections in frame pixels
        (``None``: not run through the detector); returns the frames now final, in order.

        ``cut``: frame ``index`` starts a new shot (a scene cut): no track is linked, carried
        or interpolated across it, since the faces before it are not where they were.
        """
        if self._next_in is None:
            self._next_in = self._next_out = self._first_in = index
        if index != self._next_in:
            raise ValueError(f"temporal stage: frame {index} pushed, expected {self._next_in} (frames must be consecutive)")
        self._next_in = index + 1
        if cut:
            self._shot_start = index
            for t in self._tracks.values():
                t.shot_end = min(t.shot_end, index)
        if detections is not None and len(detections):
            self._link(index, detections)
        out = []
        while self._next_out + self.lookahead < self._next_in:
            out.append(self._finalize(self._next_out))
        return out

    def flush(self) -> list[tuple[int, list[Region]]]:
        """Finalize every remaining frame (end of input). An input shorter than ``confirm_hits``
        frames (a still picture, a short clip) cannot confirm a track by hits: a tentative
        track detected in as many frames as the input has is confirmed here (fail closed)."""
        if self._next_in is not None:
            length = self._next_in - self._first_in
            for t in self._tracks.values():
                if not t.confirmed and t.hits >= min(self.confirm_hits, length):
                    t.confirmed = True
        out = []
        while self._next_out is not None and self._next_out < self._next_in:
            out.append(self._finalize(self._next_out))
        return out

    def _confident(self, score: float) -> bool:
        return self.confirm_score is None or score >= self.confirm_score

    def _observe(self, t: _Track, index: int, box: np.ndarray, score: float) -> None:
        t.obs[index] = (box, score)
        t.hits += 1
        if not t.confirmed and (self._confident(score) or t.hits >= self.confirm_hits):
            t.confirmed = True

    def _link(self, index: int, dets: Detections) -> None:
        boxes = np.asarray(dets.boxes, np.float64)
        scores = np.asarray(dets.scores, np.float64)
        live = [t for t in self._tracks.values()
                if index - t.last <= self.gap_frames + 1 and t.last < index and index < t.shot_end]
        taken_t: set[int] = set()
        taken_d: set[int] = set()
        if live:
            preds = np.array([t.predict(index) for t in live])
            ov = iou(preds, boxes)
            pc = (preds[:, :2] + preds[:, 2:]) / 2
            dc = (boxes[:, :2] + boxes[:, 2:]) / 2
            size = np.maximum(preds[:, 2] - preds[:, 0], preds[:, 3] - preds[:, 1])[:, None]
            near = np.hypot(*(pc[:, None, :] - dc[None, :, :]).transpose(2, 0, 1)) <= 0.5 * size
            ok = (ov >= self.link_iou) | near
            # confident detections first, then the rest (ByteTrack's two rounds), each by overlap
            pairs = sorted(zip(*np.nonzero(ok)), key=lambda p: (not self._confident(scores[p[1]]), -ov[p[0], p[1]]))
            for ti, di in pairs:
                if ti in taken_t or di in taken_d:
                    continue
                taken_t.add(ti)
                taken_d.add(di)
                self._observe(live[ti], index, boxes[di], float(scores[di]))
        for di in range(len(boxes)):
            if di not in taken_d:
                t = _Track(next(self._ids), shot_start=self._shot_start, confirmed=False)
                self._observe(t, index, boxes[di], float(scores[di]))
                self._tracks[t.id] = t

    def _finalize(self, j: int) -> tuple[int, list[Region]]:
        regions: list[Region] = []
        for t in list(self._tracks.values()):
            if not t.confirmed:
                continue
            idx = list(t.obs)
            if j in t.obs:
                box, score = t.obs[j]
                regions.append(Region(tuple(box), score, t.id, "detected"))
                continue
            before = [i for i in idx if i < j]
            after = [i for i in idx if i > j]
            a = before[-1] if before else None
            b = after[0] if after else None
            if a is not None and b is not None and b - a - 1 <= self.gap_frames:
                w = (j - a) / (b - a)
                box = t.obs[a][0] * (1 - w) + t.obs[b][0] * w
                regions.append(Region(tuple(box), min(t.obs[a][1], t.obs[b][1]), t.id, "interpolated"))
                continue
            if a is not None and j < t.shot_end:
                v = t.velocity(a, True)
                moved = t.obs[a][0] + v * (j - a)
                if self._carry_limit(t.obs[a][0], v, moved, j - a):
                    box = self._carried(t.obs[a][0], v, moved, j - a, t.largest(a, True))
                    regions.append(Region(box, t.obs[a][1], t.id, "carried"))
            if b is not None and j >= t.shot_start:
                v = -t.velocity(b, False)  # motion backwards in time
                moved = t.obs[b][0] + v * (b - j)
                if self._carry_limit(t.obs[b][0], v, moved, b - j):
                    box = self._carried(t.obs[b][0], v, moved, b - j, t.largest(b, False))
                    regions.append(Region(box, t.obs[b][1], t.id, "carried"))
        self._next_out = j + 1
        self._prune(j)
        return j, regions

    def _prune(self, j: int) -> None:
        horizon = j - self.lookahead
        for tid, t in list(self._tracks.items()):
            if t.last < horizon:
                del self._tracks[tid]
                continue
            for i in [i for i in t.obs if i < horizon - VELOCITY_SPAN]:  # keep some history for velocity
                del t.obs[i]
