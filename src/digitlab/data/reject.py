"""The reader's "not one digit" class: what a number reader sees when it cuts a line in the wrong place.

Reading a whole number by recognition means asking the classifier about every candidate cut (one piece, two
adjacent pieces, three ...) and keeping the cuts it calls digits. A 10-class model has to call every candidate
some digit, so half a `0` becomes a confident `1` and two touching `2`s a wide `2`. Training an 11th class on
exactly those mistakes gives the reader an explicit "this is not one digit" answer:

- pairs and triples of digits side by side, touching, overlapping or with a small gap;
- the left or right part of a digit, cut at a random column (a wrong split);
- a whole digit plus a slice of its neighbour (a cut in the wrong valley).

Every sample is normalised by `mnist_style.to_mnist`, the very function that normalises the reader's candidate
cuts, so train and use see the same shapes. They are made once when the dataset is loaded (~0.5 ms each, from
the split's own digits, so validation fragments come from validation digits) and then live in the split's one
uint8 tensor like every other image.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import DigitlabError
from .core import DataSplits, ImageData
from .mnist_style import to_mnist
from .styles import other_styles

NOT_DIGIT = "not-digit"
KINDS = ("pair", "part", "digit+slice", "triple")
KIND_WEIGHTS = (0.35, 0.35, 0.2, 0.1)
OTHER_STYLES = 0.3  # share of the reader's 1s drawn with a flag and 7s with a bar (styles.py)


def _crop(mask: np.ndarray) -> np.ndarray:
    """The digit's columns only (rows stay, so digits keep their vertical place on the line)."""
    cols = np.flatnonzero(mask.any(0))
    return mask[:, cols[0]:cols[-1] + 1] if cols.size else mask[:, :1]


def _side_by_side(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits on one line, each placed after the previous one's right edge plus a gap of -5..+4 px (negative:
    touching or overlapping) and a vertical jitter of +-2 px."""
    height = 28 + 4
    width = sum(p.shape[1] for p in parts) + 8 * len(parts) + 8
    canvas = np.zeros((height, width), bool)
    x = 4
    for p in parts:
        y = 2 + int(rng.integers(-2, 3))
        canvas[y:y + p.shape[0], x:x + p.shape[1]] |= p
        x += p.shape[1] + int(rng.integers(-5, 5))
    return canvas


def _reject_mask(kind: str, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One wrong cut of the given kind, made from randomly chosen digits of `masks` (N, 28, 28) bool."""
    pick = lambda: _crop(masks[int(rng.integers(len(masks)))])  # noqa: E731
    if kind == "pair":
        return _side_by_side([pick(), pick()], rng)
    if kind == "triple":
        return _side_by_side([pick(), pick(), pick()], rng)
    digit = pick()
    while digit.shape[1] < 8:  # a "1" has no halves worth the name
        digit = pick()
    if kind == "part":  # a wrong split; a part that is a bare upright stroke is a fair "1", so it is not used
        for _ in range(20):
            cut = int(round(digit.shape[1] * rng.uniform(0.3, 0.65)))
            part = _crop(digit[:, :cut] if rng.random() < 0.5 else digit[:, cut:])
            rows = np.flatnonzero(part.any(1))
            if rows.size and part.shape[1] >= 0.3 * (rows[-1] - rows[0] + 1):
                return part
            digit = pick()
        return part
    neighbour = pick()
    keep = max(4, int(round(neighbour.shape[1] * rng.uniform(0.3, 0.6))))  # a speck beside a digit is still that digit
    if rng.random() < 0.5:  # the slice is the neighbour's left edge, to the right of the digit
        return _side_by_side([digit, neighbour[:, :keep]], rng)
    return _side_by_side([neighbour[:, -keep:], digit], rng)


def reject_samples(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` "not one digit" images (uint8, (n, 1, 28, 28)) made from the digits in `images` (uint8, (N, 1, 28, 28))."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise DigitlabError(f"a reject class is made from 28x28 grayscale digits, not images of shape {tuple(images.shape[1:])}")
    if n == 0 or len(images) == 0:
        return torch.zeros((0, 1, 28, 28), dtype=torch.uint8)
    rng = np.random.default_rng(seed)
    masks = images[:, 0].numpy() > 127
    kinds = rng.choice(len(KINDS), size=n, p=KIND_WEIGHTS)
    out = np.empty((n, 28, 28), np.uint8)
    for i, k in enumerate(kinds):
        out[i] = np.round(to_mnist(_reject_mask(KINDS[k], masks, rng)) * 255)
    return torch.from_numpy(out)[:, None]


def renormalised(images: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A copy of the digits in which a random `fraction` went through `to_mnist` (binarised, stroke width and box
    normalised) like every cut the reader will see. Without this the "not-digit" class, whose samples all went
    through it, could learn "looks re-normalised" as its cue instead of "is not one digit"."""
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:round(fraction * len(images))]
    out = images.clone()
    masks = images[pick, 0].numpy() > 127
    out[pick, 0] = torch.from_numpy(np.stack([np.round(to_mnist(m) * 255) for m in masks]).astype(np.uint8)) if len(pick) else out[pick, 0]
    return out


def _extend(data: ImageData, n: int, seed: int, classes: list[str]) -> ImageData:
    extra = reject_samples(data.images, n, seed)
    labels = torch.full((len(extra),), len(classes) - 1, dtype=torch.long)
    digits = renormalised(other_styles(data.images, data.labels, classes, OTHER_STYLES, seed), 0.5, seed)
    return ImageData(torch.cat([digits, extra]), torch.cat([data.labels, labels]), classes)


def with_reject_class(splits: DataSplits, fraction: float, seed: int) -> DataSplits:
    """The same splits with a `not-digit` class: `fraction` x len(train) wrong cuts added to train (and likewise to
    validation, from its own digits), half of the digits re-normalised the same way (`renormalised`), and 30% of the
    1s and 7s written the other way (`styles.other_styles`: a flagged 1, a crossed 7). The test
    set keeps its digits only, scored against all 11 classes, so a digit
    called `not-digit` counts as a mistake. Normalisation stays the dataset's (MNIST's)."""
    if not isinstance(splits.train, ImageData):
        raise DigitlabError("a reject class needs the data in memory; it is not available for streamed folders")
    if splits.input_shape != (1, 28, 28) or not all(c.isdigit() for c in splits.classes):
        raise DigitlabError(f"a reject class is for 28x28 digit datasets (mnist, mnist-sample, a folder of digits); "
                            f"{splits.name} has {splits.input_shape} images of {', '.join(splits.classes[:3])} ...")
    classes = [*splits.classes, NOT_DIGIT]
    n_train, n_val = round(fraction * len(splits.train)), round(fraction * len(splits.val))
    train = _extend(splits.train, n_train, seed, classes)
    val = _extend(splits.val, n_val, seed + 1, classes)
    test = ImageData(splits.test.images, splits.test.labels, classes)
    note = f"reader: {n_train} '{NOT_DIGIT}' images (pairs, parts of digits, digit + slice) added to train, {n_val} to val"
    return dataclasses.replace(splits, train=train, val=val, test=test, notes=[*splits.notes, note])
