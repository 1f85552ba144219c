"""Whole-number reading on validation photos: the old geometric cutter vs segmentation by recognition.

    python benchmarks/read_numbers.py RUN [--per-length 40] [--seed 1000] [--lengths 2-8] [--hard | --renderer-b]

Photos come from tests/photo_digits.py with seeds >= 1000 only (the benchmark reports seeds 0-999, which
are never used for tuning). `--hard` draws lines the generator does not: digits that touch or overlap
(gaps from -0.1 to 0.3 of the digit size) and a line tilted up to +-10 degrees. `--renderer-b` uses the independent
renderer (tests/photo_renderer_b.py) with its validation fonts and validation seeds (1,100,000 + --seed).
Prints exact-match rates per number length for both readers.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photo_digits import Photo, _ink_alpha, _photograph, _rotate, number_photo  # noqa: E402

from digitlab import load, load_dataset  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402
from digitlab.predict.preprocess import Digit, _box, clean, to_mnist  # noqa: E402


def hard_number_photo(digits: list[np.ndarray], labels: list[int], rng: np.random.Generator) -> Photo:
    """Like photo_digits.number_photo, but digits may touch or overlap and the line tilts up to +-10 degrees."""
    size = int(rng.uniform(40, 160))
    thin = rng.random() < 0.35
    pieces = [_rotate(_ink_alpha(d, int(size * rng.uniform(0.9, 1.1)), rng, thin), rng.uniform(-8, 8)) for d in digits]
    trimmed = []
    for p in pieces:
        cols = np.nonzero(p.max(0) > 0.3)[0]
        trimmed.append(p[:, cols.min():cols.max() + 1] if len(cols) else p)
    gaps = [int(size * rng.uniform(-0.1, 0.3)) for _ in trimmed[1:]]
    height = max(p.shape[0] for p in trimmed) + size // 5
    width = sum(p.shape[1] for p in trimmed) + max(0, sum(gaps)) + size
    line = np.zeros((height, width), np.float32)
    x = 0
    for i, p in enumerate(trimmed):
        y = int(rng.integers(0, height - p.shape[0] + 1))
        line[y:y + p.shape[0], x:x + p.shape[1]] = np.maximum(line[y:y + p.shape[0], x:x + p.shape[1]], p)
        x = max(0, x + p.shape[1] + (gaps[i] if i < len(gaps) else 0))
    cols = np.nonzero(line.max(0) > 0)[0]
    line = _rotate(line[:, :cols.max() + 1], rng.uniform(-10, 10))
    margin = int(size * rng.uniform(0.3, 1.0))
    alpha = np.zeros((line.shape[0] + 2 * margin, line.shape[1] + 2 * margin), np.float32)
    alpha[margin:margin + line.shape[0], margin:margin + line.shape[1]] = line
    data, desc = _photograph(alpha, rng)
    return Photo(data, "".join(str(v) for v in labels), f"hard {len(digits)} digits {size}px, {desc}")


def validation_numbers(per_length: int, lengths: range, seed: int, hard: bool) -> list[Photo]:
    """`per_length` numbers of each length, from MNIST test digits, with a validation seed (>= 1000)."""
    if seed < 1000:
        raise SystemExit("validation seeds start at 1000; 0-999 are the benchmark's test seeds")
    test = load_dataset("mnist", val_split=0).test
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    rng = np.random.default_rng(seed)
    make = hard_number_photo if hard else number_photo
    photos = []
    for n in lengths:
        for _ in range(per_length):
            idx = rng.choice(len(images), size=n, replace=False)
            photos.append(make([images[i] for i in idx], [int(labels[i]) for i in idx], rng))
    return photos


def exact_rates(read, photos: list[Photo]) -> tuple[dict[int, float], float, float]:
    """Exact-match rate per length, overall, and mean seconds per photo."""
    ok: dict[int, list[bool]] = {}
    t0 = time.perf_counter()
    for p in photos:
        try:
            text = read(p.data)
        except DigitlabError:
            text = ""
        ok.setdefault(len(p.label), []).append(text == p.label)
    seconds = (time.perf_counter() - t0) / max(len(photos), 1)
    total = float(np.mean([v for vs in ok.values() for v in vs]))
    return {n: float(np.mean(v)) for n, v in sorted(ok.items())}, total, seconds


# ---- the geometric cutter of digitlab 0.2 (components, bars joined, wide pieces split evenly), the baseline ----

def segment_digits(source, size: int = 28) -> list[Digit]:  # the cutter digitlab 0.2 shipped, kept as the baseline
    """A number written on one line -> its digits, left to right. Connected pieces that overlap horizontally are
    one digit (a broken stroke); a piece much wider than the line is tall is split at its thinnest columns
    (touching digits)."""
    cleaned = clean(source)
    mask = cleaned.mask
    labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
    comps = [(sl[0], sl[1], labels[sl] == i + 1) for i, sl in enumerate(ndi.find_objects(labels))]
    if not comps:
        raise DigitlabError("no writing found in the image")
    heights = np.array([c[0].stop - c[0].start for c in comps], np.float32)
    line_height = float(np.percentile(heights[heights >= 0.5 * heights.max()], 75))
    tall = sorted((c for c, hgt in zip(comps, heights) if hgt >= 0.45 * line_height), key=lambda c: c[1].start)
    short = [c for c, hgt in zip(comps, heights) if hgt < 0.45 * line_height]
    groups: list[list[tuple[slice, slice, np.ndarray]]] = []
    for piece in tall:  # strokes of one digit: overlapping columns, or a hairline gap and a digit's width together
        x0, x1 = piece[1].start, piece[1].stop
        if groups:
            gx0, gx1 = min(p[1].start for p in groups[-1]), max(p[1].stop for p in groups[-1])
            overlap = min(x1, gx1) - max(x0, gx0)
            if overlap > 0.3 * min(x1 - x0, gx1 - gx0) or (-overlap < 0.06 * line_height and max(x1, gx1) - gx0 < 0.9 * line_height):
                groups[-1].append(piece)
                continue
        groups.append([piece])
    for piece in short:  # a detached bar or hook (the flag of a 5, the foot of a 1) joins the nearest digit
        cx = (piece[1].start + piece[1].stop) / 2
        dist = [max(min(p[1].start for p in g) - cx, cx - max(p[1].stop for p in g), 0) for g in groups]
        if groups and min(dist) < 0.3 * line_height:
            groups[int(np.argmin(dist))].append(piece)
    if not groups:
        raise DigitlabError("no digits found in the image")
    digits: list[Digit] = []
    for group in groups:
        y0 = min(p[0].start for p in group)
        y1 = max(p[0].stop for p in group)
        x0 = min(p[1].start for p in group)
        x1 = max(p[1].stop for p in group)
        region = np.zeros((y1 - y0, x1 - x0), bool)
        for sy, sx, m in group:
            region[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0] |= m
        for part in _split_touching(region, line_height):
            if part.any():
                digits.append(Digit(to_mnist(part, size), _box(part, cleaned.scale, (y0, x0))))
    return digits


def _split_touching(region: np.ndarray, line_height: float) -> list[np.ndarray]:
    """Split a piece into n digits when it is much wider than a digit (~0.7 of the line height) would be,
    cutting at the column with the least ink near each expected boundary."""
    h, w = region.shape
    n = int(round(w / (0.8 * max(h, 0.8 * line_height))))
    if w < 1.3 * max(h, 0.8 * line_height) or n < 2:
        return [region]
    profile = region.sum(0).astype(np.float32)
    cuts = [0]
    for k in range(1, n):
        centre = int(k * w / n)
        lo, hi = max(cuts[-1] + 1, centre - w // (3 * n)), min(w - 1, centre + w // (3 * n))
        if hi <= lo:
            continue
        cuts.append(lo + int(np.argmin(profile[lo:hi])))
    cuts.append(w)
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        part = np.zeros_like(region)
        part[:, a:b] = region[:, a:b]
        parts.append(part)
    return parts


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--per-length", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--lengths", default="2-8")
    ap.add_argument("--hard", action="store_true")
    ap.add_argument("--renderer-b", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lo, hi = (int(v) for v in args.lengths.split("-"))
    clf = load(args.run)
    if args.renderer_b:
        from photo_renderer_b import make_photos_b

        photos = make_photos_b(1_100_000 + args.seed, 0, args.per_length * (hi - lo + 1), lo, hi, fonts="val")[1]
    else:
        photos = validation_numbers(args.per_length, range(lo, hi + 1), args.seed, args.hard)

    def old(data: bytes) -> str:
        digits = segment_digits(data, clf.input_shape[1])
        probs = clf.predict_prepared(torch.tensor(np.stack([d.image[None] for d in digits]))).probs
        keep = [i for i, c in enumerate(clf.classes) if c.isdigit()]
        return "".join(clf.classes[keep[j]] for j in probs[:, keep].argmax(1).tolist())

    for name, read in (("old segment_digits", old), ("read_number", lambda d: clf.read(d, multi=True).text)):
        per, total, sec = exact_rates(read, photos)
        print(f"{name:20s} all {100 * total:5.1f}%  " + "  ".join(f"{n}:{100 * v:5.1f}%" for n, v in per.items())
              + f"  ({1000 * sec:.0f} ms/photo)")


if __name__ == "__main__":
    main()
