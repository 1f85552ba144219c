"""Fully-connected back-propagation nets (multi-layer perceptrons)."""
from __future__ import annotations

import torch.nn as nn

from .registry import register


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU -> Dropout] x len(hidden) -> Linear."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (128, 64), num_classes: int = 10, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


@register("mlp", "mlp", "back-propagation net 784-128-64-10 with ReLU (the classic tutorial MLP)")
def mlp(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, hidden: tuple[int, ...] = (128, 64), dropout: float = 0.0) -> MLP:
    """The MLP of the Keras/PyTorch beginner tutorials: 784-128-64-10, ReLU. 109,386 parameters on MNIST."""
    return MLP(in_chans * image_size * image_size, tuple(hidden), num_classes, dropout)


@register("mlp-dropout", "mlp", "784-256-128-10 with dropout 0.2, trained with L2 weight decay")
def mlp_dropout(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.2) -> MLP:
    """The regularised MLP preset: 784-256-128-10, dropout 0.2 (L2 comes from the optimizer's weight decay).
    235,146 parameters on MNIST."""
    return MLP(in_chans * image_size * image_size, tuple(hidden), num_classes, dropout)
