"""Several trained copies of one model served as one: `digitlab train --ensemble N` trains the members and saves this.

The members' probabilities are averaged; the output is the log of that average, so softmax, argmax, top-k, ONNX export
and int8 quantisation downstream treat the ensemble like any other classifier.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .registry import create_model, register


class Ensemble(nn.Module):
    """Members that share one input; the output is the log of their mean probabilities (a log-probability per class)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([m(x).float().log_softmax(dim=1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


@register("ensemble", "ensemble", "N members of one model, their probabilities averaged (train --ensemble N)",
          min_size=4)  # the default member's (fastcnn); other members check their own
def ensemble(num_classes: int = 10, in_chans: int = 1, image_size: int = 28, member: str = "fastcnn", size: int = 3,
             member_args: dict[str, Any] | None = None) -> Ensemble:
    """`size` copies of registry model `member` (built with `member_args`), untrained until weights are loaded."""
    if member == "ensemble" or not 1 <= size <= 16:
        raise TypeError(f"an ensemble holds 1-16 members of a single model, got {size} of '{member}'")
    return Ensemble([create_model(member, num_classes=num_classes, in_chans=in_chans, image_size=image_size,
                                  **(member_args or {})) for _ in range(size)])
