"""Annotation value types shared by every importer: boxes, annotated frames/images, a set of them.

Boxes are ``[x1, y1, x2, y2]`` float pixels of the annotated image (continuous coordinates,
``x2 > x1``), the same contract as detector output. An :class:`Item` is one annotated frame
of a video (``frame`` set) or one image (``image`` set), or both (CVAT-for-images exports of
a video task).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import DatasetError


def _box(value: Any) -> tuple[float, float, float, float]:
    box = tuple(float(v) for v in value)
    if len(box) != 4:
        raise ValueError(f"a box is [x1, y1, x2, y2], got {value!r}")
    if not all(math.isfinite(v) for v in box):  # NaN/inf from a file would poison every score
        raise ValueError(f"a box's coordinates must be finite numbers, got {list(box)!r}")
    return box  # type: ignore[return-value]


@attrs.frozen
class Box:
    """One annotated face: ``box`` ``(x1, y1, x2, y2)`` pixels; ``label``; ``occluded`` (kept, flagged);
    ``ignore`` (counts neither as a hit nor as a miss: dlib ``ignore``, COCO ``iscrowd``);
    ``track``: the CVAT track id for video annotations, else ``None``; ``keyframe``: whether the box
    was written in the file (``False``: interpolated by the importer)."""

    box: tuple[float, float, float, float] = attrs.field(converter=_box)
    label: str = ""
    occluded: bool = False
    ignore: bool = False
    track: int | None = None
    keyframe: bool = True

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        """The ``surgbox dataset boxes --json`` form (``ignore`` only when set)."""
        d: dict[str, Any] = {"box": [round(v, 4) for v in self.box], "label": self.label,
                             "occluded": self.occluded, "track": self.track}
        if self.ignore:
            d["ignore"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        return cls(d["box"], d.get("label", ""), bool(d.get("occluded", False)), bool(d.get("ignore", False)),
                   d.get("track"), bool(d.get("keyframe", True)))


@attrs.frozen
class Item:
    """One annotated frame or image. ``frame``: frame number in the video (CVAT's absolute
    numbering, start_frame included) or ``None``; ``image``: the image's name in the annotation
    file or ``None``; ``width``/``height``: picture size in pixels when the file gives it (else 0);
    ``video``: the video (or group) this item belongs to, used to split by video."""

    frame: int | None
    image: str | None
    boxes: tuple[Box, ...] = attrs.field(converter=tuple, default=())
    width: int = 0
    height: int = 0
    video: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``surgbox dataset boxes --json`` line: ``{"frame", "image", "boxes"}``."""
        return {"frame": self.frame, "image": self.image, "boxes": [b.to_dict() for b in self.boxes]}

    @property
    def key(self) -> str:
        """A name for messages: ``image`` or ``frame N``."""
        return self.image if self.image is not None else f"frame {self.frame}"


@attrs.frozen
class Annotations:
    """Everything read from one annotation file: ``items`` in frame (or file) order, the
    ``format`` name, ``source`` (the video file named by a CVAT video export, else ``""``),
    ``labels`` declared or used, and ``path`` of the file read."""

    items: tuple[Item, ...] = attrs.field(converter=tuple)
    format: str
    source: str = ""
    labels: tuple[str, ...] = attrs.field(converter=tuple, default=())
    path: str = ""

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def box_count(self) -> int:
        return sum(len(it.boxes) for it in self.items)

    def filtered(self, labels: Sequence[str] | None) -> Annotations:
        """Only boxes whose label matches one of ``labels`` (exact names or ``fnmatch`` patterns
        such as ``face*``); items stay (an item without faces is a negative example).
        ``None`` or empty keeps everything."""
        if not labels:
            return self
        keep = [attrs.evolve(it, boxes=[b for b in it.boxes if label_matches(b.label, labels)]) for it in self.items]
        return attrs.evolve(self, items=keep)


def label_matches(label: str, patterns: Iterable[str]) -> bool:
    """Whether ``label`` equals or ``fnmatch``-matches one of ``patterns`` (case-sensitive)."""
    return any(label == p or fnmatch.fnmatchcase(label, p) for p in patterns)


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """The JSON content of ``path``; a :class:`DatasetError` naming ``what`` (e.g. "split file")
    and ``hint`` when it cannot be read or parsed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}){'; ' + hint if hint else ''}") from None
