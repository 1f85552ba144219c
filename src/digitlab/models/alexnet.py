"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012): 5 conv + 3 fully-connected layers with dropout."""
from __future__ import annotations

import torch.nn as nn

from .registry import register

LARGE_INPUT = 128  # from this size up, the original 224x224 layout (11x11 stride-4 stem) is used


class AlexNet(nn.Module):
    """Conv 64-192-384-256-256 with 3 max-pools, then Dropout-FC-Dropout-FC-FC.

    Small inputs (28x28, 32x32) get 3x3 stride-1 convs and 1024-wide FC layers, as in the d2l/CIFAR
    adaptations; large inputs get the original 11x11/4, 5x5 stem and 4096-wide FC layers.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28):
        super().__init__()
        large = image_size >= LARGE_INPUT
        if large:
            stem = [nn.Conv2d(in_chans, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                    nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)]
            fc, grid = 4096, 6
        else:
            stem = [nn.Conv2d(in_chans, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                    nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            fc, grid = 1024, 3
        self.features = nn.Sequential(
            *stem,
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2) if large else nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5), nn.Linear(256 * grid * grid, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


@register("alexnet", "alexnet", "AlexNet 5 conv + 3 FC with dropout; 3x3 stem for small images, 11x11/4 for >=128px", min_size=8)
def alexnet(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> AlexNet:
    """AlexNet; 5,670,602 parameters on MNIST (small layout), 57 M in the 224x224 layout."""
    return AlexNet(num_classes, in_chans, image_size)
