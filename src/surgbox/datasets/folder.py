"""Dataset folders: ``dataset.json`` (the manifest) beside the images it names.

``dataset.json``::

    {"format": "surgbox.dataset", "version": 1,
     "sources": [{"annotations": "/data/cvat/snippet01.xml", "video": "snippet01.mp4", "format": "cvat-video"}],
     "items": [{"image": "images/snippet01/000012.png", "video": "snippet01", "frame": 12,
                "width": 1920, "height": 1080, "encrypted": false,
                "boxes": [{"box": [x1, y1, x2, y2], "label": "face", "occluded": false, "track": 3}]}]}

``image`` is relative to the folder (frames written by ``surgbox dataset extract``) or absolute
(photos referenced in place by ``surgbox dataset import``). ``encrypted`` images are stored as
Tink streaming AES-256-GCM files (``.enc``, associated data = the ``image`` string) under the
dataset's key file and are decrypted in memory only. ``split.json`` (see :mod:`.split`) may lie
beside the manifest.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image, UnidentifiedImageError

from .._fs import atomic_write
from ..crypto import decrypt_file
from ..errors import DatasetError
from .annotations import Box, Item, read_json

MANIFEST = "dataset.json"
FORMAT = "surgbox.dataset"
VERSION = 1


@attrs.frozen
class Sample:
    """One image of a dataset: its annotation ``item`` and where its pixels are (``image``: path
    relative to the dataset folder, or absolute; ``encrypted``: stored encrypted)."""

    item: Item
    image: str
    encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        it = self.item
        return {"image": self.image, "video": it.video, "frame": it.frame, "name": it.image, "width": it.width,
                "height": it.height, "encrypted": self.encrypted, "boxes": [b.to_dict() for b in it.boxes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        item = Item(d.get("frame"), d.get("name"), [Box.from_dict(b) for b in d.get("boxes", [])],
                    int(d.get("width", 0)), int(d.get("height", 0)), str(d.get("video", "")))
        return cls(item, str(d["image"]), bool(d.get("encrypted", False)))


@attrs.frozen
class Dataset:
    """A dataset folder's manifest: ``root`` folder, ``samples`` in manifest order, ``sources``
    (what each part was made from). :meth:`read_image` gives the pixels."""

    root: Path = attrs.field(converter=Path)
    samples: tuple[Sample, ...] = attrs.field(converter=tuple)
    sources: tuple[dict[str, Any], ...] = attrs.field(converter=tuple, default=())

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def videos(self) -> list[str]:
        """Video (group) names in first-seen order."""
        return list(dict.fromkeys(s.item.video for s in self.samples))

    @property
    def encrypted(self) -> bool:
        return any(s.encrypted for s in self.samples)

    def subset(self, videos: Iterable[str]) -> Dataset:
        """Only the samples of ``videos``."""
        keep = set(videos)
        return attrs.evolve(self, samples=[s for s in self.samples if s.item.video in keep])

    def path_of(self, sample: Sample) -> Path:
        p = Path(sample.image)
        return p if p.is_absolute() else self.root / p

    def read_image(self, sample: Sample, key: bytes | None = None) -> np.ndarray:
        """``HxWx3 uint8`` RGB pixels of ``sample`` (decrypted in memory with ``key`` when encrypted)."""
        path = self.path_of(sample)
        try:
            if sample.encrypted:
                if key is None:
                    raise DatasetError(f"dataset {self.root}: {sample.image} is encrypted; pass the dataset's --key-file")
                buf = io.BytesIO()
                with path.open("rb") as f:
                    decrypt_file(f, buf, key, sample.image.encode())
                buf.seek(0)
                src: Any = buf
            else:
                src = path
            with Image.open(src) as im:
                return np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise DatasetError(f"dataset {self.root}: image {str(path)!r} is missing; re-run `surgbox dataset extract` "
                               "or fix the path in dataset.json") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"dataset {self.root}: image {str(path)!r} cannot be read ({exc})") from None

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> Dataset:
        """Read ``root/dataset.json`` (``root`` may also be the manifest file itself)."""
        root = Path(root)
        manifest = root if root.is_file() else root / MANIFEST
        if not manifest.is_file():
            raise DatasetError(f"{root} is not a dataset folder (no {MANIFEST}); make one with "
                               "`surgbox dataset import` or `surgbox dataset extract`")
        data = read_json(manifest, "dataset manifest")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DatasetError(f"{manifest}: not a surgbox dataset manifest (format {FORMAT!r} expected)")
        if data.get("version", 0) > VERSION:
            raise DatasetError(f"{manifest}: version {data.get('version')} is newer than this surgbox reads ({VERSION}); upgrade")
        try:
            samples = [Sample.from_dict(d) for d in data.get("items", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{manifest}: an item is malformed ({exc})") from None
        return cls(manifest.parent, samples, data.get("sources", []))

    def save(self) -> Path:
        """Write the manifest atomically; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": VERSION, "sources": list(self.sources),
                "items": [s.to_dict() for s in self.samples]}
        path = self.root / MANIFEST
        atomic_write(path, (json.dumps(data, indent=1) + "\n").encode())
        return path

