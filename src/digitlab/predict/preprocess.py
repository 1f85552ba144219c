"""Turn a user's photo or scan into what the model was trained on.

MNIST digits were made by size-normalising each binarised digit into a 20x20 box (keeping its aspect ratio,
anti-aliased) and centring it by centre of mass in a 28x28 field, white ink on black. A photo of a digit on
paper looks nothing like that, so a model fed `photo.resize(28, 28)` guesses. `digit_to_mnist` repeats the
dataset's own recipe after cleaning the photo: flat-field the lighting, find the ink, threshold (Otsu), crop,
normalise stroke width (so a thin pen on a big photo survives the downscale), box, centre.
Whole numbers are read by recognition in reading.py.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage as ndi

from ..data.mnist_style import grey_to_mnist, stroke_width, to_mnist
from ..errors import DigitlabError
from .paper_lines import find_paper_lines, remove_paper_lines

MAX_PIXELS = 40_000_000  # larger images are refused (decompression bombs); a 12 MP phone photo is fine
WORK_SIDE = 1024  # photos are analysed at most this many pixels on their longer side
UPSCALE_BELOW = 160  # smaller images (a digit 8-12 px tall, an MNIST-sized crop) are upscaled to about this first
INK_FLOOR_CAP = 0.4  # the ink threshold's floor is at most this far from the paper to the darkest ink (0.3-0.5 alike on validation)
DISC_RADIUS = 6  # pixels of the coarse copy the paper's disc closing runs on (6 and 8 alike on validation; 6 is 3x cheaper)
GREY_BELOW = 20  # writing fewer photo pixels tall than this is drawn from its grey levels, not its binary mask


@dataclass
class Digit:
    """One digit cut from a photo: its 28x28 (0-1, ink bright) and where it was, in original-image pixels."""
    image: np.ndarray
    box: tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass
class Cleaned:
    """A photo reduced to its ink at working resolution: the mask that finds and cuts the writing, and the grey
    levels small writing is drawn from (`grey_digit`)."""
    mask: np.ndarray  # bool, True = ink
    ink: np.ndarray  # float32 in [0, 1], how much ink each pixel holds
    scale: float  # original pixels per working pixel


def open_image(source: str | Path | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a file or bytes as a PIL image, refusing non-images and oversized images with a clear error."""
    name = "upload" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except FileNotFoundError:
        raise DigitlabError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DigitlabError(f"{name}: is a folder, not an image") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise DigitlabError(f"{name}: not an image file PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP ...)") from None
    except Image.DecompressionBombError:
        raise DigitlabError(f"{name}: image too large to open safely") from None
    w, h = im.size
    if w * h > max_pixels:
        raise DigitlabError(f"{name}: {w}x{h} pixels is over the limit of {max_pixels:,}; scale it down first")
    if w < 1 or h < 1:
        raise DigitlabError(f"{name}: empty image")
    return im


def to_gray(im: Image.Image, max_side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """Grayscale float32 in [0, 1], downscaled (area-averaged) so the longer side is at most `max_side`."""
    try:
        if im.format == "JPEG":
            im.draft("L", (im.size[0] // 2, im.size[1] // 2) if max(im.size) > 2 * max_side else im.size)
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")  # drawn on a transparent canvas: put it on white paper
            paper = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(paper, im)
        gray = im.convert("L")
    except (OSError, ValueError) as e:
        raise DigitlabError(f"cannot decode the image ({e}); is the file complete?") from None
    scale = max(gray.size) / max_side
    if scale > 1:
        gray = gray.resize((max(1, round(gray.size[0] / scale)), max(1, round(gray.size[1] / scale))), Image.Resampling.BOX)
    else:
        scale = 1.0
    original = max(im.size) / max(gray.size)
    return np.asarray(gray, dtype=np.float32) / 255.0, original


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits `values` into two classes (Otsu 1979)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    # np.histogram's bins (last one closed), counted with bincount: 10x faster on the small images a server sees
    index = np.minimum(((values - lo) * (bins / (hi - lo))).astype(np.int64), bins - 1)
    hist = np.bincount(index.ravel(), minlength=bins)
    centers = lo + (np.arange(bins) + 0.5) * ((hi - lo) / bins)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def ink_map(gray: np.ndarray, small: bool | None = None, thumb: "_Thumb | None" = None) -> np.ndarray:
    """How much ink each pixel holds, in [0, 1], with paper tone, lighting gradients and shadows removed.
    The background is whichever polarity the majority of pixels has (light paper when in doubt); on light paper ink
    is 1 - image/background (lighting multiplies), on a dark background (chalk, MNIST itself) it is image -
    background. `small` (default: images of at most 64 px: a tight crop, an icon, a digit 8-12 px tall) takes the
    polarity from the pixel values' spread, since in a tight crop the ink can be the local majority; `thumb` lets
    several working sizes of one photo share the (costly) background estimate."""
    if small if small is not None else max(gray.shape) <= 64:
        lo, q50, hi = np.percentile(gray, [0.02, 50, 99.98])  # one sort for all of them
        light_background = q50 - lo > hi - q50
        # a light gradient across a small photo is as strong as the ink of a 9 px digit: a flat background turned
        # it into ink (a third of the 8-12 px digits of the validation photos misread or "no writing" with it)
        return _ink(gray, _paper(gray, light_background), light_background)
    thumb = thumb or _Thumb(gray)
    lo, hi = np.percentile(gray - thumb.background(gray.shape), [0.02, 99.98])  # even a thin line reaches these
    # Light paper unless the bright outliers are three times the dark ones: the smooth median misses a hard
    # shadow's edge by a band in which the lit side reads as bright as chalk, and an even split there turned the
    # gaps between the strokes into "ink" (renderer b's validation photos: 3 in 100 numbers, 1 in 300 digits)
    light_background = hi < 3 * -lo
    return _ink(gray, _paper(gray, light_background), light_background)


def _paper(gray: np.ndarray, light_background: bool) -> np.ndarray:
    """The paper under the writing: a grey closing (opening for chalk) with a square a fifth of the image
    wide, which wipes out strokes thinner than that and keeps every larger shape as it is, sharp edges included. So
    a hard shadow, a thumb or the edge of the page stays background instead of turning into a line of ink (the
    percentile background this replaced smeared such edges across a third of the image).

    The max filter also takes the camera noise's highest peaks for the paper, so in dim light or a small photo
    every paper pixel looked 10-20% inked and faint writing sank into that. A second closing, with a disc as wide
    as the square's diagonal (it wipes out every stroke the square does), on a block-averaged copy (`DISC_RADIUS`
    px per disc radius: the averaging removes the noise) gives a paper level without that bias, and following round
    shapes, a little more of a thumb's rounded edge (which a square leaves out, as arcs of "ink"); each pixel takes
    the darker of the two. Validation photos, 4 seeds: renderer b's numbers 355 -> 361 of 400 exact, those of 8-12
    px digits 297 -> 315, UCI's 314 -> 319; single digits and (a) within a few photos; 1.5-3.5 ms a call."""
    k = max(5, max(gray.shape) // 5)
    grow, shrink = (ndi.maximum_filter, ndi.minimum_filter) if light_background else (ndi.minimum_filter, ndi.maximum_filter)
    square = shrink(grow(gray, size=k, mode="nearest"), size=k, mode="nearest")
    r = DISC_RADIUS
    f = round(0.71 * k / r)  # the disc's radius is r pixels of a copy f times smaller
    if f < 2:
        return square
    coarse = np.asarray(Image.fromarray(gray).resize((max(1, round(gray.shape[1] / f)), max(1, round(gray.shape[0] / f))),
                                                     Image.Resampling.BOX))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = yy * yy + xx * xx <= r * r + r
    rounded = shrink(grow(coarse, footprint=disc, mode="nearest"), footprint=disc, mode="nearest")
    rounded = np.asarray(Image.fromarray(rounded).resize(gray.shape[::-1], Image.Resampling.BILINEAR))
    return np.minimum(square, rounded) if light_background else np.maximum(square, rounded)


class _Thumb:
    """The photo's local median over windows a third of the image wide, on a 64 px thumbnail; ink covers a
    minority of any such window, however thick the pen, so it drops out. Which way the ink deviates from it
    (darker: pen on paper; lighter: chalk, MNIST itself) decides the polarity. The median is taken every second
    thumbnail pixel (the smoothing after it hides the difference), by one partition of the windows."""

    def __init__(self, gray: np.ndarray):
        f = max(gray.shape) / 64
        size = (max(1, round(gray.shape[1] / f)), max(1, round(gray.shape[0] / f)))
        thumb = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BOX)) if f > 1 else gray
        self.win = win = max(3, max(thumb.shape) // 3)
        padded = np.pad(thumb, (win // 2, (win - 1) // 2), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (win, win))[::2, ::2]
        flat = windows.reshape(windows.shape[0] * windows.shape[1], win * win)
        rank = int(win * win * 50 / 100)
        self.shape = thumb.shape
        self.median = np.partition(flat, rank, axis=1)[:, rank].reshape(windows.shape[:2])
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def background(self, shape: tuple[int, ...]) -> np.ndarray:
        """The median background resized to `shape` (kept: a photo is tried at up to three working sizes)."""
        key = tuple(shape)
        if key not in self.cache:
            bg = np.repeat(np.repeat(self.median, 2, 0), 2, 1)[:self.shape[0], :self.shape[1]]
            bg = ndi.uniform_filter(bg.astype(np.float32), size=max(3, self.win // 2), mode="nearest")
            self.cache[key] = np.asarray(Image.fromarray(bg).resize(shape[::-1], Image.Resampling.BILINEAR))
        return self.cache[key]


def _ink(gray: np.ndarray, bg: np.ndarray | float, light_background: bool) -> np.ndarray:
    ink = 1.0 - gray / np.maximum(bg, 1e-3) if light_background else gray - bg
    return median3(np.clip(ink, 0, 1).astype(np.float32))  # salt-and-pepper sensor noise


def median3(x: np.ndarray) -> np.ndarray:
    """3x3 median filter (edges reflected), equal to scipy's median_filter(x, 3) at a third of its cost: sort each
    column of three, then the median is the median of (largest low, median middle, smallest high) across the row."""
    p = np.pad(x, 1, mode="symmetric")
    a, b, c = p[:-2], p[1:-1], p[2:]
    s1, s2 = np.minimum(a, b), np.maximum(a, b)
    s3, hi = np.minimum(s2, c), np.maximum(s2, c)
    lo, mid = np.minimum(s1, s3), np.maximum(s1, s3)
    top_lo = np.maximum(np.maximum(lo[:, :-2], lo[:, 1:-1]), lo[:, 2:])
    low_hi = np.minimum(np.minimum(hi[:, :-2], hi[:, 1:-1]), hi[:, 2:])
    return _med3(top_lo, _med3(mid[:, :-2], mid[:, 1:-1], mid[:, 2:]), low_hi)


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _median(a: np.ndarray) -> float:
    """np.median without its overhead (a quarter of the cost on a 28x28 image)."""
    flat = a.ravel()
    k = flat.size // 2
    if flat.size % 2:
        return float(np.partition(flat, k)[k])
    part = np.partition(flat, [k - 1, k])
    return float((part[k - 1] + part[k]) / 2)


def clean(source: str | Path | bytes | Image.Image | np.ndarray) -> Cleaned:
    """Photo -> ink mask at working resolution, noise specks removed. The working side is the smallest of 256, 512
    and the full `WORK_SIDE` at which the writing is still detailed (strokes >= 3 px, the tallest shape >= 48 px):
    big, bold writing is found as well at a quarter of the pixels, 5-10x sooner; thin or small writing gets them all."""
    if isinstance(source, np.ndarray):
        arr = source.astype(np.float32)
        arr = arr / 255.0 if arr.max() > 1.5 else arr
        gray, scale = (arr.mean(-1) if arr.ndim == 3 else arr), 1.0
    else:
        gray, scale = to_gray(source if isinstance(source, Image.Image) else open_image(source))
    small_photo = max(gray.shape) <= 64
    if max(gray.shape) < UPSCALE_BELOW:  # strokes 1-2 px wide would not survive the noise filter or the threshold
        f = -(-UPSCALE_BELOW // max(gray.shape))
        gray = np.asarray(Image.fromarray(gray).resize((gray.shape[1] * f, gray.shape[0] * f), Image.Resampling.BICUBIC))
        scale /= f
    thumb = None if small_photo else _Thumb(gray)
    for side in (256, 512):
        f = max(gray.shape) / side
        if f < 1.5:
            break
        small = np.asarray(Image.fromarray(gray).resize((max(1, round(gray.shape[1] / f)), max(1, round(gray.shape[0] / f))),
                                                        Image.Resampling.BOX))
        try:
            mask, ink = _ink_mask(small, thumb, small_photo)
        except DigitlabError:
            break  # faint or tiny writing: look at every pixel
        if _detailed(mask):
            return Cleaned(mask, ink, scale * max(gray.shape) / max(small.shape))
    return Cleaned(*_ink_mask(gray, thumb, small_photo), scale)


def _detailed(mask: np.ndarray, min_stroke: float = 3.0, min_height: int = 48) -> bool:
    """Is this mask fine enough to cut and normalise digits from (to_mnist draws them 20 px tall)?"""
    labels, n = ndi.label(mask)
    if n == 0:
        return False
    tallest = max(sl[0].stop - sl[0].start for sl in ndi.find_objects(labels))
    return tallest >= min_height and stroke_width(mask) >= min_stroke


def _ink_mask(gray: np.ndarray, thumb: "_Thumb | None", small_photo: bool) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale -> ink mask (and the ink map it was cut from). The paper's own noise level (median and MAD of the
    ink map, which is mostly paper) is the floor; but when the darkest ink (its 99.99th percentile, not one hot
    pixel) stands 6 MADs out of the paper, the floor is never above `INK_FLOOR_CAP` of the way from the paper to
    it: grid lines, a shadow's edge and dim-light noise widen the MAD until faint pencil sat under a 6-MAD floor
    ("no writing found" on 4 of renderer b's 200 validation numbers). Above the floor Otsu separates stroke cores
    from their soft edges, and half of that keeps the edges."""
    ink = ink_map(gray, small_photo, thumb)
    med = _median(ink)
    spread = 1.4826 * _median(np.abs(ink - med))
    rank = int(0.9999 * (ink.size - 1))
    top = float(np.partition(ink.ravel(), rank)[rank])
    floor = med + 6 * spread + 0.02
    if top - med >= 6 * spread:  # something stands out of the paper's noise (an empty photo's noise: 3-4 MADs)
        floor = min(floor, med + INK_FLOOR_CAP * (top - med))
    above = ink[ink > floor]
    p90 = int(0.9 * above.size)  # the 90th percentile by one partition, not a sort
    if above.size < 10 or float(np.partition(above, p90)[p90]) < 0.06:
        raise DigitlabError("no writing found in the image (it is almost uniform); is it the right file?")
    mask = ink > max(floor, 0.5 * otsu_threshold(above))
    lines = find_paper_lines(ink > floor)  # found above the noise floor, where a faint grid shows along its length
    if lines:  # ruled or squared paper (paper_lines.py): its lines leave the mask and the grey ink
        kept = remove_paper_lines(mask, lines)
        ink = np.where(mask & ~kept, np.float32(0), ink)
        mask = kept
    labels, n = ndi.label(mask)
    if n == 0:
        raise DigitlabError("no writing found in the image")
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = areas >= max(4, 0.04 * areas.max())  # sensor noise and paper texture make small specks
    return keep[labels - 1] & mask, ink


def _components(mask: np.ndarray) -> list[tuple[slice, slice, np.ndarray]]:
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    return [(sl[0], sl[1], labels[sl] == i + 1) for i, sl in enumerate(ndi.find_objects(labels))]


def drop_border_shapes(mask: np.ndarray) -> np.ndarray:
    """Shapes cut by the photo's edge (a thumb, a shadow's edge, the paper's edge) go when the rest of the writing
    is framed with a margin: people frame the number they photograph. In a tight crop (writing close to the edges
    anyway) a digit touching the edge is kept."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    if len(edge) == 0 or len(edge) == n:
        return mask
    inside = mask & ~np.isin(labels, edge)
    if inside.sum() < 0.2 * mask.sum():  # little clear of the edge: the writing itself is cut by it
        return mask
    rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
    tallest = max(sl[0].stop - sl[0].start for i, sl in enumerate(ndi.find_objects(labels)) if i + 1 not in edge)
    margin = min(rows[0], cols[0], mask.shape[0] - 1 - rows[-1], mask.shape[1] - 1 - cols[-1])
    return inside if margin >= 0.25 * tallest else mask


def _main_shape(mask: np.ndarray) -> np.ndarray:
    """For a single digit: the biggest component plus pieces near it (broken strokes); stray marks elsewhere go."""
    comps = _components(mask)
    if len(comps) <= 1:
        return mask
    areas = [c[2].sum() for c in comps]
    ys, xs, _ = comps[int(np.argmax(areas))]
    size = max(ys.stop - ys.start, xs.stop - xs.start)
    cy, cx = (ys.start + ys.stop) / 2, (xs.start + xs.stop) / 2
    out = np.zeros_like(mask)
    for (sy, sx, m), area in zip(comps, areas):
        near = abs((sy.start + sy.stop) / 2 - cy) < 0.8 * size and abs((sx.start + sx.stop) / 2 - cx) < 0.8 * size
        if near and area >= 0.03 * max(areas):
            out[sy, sx] |= m
    return out


def digit_to_mnist(source, size: int = 28) -> Digit:
    """One digit per image (the usual case): the 28x28 the model should see."""
    cleaned = clean(source)
    mask = _main_shape(drop_border_shapes(cleaned.mask))
    rows = np.nonzero(mask.any(1))[0]
    small = len(rows) > 0 and small_writing(rows[-1] - rows[0] + 1, cleaned.scale)
    image = grey_to_mnist(grey_digit(mask, cleaned.ink, cleaned.scale), size) if small else to_mnist(mask, size)
    return Digit(image, _box(mask, cleaned.scale))


def small_writing(height: float, scale: float) -> bool:
    """Is writing `height` working pixels tall (`scale` photo pixels each) drawn from its grey levels?"""
    return height * scale < GREY_BELOW


def grey_digit(mask: np.ndarray, ink: np.ndarray, scale: float) -> np.ndarray:
    """The ink's grey levels on and around (one photo pixel) a digit's mask, zero elsewhere."""
    grow = max(1, round(1 / scale))
    return np.where(ndi.binary_dilation(mask, iterations=grow), ink, 0).astype(np.float32)


def _box(mask: np.ndarray, scale: float, offset: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    y0, x0 = offset
    return (int((xs.min() + x0) * scale), int((ys.min() + y0) * scale), int((xs.max() + x0 + 1) * scale), int((ys.max() + y0 + 1) * scale))


def resize_plain(source, channels: int, size: int) -> np.ndarray:
    """For colour and non-digit models: convert, resize to the model's input, (C, H, W) float in [0, 1]."""
    im = source if isinstance(source, Image.Image) else open_image(source)
    try:
        im = ImageOps.exif_transpose(im).convert("RGB" if channels == 3 else "L")
    except (OSError, ValueError) as e:
        raise DigitlabError(f"cannot decode the image ({e}); is the file complete?") from None
    arr = np.asarray(ImageOps.fit(im, (size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def naive_28x28(source, size: int = 28) -> np.ndarray:
    """What the classic tutorials do with a photo: grayscale and squash it to 28x28. Kept as the baseline."""
    im = source if isinstance(source, Image.Image) else open_image(source)
    return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)[None] / 255.0
