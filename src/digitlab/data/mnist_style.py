"""MNIST's own recipe for a digit: a binary shape size-normalised into a 20x20 box (aspect kept, anti-aliased) and
centred by centre of mass in a 28x28 field, white ink on black, with the stroke width MNIST's writers had.

It lives with the data because two layers need the very same function: photo preprocessing (predict/) turns a
user's ink into this, and the reader's "not a digit" class (data/reject.py) is made of fragments and pairs
normalised exactly the way the number reader will normalise its candidate cuts.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

STROKE_RATIO = 0.13  # MNIST stroke width / longer side of the digit (median over training digits upscaled 10x)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: twice its area over its perimeter (exact for long thin strokes)."""
    area = mask.sum()
    if area == 0:
        return 0.0
    perimeter = (mask & ~ndi.binary_erosion(mask)).sum()
    return float(2 * area / max(perimeter, 1))


def to_mnist(mask: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """A binary digit of any size -> size x size float image like MNIST's: stroke width normalised, longer side
    scaled to `box` pixels with anti-aliasing, centred by centre of mass."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros((size, size), np.float32)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    side = max(crop.shape)
    target = STROKE_RATIO * side
    width = stroke_width(crop)
    pad = int(np.ceil(target)) + 2
    crop = np.pad(crop, pad)
    if width < 0.8 * target:  # thin pen: grow the strokes so they survive shrinking to 20 px
        crop = ndi.distance_transform_edt(~crop) <= (target - width) / 2
    elif width > 1.8 * target:  # felt marker: thin them a little
        crop = ndi.distance_transform_edt(crop) > (width - 1.3 * target) / 2
    ys, xs = np.nonzero(crop)
    return _box_and_centre(crop[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32), size, box)


def grey_to_mnist(ink: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """A small digit's own grey levels (0 = paper, anything outside the digit already 0) -> size x size like MNIST's,
    without binarising: at 8-20 px tall a threshold fills loops and breaks thin strokes that the grey levels keep.
    The ink is scaled so its strokes reach 1 (97th percentile), the box and centring are `to_mnist`'s."""
    ys, xs = np.nonzero(ink > 0)
    if len(ys) == 0:
        return np.zeros((size, size), np.float32)
    crop = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    return _box_and_centre(np.clip(crop / max(float(np.percentile(crop[crop > 0], 97)), 1e-3), 0, 1), size, box)


def _box_and_centre(crop: np.ndarray, size: int, box: int) -> np.ndarray:
    """Ink in [0, 1] cropped to the digit -> longer side `box` px (anti-aliased), centred by mass in size x size."""
    h, w = crop.shape
    f = box / max(h, w)
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    small = np.asarray(Image.fromarray(crop * 255).resize((nw, nh), Image.Resampling.LANCZOS if max(h, w) < box else Image.Resampling.BOX))
    small = np.clip(small / 255.0, 0, 1).astype(np.float32)
    out = np.zeros((size, size), np.float32)
    total = float(small.sum())
    cy, cx = (float(small.sum(1) @ np.arange(nh)) / total, float(small.sum(0) @ np.arange(nw)) / total) if total > 0 else (nh / 2, nw / 2)
    top, left = int(round(size / 2 - cy)), int(round(size / 2 - cx))
    top, left = int(np.clip(top, 0, size - nh)), int(np.clip(left, 0, size - nw))
    out[top:top + nh, left:left + nw] = small
    return out
