"""De-identification: find every face in a video and hide it (see ``docs/deid.md``).

``deidentify(src, dst, ...)`` runs the whole pipeline; the building blocks (regions, temporal
stage, masks, anonymizers, audit sidecar, stage timers) are importable on their own.
"""

from __future__ import annotations

from ..errors import DeidError
from .anonymize import ANONYMIZERS, Anonymizer, GaussianBlur, Pixelate, SolidFill, frame_planes, make_anonymizer
from .audit import AuditWriter, read_audit
from .masks import MaskShape
from .crop import Crop, crop_rgb
from .pipeline import Progress, deidentify
from .regions import RegionSpec, layout_from_metadata, layout_from_sidecar, parse_region_spec, resolve_regions
from .temporal import Region, TemporalFilter
from .timing import PAPER_STAGES, StageTimes

__all__ = [
    "ANONYMIZERS",
    "PAPER_STAGES",
    "Anonymizer",
    "AuditWriter",
    "Crop",
    "DeidError",
    "GaussianBlur",
    "MaskShape",
    "Pixelate",
    "Progress",
    "Region",
    "RegionSpec",
    "SolidFill",
    "StageTimes",
    "TemporalFilter",
    "crop_rgb",
    "deidentify",
    "frame_planes",
    "layout_from_metadata",
    "layout_from_sidecar",
    "make_anonymizer",
    "parse_region_spec",
    "read_audit",
    "resolve_regions",
]
