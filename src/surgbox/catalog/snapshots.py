"""Snapshots in a PDF report: faces of de-identified sources are hidden before a snapshot is drawn.

A report leaves the box (``report --out``, exports), so it must not show what the recording's
de-identification hides. The policy is ``[report] deidentify`` in ``config.toml`` (default
``["room_camera"]``): source names or slot roles whose pictures show people. For each snapshot:

* of one source (``segment-0001.mp4.snapshot-0003-room.png``): when the source is named, or the
  recording's layout gives its slot a named role, faces are found in the whole picture;
* of the composite (``...-composite.png``): faces are found inside each slot of the recording's
  layout (from its sidecar ``segment-0001.mp4.json``) that shows such a source or has such a role;
* of unknown origin (attached by hand, or its recording's layout is unknown): the whole picture
  is searched (fail closed).

Faces are found with the de-identification detector (:mod:`surgbox.deid.defaults`: plugin,
options; ``[report] detector`` / ``threshold`` override them) and hidden with the same
anonymizer and mask shape as ``surgbox deid`` (:func:`surgbox.deid.hide.hide_regions`). A still
is scanned at up to 4x its size (:data:`DETECT_SIDE`: small faces at the back of a room reach the
detector's smallest scale). A region whose detector cannot run is hidden whole, and the caption
says so (fail closed).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from PIL import Image

from ..deid import defaults
from ..deid.anonymize import make_anonymizer
from ..deid.hide import hide_regions
from ..deid.temporal import Region
from ..errors import ConfigError
from ..plugins import get_plugins
from ..types import Layout, Rect

log = logging.getLogger(__name__)

DETECT_SIDE = 1280  # pixels: a smaller region is scaled up to this (longer side, at most 4x) before detection
_SNAPSHOT = re.compile(r"^(?P<base>.+)\.snapshot-\d+-(?P<what>[^./]+)\.(png|jpe?g)$", re.I)
COMPOSITE = "composite"


@attrs.frozen
class SnapshotPolicy:
    """``deidentify``: source names or slot roles whose snapshots are de-identified (empty: none);
    ``detector`` / ``threshold``: the face detector plugin and its score threshold."""

    deidentify: tuple[str, ...] = ("room_camera",)
    detector: str = defaults.DETECTOR
    threshold: float | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> SnapshotPolicy:
        s = dict(settings or {})
        names = s.get("deidentify", cls.deidentify)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):  # deidentify = 5 too
            raise ConfigError("config.toml [report] deidentify must be a list of source names or slot roles, "
                              "e.g. deidentify = [\"room_camera\"]")
        threshold = s.get("threshold")
        if threshold is not None and (not isinstance(threshold, (int, float)) or not 0 < threshold < 1):
            raise ConfigError(f"config.toml [report] threshold must be a number between 0 and 1, got {threshold!r}")
        return cls(tuple(names), str(s.get("detector", defaults.DETECTOR)), threshold)

    def covers(self, source: str | None, role: str | None) -> bool:
        return bool({source, role} & set(self.deidentify) - {None})


def origin(name: str) -> tuple[str, str] | None:
    """``(recording file, source or "composite")`` of a recorder's snapshot name, else ``None``."""
    m = _SNAPSHOT.match(name)
    return (m["base"], m["what"]) if m else None


def regions(policy: SnapshotPolicy, name: str, width: int, height: int, layouts: Mapping[str, Layout]) -> list[Rect]:
    """The rectangles of snapshot ``name`` (``width`` x ``height``) where faces must be hidden."""
    if not policy.deidentify:
        return []
    whole = [Rect(0, 0, width, height)]
    where = origin(name)
    if where is None:
        return whole  # unknown origin: fail closed
    layout = layouts.get(where[0])
    if layout is None:
        return whole  # which slot, which role: unknown
    if where[1] != COMPOSITE:
        role = next((s.role for s in layout.slots if s.source == where[1]), None)
        return whole if policy.covers(where[1], role) else []
    sx, sy = width / layout.width, height / layout.height
    out = []
    for s in layout.slots:
        if s.kind == "video" and policy.covers(s.source, s.role):
            r = Rect(round(s.rect.x * sx), round(s.rect.y * sy), max(1, round(s.rect.width * sx)), max(1, round(s.rect.height * sy)))
            x2, y2 = min(r.x2, width), min(r.y2, height)
            if x2 > r.x and y2 > r.y:
                out.append(Rect(r.x, r.y, x2 - r.x, y2 - r.y))
    return out


@attrs.define(eq=False)
class SnapshotDeidentifier:
    """Hides faces in report snapshots following ``policy``; the detector opens on first use
    (``plugins`` builds it: default the process-wide plugin manager). Close when done."""

    policy: SnapshotPolicy
    plugins: Any = None
    _detector: Any = attrs.field(default=None, init=False)
    _error: str | None = attrs.field(default=None, init=False)
    _anonymizer: Any = attrs.field(default=None, init=False)

    def _detect(self, crops: Sequence[np.ndarray]) -> list[Any] | None:
        """Face boxes per crop (crop pixels); a still is scanned at up to 4x its size, so that the
        small faces at the back of a room reach the detector's smallest scale. ``None``: no detector."""
        found = self._detect_raw([_upscaled(c) for c in crops])
        if found is None:
            return None
        return [(d.boxes / max(1.0, _scale(c)), d.scores) for c, d in zip(crops, found)]

    def _detect_raw(self, crops: Sequence[np.ndarray]) -> list[Any] | None:
        if self._error is None and self._detector is None:
            try:
                options = defaults.detector_options(self.policy.detector)
                if self.policy.threshold is not None:
                    options["threshold"] = self.policy.threshold
                det = (self.plugins or get_plugins()).create("detector", self.policy.detector, **options)
                det.open()
                self._detector = det
            except Exception as exc:  # no model, no torch: hide whole regions instead
                self._error = f"{type(exc).__name__}: {exc}"
                log.error("report snapshots: face detector %r unavailable (%s); de-identified regions are "
                          "hidden whole", self.policy.detector, self._error)
        if self._detector is None:
            return None
        try:
            return self._detector.detect(list(crops))
        except Exception as exc:
            log.error("report snapshots: face detection failed (%s); the regions are hidden whole", exc)
            return None

    def apply(self, name: str, blob: bytes, layouts: Mapping[str, Layout]) -> tuple[bytes, str | None]:
        """The snapshot with faces hidden (PNG) and a note for its caption (``None``: untouched)."""
        import av

        with Image.open(io.BytesIO(blob)) as im:
            rgb = np.asarray(im.convert("RGB"))
        h, w = rgb.shape[:2]
        rects = regions(self.policy, name, w, h, layouts)
        if not rects:
            return blob, None
        if self._anonymizer is None:
            self._anonymizer = make_anonymizer(defaults.ANONYMIZER, expand=defaults.EXPAND, feather=defaults.FEATHER)
        frame = av.VideoFrame.from_ndarray(rgb[: h - h % 2, : w - w % 2].copy(), format="rgb24").reformat(format="yuv420p")
        plain = frame.to_ndarray(format="rgb24")  # the colour round trip alone
        found = self._detect([np.ascontiguousarray(rgb[r.y:r.y2, r.x:r.x2]) for r in rects])
        if found is None:
            hide_regions(self._anonymizer, frame, rects, [], whole=True)
            note = "de-identification unavailable: hidden"
        else:
            faces = [Region((d[0] + r.x, d[1] + r.y, d[2] + r.x, d[3] + r.y), float(s), 0, "detected")
                     for r, (boxes, scores) in zip(rects, found) for d, s in zip(boxes.tolist(), scores.tolist())]
            hide_regions(self._anonymizer, frame, rects, faces)
            note = f"faces blurred ({len(faces)})" if faces else "no face found"
        hidden, result = frame.to_ndarray(format="rgb24"), rgb.copy()
        changed = np.any(hidden != plain, axis=2)  # what the anonymizer touched; every other pixel stays exact
        result[: hidden.shape[0], : hidden.shape[1]][changed] = hidden[changed]
        out = io.BytesIO()
        Image.fromarray(result).save(out, "PNG")
        return out.getvalue(), note

    def close(self) -> None:
        if self._detector is not None:
            try:
                self._detector.close()
            finally:
                self._detector = None


def _scale(crop: np.ndarray) -> float:
    return min(4.0, DETECT_SIDE / max(crop.shape[:2]))


def _upscaled(crop: np.ndarray) -> np.ndarray:
    k = _scale(crop)
    if k <= 1.0:
        return crop
    h, w = crop.shape[:2]
    return np.asarray(Image.fromarray(crop).resize((round(w * k), round(h * k)), Image.BICUBIC))


def layout_of_sidecar(data: Mapping[str, Any]) -> Layout | None:
    """The layout a recording's sidecar holds (``None`` when absent or malformed)."""
    try:
        return Layout.from_mapping(data["layout"])
    except (KeyError, TypeError, ValueError):
        return None
