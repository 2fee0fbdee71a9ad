"""Splitting a dataset into train/validation/test by video, stratified and seeded.

Every frame of a video lands in the same set. Videos are grouped into strata by user-given keys
(lighting, team size, attire colour...: a CSV or JSON file with one row per video) plus, by
default, a computed face-scale bucket (median short side of the video's faces: ``<20``,
``20-40``, ``40-80``, ``>=80`` px, ``none`` without faces). Set sizes come from the ratios
(largest remainders, so they add up to the number of videos); inside that, each video goes to
the set that lags furthest behind its share of the video's stratum, so every stratum is spread
in the same proportions. Ties are broken by a seeded shuffle. The ``paper`` preset is 31/12/14
(of 57 videos, as in the Life Surgery Box paper).

``split.json``::

    {"format": "surgbox.split", "version": 1, "seed": 0, "ratios": [31, 12, 14], "keys": ["lighting", "face_scale"],
     "strata": {"snippet01": "bright|40-80", ...}, "sets": {"train": [...], "val": [...], "test": [...]}}
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import atomic_write
from ..errors import DatasetError
from .annotations import read_json
from .evaluation import SIZE_BUCKETS
from .folder import Dataset

SPLIT = "split.json"
SET_NAMES = ("train", "val", "test")
PRESETS: dict[str, tuple[float, float, float]] = {"paper": (31, 12, 14), "70-15-15": (70, 15, 15), "80-10-10": (80, 10, 10)}


def face_scale(dataset: Dataset) -> dict[str, str]:
    """Per video, the size bucket of the median short side of its (counted) faces."""
    sizes: dict[str, list[float]] = {v: [] for v in dataset.videos}
    for s in dataset:
        sizes[s.item.video].extend(min(b.width, b.height) for b in s.item.boxes if not b.ignore)
    out = {}
    for v, vals in sizes.items():
        if not vals:
            out[v] = "none"
            continue
        m = float(np.median(vals))
        out[v] = next(name for name, lo, hi in SIZE_BUCKETS if lo <= m < hi)
    return out


def read_keys(path: str | Path) -> dict[str, dict[str, str]]:
    """Per-video keys from a CSV (header row; a ``video`` column) or a JSON object ``{video: {key: value}}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read the keys file {str(path)!r}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from None
        return {str(v): {str(k): str(x) for k, x in row.items()} for v, row in data.items()}
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or "video" not in rows[0]:
        raise DatasetError(f"{path}: a keys CSV needs a header with a 'video' column, e.g. video,lighting,team_size")
    return {r["video"]: {k: v for k, v in r.items() if k != "video"} for r in rows}


def _counts(n: int, ratios: Sequence[float]) -> list[int]:
    total = float(sum(ratios))
    exact = [n * r / total for r in ratios]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(ratios)), key=lambda i: -(exact[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    return counts


def split_videos(strata: Mapping[str, str], ratios: Sequence[float], seed: int = 0) -> dict[str, list[str]]:
    """Assign each video (``strata``: video -> stratum label) to train/val/test; see the module doc."""
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or sum(ratios) <= 0:
        raise DatasetError(f"split ratios {list(ratios)} must be three non-negative numbers (train, val, test), e.g. 31,12,14")
    videos = sorted(strata)
    rng = random.Random(seed)
    rng.shuffle(videos)
    target = _counts(len(videos), ratios)
    share = [r / float(sum(ratios)) for r in ratios]
    by_stratum: dict[str, list[str]] = {}
    for v in videos:
        by_stratum.setdefault(strata[v], []).append(v)
    sets: list[list[str]] = [[], [], []]
    # biggest strata first, so the small ones fill what is left evenly
    for name in sorted(by_stratum, key=lambda k: (-len(by_stratum[k]), k)):
        members = by_stratum[name]
        placed = [0, 0, 0]
        for k, v in enumerate(members):
            open_sets = [i for i in range(3) if len(sets[i]) < target[i]]
            # lag behind the stratum's share, then behind the global target; then the seeded order
            i = max(open_sets, key=lambda i: (share[i] * (k + 1) - placed[i], target[i] - len(sets[i]), -i))
            sets[i].append(v)
            placed[i] += 1
    return {n: sorted(s) for n, s in zip(SET_NAMES, sets)}


def make_split(dataset: Dataset, *, ratios: Sequence[float] = PRESETS["paper"], seed: int = 0,
               keys: Mapping[str, Mapping[str, str]] | None = None, stratify: Sequence[str] | None = None,
               face_scale_key: bool = True) -> dict[str, Any]:
    """A split of ``dataset``'s videos (the ``split.json`` object). ``keys``: per-video values
    (:func:`read_keys`); ``stratify``: which of them to use (default: all); ``face_scale_key``:
    add the computed face-scale bucket."""
    videos = dataset.videos
    keys = keys or {}
    names = list(stratify) if stratify else sorted({k for row in keys.values() for k in row})
    missing = [v for v in videos if names and v not in keys]
    if missing:
        raise DatasetError(f"the keys file has no row for video {missing[0]!r} ({len(missing)} videos missing); "
                           "add a row per video")
    scale = face_scale(dataset) if face_scale_key else {}
    strata = {}
    for v in videos:
        parts = [str(keys[v].get(k, "")) for k in names] + ([scale[v]] if face_scale_key else [])
        strata[v] = "|".join(parts)
    sets = split_videos(strata, ratios, seed)
    return {"format": "surgbox.split", "version": 1, "seed": seed, "ratios": list(ratios),
            "keys": names + (["face_scale"] if face_scale_key else []), "strata": strata, "sets": sets}


def write_split(split: Mapping[str, Any], path: str | Path, *, exclusive: bool = False) -> Path:
    """Write ``split`` to ``path`` atomically; ``exclusive``: never over an existing file
    (:class:`FileExistsError`)."""
    path = Path(path)
    atomic_write(path, (json.dumps(split, indent=1) + "\n").encode(), mode=0o644, exclusive=exclusive)
    return path


def read_split(path: str | Path, dataset: Dataset | None = None) -> dict[str, list[str]]:
    """The ``sets`` of a split file; with ``dataset``, checks that every video it names exists."""
    path = Path(path)
    data = read_json(path, "split file")
    if not isinstance(data, dict) or data.get("format") != "surgbox.split" or not isinstance(data.get("sets"), dict):
        raise DatasetError(f"{path}: not a surgbox split file; make one with `surgbox dataset split`")
    sets = {k: list(v) for k, v in data["sets"].items()}
    if dataset is not None:
        known = set(dataset.videos)
        unknown = [v for s in sets.values() for v in s if v not in known]
        if unknown:
            raise DatasetError(f"{path}: video {unknown[0]!r} is not in the dataset {dataset.root}; re-run `surgbox dataset split`")
    return sets
