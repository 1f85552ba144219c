"""Ruled and squared paper: find the printed lines among the ink and take them out of the writing.

School paper is lined or squared, and where a shadow's edge, dim light or a dark pen brings those lines over the
ink threshold they join the digits: a `5` beside a margin line read as `1`, an `8` inside a grid as a block, a `3`
with grid stubs as a `7`. Printed lines differ from writing in ways a photo keeps: each is straight, nearly
horizontal or vertical (the page tilted up to ~12 degrees), thin, covers most of its length across the photo, and
runs on past the writing at both ends. A Hough transform over those two bands of angles finds them on a small copy
of the ink; each is checked for those properties and its band of pixels is cleared, except where a stroke of writing
crosses it (ink just beyond the band on either side).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

MAX_TILT = 12.0  # degrees from horizontal or vertical that a printed line may lie at (the page's tilt, keystone)
ANGLE_STEP = 0.5  # degrees between the Hough angles: a 256-px line drifts by about a pixel within one step
DETECT_SIDE = 256  # lines are found on a copy at most this many pixels on its longer side
MIN_COVER = 0.7  # a printed line has ink along at least this fraction of its length across the photo
MAX_THICKNESS = 0.025  # ... is at most this thick, as a fraction of the photo's longer side (and >= 3 px at DETECT_SIDE)
MIN_OVERHANG = 0.05  # ... and runs at least this fraction of its length past the rest of the ink at both ends


@dataclass
class PaperLine:
    """A printed line at working resolution: the points p with p . normal == rho, `thickness` px across."""
    normal: tuple[float, float]  # (ny, nx), unit length
    rho: float
    thickness: float


def _hough(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], vertical: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Votes per (angle, rho) for lines near horizontal (or vertical), and the angles' normals."""
    alphas = np.deg2rad(np.arange(-MAX_TILT, MAX_TILT + ANGLE_STEP / 2, ANGLE_STEP))
    # a line near horizontal has a normal near (1, 0) in (y, x); near vertical, near (0, 1)
    ny, nx = (np.sin(alphas), np.cos(alphas)) if vertical else (np.cos(alphas), -np.sin(alphas))
    offset = int(np.ceil(max(shape) * np.sin(np.deg2rad(MAX_TILT)))) + 1
    n_rho = max(shape) + 2 * offset + 1
    rho = np.rint(ys[None, :] * ny[:, None] + xs[None, :] * nx[:, None]).astype(np.int64) + offset
    flat = (np.arange(len(alphas))[:, None] * n_rho + rho).ravel()
    votes = np.bincount(flat, minlength=len(alphas) * n_rho).reshape(len(alphas), n_rho)
    return votes, np.stack([ny, nx], 1), offset


def _samples(line_normal: np.ndarray, rho: float, shape: tuple[int, int], step: float = 1.0) -> np.ndarray:
    """Points (y, x) every `step` px along a line, clipped to the image."""
    ny, nx = line_normal
    ty, tx = -nx, ny  # along the line
    length = float(np.hypot(*shape))
    t = np.arange(-length, length, step)
    pts = np.stack([rho * ny + t * ty, rho * nx + t * tx], 1)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= shape[0] - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= shape[1] - 1)
    return pts[inside]


def _runs(mask: np.ndarray, pts: np.ndarray, normal: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """At each point, how far the ink reaches along +normal and -normal (0: the point itself is not ink; capped at
    `reach` + 1)."""
    steps = np.arange(reach + 1, dtype=np.float32)[:, None, None] * normal.astype(np.float32)
    out = []
    for sign in (1, -1):
        yx = np.rint(pts[None] + sign * steps).astype(np.int64)
        out.append(np.logical_and.accumulate(_ink_at(mask, yx[..., 0], yx[..., 1]), axis=0).sum(0))
    return out[0], out[1]


def _ink_at(mask: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """mask[y, x], False outside the image (beyond the photo's edge is not ink)."""
    inside = (y >= 0) & (y < mask.shape[0]) & (x >= 0) & (x < mask.shape[1])
    return mask[y.clip(0, mask.shape[0] - 1), x.clip(0, mask.shape[1] - 1)] & inside


def _near(mask: np.ndarray, pts: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Is there ink within a pixel of each point, across the line?"""
    near = np.zeros(len(pts), bool)
    for k in (-1, 0, 1):
        yx = np.rint(pts + k * normal).astype(np.int64)
        near |= _ink_at(mask, yx[:, 0], yx[:, 1])
    return near


def _candidates(small: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(normal, rho) of the Hough peaks that cover MIN_COVER of a full-length line, at most one per 3 px of rho."""
    ys, xs = np.nonzero(small)
    found = []
    for vertical in (False, True):
        votes, normals, offset = _hough(ys.astype(np.float32), xs.astype(np.float32), small.shape, vertical)
        across = small.shape[0] if vertical else small.shape[1]  # a line's length is about the photo's other side
        smooth = votes[:, :-2] + votes[:, 1:-1] + votes[:, 2:]  # a 1-px line falls into one or two bins
        best = smooth.max(0)
        for r in np.nonzero(best >= MIN_COVER * across)[0]:
            if best[r] < best[max(0, r - 3):r + 4].max():
                continue  # not the strongest of its neighbourhood
            window = votes[:, r:r + 3]  # the sharpest angle and exact rho within the winning window (ties in the
            a, k = np.unravel_index(int(np.argmax(window)), window.shape)  # smoothed votes favour no angle)
            found.append((normals[a], float(r + k - offset)))
    return found


def find_paper_lines(ink_mask: np.ndarray) -> list[PaperLine]:
    """The printed lines in an ink mask (at working resolution), by the rules in the module's docstring."""
    f = max(1, int(np.ceil(max(ink_mask.shape) / DETECT_SIDE)))
    h, w = (ink_mask.shape[0] // f) * f, (ink_mask.shape[1] // f) * f
    if min(h, w) < 2 * f:
        return []
    small = ink_mask[:h, :w].reshape(h // f, f, w // f, f).any(axis=(1, 3))
    max_thick = max(3.0, MAX_THICKNESS * max(small.shape))
    lines = []
    for normal, rho in _candidates(small):
        pts = _samples(normal, rho, small.shape)
        if len(pts) < 0.5 * max(small.shape) or _near(small, pts, normal).mean() < MIN_COVER:
            continue  # the cheap test first: ink within a pixel of the line along most of it
        up, down = _runs(small, pts, normal, reach=int(3 * max_thick))
        on = (up > 0) | (down > 0)
        if not on.any():
            continue
        thickness = float(np.median((up + np.maximum(down - 1, 0))[on]))
        if thickness > max_thick:
            continue
        lines.append((normal, rho, thickness, pts[on]))
    # a small pixel i covers working pixels i*f .. i*f + f - 1: its centre is i*f + (f - 1)/2 on both axes
    return [PaperLine((float(n[0]), float(n[1])), rho * f + (f - 1) / 2 * float(n[0] + n[1]), t * f)
            for n, rho, t, _ in _overhanging(small, lines)]


def _overhanging(small: np.ndarray, lines: list) -> list:
    """The lines that run past the rest of the ink at both ends: a long stroke of a tightly framed digit does not."""
    if not lines:
        return []
    ys, xs = np.nonzero(small)
    rest = small.copy()
    rest[ys, xs] = ~_on_lines(ys, xs, [(n, rho, t / 2 + 1) for n, rho, t, _ in lines])
    labels, _ = ndi.label(rest, structure=np.ones((3, 3)))
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    rest &= ~np.isin(labels, edge[edge > 0])  # a thumb, a shadow's edge, a cut-off line are not the writing
    ys, xs = np.nonzero(rest)
    if len(ys) == 0:
        return []  # nothing but "lines": that was the writing
    keep = []
    for line in lines:
        normal, _, _, pts = line
        along = np.array([-normal[1], normal[0]])
        t_line = pts @ along
        t_rest = ys * along[0] + xs * along[1]
        margin = MIN_OVERHANG * (t_line.max() - t_line.min())
        if t_line.min() <= t_rest.min() - margin and t_line.max() >= t_rest.max() + margin:
            keep.append(line)
    return keep


def _on_lines(ys: np.ndarray, xs: np.ndarray, bands: list) -> np.ndarray:
    """Which of the points (ys, xs) lie within any of the bands (normal, rho, half-width)."""
    on = np.zeros(len(ys), bool)
    for normal, rho, half in bands:
        on |= np.abs(ys * normal[0] + xs * normal[1] - rho) <= half
    return on


def remove_paper_lines(mask: np.ndarray, lines: list[PaperLine]) -> np.ndarray:
    """The mask without the lines' pixels, except where writing crosses a line: ink just beyond its band, on either
    side, that is on no other line (so a grid's crossings go too)."""
    if not lines:
        return mask
    ys, xs = np.nonzero(mask)
    bands = [(np.array(line.normal), line.rho, line.thickness / 2 + 1) for line in lines]
    on = _on_lines(ys, xs, bands)
    bare = mask.copy()
    bare[ys[on], xs[on]] = False
    out = bare.copy()
    for normal, rho, half in bands:
        d = ys * normal[0] + xs * normal[1] - rho
        inside = np.abs(d) <= half
        by, bx, bd = ys[inside], xs[inside], d[inside]
        crossing = np.zeros(len(by), bool)
        for side in (1, -1):
            reach = side * (half + 1) - bd
            crossing |= _ink_at(bare, np.rint(by + reach * normal[0]).astype(np.int64),
                                np.rint(bx + reach * normal[1]).astype(np.int64))
        out[by[crossing], bx[crossing]] = True
    return out
