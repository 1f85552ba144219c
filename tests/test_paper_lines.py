"""Ruled and squared paper: printed lines leave the ink mask, the writing that crosses them stays."""
from __future__ import annotations

import numpy as np
import pytest

from digitlab.predict.paper_lines import find_paper_lines, remove_paper_lines
from digitlab.predict.preprocess import clean


def _ring(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float], width: float) -> np.ndarray:
    """A '0': an elliptical ring of the given stroke width."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    r = np.hypot((yy - centre[0]) / radii[0], (xx - centre[1]) / radii[1])
    return np.abs(r - 1) * min(radii) <= width / 2


def _ruled(shape: tuple[int, int], spacing: int, tilt_deg: float, width: float = 2, vertical_at: int | None = None) -> np.ndarray:
    """Horizontal lines every `spacing` px, tilted, and optionally a vertical margin line."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    t = np.tan(np.deg2rad(tilt_deg))
    d = (yy - xx * t) % spacing
    lines = d < width
    if vertical_at is not None:
        lines |= np.abs(xx - vertical_at + yy * t) < width / 2 + 0.5
    return lines


@pytest.mark.parametrize("tilt", [-8.0, 0.0, 5.0])
def test_ruled_lines_and_a_margin_go_and_a_digit_crossing_them_stays(tilt):
    shape = (200, 300)
    digit = _ring(shape, (100, 160), (45, 30), 7)
    lines = _ruled(shape, 33, tilt, vertical_at=40)
    mask = digit | lines
    found = find_paper_lines(mask)
    assert len(found) >= 6  # ~6 ruled lines and the margin
    cleaned = remove_paper_lines(mask, found)
    assert cleaned[digit].mean() > 0.97  # the ring survives, crossings included
    assert cleaned[lines & ~digit].mean() < 0.05  # the printed lines are gone


def test_a_grid_goes_too_crossings_and_all():
    shape = (240, 240)
    digit = _ring(shape, (120, 120), (50, 35), 8)
    grid = _ruled(shape, 24, 3.0) | _ruled(shape, 24, 3.0).T
    found = find_paper_lines(digit | grid)
    cleaned = remove_paper_lines(digit | grid, found)
    assert cleaned[digit].mean() > 0.95
    assert cleaned[grid & ~digit].mean() < 0.05


def test_a_tightly_framed_one_is_writing_not_a_line():
    mask = np.zeros((120, 40), bool)
    mask[4:116, 17:23] = True  # a '1' from top to bottom of a tight crop
    assert find_paper_lines(mask) == []


def test_a_long_stroke_that_does_not_run_past_the_writing_stays():
    mask = np.zeros((120, 120), bool)
    mask[10:16, 8:112] = True  # a 7's bar across 87% of the photo ...
    yy, xx = np.mgrid[0:120, 0:120]
    mask |= (np.abs(xx - (112 - (yy - 10) * 0.5)) < 3) & (yy >= 10) & (yy < 115)  # ... and its stem
    assert remove_paper_lines(mask, find_paper_lines(mask)).sum() == mask.sum()


def test_clean_drops_the_lines_of_a_photo_of_lined_paper():
    """Through the photo path: blue-grey ruled lines on white paper and a dark '0' written across two of them."""
    shape = (300, 400)
    paper = np.full(shape, 0.93, np.float32)
    lines = _ruled(shape, 40, 2.0, width=2, vertical_at=50)
    digit = _ring(shape, (150, 210), (60, 40), 9)
    photo = np.where(lines, 0.55, paper)
    photo = np.where(digit, 0.12, photo)
    photo += np.random.default_rng(0).normal(0, 0.01, shape).astype(np.float32)
    cleaned = clean(np.clip(photo, 0, 1))
    mask = cleaned.mask
    rows = np.minimum((np.arange(mask.shape[0]) * cleaned.scale).astype(int), shape[0] - 1)
    cols = np.minimum((np.arange(mask.shape[1]) * cleaned.scale).astype(int), shape[1] - 1)
    at_work = lambda a: a[np.ix_(rows, cols)]  # noqa: E731  (the working resolution's pixels)
    assert mask[at_work(digit)].mean() > 0.9
    assert mask[at_work(lines) & ~at_work(digit)].mean() < 0.05
