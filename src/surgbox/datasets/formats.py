"""COCO detection JSON and dlib imglab XML importers, and :func:`load_annotations`, which picks one.

* COCO: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``,
  ``bbox`` ``[x, y, w, h]``, ``category_id``, ``iscrowd`` -> ``ignore``, ``attributes.occluded``),
  ``categories`` (``id``, ``name`` -> label). Images keep the file's order.
* dlib imglab (``<images><image file width height><box top left width height ignore occluded>``
  with an optional ``<label>``): the box covers ``[left, top, left + width, top + height]``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import DatasetError
from .annotations import Annotations, Box, Item, read_json
from .cvat import parse_cvat

FORMATS = ("auto", "cvat", "coco", "dlib")


def _read_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{path}: not well-formed XML ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {str(path)!r}: {exc.strerror or exc}") from None


def parse_dlib(path: str | Path) -> Annotations:
    """Read a dlib imglab XML file (``imglab`` / ``training.xml``)."""
    path = Path(path)
    root = _read_xml(path)
    if root.tag != "dataset" or root.find("images") is None:
        raise DatasetError(f"{path}: expected dlib imglab XML (<dataset><images>...), found <{root.tag}>")
    items, labels = [], []
    for im in root.iterfind("images/image"):
        name = im.get("file")
        if not name:
            raise DatasetError(f"{path}: an <image> has no file attribute")
        boxes = []
        for b in im.iterfind("box"):
            try:
                top, left, w, h = (float(b.attrib[k]) for k in ("top", "left", "width", "height"))
            except (KeyError, ValueError):
                raise DatasetError(f"{path}: image {name!r}: a <box> needs numeric top/left/width/height") from None
            label = (b.findtext("label") or "").strip()
            labels.append(label)
            boxes.append(Box((left, top, left + w, top + h), label, b.get("occluded", "0") == "1", b.get("ignore", "0") == "1"))
        items.append(Item(None, name, boxes, int(im.get("width", 0)), int(im.get("height", 0))))
    return Annotations(items, "dlib", "", [x for x in dict.fromkeys(labels) if x], str(path))


def parse_coco(path: str | Path) -> Annotations:
    """Read a COCO detection JSON file (instances, bounding boxes)."""
    path = Path(path)
    data = read_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: a COCO file is an object with an 'images' list (and 'annotations', 'categories')")
    cats = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
    per_image: dict[Any, list[Box]] = {}
    for n, a in enumerate(data.get("annotations", [])):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            image_id = a["image_id"]
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: annotation #{n} needs image_id and bbox [x, y, w, h]") from None
        occluded = bool((a.get("attributes") or {}).get("occluded", False))
        label = cats.get(a.get("category_id"), str(a.get("category_id", "")))
        per_image.setdefault(image_id, []).append(Box((x, y, x + w, y + h), label, occluded, bool(a.get("iscrowd", 0))))
    items = []
    for im in data["images"]:
        frame = im.get("frame_id")
        items.append(Item(int(frame) if isinstance(frame, int) else None, im.get("file_name"), per_image.get(im["id"], []),
                          int(im.get("width", 0)), int(im.get("height", 0))))
    return Annotations(items, "coco", "", list(cats.values()), str(path))


def sniff_format(path: Path) -> str:
    """``"cvat"``, ``"coco"`` or ``"dlib"`` from the first bytes of ``path``."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {str(path)!r}: {exc.strerror or exc}") from None
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        return "coco"
    if "<annotations" in head:
        return "cvat"
    if "<dataset" in head:
        return "dlib"
    raise DatasetError(f"{path}: not a CVAT 1.1 XML, COCO JSON or dlib imglab XML file; pass --format if it is one")


def load_annotations(path: str | Path, *, labels: Sequence[str] | None = None, format: str = "auto") -> Annotations:
    """Annotations from ``path`` in any supported format (``format="auto"`` looks at the content),
    keeping only boxes whose label matches ``labels`` (see :meth:`Annotations.filtered`).
    Items without a ``video`` get the CVAT source name, else the file's stem (CVAT video) or
    their own image name (each photo is its own group)."""
    path = Path(path)
    if format not in FORMATS:
        raise DatasetError(f"annotation format {format!r} is unknown; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DatasetError(f"annotation file {str(path)!r} does not exist; check the path")
    fmt = sniff_format(path) if format == "auto" else format
    try:
        ann = {"cvat": parse_cvat, "coco": parse_coco, "dlib": parse_dlib}[fmt](path)
    except DatasetError:
        raise
    except (ValueError, TypeError, KeyError, OverflowError) as exc:  # a value of the wrong type or out of range
        what = f"missing attribute {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise DatasetError(f"{path}: malformed {fmt} annotations ({what}); fix the file or export it again") from None
    default = ann.source or path.stem
    ann = attrs.evolve(ann, items=[it if it.video else attrs.evolve(it, video=default if it.image is None else it.image)
                                   for it in ann.items])
    return ann.filtered(labels)
