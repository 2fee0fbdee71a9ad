"""De-identification: find every face in a video and hide it (see ``docs/deid.md``).

``deidentify(src, dst, ...)`` runs the whole pipeline; the building blocks (options, regions,
temporal stage, masks, anonymizers, audit sidecar, stage timers) are importable on their own.
Names load on first use, so ``import surgbox.deid.defaults`` (what the CLI reads for its
help text) costs nothing.

Modules: ``defaults`` (every default value), ``options`` (:class:`DeidOptions`), ``pipeline``
(:func:`deidentify`), ``run`` (one run: set-up, threads, commit), the stages ``decode``,
``detect``, ``hide`` and ``encode`` (``handoff``: how they pass frames and stop), ``output``
(destination rules), ``result`` (progress, counters, report), ``bmff`` (is an MP4 complete?),
and the pieces ``regions``, ``crop``, ``temporal``, ``masks``, ``anonymize``, ``audit``,
``timing``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import DeidError

_LAZY = {
    "ANONYMIZERS": "anonymize", "Anonymizer": "anonymize", "GaussianBlur": "anonymize", "Pixelate": "anonymize",
    "SolidFill": "anonymize", "frame_planes": "anonymize", "make_anonymizer": "anonymize",
    "AuditWriter": "audit", "read_audit": "audit",
    "MaskShape": "masks",
    "Crop": "crop", "crop_rgb": "crop",
    "DeidOptions": "options",
    "Progress": "result",
    "deidentify": "pipeline", "FrameWindow": "run",
    "RegionSpec": "regions", "layout_from_metadata": "regions", "layout_from_sidecar": "regions",
    "parse_region_spec": "regions", "resolve_regions": "regions",
    "Region": "temporal", "TemporalFilter": "temporal",
    "PAPER_STAGES": "timing", "StageTimes": "timing",
    "default_output": "output", "MP4_EXTENSIONS": "output",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'surgbox.deid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["DeidError", *sorted(_LAZY)]
