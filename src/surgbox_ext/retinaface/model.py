"""RetinaFace as a pure ``nn.Module``: backbone, FPN, SSH context modules and the three heads.

The network follows the RetinaFace design used by the biubug6 ``Pytorch_Retinaface`` checkpoints
(MobileNet-0.25 or ResNet-50 backbone, three pyramid levels at strides 8/16/32, two anchors per
cell). It does no file loading and has no train/test switch: :meth:`RetinaFace.forward` always
returns raw head outputs (box offsets, class logits, landmark offsets); decoding, softmax and NMS
live in :mod:`.box_coding` and :mod:`.postprocess`.

Input: ``(N, 3, H, W)`` float, BGR channel order, mean ``(104, 117, 123)`` subtracted, no scaling
(see :func:`surgbox_ext.retinaface.detector.preprocess`). Any ``H, W >= 1`` works; priors for
``H x W`` come from :func:`surgbox_ext.retinaface.priors.make_priors`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("mobilenet0.25", "resnet50")
ANCHORS_PER_CELL = 2


class ConvBN(nn.Module):
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` -> optional LeakyReLU (``slope=None``: no activation).

    After :func:`fold_batchnorm` the convolution carries the bias and ``bn`` is an ``Identity``.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, slope: float | None = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)
        self.act: nn.Module = nn.Identity() if slope is None else nn.LeakyReLU(slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1 block: 3x3 depthwise ``ConvBN`` (with ``stride``) then 1x1 pointwise ``ConvBN``."""

    def __init__(self, cin: int, cout: int, stride: int, slope: float = 0.1):
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, stride, groups=cin, slope=slope)
        self.pw = ConvBN(cin, cout, 1, 1, slope=slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet-v1 at width 0.25 (first conv 8 channels). Returns stride 8/16/32 features with
    64/128/256 channels: ``(N,64,H/8,W/8), (N,128,H/16,W/16), (N,256,H/32,W/32)`` (ceil division)."""

    out_channels = (64, 128, 256)

    def __init__(self, slope: float = 0.1):
        super().__init__()

        def dws(spec: Sequence[tuple[int, int, int]]) -> list[nn.Module]:
            return [DepthwiseSeparable(a, b, s, slope) for a, b, s in spec]

        self.stage1 = nn.Sequential(
            ConvBN(3, 8, 3, 2, slope=slope),
            *dws([(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]),
        )
        self.stage2 = nn.Sequential(*dws([(64, 128, 2)] + [(128, 128, 1)] * 5))
        self.stage3 = nn.Sequential(*dws([(128, 256, 2), (256, 256, 1)]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5


class Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3x3 conv), torchvision parameter names."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 trunk without the classifier. Returns stride 8/16/32 features with
    512/1024/2048 channels (``layer2``, ``layer3``, ``layer4``)."""

    out_channels = (512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 lateral ``ConvBN`` per level, nearest upsampling + add,
    3x3 ``ConvBN`` merge on the two finer levels. All outputs have ``channels`` channels."""

    def __init__(self, in_channels: Sequence[int], channels: int, slope: float):
        super().__init__()
        self.lateral = nn.ModuleList(ConvBN(c, channels, 1, slope=slope) for c in in_channels)
        self.merge = nn.ModuleList(ConvBN(channels, channels, 3, slope=slope) for _ in range(len(in_channels) - 1))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outs = [lat(f) for lat, f in zip(self.lateral, feats)]
        for i in range(len(outs) - 2, -1, -1):  # coarse to fine
            up = F.interpolate(outs[i + 1], size=outs[i].shape[-2:], mode="nearest")
            outs[i] = self.merge[i](outs[i] + up)
        return outs


class SSH(nn.Module):
    """SSH context module: parallel 3x3, 5x5 (two 3x3) and 7x7 (three 3x3, sharing the first with
    5x5) branches producing ``channels/2, /4, /4`` maps, concatenated, then ReLU."""

    def __init__(self, cin: int, channels: int, slope: float):
        super().__init__()
        if channels % 4:
            raise ValueError(f"SSH channels must be a multiple of 4, got {channels}")
        q = channels // 4
        self.branch3 = ConvBN(cin, channels // 2, 3, slope=None)
        self.branch5_reduce = ConvBN(cin, q, 3, slope=slope)
        self.branch5 = ConvBN(q, q, 3, slope=None)
        self.branch7_reduce = ConvBN(q, q, 3, slope=slope)
        self.branch7 = ConvBN(q, q, 3, slope=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r5 = self.branch5_reduce(x)
        out = torch.cat([self.branch3(x), self.branch5(r5), self.branch7(self.branch7_reduce(r5))], dim=1)
        return F.relu(out)


def _flatten(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    # (N, A*k, h, w) -> (N, h*w*A, k): prior order is row, column, anchor (see priors.make_priors)
    n = x.shape[0]
    return x.permute(0, 2, 3, 1).reshape(n, -1, per_anchor)


class RetinaFace(nn.Module):
    """RetinaFace detector network.

    ``forward(x)`` with ``x`` shaped ``(N, 3, H, W)`` returns ``(loc, logits, landmarks)``:

    * ``loc``: ``(N, P, 4)`` encoded box offsets ``(dx, dy, dw, dh)`` per prior,
    * ``logits``: ``(N, P, 2)`` class logits ``(background, face)``,
    * ``landmarks``: ``(N, P, 10)`` encoded offsets of five points ``(x, y)``,

    where ``P = sum over strides s in (8, 16, 32) of ceil(H/s) * ceil(W/s) * 2``.
    """

    def __init__(self, backbone: str = "mobilenet0.25"):
        super().__init__()
        if backbone == "mobilenet0.25":
            self.backbone: nn.Module = MobileNetV1()
            channels, slope = 64, 0.1
        elif backbone == "resnet50":
            self.backbone = ResNet50()
            channels, slope = 256, 0.0
        else:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        self.backbone_name = backbone
        in_channels = self.backbone.out_channels
        self.fpn = FPN(in_channels, channels, slope)
        self.context = nn.ModuleList(SSH(channels, channels, slope) for _ in in_channels)
        a = ANCHORS_PER_CELL
        self.cls = nn.ModuleList(nn.Conv2d(channels, a * 2, 1) for _ in in_channels)
        self.box = nn.ModuleList(nn.Conv2d(channels, a * 4, 1) for _ in in_channels)
        self.landmark = nn.ModuleList(nn.Conv2d(channels, a * 10, 1) for _ in in_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = [ctx(f) for ctx, f in zip(self.context, self.fpn(self.backbone(x)))]
        loc = torch.cat([_flatten(h(f), 4) for h, f in zip(self.box, feats)], dim=1)
        logits = torch.cat([_flatten(h(f), 2) for h, f in zip(self.cls, feats)], dim=1)
        landmarks = torch.cat([_flatten(h(f), 10) for h, f in zip(self.landmark, feats)], dim=1)
        return loc, logits, landmarks


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` with running statistics (inference only)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``BatchNorm2d`` that follows a ``Conv2d`` into that conv, in place; returns ``model``.

    Valid for inference only (uses running statistics). Handles :class:`ConvBN`, the ResNet
    bottleneck ``convK``/``bnK`` pairs and ``downsample`` ``Sequential(conv, bn)``.
    """
    for module in list(model.modules()):
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = _fold(module.conv, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, (Bottleneck, ResNet50)):
            for k in ("1", "2", "3"):
                conv, bn = getattr(module, "conv" + k, None), getattr(module, "bn" + k, None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(module, "conv" + k, _fold(conv, bn))
                    setattr(module, "bn" + k, nn.Identity())
            ds = getattr(module, "downsample", None)
            if isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[1], nn.BatchNorm2d):
                module.downsample = nn.Sequential(_fold(ds[0], ds[1]), nn.Identity())
    return model
