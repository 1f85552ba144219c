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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photo_digits import Photo, _ink_alpha, _photograph, _rotate, number_photo  # noqa: E402

from digitlab import load, load_dataset  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402


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


def main() -> None:
    import torch

    from digitlab.predict.preprocess import segment_digits

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
