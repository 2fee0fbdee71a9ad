"""Face-annotation datasets: import (CVAT 1.1 video/images, COCO, dlib), frame extraction, split.

>>> from surgbox.datasets import load_annotations
>>> ann = load_annotations("annotations.xml", labels=["face"])   # doctest: +SKIP
>>> [(it.frame, [b.box for b in it.boxes]) for it in ann][:1]     # doctest: +SKIP

No heavy dependency: the importers use the standard library; frame extraction uses PyAV.
"""

from __future__ import annotations

from .annotations import Annotations, Box, Item, label_matches
from .cvat import parse_cvat
from .evaluation import SIZE_BUCKETS, pr_curve, score
from .folder import Dataset, Sample
from .formats import FORMATS, load_annotations, parse_coco, parse_dlib

__all__ = ["FORMATS", "SIZE_BUCKETS", "Annotations", "Box", "Dataset", "Item", "Sample", "label_matches",
           "load_annotations", "parse_coco", "parse_cvat", "parse_dlib", "pr_curve", "score"]
