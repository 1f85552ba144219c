"""The small Keras-style CNNs of the TensorFlow/Keras tutorials, and digitlab's fast CNN."""
from __future__ import annotations

import torch.nn as nn

from .registry import flat_features, register


class KerasCNN(nn.Module):
    """Conv(3x3)+ReLU blocks with optional 2x2 max-pools, Flatten, [Dropout], Dense+ReLU, Dense."""

    def __init__(self, channels: tuple[int, ...], pools: tuple[bool, ...], dense: int, num_classes: int, in_chans: int,
                 image_size: int, padding: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for cout, pool in zip(channels, pools):
            layers += [nn.Conv2d(cin, cout, 3, padding=padding), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        if dropout:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(flat_features(self.features, in_chans, image_size), dense), nn.ReLU(inplace=True), nn.Linear(dense, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


@register("cnn-small", "cnn", "Keras tutorial CNN: Conv32-Pool-Conv64-Pool-Conv64, Dense64, valid padding", min_size=18)
def cnn_small(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> KerasCNN:
    """TensorFlow's 'Convolutional Neural Network' tutorial net (valid padding). 93,322 parameters on MNIST."""
    return KerasCNN((32, 64, 64), (True, True, False), 64, num_classes, in_chans, image_size, padding=0)


@register("cnn", "cnn", "same-padding CNN: Conv32-64-64-64 with 3 max-pools, Dense64", min_size=8)
def cnn(num_classes: int = 10, in_chans: int = 1, image_size: int = 28) -> KerasCNN:
    """Four same-padded 3x3 convs (32-64-64-64), a 2x2 max-pool after each of the first three, Dense64.
    130,250 parameters on MNIST."""
    return KerasCNN((32, 64, 64, 64), (True, True, True, False), 64, num_classes, in_chans, image_size, padding=1)


@register("catsdogs-cnn", "cnn", "cats-vs-dogs CNN: Conv32/64/128/128 + pools, Dropout 0.5, Dense512 (150x150 RGB)", min_size=46)
def catsdogs_cnn(num_classes: int = 2, in_chans: int = 3, image_size: int = 150) -> KerasCNN:
    """The 4-block binary classifier from 'Deep Learning with Python' (Chollet, ch. 5), with a softmax head
    over `num_classes` instead of one sigmoid unit. 3,453,634 parameters at 150x150 RGB, 2 classes."""
    return KerasCNN((32, 64, 128, 128), (True,) * 4, 512, num_classes, in_chans, image_size, padding=0, dropout=0.5)


class FastCNN(nn.Module):
    """digitlab's speed recipe net: four 3x3 conv-BN-ReLU layers (w/2 channels at 28 px, 2w at 14 px, 2w and 4w
    at 7 px) and a global max-pool head. Each early conv is max-pooled *before* its BatchNorm and ReLU (as in
    airbench), so those run on a quarter of the pixels: measured on 2 CPU cores this trains 1.3x faster per
    image than BN-then-pool, and the thin 28-px layer keeps the full-resolution work small."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28, width: int = 32):
        super().__init__()
        w = width

        def conv(cin: int, cout: int, pool: bool = False) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
            return layers + [nn.MaxPool2d(2)] * pool + [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(in_chans, w // 2, pool=True), *conv(w // 2, 2 * w, pool=True),
            *conv(2 * w, 2 * w), *conv(2 * w, 4 * w), nn.AdaptiveMaxPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * w, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register("fastcnn", "cnn", "digitlab's fast recipe net: 4 conv-BN layers, pool before BN, global max-pool (7.3 M MACs per digit)",
          min_size=4)
def fastcnn(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, width: int = 32) -> FastCNN:
    """Small BN CNN for time-to-accuracy on CPU; 121,786 parameters on MNIST."""
    return FastCNN(num_classes, in_chans, image_size, width)


class SprintCNN(nn.Module):
    """The fewest FLOPs that still reach 99% on MNIST in one epoch: a 5x5 conv (w channels) and a 3x3 conv (4w/3),
    each unpadded and max-pooled before its BatchNorm and ReLU, then Dense(256). 1.2 M MACs per digit, a sixth of
    fastcnn's; measured on 2 AVX-512 cores, 0.57x its time per epoch, since thin convs (1 and 24 input channels) keep
    the vector units busy only a quarter of the time (README, roofline)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28, width: int = 24, dense: int = 256):
        super().__init__()
        w2 = 4 * width // 3
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, w2, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w2), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat_features(self.features, in_chans, image_size), dense),
                                        nn.ReLU(inplace=True), nn.Linear(dense, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register("sprintcnn", "cnn", "digitlab's sprint recipe net: conv5x5-24, conv3x3-32, pool before BN, Dense256 (1.2 M MACs per digit)",
          min_size=16)
def sprintcnn(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, width: int = 24, dense: int = 256) -> SprintCNN:
    """Small BN CNN for the shortest time to 99% on CPU; 215,250 parameters on MNIST."""
    return SprintCNN(num_classes, in_chans, image_size, width, dense)
