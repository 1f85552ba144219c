"""Synthetic 'photos' of handwriting: MNIST test digits rendered as pen ink on paper, then photographed.

Each picture varies what real photos vary: paper tone and tint, a lighting gradient and a soft shadow, black or
blue ink, a thin pen or a thick one, digit size (~40-250 px) in a larger canvas, off-centre placement, rotation
up to +-12 degrees, blur, sensor noise, JPEG compression, grayscale or colour files. Lines of 2-6 digits make
whole numbers. The images are made on the fly from a seed; none are stored.

Used by tests/test_predict.py (a few dozen images) and benchmarks/read_photos.py (set a of the measured goal).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi


@dataclass
class Photo:
    data: bytes  # an encoded image file (JPEG or PNG)
    label: str  # the digit(s) written, e.g. "7" or "2026"
    kind: str  # a short description, for reports


def _ink_alpha(digit: np.ndarray, size: int, rng: np.random.Generator, thin: bool) -> np.ndarray:
    """28x28 uint8 MNIST digit -> ink coverage in [0, 1] at `size` px tall, crisp edges; optionally a thin pen."""
    im = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    a = np.clip((np.asarray(im, np.float32) / 255.0 - 0.25) / 0.5, 0, 1)
    if thin:  # a ballpoint instead of a marker: erode the strokes halfway to a 2-5 px line
        mask = a > 0.5
        ys, xs = np.nonzero(mask)
        width = 2 * mask.sum() / max((mask & ~ndi.binary_erosion(mask)).sum(), 1)
        pen = max(2.0, size / 60)
        if width > pen:
            mask = ndi.distance_transform_edt(mask) > 0.5 * (width - pen) / 2
        a = ndi.gaussian_filter(mask.astype(np.float32), 0.7)
    return a


def _paper(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) paper colour times lighting: tone, tint, a linear gradient and a soft shadow blob."""
    tone = rng.uniform(0.62, 0.97)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    light = 1.0 - rng.uniform(0.0, 0.35) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    if rng.random() < 0.5:  # a soft shadow (a hand, a phone) somewhere on the page
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.3, 0.7) * max(h, w)
        light *= 1.0 - rng.uniform(0.1, 0.3) * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    return (tone * light)[..., None] * tint


def _photograph(alpha: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Ink coverage on a canvas -> encoded photo bytes and a description."""
    h, w = alpha.shape
    paper = _paper(h, w, rng)
    blue = rng.random() < 0.4
    ink = np.array([0.12, 0.18, 0.55] if blue else [0.08, 0.08, 0.1], np.float32) * rng.uniform(0.6, 1.6)
    img = paper * (1 - alpha[..., None]) + ink * alpha[..., None] * paper / max(paper.max(), 1e-6)
    blur = rng.uniform(0, 1.2) * max(h, w) / 400
    if blur > 0.3:
        img = ndi.gaussian_filter(img, sigma=(blur, blur, 0))
    img = img + rng.normal(0, rng.uniform(0.005, 0.04), img.shape)
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    gray = rng.random() < 0.3
    if gray:
        pil = pil.convert("L")
    data, fmt = encode(pil, rng, jpeg_share=0.75, quality=(35, 92))
    return data, f"{'blue' if blue else 'black'} ink, {'gray' if gray else 'colour'}, {fmt}, blur {blur:.1f}"


def encode(pil: Image.Image, rng: np.random.Generator, jpeg_share: float, quality: tuple[int, int]) -> tuple[bytes, str]:
    """The photo as a file: JPEG at a random quality `jpeg_share` of the time, else PNG; (bytes, format)."""
    buf = io.BytesIO()
    if rng.random() < jpeg_share:
        q = int(rng.integers(*quality))
        pil.save(buf, "JPEG", quality=q)
        return buf.getvalue(), f"jpeg q{q}"
    pil.save(buf, "PNG")
    return buf.getvalue(), "png"


def _rotate(a: np.ndarray, degrees: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").rotate(degrees, Image.Resampling.BILINEAR, expand=True))


def single_photo(digit: np.ndarray, label: int, rng: np.random.Generator) -> Photo:
    size = int(rng.uniform(40, 250))
    thin = rng.random() < 0.35
    a = _rotate(_ink_alpha(digit, size, rng, thin), rng.uniform(-12, 12))
    canvas = int(size * rng.uniform(1.5, 3.0))
    h, w = canvas, int(canvas * rng.uniform(0.75, 1.33))
    alpha = np.zeros((max(h, a.shape[0] + 2), max(w, a.shape[1] + 2)), np.float32)
    y = int(rng.integers(0, alpha.shape[0] - a.shape[0] + 1))
    x = int(rng.integers(0, alpha.shape[1] - a.shape[1] + 1))
    alpha[y:y + a.shape[0], x:x + a.shape[1]] = a
    data, desc = _photograph(alpha, rng)
    return Photo(data, str(label), f"digit {size}px{' thin pen' if thin else ''}, {desc}")


def number_photo(digits: list[np.ndarray], labels: list[int], rng: np.random.Generator) -> Photo:
    """A line of digits written side by side, as a person writes a number."""
    size = int(rng.uniform(40, 160))
    thin = rng.random() < 0.35
    pieces = [_rotate(_ink_alpha(d, int(size * rng.uniform(0.9, 1.1)), rng, thin), rng.uniform(-8, 8)) for d in digits]
    trimmed = []
    for p in pieces:  # trim the empty columns of each digit so spacing is the gap between inked parts
        cols = np.nonzero(p.max(0) > 0.3)[0]
        trimmed.append(p[:, cols.min():cols.max() + 1] if len(cols) else p)
    gaps = [int(size * rng.uniform(0.12, 0.45)) for _ in trimmed[1:]]
    height = max(p.shape[0] for p in trimmed) + size // 5
    width = sum(p.shape[1] for p in trimmed) + sum(gaps)
    margin = int(size * rng.uniform(0.3, 1.0))
    line = np.zeros((height, width), np.float32)
    x = 0
    for i, p in enumerate(trimmed):
        y = int(rng.integers(0, height - p.shape[0] + 1))
        line[y:y + p.shape[0], x:x + p.shape[1]] = np.maximum(line[y:y + p.shape[0], x:x + p.shape[1]], p)
        x += p.shape[1] + (gaps[i] if i < len(gaps) else 0)
    line = _rotate(line, rng.uniform(-4, 4))
    alpha = np.zeros((line.shape[0] + 2 * margin, line.shape[1] + 2 * margin), np.float32)
    alpha[margin:margin + line.shape[0], margin:margin + line.shape[1]] = line
    data, desc = _photograph(alpha, rng)
    return Photo(data, "".join(str(v) for v in labels), f"{len(digits)} digits {size}px{' thin pen' if thin else ''}, {desc}")


def make_photos(images: np.ndarray, labels: np.ndarray, n_single: int, n_numbers: int, seed: int = 0) -> tuple[list[Photo], list[Photo]]:
    """`n_single` one-digit photos and `n_numbers` 2-6 digit numbers from MNIST test `images` (N, 28, 28) uint8."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(images))
    singles = [single_photo(images[i], int(labels[i]), rng) for i in pick[:n_single]]
    numbers = []
    for _ in range(n_numbers):
        idx = rng.choice(len(images), size=int(rng.integers(2, 7)), replace=False)
        numbers.append(number_photo([images[i] for i in idx], [int(labels[i]) for i in idx], rng))
    return singles, numbers


if __name__ == "__main__":  # write a few examples to look at: python tests/photo_digits.py OUT_DIR
    import sys
    from pathlib import Path

    from digitlab import load_dataset

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "test-artifacts/photos")
    out.mkdir(parents=True, exist_ok=True)
    test = load_dataset("mnist", val_split=0).test
    singles, numbers = make_photos(test.images[:, 0].numpy(), test.labels.numpy(), 12, 6, seed=1)
    for i, p in enumerate(singles + numbers):
        ext = "jpg" if p.data[:2] == b"\xff\xd8" else "png"
        (out / f"{i:02d}-{p.label}.{ext}").write_bytes(p.data)
        print(f"{i:02d} label {p.label}: {p.kind}")
