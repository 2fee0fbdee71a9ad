"""Loading and saving RetinaFace weights.

Accepted files (all read with ``torch.load(weights_only=True)``: tensors and plain values only,
no pickled code):

* surgbox checkpoints: ``{"format": "surgbox.retinaface", "backbone": ..., "state_dict": {...}}``
  as written by :func:`save_checkpoint` (the shipped weights and fine-tuned models);
* biubug6 ``Pytorch_Retinaface`` checkpoints (``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``):
  a bare state dict with ``body.*``, ``fpn.*``, ``ssh1.*``, ``ClassHead.*`` names, with or
  without the ``module.`` prefix ``DataParallel`` adds;
* a bare state dict with surgbox names, or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.

The backbone is read from the checkpoint (or inferred from its parameter names).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from surgbox.errors import DetectorError

from .model import BACKBONES, RetinaFace

FORMAT = "surgbox.retinaface"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "retinaface_mobilenet0.25.pt"

_SSH_BRANCH = {"conv3X3": "branch3", "conv5X5_1": "branch5_reduce", "conv5X5_2": "branch5",
               "conv7X7_2": "branch7_reduce", "conv7x7_3": "branch7"}
_HEADS = {"ClassHead": "cls", "BboxHead": "box", "LandmarkHead": "landmark"}
_CONV_BN = {"0": "conv", "1": "bn"}
_DW_PW = {"0": "dw.conv", "1": "dw.bn", "3": "pw.conv", "4": "pw.bn"}


def biubug6_key(key: str) -> str:
    """The surgbox parameter name for one biubug6 parameter name (without ``module.``)."""
    m = re.fullmatch(r"body\.stage1\.0\.([01])\.(.+)", key)
    if m:
        return f"backbone.stage1.0.{_CONV_BN[m[1]]}.{m[2]}"
    m = re.fullmatch(r"body\.(stage[123])\.(\d+)\.([0134])\.(.+)", key)
    if m:
        return f"backbone.{m[1]}.{m[2]}.{_DW_PW[m[3]]}.{m[4]}"
    if key.startswith("body."):  # ResNet-50: torchvision names, kept
        return "backbone." + key[len("body."):]
    m = re.fullmatch(r"fpn\.(output|merge)([123])\.([01])\.(.+)", key)
    if m:
        kind = "lateral" if m[1] == "output" else "merge"
        return f"fpn.{kind}.{int(m[2]) - 1}.{_CONV_BN[m[3]]}.{m[4]}"
    m = re.fullmatch(r"ssh([123])\.(conv3X3|conv5X5_1|conv5X5_2|conv7X7_2|conv7x7_3)\.([01])\.(.+)", key)
    if m:
        return f"context.{int(m[1]) - 1}.{_SSH_BRANCH[m[2]]}.{_CONV_BN[m[3]]}.{m[4]}"
    m = re.fullmatch(r"(ClassHead|BboxHead|LandmarkHead)\.(\d+)\.conv1x1\.(.+)", key)
    if m:
        return f"{_HEADS[m[1]]}.{m[2]}.{m[3]}"
    raise KeyError(f"unrecognised biubug6 RetinaFace parameter {key!r}")


def is_biubug6(state: Mapping[str, Any]) -> bool:
    """True when ``state`` uses biubug6 parameter names."""
    return any(k.startswith(("body.", "ClassHead.", "ssh1.")) for k in state)


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):  # DataParallel, torch.compile
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def infer_backbone(state: Mapping[str, Any]) -> str:
    """``"resnet50"`` or ``"mobilenet0.25"`` from parameter names (surgbox or biubug6)."""
    if any(".layer4." in k or k.startswith(("backbone.layer4", "body.layer4")) for k in state):
        return "resnet50"
    if any(".stage3." in k for k in state):
        return "mobilenet0.25"
    raise DetectorError("cannot tell the RetinaFace backbone from the checkpoint's parameter names "
                        "(no 'layer4' or 'stage3' parameters); pass backbone='mobilenet0.25' or 'resnet50'")


def normalize_state_dict(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Surgbox-named state dict from any accepted layout (prefixes stripped, biubug6 names mapped)."""
    state = _strip_prefixes(state)
    if is_biubug6(state):
        state = {biubug6_key(k): v for k, v in state.items()}
    return dict(state)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``path`` -> ``(surgbox state dict, metadata)``. Metadata always has ``backbone``
    and ``sha256`` (of the file). Raises :class:`DetectorError` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"RetinaFace weights {str(path)!r} do not exist; pass an existing .pt/.pth file "
                            f"or leave weights unset to use the shipped {DEFAULT_WEIGHTS.name}")
    obj, sha = read_torch_file(path, "RetinaFace")
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        state = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "model"}
        state = obj["model"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise DetectorError(f"RetinaFace weights {str(path)!r} hold no state dict (found {type(obj).__name__}); "
                            "save one with surgbox_ext.retinaface.checkpoint.save_checkpoint(model, path)")
    try:
        state = normalize_state_dict(state)
    except KeyError as exc:
        raise DetectorError(f"RetinaFace weights {str(path)!r}: {exc.args[0]}; is this a RetinaFace checkpoint?") from exc
    backbone = meta.get("backbone") or infer_backbone(state)
    if backbone not in BACKBONES:
        raise DetectorError(f"RetinaFace weights {str(path)!r} name backbone {backbone!r}; supported: {', '.join(BACKBONES)}")
    meta["backbone"] = backbone
    meta["sha256"] = sha
    return state, meta


def read_torch_file(path: Path, what: str) -> tuple[Any, str]:
    """``(object, sha256 hex)`` of the ``torch.save`` file ``path``, read with
    ``weights_only=True`` (tensors and plain values only). ``what`` names the model in errors."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    fix = "Expected a torch state dict (.pt/.pth) saved with tensors only"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # not a zip-format file: mmap unsupported; the plain reader says why
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DetectorError(f"cannot read {what} weights {str(path)!r}: {type(exc).__name__}: {exc}. {fix}") from exc
    except Exception as exc:
        raise DetectorError(f"cannot read {what} weights {str(path)!r}: {type(exc).__name__}: {exc}. {fix}") from exc
    return obj, digest.hexdigest()


def write_torch_file(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through memory, so the bytes depend on ``obj`` only (a file
    target would put its own name inside the archive), then renamed into place."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def build_model(weights: str | Path | None = None, backbone: str | None = None) -> tuple[RetinaFace, dict[str, Any]]:
    """A :class:`RetinaFace` in eval mode with ``weights`` loaded (``None``: the shipped
    MobileNet-0.25 weights). ``backbone`` overrides what the checkpoint says. Returns
    ``(model, metadata)``."""
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    state, meta = read_checkpoint(path)
    backbone = backbone or meta["backbone"]
    model = RetinaFace(backbone)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(result.missing_keys[:5])
        unexpected = ", ".join(result.unexpected_keys[:5])
        raise DetectorError(
            f"RetinaFace weights {str(path)!r} do not fit the {backbone} network: "
            f"{len(result.missing_keys)} missing ({missing}), {len(result.unexpected_keys)} unexpected ({unexpected}); "
            "check the backbone option or the file"
        )
    meta["backbone"] = backbone
    meta["path"] = str(path)
    return model.eval(), meta


def save_checkpoint(model: RetinaFace, path: str | Path, **metadata: Any) -> Path:
    """Write ``model``'s weights as a surgbox checkpoint (tensors + plain metadata values).

    The model must not have been folded (:func:`~surgbox_ext.retinaface.model.fold_batchnorm`),
    so the file stays loadable and trainable.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    expected = RetinaFace(model.backbone_name).state_dict().keys()
    if set(state) != set(expected):
        raise ValueError("save_checkpoint needs an unfolded RetinaFace (its BatchNorm layers were folded)")
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": model.backbone_name, **metadata, "state_dict": state}
    return write_torch_file(obj, path)
