"""ResNet backbones with frozen BatchNorm, optional DC5 dilation and deformable 3x3 convolutions.

The module layout (`backbone.0.body.*`, `backbone.1.*`) is the one of the reference repositories,
so their state dicts load without renaming.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, FrozenBatchNorm2d

from ..errors import InputError
from .position_encoding import build_position_encoding

_EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4, "resnet101": 4}  # stage channels / planes


def _resnet(name: str, width: int, dilation: bool) -> torchvision.models.ResNet:
    """A torchvision ResNet with frozen BN; `width` != 64 rebuilds its stages with planes width * 2**i."""
    resnet = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d,
                                               replace_stride_with_dilation=[False, False, dilation])
    if width != 64:
        block = type(resnet.layer1[0])
        depths = [len(getattr(resnet, f"layer{stage}")) for stage in range(1, 5)]
        resnet.inplanes, resnet.dilation = width, 1
        resnet.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        resnet.bn1 = FrozenBatchNorm2d(width)
        resnet.layer1 = resnet._make_layer(block, width, depths[0])
        for stage in range(2, 5):
            layer = resnet._make_layer(block, width * 2 ** (stage - 1), depths[stage - 1], stride=2,
                                       dilate=dilation and stage == 4)
            setattr(resnet, f"layer{stage}", layer)
    return resnet


class ModulatedDeformConv2d(DeformConv2d):
    """DCNv2: torchvision's DeformConv2d fed by a branch that predicts its offsets and mask.

    `conv_offset` predicts (dy, dx) pairs and a mask logit for each kernel point (torchvision's
    offset layout, mmcv's `conv_offset` naming). It starts at zero, DCNv2's initialisation: no
    offset and a mask of 0.5, i.e. half the plain convolution it replaces.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        points = conv.kernel_size[0] * conv.kernel_size[1]
        self.conv_offset = nn.Conv2d(conv.in_channels, 3 * points, conv.kernel_size, conv.stride, conv.padding,
                                     conv.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        points = self.conv_offset.out_channels // 3
        offset_y_x, mask_logits = self.conv_offset(x).split([2 * points, points], dim=1)
        return super().forward(x, offset_y_x, mask_logits.sigmoid())


class ResNetBody(nn.Module):
    """The stem and stages of a torchvision ResNet (no pooling/fc), returning chosen stages."""

    def __init__(self, name: str, width: int, dilation: bool, deformable_stages: tuple[int, ...],
                 return_stages: tuple[int, ...]) -> None:
        super().__init__()
        if dilation and name in ("resnet18", "resnet34"):
            raise InputError(f"DC5 (dilation) needs bottleneck blocks; {name} has basic blocks: use resnet50 or resnet101")
        resnet = _resnet(name, width, dilation)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        for stage in deformable_stages:
            for block in getattr(self, f"layer{stage}"):
                block.conv2 = ModulatedDeformConv2d(block.conv2)
        self.return_stages = return_stages

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for stage in range(1, max(self.return_stages) + 1):
            x = getattr(self, f"layer{stage}")(x)
            if stage in self.return_stages:
                outputs.append(x)
        return outputs


class Backbone(nn.Module):
    """A ResNet body; `num_channels` and `strides` describe the returned stages."""

    def __init__(self, name: str, width: int, dilation: bool, deformable_stages: tuple[int, ...],
                 return_stages: tuple[int, ...]) -> None:
        super().__init__()
        self.body = ResNetBody(name, width, dilation, deformable_stages, return_stages)
        self.num_channels = [width * 2 ** (stage - 1) * _EXPANSION[name] for stage in return_stages]
        self.strides = [2 ** (stage + 1) for stage in return_stages]
        if dilation:
            self.strides[-1] //= 2

    def forward(self, images: Tensor, mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [(feature, resize_mask(mask, feature.shape[-2:])) for feature in self.body(images)]


def resize_mask(mask: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """The padding mask at a feature map's resolution (nearest neighbour, as the reference)."""
    return F.interpolate(mask[None].float(), size=tuple(size)).to(torch.bool)[0]


class Joiner(nn.Sequential):
    """backbone.0 = the ResNet, backbone.1 = the position encoding."""

    def __init__(self, backbone: Backbone, position_embedding: nn.Module) -> None:
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels
        self.strides = backbone.strides

    def forward(self, images: Tensor, mask: Tensor) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
        features = self[0](images, mask)
        pos = [self[1](feature_mask).to(feature.dtype) for feature, feature_mask in features]
        return features, pos


def build_backbone(name: str, width: int, hidden_dim: int, position_embedding: str, dilation: bool,
                   deformable_stages: tuple[int, ...], return_stages: tuple[int, ...], sine_offset: float) -> Joiner:
    """Backbone + position encoding, laid out as the reference repositories' `backbone` module."""
    backbone = Backbone(name, width, dilation, deformable_stages, return_stages)
    return Joiner(backbone, build_position_encoding(position_embedding, hidden_dim, sine_offset))
