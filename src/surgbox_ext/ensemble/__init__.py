"""The ``ensemble`` detector: member detectors on their own cadences, boxes fused (no torch here)."""

from __future__ import annotations

from .detector import EnsembleDetector, Member, calibrate, parse_members
from .fusion import FUSIONS, fuse, nms_indices

__all__ = ["FUSIONS", "EnsembleDetector", "Member", "calibrate", "fuse", "nms_indices", "parse_members"]
