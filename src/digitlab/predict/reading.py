"""Reading a whole written number by recognition, not by geometry alone.

A cutter that only looks at ink cannot tell a wide `2` from `22`, or a `5` whose bar floats above its body from
`52`: only the classifier knows what one digit looks like. So the line is over-segmented into pieces (connected
components, wide ones cut again at every plausible column), every run of 1-4 adjacent pieces becomes a candidate
digit, all candidates are scored in one batched forward pass, and dynamic programming picks the segmentation whose
digits are jointly most believable. A `not-digit` class, when the model has one, says "this is not one digit";
otherwise temperature-calibrated confidences and light geometric priors do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

from ..data.mnist_style import grey_to_mnist
from ..data.reject import NOT_DIGIT
from ..errors import DigitlabError
from .preprocess import clean, drop_border_shapes, grey_digit, small_writing, to_mnist

if TYPE_CHECKING:
    from .classifier import Classifier, Reading

MAX_TILT = 10.0  # degrees of line tilt that are undone
MAX_SPAN = 4  # a digit is at most this many pieces (a wide one cut at a valley and at an even boundary: 4)
N_ALTERNATIVES = 2


@dataclass
class Weights:
    """The joint score's knobs (log-probability units), tuned on validation photos only: the generator's seeds
    1000 and 2000 (benchmarks/read_numbers.py) and renderer b's validation fonts and seeds."""
    temperature: float = 2.8  # softens an over-confident digits-only model (no reject class)
    digit_bonus: float = 0.0  # per digit read (a reader model may need it: each log p <= 0 favours fewer digits)
    wide: float = 3.0  # per line height of span width beyond `wide_from` line heights
    wide_from: float = 0.95
    gap: float = 8.0  # per line height of blank gap bridged inside one digit
    short: float = 8.0  # per line height a digit falls short of half the line's height
    skip: float = 1.0  # skipping a piece (a speck, a finger blob): base cost ...
    skip_area: float = 2.0  # ... plus this times its share of the ink of a typical digit
    reject: float = 1.0  # weight of log(1 - p(not-digit)) for reader models
    cut: float = 0.5  # per unit of valley shallowness, for a digit that starts at a cut through ink
    narrow: float = 1.0  # per line height the cut piece was narrower than `narrow_from`: one digit, most likely
    narrow_from: float = 1.1
    off_line: float = 0.0  # per line height a digit's middle sits more than `off_line_from` above or below the line's
    off_line_from: float = 0.35
    stroke_cuts: bool = False  # also cut beside narrow full-height strokes (see cut_columns): off, it cost 10-30
    # points of exact match on validation photos (fragments of a 0 or an 8 look like honest 1s)


READER_WEIGHTS = Weights(wide=6.0, skip=0.5, reject=0.5, off_line=4.0)  # for models with a `not-digit` class


@dataclass
class Piece:
    """A bit of ink in the deskewed line: its mask and where that mask sits."""
    mask: np.ndarray
    y0: int
    x0: int
    cut: float = 0.0  # when its left edge was cut through ink: how shallow that valley was (0 = deep, 1 = none)
    cut_from: float = 0.0  # ... and how wide the cut piece was, in line heights (a digit is ~0.4-0.9)

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Line:
    """A photo's line of writing, deskewed and cut into pieces, with the way back to photo pixels."""
    pieces: list[Piece]
    height: float  # typical digit height, working pixels
    inverse: np.ndarray  # 2x3: deskewed (x, y, 1) -> working (x, y)
    scale: float  # photo pixels per working pixel
    ink: np.ndarray | None = None  # small writing: the deskewed grey levels its digits are drawn from


def estimate_tilt(mask: np.ndarray, max_tilt: float = MAX_TILT, points: int = 4000) -> float:
    """The line's angle in degrees (y down): the rotation under which the ink's vertical band is thinnest."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 20:
        return 0.0
    step = max(1, len(ys) // points)
    ys, xs = ys[::step].astype(np.float32), xs[::step].astype(np.float32)
    if np.ptp(xs) < 1.5 * max(np.ptp(ys), 1):  # a single digit or two: too short a line to measure
        return 0.0
    angles = np.arange(-max_tilt, max_tilt + 0.01, 0.5)
    rad = np.deg2rad(angles)[:, None]
    yr = ys[None] * np.cos(rad) - xs[None] * np.sin(rad)
    lo, hi = np.percentile(yr, [10, 90], axis=1)
    band = hi - lo
    best = int(np.argmin(band))
    zero = int(np.argmin(np.abs(angles)))
    return float(angles[best]) if band[best] < 0.97 * band[zero] else 0.0


def deskew(mask: np.ndarray, angle: float, ink: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rotate the ink mask (and the grey `ink` with it) so the line runs horizontally; also the 2x3 map from new
    pixels back to old ones."""
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    crop = mask[y0:ys.max() + 1, x0:xs.max() + 1]
    grey = None if ink is None else ink[y0:ys.max() + 1, x0:xs.max() + 1]
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    if abs(angle) < 1e-6:
        return crop, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]), grey
    h, w = crop.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    xr = corners[:, 0] * c + corners[:, 1] * s  # rotate by -angle: x' = x cos + y sin, y' = -x sin + y cos
    yr = -corners[:, 0] * s + corners[:, 1] * c
    ox, oy = xr.min(), yr.min()
    size = (int(np.ceil(xr.max() - ox)) + 1, int(np.ceil(yr.max() - oy)) + 1)
    # output (X, Y) reads input x = (X+ox) cos - (Y+oy) sin, y = (X+ox) sin + (Y+oy) cos
    back = np.array([[c, -s, ox * c - oy * s], [s, c, ox * s + oy * c]])
    rotate = lambda im: np.asarray(im.transform(size, Image.Transform.AFFINE, tuple(back.ravel()), Image.Resampling.BILINEAR))  # noqa: E731
    inverse = back + np.array([[0, 0, x0], [0, 0, y0]])
    rotated = rotate(Image.fromarray(crop.astype(np.uint8) * 255)) >= 128
    return rotated, inverse, None if grey is None else rotate(Image.fromarray(grey.astype(np.float32), "F"))


def _line_height(heights: np.ndarray) -> float:
    return float(np.percentile(heights[heights >= 0.5 * heights.max()], 75))


def cut_columns(mask: np.ndarray, height: float, strokes: bool = False) -> list[tuple[int, float]]:
    """Where a wide piece may hold a boundary between digits, with how shallow each cut's valley is: columns at
    valleys of its ink profile. Generous on purpose (recognition rejects the wrong cuts). With `strokes`, also
    both sides of narrow full-height strokes (a `1` pressed against a `0`), which make a step, not a valley."""
    h, w = mask.shape
    if w < 0.55 * height:
        return []
    profile = np.convolve(mask.sum(0).astype(np.float32), [0.25, 0.5, 0.25], mode="same")
    reach = max(2, int(0.3 * height))
    padded = np.pad(profile, reach, mode="constant")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)
    left, right = windows[:, :reach].max(1), windows[:, reach + 1:].max(1)
    ratio = profile / np.maximum(np.minimum(left, right), 1e-6)
    near = max(1, int(0.08 * height))
    local_min = profile <= ndi.minimum_filter1d(profile, 2 * near + 1, mode="nearest")
    order = np.argsort(ratio, kind="stable")
    cuts: list[int] = []
    for x in order.tolist():
        r = ratio[x]
        if r > 0.85:
            break
        if not local_min[x]:
            continue
        room = (0.1 if r < 0.35 else 0.3) * height
        if min(x, w - x) < 0.1 * height or any(abs(x - c) < room for c in cuts):
            continue
        cuts.append(x)
    cuts += _even_cuts(profile, height, cuts)
    found = [(x, float(min(ratio[x], 1.0))) for x in set(cuts)]
    if strokes:
        found += [(x, 0.5) for x in _stroke_edges(mask, height) if all(abs(x - c) >= near for c in cuts)]
    return sorted(found)


def _stroke_edges(mask: np.ndarray, height: float) -> list[int]:
    """Both sides of a narrow run of nearly full-height columns: a `1` pressed against its neighbour makes a step
    in the ink profile, not a valley."""
    h, w = mask.shape
    tall = np.concatenate([[False], mask.sum(0) > 0.75 * h, [False]])
    edges = np.flatnonzero(np.diff(tall.astype(np.int8)))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a <= 0.25 * height and h > 0.6 * height:
            out += [int(x) for x in (a, b) if 0.08 * height <= x <= w - 0.08 * height]
    return out


def _even_cuts(profile: np.ndarray, height: float, have: list[int]) -> list[int]:
    """For a piece much wider than a digit: near each even boundary, the thinnest column (when no valley cut is
    near) and the boundary itself. Bold round digits that touch (`00`, `05`, `60`) meet at a peak of the ink
    profile, two strokes side by side, while its valleys lie inside each digit: only a cut at the even boundary
    separates them (renderer b's validation numbers 166 -> 173 of 200 exact, with MAX_SPAN 4)."""
    w = len(profile)
    n = int(round(w / (0.6 * height)))
    if n < 2:
        return []
    extra: list[int] = []
    for k in range(1, n):
        centre = int(k * w / n)
        lo, hi = max(1, centre - w // (3 * n)), min(w - 1, centre + w // (3 * n))
        if hi > lo and all(abs(centre - c) >= 0.3 * height for c in have):
            extra.append(lo + int(np.argmin(profile[lo:hi])))
        if all(abs(centre - c) >= 0.12 * height for c in have + extra):
            extra.append(centre)
    return extra


def over_segment(mask: np.ndarray, strokes: bool = False) -> tuple[list[Piece], float]:
    """Connected components, wide ones cut at their candidate columns; pieces sorted left to right."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        raise DigitlabError("no writing found in the image")
    slices = ndi.find_objects(labels)
    heights = np.array([sl[0].stop - sl[0].start for sl in slices], np.float32)
    height = _line_height(heights)
    pieces: list[Piece] = []
    for i, (sy, sx) in enumerate(slices):
        comp = labels[sy, sx] == i + 1
        cuts = cut_columns(comp, height, strokes)
        edges = [0, *(x for x, _ in cuts), comp.shape[1]]
        shallow = [0.0, *(r for _, r in cuts)]
        for a, b, r in zip(edges[:-1], edges[1:], shallow):
            part = comp[:, a:b]
            rows = np.nonzero(part.any(1))[0]
            if len(rows):
                pieces.append(Piece(part[rows[0]:rows[-1] + 1], sy.start + int(rows[0]), sx.start + a, r,
                                    comp.shape[1] / height if a else 0.0))
    pieces.sort(key=lambda p: (p.x0 + p.x1) / 2)
    return pieces, height


def find_line(source: Any, strokes: bool = False) -> Line:
    """Photo -> its ink, deskewed and over-segmented (`strokes`: see cut_columns)."""
    cleaned = clean(source)
    writing = drop_border_shapes(cleaned.mask)
    angle = estimate_tilt(writing)
    mask, inverse, _ = deskew(writing, angle)
    pieces, height = over_segment(mask, strokes)
    grey = deskew(writing, angle, cleaned.ink)[2] if small_writing(height, cleaned.scale) else None  # rotated only if used
    return Line(pieces, height, inverse, cleaned.scale, grey)


def candidate_image(line: Line, mask: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """A candidate digit (pieces drawn into `mask` at y0, x0) as the model's size x size input: MNIST's binary
    recipe, or for small writing its grey levels around the mask (a one-photo-pixel margin, as `digit_to_mnist`)."""
    if line.ink is None:
        return to_mnist(mask, size)
    g = max(1, round(1 / line.scale))
    top, left = max(0, y0 - g), max(0, x0 - g)
    window = line.ink[top:y0 + mask.shape[0] + g, left:x0 + mask.shape[1] + g]
    placed = np.zeros(window.shape, bool)
    placed[y0 - top:y0 - top + mask.shape[0], x0 - left:x0 - left + mask.shape[1]] = mask  # the mask lies inside the ink
    return grey_to_mnist(grey_digit(placed, window, line.scale), size)


def span_mask(pieces: list[Piece]) -> tuple[np.ndarray, int, int]:
    """Several pieces drawn into one mask: the candidate digit they would make, and its offset."""
    y0, x0 = min(p.y0 for p in pieces), min(p.x0 for p in pieces)
    out = np.zeros((max(p.y1 for p in pieces) - y0, max(p.x1 for p in pieces) - x0), bool)
    for p in pieces:
        out[p.y0 - y0:p.y1 - y0, p.x0 - x0:p.x1 - x0] |= p.mask
    return out, y0, x0


def _max_gap(pieces: list[Piece]) -> float:
    """The widest blank run of columns inside a span (0 when its pieces overlap or touch)."""
    runs = sorted((p.x0, p.x1) for p in pieces)
    reach, gap = runs[0][1], 0.0
    for a, b in runs[1:]:
        gap = max(gap, a - reach)
        reach = max(reach, b)
    return gap


def spans(line: Line, max_span: int = MAX_SPAN) -> list[tuple[int, int]]:
    """Every run of 1-`max_span` adjacent pieces that could be one digit (not absurdly wide or gappy)."""
    out = []
    n, h = len(line.pieces), line.height
    for i in range(n):
        for j in range(i + 1, min(n, i + max_span) + 1):
            group = line.pieces[i:j]
            width = max(p.x1 for p in group) - min(p.x0 for p in group)
            if j - i > 1 and (width > 1.6 * h or _max_gap(group) > 0.6 * h):
                break
            out.append((i, j))
    return out


def geometry_penalty(group: list[Piece], height: float, w: Weights, middle: float | None = None) -> float:
    """Log-score cost of calling these pieces one digit on geometry alone (`middle`: the line's, see line_middle)."""
    width = max(p.x1 for p in group) - min(p.x0 for p in group)
    top, bottom = min(p.y0 for p in group), max(p.y1 for p in group)
    cost = w.wide * max(0.0, width / height - w.wide_from)
    cost += w.gap * max(0.0, _max_gap(group) / height - 0.05)
    cost += w.short * max(0.0, 0.5 - (bottom - top) / height)
    if middle is not None:
        cost += w.off_line * max(0.0, abs((top + bottom) / 2 - middle) / height - w.off_line_from)
    return cost


def line_middle(line: Line) -> float:
    """The height at which the line's digits have their middles: the median over its full-height pieces."""
    tall = [(p.y0 + p.y1) / 2 for p in line.pieces if p.y1 - p.y0 >= 0.5 * line.height]
    return float(np.median(tall)) if tall else float(np.median([(p.y0 + p.y1) / 2 for p in line.pieces]))


def digit_log_scores(probs: torch.Tensor, classes: list[str], w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """(N, digits) log-scores that each candidate is that digit, and each candidate's reject probability.
    A reader model's `not-digit` probability is the reject signal; a digits-only model's confidences are
    softened by a temperature so that one over-confident half-digit cannot outvote a whole one."""
    p = probs.double().numpy()
    digit = [i for i, c in enumerate(classes) if c != NOT_DIGIT]
    if NOT_DIGIT in classes:
        reject = p[:, classes.index(NOT_DIGIT)]
        within = p[:, digit] / np.maximum(p[:, digit].sum(1, keepdims=True), 1e-12)
        return np.log(within + 1e-9) + w.reject * np.log1p(-np.minimum(reject, 1 - 1e-9))[:, None], reject
    logits = np.log(p[:, digit] + 1e-12) / w.temperature
    logits -= logits.max(1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(1, keepdims=True)), np.zeros(len(p))


Path = tuple[tuple[int, int, str], ...]


def best_readings(n: int, table: dict[tuple[int, int], list[tuple[str, float]]], skip: list[float],
                  keep: int = 1 + N_ALTERNATIVES, beam: int = 8) -> list[tuple[str, float, Path]]:
    """Dynamic programming over n pieces: each run (i, j) of pieces is read as one of its labels at the table's
    score, or a piece is skipped at its cost. Returns the `keep` best distinct texts, best first. Hypotheses with
    the same text at the same piece keep only the better one, so the top distinct texts are exact for keep <= beam."""
    hyps: list[dict[str, tuple[float, Path]]] = [{"": (0.0, ())}] + [{} for _ in range(n)]
    for j in range(1, n + 1):
        cand: dict[str, tuple[float, Path]] = {}

        def offer(text: str, score: float, path: Path) -> None:
            if text not in cand or score > cand[text][0]:
                cand[text] = (score, path)

        for text, (s, path) in hyps[j - 1].items():
            offer(text, s - skip[j - 1], path)
        for i in range(max(0, j - MAX_SPAN), j):
            for label, ls in table.get((i, j), ()):
                for text, (s, path) in hyps[i].items():
                    offer(text + label, s + ls, path + ((i, j, label),))
        hyps[j] = dict(sorted(cand.items(), key=lambda kv: -kv[1][0])[:beam])
    final = sorted(((t, s, p) for t, (s, p) in hyps[n].items() if t), key=lambda r: -r[1])
    return final[:keep]


def score_table(line: Line, candidates: list[tuple[int, int]], log: np.ndarray, digit_names: list[str],
                w: Weights, labels_per_span: int = 2) -> dict[tuple[int, int], list[tuple[str, float]]]:
    """Each candidate's best labels with their joint-score contribution: recognition plus priors."""
    table = {}
    top = np.argsort(-log, axis=1)[:, :labels_per_span]
    middle = line_middle(line)
    for k, (i, j) in enumerate(candidates):
        cost = geometry_penalty(line.pieces[i:j], line.height, w, middle) - w.digit_bonus + cut_cost(line.pieces[i], w)
        table[(i, j)] = [(digit_names[d], float(log[k, d]) - cost) for d in top[k]]
    return table


def cut_cost(first: Piece, w: Weights) -> float:
    """A digit that starts at a cut through ink (not at a gap) is less likely, more so when the valley was shallow
    and the piece cut was hardly wider than one digit."""
    if not first.cut_from:
        return 0.0
    return w.cut * first.cut + w.narrow * max(0.0, w.narrow_from - first.cut_from)


def skip_costs(line: Line, w: Weights) -> list[float]:
    """Leaving a piece out of the number costs more the more ink it holds (specks are cheap, strokes are not)."""
    areas = np.array([p.area for p in line.pieces], np.float64)
    tall = np.array([p.y1 - p.y0 >= 0.5 * line.height for p in line.pieces])
    typical = float(np.median(areas[tall])) if tall.any() else float(areas.max())
    return [w.skip + w.skip_area * a / max(typical, 1.0) for a in areas]


def photo_box(mask: np.ndarray, y0: int, x0: int, line: Line) -> tuple[int, int, int, int]:
    """A candidate's ink in the deskewed line -> its x0, y0, x1, y1 box in original-photo pixels."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs + x0, ys + y0, np.ones(len(xs))]).astype(np.float64)
    x, y = line.inverse @ pts
    s = line.scale
    return int(x.min() * s), int(y.min() * s), int((x.max() + 1) * s), int((y.max() + 1) * s)


def read_number(clf: "Classifier", source: Any, top_k: int = 3, weights: Weights | None = None) -> "Reading":
    """A number written on one line -> the best reading, its next alternatives, each digit with its box."""
    from .classifier import Reading, make_read_digit

    w = weights or (READER_WEIGHTS if NOT_DIGIT in clf.classes else Weights())
    line = find_line(source, strokes=w.stroke_cuts)
    candidates = spans(line)
    size = clf.input_shape[1]
    masks = [span_mask(line.pieces[i:j]) for i, j in candidates]
    batch = np.stack([candidate_image(line, m, y0, x0, size)[None] for m, y0, x0 in masks])
    probs = clf.predict_prepared(torch.from_numpy(batch)).probs
    digit_names = [c for c in clf.classes if c != NOT_DIGIT]
    log, _ = digit_log_scores(probs, clf.classes, w)
    results = best_readings(len(line.pieces), score_table(line, candidates, log, digit_names, w), skip_costs(line, w))
    if not results:
        raise DigitlabError("no digits found in the image")
    text, score, path = results[0]
    index = {c: k for k, c in enumerate(candidates)}
    digits = []
    for i, j, _ in path:
        k = index[(i, j)]
        m, y0, x0 = masks[k]
        digits.append(make_read_digit(clf.classes, probs[k], top_k, photo_box(m, y0, x0, line), batch[k]))
    return Reading(text, digits, alternatives=[(t, round(float(s), 4)) for t, s, _ in results[1:]],
                   score=round(float(score), 4))
