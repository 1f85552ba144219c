"""Low-resolution photos of handwriting (issue 15 point 4c), made on the fly from a seed.

- `make_lowres`: MNIST test digits only 8-12 px tall in the photo, as a distant or heavily cropped phone shot
  sees them: the page is area-averaged down (what a sensor does), blurred a little, noised, JPEG-compressed.
- `make_uci`: scikit-learn's bundled UCI handwritten digits (`sklearn.datasets.load_digits`: 1,797 8x8 images by
  43 writers who are not MNIST's), upscaled into photos 40-160 px tall. A writer the reader never saw, but also
  only 64 pixels of information per digit: an honest extra row, not a target. Its images are split into two
  fixed, disjoint halves ('val', 'test') so tuning on one never sees the other.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from photo_digits import Photo, encode


def _line(alphas: list[np.ndarray], height: int, gap: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Digits (ink coverage) side by side at their source scale, empty columns trimmed, `gap` x height apart."""
    pieces = []
    for a in alphas:
        cols = np.nonzero(a.max(0) > 0.1)[0]
        pieces.append(a[:, cols.min():cols.max() + 1] if len(cols) else a)
    gaps = [max(1, round(rng.uniform(*gap) * height)) for _ in pieces[1:]] + [0]
    out = np.zeros((alphas[0].shape[0], sum(p.shape[1] for p in pieces) + sum(gaps)), np.float32)
    x = 0
    for p, g in zip(pieces, gaps):
        out[:, x:x + p.shape[1]] = np.maximum(out[:, x:x + p.shape[1]], p)
        x += p.shape[1] + g
    return out


def _resize(a: np.ndarray, factor: float) -> np.ndarray:
    """Area-average down (a sensor's pixels) or bicubic up; float coverage in [0, 1]."""
    size = (max(1, round(a.shape[1] * factor)), max(1, round(a.shape[0] * factor)))
    method = Image.Resampling.BOX if factor < 1 else Image.Resampling.BICUBIC
    return np.clip(np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, method)), 0, 1)


def _photograph(ink: np.ndarray, rng: np.random.Generator, blur: float) -> tuple[bytes, str]:
    """Ink coverage at photo resolution -> JPEG (sometimes PNG) bytes: paper tone, a light gradient, black or
    blue ink, blur `blur` px, sensor noise."""
    h, w = ink.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    light = rng.uniform(0.65, 0.97) * (1 - rng.uniform(0, 0.25) * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))
    ink_name = "blue" if rng.random() < 0.35 else "black"
    colour = np.float32([0.15, 0.22, 0.6] if ink_name == "blue" else [0.1, 0.1, 0.12])
    img = light[..., None] * (1 - ink[..., None] * (1 - colour))
    img = ndi.gaussian_filter(img, (blur, blur, 0))
    img = img + rng.normal(0, rng.uniform(0.005, 0.03), img.shape)
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    data, fmt = encode(pil, rng, jpeg_share=0.85, quality=(50, 91))
    return data, f"{ink_name} ink, blur {blur:.1f}, {fmt}"


def _lowres_photo(alphas: list[np.ndarray], label: str, rng: np.random.Generator) -> Photo:
    """MNIST digits (28x28 coverage) -> a photo in which they are 8-12 px tall."""
    line = _line(alphas, 20, (0.1, 0.4), rng)
    rows = np.nonzero(line.max(1) > 0.1)[0]
    ink_height = rows.max() - rows.min() + 1 if len(rows) else 20
    target = rng.uniform(8, 12)
    margin = (rng.uniform(0.3, 3.0, 2) * ink_height).astype(int) + 1
    page = np.pad(line, ((margin[0], margin[0]), (margin[1], margin[1])))
    shift = rng.integers(0, 4, 2)  # where the sensor's pixel grid falls on the writing
    page = np.pad(page, ((int(shift[0]), 0), (int(shift[1]), 0)))
    ink = _resize(page, target / ink_height)
    data, desc = _photograph(ink, rng, rng.uniform(0.3, 0.8))
    return Photo(data, label, f"{len(label)} digit{'s' if len(label) > 1 else ''} {target:.0f}px, {desc}")


def make_lowres(images: np.ndarray, labels: np.ndarray, seed: int, singles: int, numbers: int,
                min_digits: int = 2, max_digits: int = 6) -> tuple[list[Photo], list[Photo]]:
    """Photos of MNIST digits (`images` (N, 28, 28) uint8) 8-12 px tall: `singles` of one digit, `numbers` of
    min_digits..max_digits digits."""
    rng = np.random.default_rng(seed)
    alpha = lambda i: images[i].astype(np.float32) / 255.0  # noqa: E731 - MNIST is already ink-bright coverage
    one = [_lowres_photo([alpha(i)], str(int(labels[i])), rng) for i in rng.choice(len(images), singles, replace=False)]
    many = []
    for _ in range(numbers):
        idx = rng.choice(len(images), int(rng.integers(min_digits, max_digits + 1)), replace=False)
        many.append(_lowres_photo([alpha(i) for i in idx], "".join(str(int(labels[i])) for i in idx), rng))
    return one, many


@functools.lru_cache(maxsize=1)
def _uci() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 UCI digits (0-1 coverage) and labels, read from the CSV scikit-learn ships: importing sklearn
    itself takes seconds; load_digits is the fallback should the file move."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
        return table[:, :64].reshape(-1, 8, 8) / 16.0, table[:, 64].astype(int)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(int)


def uci_indices(split: str) -> np.ndarray:
    """A fixed half of the 1,797 UCI digits per split ('val', 'test'; 'all' for every one), never overlapping."""
    n = len(_uci()[1])
    order = np.random.default_rng(1797).permutation(n)
    return {"val": order[: n // 2], "test": order[n // 2:], "all": order}[split]


def _uci_photo(alphas: list[np.ndarray], label: str, rng: np.random.Generator) -> Photo:
    """UCI digits (8x8 block counts) upscaled bicubically, the soft blocks sharpened into strokes, photographed."""
    line = _line(alphas, 8, (0.12, 0.45), rng)
    height = rng.uniform(40, 160)
    margin = (rng.uniform(0.4, 1.5, 2) * 8).astype(int) + 1
    page = np.pad(line, ((margin[0], margin[0]), (margin[1], margin[1])))
    up = _resize(page, height / 8)
    ink = np.clip((up - 0.3) / 0.4, 0, 1)
    data, desc = _photograph(ink, rng, rng.uniform(0.3, 1.2) * height / 60)
    return Photo(data, label, f"UCI {len(label)} digit{'s' if len(label) > 1 else ''} {height:.0f}px, {desc}")


def make_uci(seed: int, singles: int, numbers: int, min_digits: int = 2, max_digits: int = 6,
             split: str = "test") -> tuple[list[Photo], list[Photo]]:
    """Photos of UCI 8x8 digits from one split's half: `singles` of one digit, `numbers` of several."""
    images, targets = _uci()
    pool = uci_indices(split)
    rng = np.random.default_rng(seed)
    one = [_uci_photo([images[i]], str(targets[i]), rng) for i in rng.choice(pool, singles, replace=singles > len(pool))]
    many = []
    for _ in range(numbers):
        idx = rng.choice(pool, int(rng.integers(min_digits, max_digits + 1)), replace=False)
        many.append(_uci_photo([images[i] for i in idx], "".join(str(targets[i]) for i in idx), rng))
    return one, many


if __name__ == "__main__":  # look at a few: python tests/photo_lowres.py OUT_PREFIX
    import sys

    from digitlab import load_dataset
    from photo_renderer_b import contact_sheet

    prefix = sys.argv[1] if len(sys.argv) > 1 else "lowres"
    test = load_dataset("mnist", val_split=0).test
    s, n = make_lowres(test.images[:, 0].numpy(), test.labels.numpy(), 0, 12, 12)
    contact_sheet(s + n, f"{prefix}-mnist.png")
    s, n = make_uci(0, 12, 12)
    contact_sheet(s + n, f"{prefix}-uci.png")
