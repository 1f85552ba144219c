"""Why the model said what it said: occlusion saliency, one map per class from one batched forward pass.

Each patch of the image is blanked in turn (set to 0, the model's empty paper) and the drop in every class's
log-odds, log(p / (1 - p)), is spread back over the pixels that patch covered. Log-odds rather than probability or
log-probability, because neither saturates: a 99.9% answer still shows which strokes it rests on, and a 0.1% runner-up
which strokes hold it back. A region the model relies on for a class makes
that class less likely when hidden (positive map); ink that argues against a class makes it more likely when hidden
(negative). Only forward passes are needed, so it works for every model, the MLP and an ONNX session included, and
all patches go through the model as one batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.reject import NOT_DIGIT

PATCH = 8  # pixels: about a stroke's length on a 28x28 digit, so hiding one patch removes a stroke's piece
STRIDE = 4  # 7x7 = 49 occluded copies of a 28x28 image; each pixel lies under up to 4 patches


@dataclass
class Saliency:
    """Per-class occlusion maps for one image."""
    maps: torch.Tensor  # (K, H, W): mean drop of the class's log-odds when a patch over the pixel is hidden
    probs: torch.Tensor  # (K,) the model's probabilities for the untouched image
    classes: list[str]
    patch: int
    stride: int

    def ranked(self) -> list[int]:
        """Class indices, most probable first, without the reject class: the answer, then the runner-up, ..."""
        order = self.probs.argsort(descending=True).tolist()
        return [i for i in order if self.classes[i] != NOT_DIGIT]


def patch_cover(size: int, patch: int, stride: int) -> torch.Tensor:
    """(P, size) 0/1 rows: which pixels along one axis each patch covers; patch centres every `stride` pixels,
    the first half a stride in, so the patches tile the axis evenly and overhang both edges alike (a stride wider
    than the image leaves one patch, in the middle)."""
    centres = torch.arange(min(stride // 2, size // 2), size, stride)
    x = torch.arange(size)
    lo = centres[:, None] - patch // 2
    return ((x[None] >= lo) & (x[None] < lo + patch)).float()


def occlusion(clf: Any, image: np.ndarray | torch.Tensor, patch: int = PATCH, stride: int = STRIDE) -> Saliency:
    """Occlusion maps for every class of `clf` on one prepared (C, H, W) image in [0, 1] (what `clf.prepare` gives);
    the untouched image and every occluded copy run as one batch through `clf.predict_prepared`."""
    x = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    _, h, w = x.shape
    rows, cols = patch_cover(h, patch, stride), patch_cover(w, patch, stride)
    covered = (rows[:, None, :, None] * cols[None, :, None, :]).reshape(-1, h, w)  # (P, H, W), 1 = hidden
    batch = torch.cat([x[None], x[None] * (1 - covered[:, None])])
    probs = clf.predict_prepared(batch).probs.double().clamp(1e-12, 1 - 1e-12)  # (1 + P, K)
    log_odds = probs.log() - (-probs).log1p()
    drop = log_odds[0] - log_odds[1:]  # (P, K)
    maps = torch.einsum("pk,phw->khw", drop, covered.double()) / covered.sum(0).clamp_min(1)
    return Saliency(maps.float(), probs[0].float(), list(clf.classes), patch, stride)


def frame_in_photo(image: np.ndarray, box: tuple[int, int, int, int], ink: float = 0.1) -> list[float]:
    """Where the model's H x W frame lies over the photo, as x0, y0, x1, y1 photo pixels: the ink's box in the frame
    is matched to the ink's `box` in the photo (same scale both ways, centres aligned). An approximation, since
    the digit was also re-stroked and centred by mass, but close enough to lay a heat-map over the drawing."""
    plane = np.asarray(image).reshape(-1, *np.shape(image)[-2:]).max(0)
    ys, xs = np.nonzero(plane > ink)
    if len(ys) == 0:
        return [float(v) for v in box]
    h, w = plane.shape
    fx0, fy0, fx1, fy1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    scale = max(box[2] - box[0], box[3] - box[1]) / max(fx1 - fx0, fy1 - fy0)
    cx, cy = (box[0] + box[2]) / 2 - scale * (fx0 + fx1) / 2, (box[1] + box[3]) / 2 - scale * (fy0 + fy1) / 2
    return [round(float(v), 1) for v in (cx, cy, cx + scale * w, cy + scale * h)]
