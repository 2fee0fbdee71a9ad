"""CVAT 1.1 XML: "CVAT for video 1.1" (tracks) and "CVAT for images 1.1" (images), standard library only.

Video (``<track id label>`` with ``<box frame outside occluded keyframe xtl ytl xbr ybr>``):

* ``frame`` is CVAT's absolute frame number; the task's frames are ``start_frame``,
  ``start_frame + step``, ... ``stop_frame`` (``frame_filter`` ``step=N``; ``stop_frame`` or
  ``size`` from ``<meta>``). Boxes on frames off that grid are ignored, as CVAT does.
* Between two boxes of a track the box is interpolated linearly (CVAT's rule: the earlier
  box's flags are kept) unless the earlier one is ``outside="1"``, which ends the track until
  its next box. After a track's last box the box stays where it is to the task's last frame
  (unless that box is outside). A full CVAT export, which writes every frame, reads back
  exactly as written.
* Only ``<box>`` shapes are read (polygons, points, polylines, skeletons are skipped).

Images (``<image id name width height>`` with ``<box label occluded xtl ytl xbr ybr>``):
one item per ``<image>``; ``frame`` is its ``id``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import DatasetError
from .annotations import Annotations, Box, Item

MAX_FRAMES = 10_000_000  # task frames (over 90 hours at 30 fps): beyond, a frame number is an error, not a task


def _flag(el: ET.Element, name: str) -> bool:
    return el.get(name, "0").strip().lower() in ("1", "true")


def _corners(el: ET.Element, where: str) -> tuple[float, float, float, float]:
    try:
        return tuple(float(el.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore[return-value]
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{where}: a <box> needs numeric xtl/ytl/xbr/ybr attributes ({exc}); "
                           "is this a CVAT 1.1 export?") from None


def _task_meta(root: ET.Element) -> ET.Element | None:
    meta = root.find("meta")
    if meta is None:
        return None
    for path in ("task", "job", "project/tasks/task"):
        found = meta.find(path)
        if found is not None:
            return found
    return None


def _int(el: ET.Element | None, path: str, default: int | None = None) -> int | None:
    text = el.findtext(path) if el is not None else None
    if text is None or not text.strip():
        return default
    return int(text.strip())


def _step(task: ET.Element | None, where: str) -> int:
    text = (task.findtext("frame_filter") if task is not None else None) or ""
    text = text.strip()
    if not text:
        return 1
    key, _, value = text.partition("=")
    if key.strip() != "step" or not value.strip().isdigit() or int(value) < 1:
        raise DatasetError(f"{where}: frame_filter {text!r} is not understood; CVAT writes 'step=N' (N >= 1)")
    return int(value)


def _check_frame(frame: int | None, start: int, step: int, where: str, what: str) -> None:
    """Refuse a frame number more than :data:`MAX_FRAMES` task frames after ``start`` (every frame
    up to it would be made: a typo would hang the import)."""
    if frame is not None and (frame - start) // step > MAX_FRAMES:
        raise DatasetError(f"{where}: {what} {frame} is more than {MAX_FRAMES} frames after the start ({start}); "
                           "fix the number or export the task again")


def _labels(root: ET.Element, task: ET.Element | None) -> list[str]:
    names = [el.findtext("name", "") for el in root.iterfind(".//meta//labels/label")]
    return [n for n in dict.fromkeys(names) if n]


def parse_cvat(path: str | Path) -> Annotations:
    """Read a CVAT 1.1 XML export (video or images, told apart by its content)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not well-formed XML ({exc}); export the task again from CVAT") from None
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {str(path)!r}: {exc.strerror or exc}") from None
    if root.tag != "annotations":
        raise DatasetError(f"{path}: root element <{root.tag}> is not <annotations>; is this a CVAT 1.1 export?")
    if root.find("track") is not None:
        return _parse_video(root, path)
    return _parse_images(root, path)


def _parse_images(root: ET.Element, path: Path) -> Annotations:
    items = []
    for n, im in enumerate(root.iterfind("image")):
        where = f"{path}: <image> #{n}"
        boxes = [Box(_corners(b, where), b.get("label", ""), _flag(b, "occluded")) for b in im.iterfind("box")]
        ident = im.get("id")
        items.append(Item(int(ident) if ident is not None and ident.strip().lstrip("-").isdigit() else None,
                          im.get("name"), boxes, int(float(im.get("width", 0))), int(float(im.get("height", 0)))))
    return Annotations(items, "cvat-images", "", _labels(root, _task_meta(root)), str(path))


def _parse_video(root: ET.Element, path: Path) -> Annotations:
    task = _task_meta(root)
    where = str(path)
    start = _int(task, "start_frame", 0) or 0
    step = _step(task, where)
    stop = _int(task, "stop_frame")
    size = _int(task, "size")
    if stop is None and size:
        stop = start + (size - 1) * step
    _check_frame(stop, start, step, where, "stop_frame")
    width = _int(task, "original_size/width", 0) or 0
    height = _int(task, "original_size/height", 0) or 0
    source = (root.findtext("meta/source") or "").strip()

    per_frame: dict[int, list[Box]] = {}
    last_shape = start
    for t in root.iterfind("track"):
        tid = int(t.get("id", "-1"))
        label = t.get("label", "")
        shapes = []
        for b in t.iterfind("box"):
            f = int(b.attrib["frame"])
            if f < start or (f - start) % step:
                continue  # not a task frame
            _check_frame(f, start, step, where, f"track {tid}: box frame")
            shapes.append((f, _corners(b, f"{where}: track {tid}"), _flag(b, "outside"), _flag(b, "occluded")))
        shapes.sort(key=lambda s: s[0])
        for k, (f0, box0, outside0, occl0) in enumerate(shapes):
            last_shape = max(last_shape, f0)
            if outside0:
                continue
            per_frame.setdefault(f0, []).append(Box(box0, label, occl0, track=tid, keyframe=True))
            if k + 1 < len(shapes):
                f1, box1 = shapes[k + 1][0], shapes[k + 1][1]
            else:  # last box, not outside: it stays to the end of the task
                f1, box1 = (stop + step if stop is not None else f0), box0
            for f in range(f0 + step, f1, step):
                t_ = (f - f0) / (f1 - f0)
                box = tuple(a + (b_ - a) * t_ for a, b_ in zip(box0, box1))
                per_frame.setdefault(f, []).append(Box(box, label, occl0, track=tid, keyframe=False))
    end = stop if stop is not None else max([last_shape, *per_frame.keys()])
    items = [Item(f, None, sorted(per_frame.get(f, []), key=lambda b: b.track), width, height, source)
             for f in range(start, end + 1, step)]
    return Annotations(items, "cvat-video", source, _labels(root, task), str(path))
