"""Two ways of writing digits that MNIST's American writers hardly used and most of the world does: a `1` with a
flag at its top (and sometimes a foot), and a `7` crossed through its stem. A reader trained on MNIST alone calls
a flagged `1` a `7`. The reader's training copies draw them onto a share of MNIST's own 1s and 7s (labels
unchanged), with the digit's own stroke width, so the class keeps MNIST's hands and learns the other styles too.
"""
from __future__ import annotations

import numpy as np
import torch


def _segment(shape: tuple[int, int], a: tuple[float, float], b: tuple[float, float], width: float) -> np.ndarray:
    """Coverage (0-1, anti-aliased by a 1-px ramp) of a straight stroke from a to b, points as (y, x)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    (ay, ax), (by, bx) = a, b
    dy, dx = by - ay, bx - ax
    t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    dist = np.hypot(yy - (ay + t * dy), xx - (ax + t * dx))
    return np.clip(width / 2 + 0.5 - dist, 0, 1)


def _flag_one(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flag from the top of the stroke down to the left (and, one time in three, a foot across its base)."""
    ys, xs = np.nonzero(img > 127)
    top, bottom = ys.min(), ys.max()
    height = bottom - top + 1
    width = float(np.clip(len(ys) / height, 1.5, 3.5))  # a 1 is one stroke: its area over its height
    x_top = float(xs[ys == top].mean())
    angle = np.deg2rad(rng.uniform(25, 55))
    length = rng.uniform(0.25, 0.45) * height
    ink = _segment(img.shape, (top, x_top), (top + length * np.sin(angle), x_top - length * np.cos(angle)), width)
    if rng.random() < 1 / 3:
        x_base = float(xs[ys == bottom].mean())
        half = rng.uniform(0.2, 0.3) * height
        ink = np.maximum(ink, _segment(img.shape, (bottom, x_base - half), (bottom, x_base + half), width))
    return np.maximum(img, np.round(ink * 255)).astype(np.uint8)


def _cross_seven(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A short bar across the 7's stem, a little below the middle."""
    ys, xs = np.nonzero(img > 127)
    top, bottom = ys.min(), ys.max()
    height = bottom - top + 1
    row = int(round(top + rng.uniform(0.45, 0.62) * height))
    cols = xs[ys == row]
    if cols.size == 0:
        return img
    width = float(np.clip(cols.size, 1.5, 3.5))
    centre, half = float(cols.mean()), rng.uniform(0.18, 0.3) * height
    tilt = rng.uniform(-0.1, 0.1) * half
    ink = _segment(img.shape, (row + tilt, centre - half), (row - tilt, centre + half), width)
    return np.maximum(img, np.round(ink * 255)).astype(np.uint8)


def other_styles(images: torch.Tensor, labels: torch.Tensor, classes: list[str], fraction: float, seed: int) -> torch.Tensor:
    """A copy of `images` (uint8, (N, 1, 28, 28)) in which `fraction` of the 1s got a flag and of the 7s a bar."""
    rng = np.random.default_rng(seed)
    out = images.clone()
    for name, draw in (("1", _flag_one), ("7", _cross_seven)):
        if name not in classes:
            continue
        idx = torch.nonzero(labels == classes.index(name)).flatten().numpy()
        for i in idx[rng.random(len(idx)) < fraction]:
            out[i, 0] = torch.from_numpy(draw(images[i, 0].numpy(), rng))
    return out
