"""A second, independent photo renderer: handwriting-style fonts on school paper, photographed by a phone.

tests/photo_digits.py renders MNIST digits; a reader tuned on it can still fail on writing it never saw. This
renderer makes different choices on purpose, so a score on it is not a score on the first renderer's habits:
  - the digits are glyphs of handwriting-style fonts from Debian packages (FONTS), each one bent by a smooth
    random warp, slanted, re-inked with a thinner or thicker pen, sometimes with a stroke broken in one place;
  - numbers of 2-8 digits whose neighbours may touch or overlap a little, on a baseline that wanders;
  - plain, graph (squared), lined (ruled, with a margin) or sticky-note paper;
  - black, blue, red, green ink or pencil grey (grainy);
  - the page seen tilted up to +-10 degrees with a mild perspective (keystone), lit by dim or warm light, a
    hard-edged shadow, a vignette or a glare, sometimes with a thumb in a corner (never over the writing);
  - defocus or shake blur, sensor noise that grows in dim light, always a colour JPEG (quality 35-95).
Fonts are split into a 'val' group and a disjoint 'test' group, so tuning on one never sees the other's glyphs.
"""
from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from photo_digits import Photo

# (Debian package, font file, group). Chosen by looking at contact sheets: every digit reads as itself to a
# person (left out: outline and sketch faces, fonts-femkeklaver and fonts-cabinsketch; fonts-breip, whose 0 is open
# at the top like a C; fonts-sjfonts' Delphine, whose 1 is a slash with a long flag).
FONTS: tuple[tuple[str, str, str], ...] = (
    ("fonts-dkg-handwriting", "dkg.ttf", "test"),
    ("fonts-bwht", "BecauseWeBuild-Regular.otf", "test"),
    ("fonts-bwht", "BecauseWeConnect-Regular.otf", "val"),
    ("fonts-bwht", "BecauseWeCreate-Regular.otf", "test"),
    ("fonts-bwht", "BecauseWeLearn-Regular.otf", "test"),
    ("fonts-bwht", "BecauseWeMentor-Regular.otf", "val"),
    ("fonts-bwht", "BecauseWeOrganize-Regular.otf", "test"),
    ("fonts-comic-neue", "ComicNeue-Regular.otf", "test"),
    ("fonts-comic-neue", "ComicNeue-Bold.otf", "test"),
    ("fonts-humor-sans", "Humor-Sans.ttf", "test"),
    ("fonts-tlwg-purisa-otf", "Purisa.otf", "val"),
    ("fonts-sjfonts", "SteveHand.ttf", "test"),
    ("fonts-tomsontalks", "TomsonTalks.ttf", "val"),
    ("fonts-rufscript", "Rufscript010.ttf", "val"),
    ("fonts-kristi", "Kristi.ttf", "test"),
    ("fonts-klee", "KleeOne-Regular.ttf", "test"),
    ("fonts-kaushanscript", "KaushanScript-Regular.otf", "val"),
    ("fonts-dancingscript", "DancingScript-Regular.otf", "test"),
)
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
INKS = {  # RGB reflectance of the ink: what fraction of the light it gives back
    "black": (0.10, 0.10, 0.12), "blue": (0.12, 0.22, 0.62), "red": (0.78, 0.12, 0.12),
    "green": (0.10, 0.50, 0.22), "pencil": (0.42, 0.42, 0.45),
}
PAPERS = {"white": (0.96, 0.96, 0.94), "cream": (0.97, 0.94, 0.84), "recycled": (0.82, 0.81, 0.78),
          "sticky note": (1.0, 0.93, 0.52)}
SKIN = ((0.93, 0.76, 0.65), (0.85, 0.64, 0.50), (0.66, 0.46, 0.33), (0.45, 0.31, 0.22))


class FontsMissing(RuntimeError):
    """Renderer b cannot run: some of its font packages are not installed."""


@functools.lru_cache(maxsize=1)
def _font_index() -> dict[str, str]:
    """File name -> path of every font under the usual folders (and $DIGITLAB_FONTS), found once."""
    dirs = [os.environ.get("DIGITLAB_FONTS", ""), *FONT_DIRS]
    found: dict[str, str] = {}
    for d in filter(None, dirs):
        root = Path(d).expanduser()
        if root.is_dir():
            for p in root.rglob("*"):
                if p.suffix.lower() in (".ttf", ".otf"):
                    found.setdefault(p.name, str(p))
    return found


def font_paths(group: str = "all") -> list[str]:
    """Paths of the fonts in `group` ('val', 'test' or 'all'); FontsMissing names the apt packages to install."""
    if group not in ("val", "test", "all"):
        raise ValueError(f"unknown font group {group!r}; choose val, test or all")
    index = _font_index()
    missing = sorted({pkg for pkg, name, _ in FONTS if name not in index})
    if missing:
        raise FontsMissing(f"renderer b needs Debian font packages that are not installed: "
                           f"apt-get install -y {' '.join(missing)}")
    return [index[name] for _, name, g in FONTS if group in ("all", g)]


def needed_packages() -> list[str]:
    return sorted({pkg for pkg, _, _ in FONTS})


@functools.lru_cache(maxsize=512)
def _glyph(path: str, ch: str) -> np.ndarray:
    """Ink coverage of one character at 160 px, cropped to its ink; rendered once per font and digit."""
    font = ImageFont.truetype(path, 160)
    left, top, right, bottom = font.getbbox(ch)
    im = Image.new("L", (right - left + 40, bottom - top + 40), 0)
    ImageDraw.Draw(im).text((20 - left, 20 - top), ch, font=font, fill=255)
    a = np.asarray(im, np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.05)
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _stroke_width(mask: np.ndarray) -> float:
    perimeter = (mask & ~ndi.binary_erosion(mask)).sum()
    return float(2 * mask.sum() / max(perimeter, 1))


def _repen(a: np.ndarray, pen_factor: float) -> tuple[np.ndarray, float]:
    """Redraw a glyph with a pen `pen_factor` times as wide (at least 1.5 px); returns coverage and pen width."""
    mask = a > 0.5
    width = _stroke_width(mask)
    pen = max(1.5, width * pen_factor)
    if pen < width:  # at most 0.2 of the width off each side, so a font's hairlines survive
        mask = ndi.distance_transform_edt(mask) > min(width - pen, 0.4 * width) / 2
    elif pen > width:
        mask = ndi.distance_transform_edt(~mask) <= (pen - width) / 2
    return ndi.gaussian_filter(mask.astype(np.float32), 0.6), pen


def _hand_warp(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No two copies of a glyph alike: a smooth random displacement, a slant, a small turn, a squeeze."""
    pad = max(4, int(0.25 * max(a.shape)))
    a = np.pad(a, pad)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    turn, slant, squeeze = np.radians(rng.uniform(-7, 7)), rng.uniform(-0.25, 0.25), rng.uniform(0.85, 1.15)
    y0, x0 = yy - cy, xx - cx
    src_y = cy + np.cos(turn) * y0 - np.sin(turn) * x0
    src_x = cx + (np.sin(turn) * y0 + np.cos(turn) * x0) / squeeze + slant * y0
    amp = rng.uniform(0.01, 0.045) * (h - 2 * pad)
    for grid in (src_y, src_x):
        field = ndi.gaussian_filter(rng.normal(size=(h, w)).astype(np.float32), max(2.0, (h - 2 * pad) / 5))
        grid += amp * field / max(float(np.abs(field).max()), 1e-6)
    out = ndi.map_coordinates(a, [src_y, src_x], order=1, cval=0.0)
    ys, xs = np.nonzero(out > 0.05)
    return out[ys.min():ys.max() + 1, xs.min():xs.max() + 1] if len(ys) else out


def _break_stroke(a: np.ndarray, pen: float, rng: np.random.Generator) -> np.ndarray:
    """Lift the pen once: a gap under a pen wide across one stroke, inside a small disc, not across the glyph."""
    ys, xs = np.nonzero(a > 0.5)
    i = int(rng.integers(len(ys)))
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    across = np.abs((yy - ys[i]) * np.cos(angle) - (xx - xs[i]) * np.sin(angle))
    near = np.hypot(yy - ys[i], xx - xs[i]) < 1.3 * pen + 1
    gap = rng.uniform(0.3, 0.6) * pen + 0.5
    return np.where(near & (across < gap / 2), 0.0, a).astype(np.float32)


def _digit(path: str, ch: str, height: float, pen_factor: float, rng: np.random.Generator) -> tuple[np.ndarray, float, bool]:
    """One handwritten-looking digit about `height` px tall: coverage, pen width in px, whether a stroke broke."""
    g = _glyph(path, ch)
    scale = height * rng.uniform(0.92, 1.08) / g.shape[0]
    size = (max(2, round(g.shape[1] * scale)), max(2, round(g.shape[0] * scale)))
    a = np.asarray(Image.fromarray(g).resize(size, Image.Resampling.LANCZOS if scale > 1 else Image.Resampling.BOX))
    a, pen = _repen(np.clip(a, 0, 1), pen_factor)
    a = _hand_warp(a, rng)
    broke = bool(rng.random() < 0.15 and height >= 20 and ch != "1")  # a 1 broken in two reads as '!'
    return (_break_stroke(a, pen, rng) if broke else a), pen, broke


def _line(digits: list[np.ndarray], height: float, rng: np.random.Generator) -> np.ndarray:
    """Digits side by side on a wandering baseline; about one gap in five is a touch or a small overlap."""
    widths = [d.shape[1] for d in digits]
    gaps = [-int(rng.uniform(0, 0.12) * min(a, b)) if rng.random() < 0.2 else int(rng.uniform(0.08, 0.4) * height)
            for a, b in zip(widths[:-1], widths[1:])]
    xs = np.concatenate([[0], np.cumsum(np.array(widths[:-1]) + np.array(gaps, int))]).astype(int)
    rise = int(0.12 * height) + 1
    h = max(d.shape[0] for d in digits) + 2 * rise
    line = np.zeros((h, int(xs[-1]) + widths[-1]), np.float32)
    for d, x in zip(digits, xs):
        bottom = h - rise + int(rng.normal(0, 0.04 * height))
        y = int(np.clip(bottom - d.shape[0], 0, h - d.shape[0]))
        np.maximum(line[y:y + d.shape[0], x:x + d.shape[1]], d, out=line[y:y + d.shape[0], x:x + d.shape[1]])
    ys = np.nonzero(line.max(1) > 0.05)[0]
    return line[ys.min():ys.max() + 1]


def _camera_to_paper(hc: int, wc: int, paper_hw: tuple[int, int], tilt: float, keystone: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Paper coordinates (v, u) seen at each camera pixel: the page turned by `tilt` degrees, with a keystone."""
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    x, y = xx - wc / 2, yy - hc / 2
    w = 1.0 + (keystone[0] * x + keystone[1] * y) / max(hc, wc)
    x, y = x / w, y / w
    t = np.radians(tilt)
    u = np.cos(t) * x + np.sin(t) * y + paper_hw[1] / 2
    v = -np.sin(t) * x + np.cos(t) * y + paper_hw[0] / 2
    return v, u


def _rulings(v: np.ndarray, u: np.ndarray, height: float, baseline: float, left: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Printed lines of the paper at paper coordinates (v, u): coverage, their colour and the paper kind."""
    def lines(coord: np.ndarray, pitch: float, offset: float, width: float) -> np.ndarray:
        dist = np.abs((coord - offset + pitch / 2) % pitch - pitch / 2)
        return np.clip(width / 2 + 0.5 - dist, 0, 1)

    kind = str(rng.choice(["plain", "graph", "lined", "sticky note"], p=[0.25, 0.3, 0.3, 0.15]))
    colour = np.array([(0.55, 0.7, 0.92), (0.7, 0.7, 0.72), (0.6, 0.82, 0.66)][int(rng.integers(3))], np.float32)
    width = rng.uniform(0.7, 1.5) * max(1.0, height / 70)
    cover = np.zeros_like(u)
    if kind == "graph":
        pitch = rng.uniform(0.4, 1.0) * height
        cover = np.maximum(lines(u, pitch, rng.uniform(0, pitch), width), lines(v, pitch, rng.uniform(0, pitch), width))
    elif kind == "lined":  # the writing sits on a ruled line; sometimes a red margin line to its left
        cover = lines(v, rng.uniform(1.3, 1.9) * height, baseline + rng.uniform(0, 0.05) * height, width)
        if rng.random() < 0.3:
            margin = np.clip(0.75 * width + 0.5 - np.abs(u - left + rng.uniform(0.2, 0.6) * height), 0, 1)
            colour = np.where(margin[..., None] > cover[..., None], np.float32([0.9, 0.45, 0.45]), colour)
            cover = np.maximum(cover, margin)
    cover = cover * rng.uniform(0.5, 1.0)
    return cover, (colour if colour.ndim == 3 else np.broadcast_to(colour, (*u.shape, 3))), kind


def _lighting(hc: int, wc: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Camera-space light: (h, w, 3) multiplier, an additive glare, the brightness, and what was chosen."""
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    yy, xx = yy / max(hc, wc), xx / max(hc, wc)
    bright = rng.uniform(0.45, 0.65) if rng.random() < 0.25 else rng.uniform(0.75, 1.05)  # auto exposure, mostly
    cast_name, cast = [("daylight", (1.0, 1.0, 1.0)), ("warm lamp", (1.0, 0.86, 0.66)),
                       ("cool", (0.88, 0.95, 1.05)), ("fluorescent", (0.95, 1.0, 0.9))][int(rng.choice(4, p=[0.4, 0.3, 0.15, 0.15]))]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    light = bright * (1 - rng.uniform(0, 0.3) * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))
    notes = [f"{'dim ' if bright < 0.65 else ''}{cast_name}"]
    if rng.random() < 0.4:
        r2 = (xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2
        light = light * (1 - rng.uniform(0.15, 0.4) * r2 / max(float(r2.max()), 1e-6))
        notes.append("vignette")
    if rng.random() < 0.3:  # a hard-edged shadow (a phone, a head) over part of the page
        a = rng.uniform(0, 2 * np.pi)
        side = (xx - rng.uniform(0.2, 0.8) * xx.max()) * np.cos(a) + (yy - rng.uniform(0.2, 0.8) * yy.max()) * np.sin(a)
        light = light * (1 - rng.uniform(0.25, 0.5) * 0.5 * (1 + np.tanh(side * max(hc, wc) / rng.uniform(2, 8))))
        notes.append("hard shadow")
    glare = np.zeros_like(xx)
    if rng.random() < 0.15:
        cy, cx, r = rng.uniform(0, yy.max()), rng.uniform(0, xx.max()), rng.uniform(0.1, 0.3)
        glare = rng.uniform(0.08, 0.22) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        notes.append("glare")
    return light[..., None] * np.float32(cast), glare[..., None], bright, notes


def _thumb(ink: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """A fingertip coming in from a corner, shrunk until it is clear of the writing: coverage and colour."""
    hc, wc = ink.shape
    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    cy, cx = float(rng.choice([0, hc])), float(rng.choice([0, wc]))
    toward = np.arctan2(hc / 2 - cy, wc / 2 - cx)
    along = (xx - cx) * np.cos(toward) + (yy - cy) * np.sin(toward)
    across = -(xx - cx) * np.sin(toward) + (yy - cy) * np.cos(toward)
    writing = ndi.maximum_filter(ink > 0.05, size=5)
    size = rng.uniform(0.2, 0.35) * min(hc, wc)
    for _ in range(6):
        r = np.hypot(along / (1.6 * size), across / size)
        cover = np.clip((1 - r) * size / 3, 0, 1)
        if not (writing & (cover > 0.02)).any():
            shade = 0.75 + 0.25 * np.clip(1 - r, 0, 1)[..., None] ** 0.5  # rounder, so darker at its edge
            return cover, np.float32(SKIN[int(rng.integers(len(SKIN)))]) * shade
        size *= 0.75
    return None


def _shoot(ink: np.ndarray, v: np.ndarray, u: np.ndarray, paper: dict, pen: float, rng: np.random.Generator) -> tuple[bytes, str]:
    """Ink coverage in camera space + the paper's layout -> JPEG bytes of the photo and a description."""
    hc, wc = ink.shape
    rules, rule_rgb, kind = _rulings(v, u, paper["height"], paper["baseline"], paper["left"], rng)
    tone = np.float32(PAPERS["sticky note" if kind == "sticky note" else str(rng.choice(["white", "cream", "recycled"]))])
    ink_name = str(rng.choice(list(INKS), p=[0.3, 0.3, 0.15, 0.1, 0.15]))
    if ink_name == "pencil":  # graphite: lighter, and grainy along the stroke
        grain = ndi.gaussian_filter(rng.standard_normal(ink.shape, np.float32), 0.7)
        ink = ink * rng.uniform(0.6, 0.9) * np.clip(0.85 + 0.25 * grain / max(float(grain.std()), 1e-6), 0.3, 1)
    img = tone * (1 - rules[..., None] * (1 - rule_rgb)) * (1 - ink[..., None] * (1 - np.float32(INKS[ink_name])))
    notes = [kind, f"{ink_name} ink"]
    thumb = _thumb(ink, rng) if rng.random() < 0.25 else None
    if thumb is not None:
        img = img * (1 - thumb[0][..., None]) + thumb[1] * thumb[0][..., None]
        notes.append("thumb")
    light, glare, bright, lit = _lighting(hc, wc, rng)
    img = img * light + glare
    sigma = min(rng.uniform(0, 0.3) * pen + rng.uniform(0, 0.4), 0.03 * paper["height"] + 0.5)
    if sigma > 0.3:
        img = ndi.gaussian_filter(img, (sigma, sigma, 0))
    if rng.random() < 0.2:  # hand shake: a short straight smear
        img = ndi.uniform_filter1d(img, int(rng.uniform(1, 1.2 * pen)) + 1, axis=int(rng.integers(2)))
        notes.append("shake")
    img = img + rng.normal(0, rng.uniform(0.004, 0.015) / bright, img.shape).astype(np.float32)
    quality = int(rng.integers(35, 96))
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=quality, subsampling=int(rng.choice([0, 2])))
    return buf.getvalue(), ", ".join(notes + lit + [f"blur {sigma:.1f}", f"jpeg q{quality}"])


def photo_b(text: str, font: str, rng: np.random.Generator, height: float | None = None) -> Photo:
    """A photo of `text` (digits) written in `font`: one digit, or a number on one line."""
    single = len(text) == 1
    height = height or (rng.uniform(30, 220) if single else rng.uniform(24, 120))
    pen_factor = rng.uniform(0.6, 1.6)
    parts = [_digit(font, ch, height, pen_factor, rng) for ch in text]
    line = _line([p[0] for p in parts], height, rng)
    margin = rng.uniform(0.5, 1.5, 2) * height if single else rng.uniform(0.35, 1.0, 2) * height
    my, mx = int(margin[0]) + 2, int(margin[1]) + 2
    page = np.pad(line, ((my, my), (mx, mx)))
    tilt, keystone = rng.uniform(-10, 10), tuple(rng.uniform(-0.08, 0.08, 2))
    t = np.radians(abs(tilt))
    hc = int((page.shape[1] * np.sin(t) + page.shape[0] * np.cos(t)) * 1.06)
    wc = int((page.shape[1] * np.cos(t) + page.shape[0] * np.sin(t)) * 1.06)
    v, u = _camera_to_paper(hc, wc, page.shape, tilt, keystone)
    ink = ndi.map_coordinates(page, [v, u], order=1, cval=0.0)
    paper = {"height": height, "baseline": my + line.shape[0], "left": mx}
    data, desc = _shoot(ink, v, u, paper, float(np.median([p[1] for p in parts])), rng)
    name = Path(font).stem
    broken = " broken stroke," if any(p[2] for p in parts) else ""
    return Photo(data, text, f"{len(text)} digit{'s' if len(text) > 1 else ''} {height:.0f}px, {name},{broken} tilt {tilt:.0f}, {desc}")


def make_photos_b(seed: int, singles: int, numbers: int, min_digits: int = 2, max_digits: int = 8,
                  fonts: str = "all") -> tuple[list[Photo], list[Photo]]:
    """`singles` one-digit photos and `numbers` photos of min_digits..max_digits-digit numbers, from `seed`;
    `fonts` picks the 'val' or 'test' font group (or 'all'). Raises FontsMissing naming the apt packages."""
    paths = font_paths(fonts)
    rng = np.random.default_rng(seed)
    one = [photo_b(str(int(rng.integers(10))), paths[int(rng.integers(len(paths)))], rng) for _ in range(singles)]
    many = []
    for _ in range(numbers):
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(min_digits, max_digits + 1))))
        many.append(photo_b(text, paths[int(rng.integers(len(paths)))], rng))  # one hand writes the whole number
    return one, many


def contact_sheet(photos: list[Photo], path: str | Path, cols: int = 6, cell: int = 220) -> None:
    """Paste photos into a grid PNG with their labels, to check by eye that every label is right."""
    rows = (len(photos) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, p in enumerate(photos):
        im = Image.open(io.BytesIO(p.data)).convert("RGB")
        k = max(1, (cell - 4) // max(im.size))  # tiny photos are blown up, pixels kept square
        im = im.resize((im.size[0] * k, im.size[1] * k), Image.Resampling.NEAREST)
        im.thumbnail((cell - 4, cell - 4))
        x, y = (i % cols) * cell, (i // cols) * (cell + 16)
        sheet.paste(im, (x + 2, y + 2))
        draw.text((x + 4, y + cell), p.label, fill=(200, 0, 0))
    sheet.save(path)


if __name__ == "__main__":  # look at a few: python tests/photo_renderer_b.py OUT.png [SEED]
    import sys

    s, n = make_photos_b(int(sys.argv[2]) if len(sys.argv) > 2 else 0, 18, 18)
    contact_sheet(s + n, sys.argv[1] if len(sys.argv) > 1 else "renderer-b.png")
    for p in s + n:
        print(p.label, p.kind)
