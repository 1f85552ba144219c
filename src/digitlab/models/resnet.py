"""ResNet-18/34 (He et al., 2016) from torchvision's BasicBlock implementation, with a small-image stem."""
from __future__ import annotations

import torch.nn as nn
import torchvision.models as tvm

from .registry import register

SMALL_INPUT = 96  # below this, the 7x7/2 conv + max-pool stem would shrink a 28x28 digit to 7x7 at once


def _resnet(builder, num_classes: int, in_chans: int, image_size: int) -> tvm.ResNet:
    model = builder(weights=None, num_classes=num_classes)
    if image_size < SMALL_INPUT:  # the CIFAR/MNIST tutorials' stem: 3x3 stride-1 conv, no early max-pool
        model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    return model


@register("resnet18", "resnet", "ResNet-18 (BasicBlock x [2,2,2,2]); 3x3 stem below 96px", min_size=8)
def resnet18(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> tvm.ResNet:
    """ResNet-18: 11,172,810 parameters on MNIST (small stem)."""
    return _resnet(tvm.resnet18, num_classes, in_chans, image_size)


@register("resnet34", "resnet", "ResNet-34 (BasicBlock x [3,4,6,3]); 3x3 stem below 96px", min_size=8)
def resnet34(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> tvm.ResNet:
    """ResNet-34: 21,280,970 parameters on MNIST (small stem)."""
    return _resnet(tvm.resnet34, num_classes, in_chans, image_size)
