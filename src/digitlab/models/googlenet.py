"""GoogLeNet / Inception v1 (Szegedy et al., 2015) from torchvision, with a small-image stem."""
from __future__ import annotations

import torch.nn as nn
import torchvision.models as tvm
from torchvision.models.googlenet import BasicConv2d

from .registry import register

SMALL_INPUT = 96


@register("googlenet", "googlenet", "GoogLeNet (Inception v1, 9 inception blocks, aux heads off); 3x3 stem below 96px", min_size=4)
def googlenet(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> tvm.GoogLeNet:
    """GoogLeNet without the auxiliary classifiers (they only matter for very deep training from scratch).
    For small inputs the 7x7/2 stem conv and first max-pool become a 3x3/1 conv, so inception 3 runs at
    14x14 on MNIST. 5,601,322 parameters on MNIST."""
    model = tvm.GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)
    if image_size < SMALL_INPUT:
        model.conv1 = BasicConv2d(in_chans, 64, kernel_size=3, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
    elif in_chans != 3:
        model.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)
    return model
