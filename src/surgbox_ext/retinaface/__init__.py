"""RetinaFace face detector (PyTorch) with shipped MobileNet-0.25 weights.

Importing this package imports torch; the plugin registration in :mod:`surgbox_ext.plugin`
does not (it names :class:`RetinaFaceDetector` lazily).
"""

from __future__ import annotations

from .checkpoint import DEFAULT_WEIGHTS, build_model, read_checkpoint, save_checkpoint
from .detector import RetinaFaceDetector, preprocess
from .model import RetinaFace, fold_batchnorm
from .postprocess import PostprocessConfig, box_iou, nms_keep
from .priors import make_priors, prior_count

__all__ = [
    "DEFAULT_WEIGHTS",
    "PostprocessConfig",
    "RetinaFace",
    "RetinaFaceDetector",
    "box_iou",
    "build_model",
    "fold_batchnorm",
    "make_priors",
    "nms_keep",
    "preprocess",
    "prior_count",
    "read_checkpoint",
    "save_checkpoint",
]
