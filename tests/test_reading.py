"""Reading whole numbers by recognition (predict/reading.py): the search, the deskew, the cuts, the reject class.
Fast and deterministic: no training; a hand-made model that judges a 28x28 by the shape of its ink stands in."""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.errors import DigitlabError
from digitlab.predict import Classifier
from digitlab.predict import reading as R

CLASSES = [str(i) for i in range(10)] + [R.NOT_DIGIT]


class ShapeJudge(torch.nn.Module):
    """A stand-in digit model: a tall thin stroke is a `1`, an upright oval with as much ink left as right a `0`,
    anything else `not-digit` (two rings side by side, a ring with a stroke beside it, half a ring, a bar, a blob)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ink = x[:, 0] > 0.3
        height = ink.any(2).sum(1).float().clamp_min(1)
        width = ink.any(1).sum(1).float()
        ratio = width / height
        cols, idx = ink.any(1), torch.arange(x.shape[-1])
        mid = (torch.where(cols, idx, 99).amin(1) + torch.where(cols, idx, -1).amax(1)) / 2  # of the ink's box
        mass = x[:, 0].sum(1)
        left, right = (mass * (idx < mid[:, None])).sum(1), (mass * (idx > mid[:, None])).sum(1)
        balanced = (left - right).abs() < 0.15 * (left + right)
        zero = (ratio > 0.5) & (ratio < 0.95) & balanced
        one = ratio < 0.3
        logits = torch.full((len(x), len(CLASSES)), -4.0)
        logits[:, 0] = torch.where(zero, 4.0, -4.0)
        logits[:, 1] = torch.where(one, 4.0, -4.0)
        logits[:, 10] = torch.where(zero | one, -4.0, 4.0)
        return logits


@pytest.fixture(scope="module")
def judge() -> Classifier:
    record = {"classes": CLASSES, "input_shape": [1, 28, 28], "mean": [0.0], "std": [1.0], "preprocess": "digits",
              "model": {"name": "shape-judge"}, "dataset": "test"}
    return Classifier(ShapeJudge(), record)


def _ring(h: int = 100, w: int = 70, pen: int = 9) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    return (r <= 1) & (r > 1 - 2 * pen / w)


def _bar(h: int = 100, pen: int = 9) -> np.ndarray:
    return np.ones((h, pen), bool)


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 30, 225).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _line(shapes: list[np.ndarray], gaps: list[int], pad: int = 40) -> np.ndarray:
    """Shapes side by side on one baseline; a negative gap makes neighbours overlap (touching digits)."""
    width = sum(s.shape[1] for s in shapes) + sum(gaps) + 2 * pad
    out = np.zeros((max(s.shape[0] for s in shapes) + 2 * pad, width), bool)
    x = pad
    for i, s in enumerate(shapes):
        out[pad:pad + s.shape[0], x:x + s.shape[1]] |= s
        x += s.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return out


def test_dynamic_programming_picks_the_jointly_best_segmentation():
    # three pieces; read one by one each looks like a fine `1`, but pieces 0+1 together make a much better `4`
    table = {(0, 1): [("1", -0.5)], (1, 2): [("1", -0.5)], (2, 3): [("7", -0.2)], (0, 2): [("4", -0.1), ("9", -1.9)],
             (1, 3): [("1", -3.0)], (0, 3): [("8", -4.0)]}
    results = R.best_readings(3, table, skip=[5.0, 5.0, 5.0])
    assert [t for t, _, _ in results] == ["47", "117", "97"]
    assert results[0][2] == ((0, 2, "4"), (2, 3, "7"))
    scores = [s for _, s, _ in results]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(-0.3)


def test_alternatives_are_distinct_and_a_cheap_skip_drops_a_speck():
    table = {(0, 1): [("3", -0.1), ("8", -0.3)], (1, 2): [("5", -2.0)], (2, 3): [("3", -0.2), ("8", -0.4)]}
    results = R.best_readings(3, table, skip=[4.0, 0.1, 4.0], keep=5)
    texts = [t for t, _, _ in results]
    assert texts[0] == "33" and len(set(texts)) == len(texts) == 5
    assert [s for _, s, _ in results] == sorted((s for _, s, _ in results), reverse=True)
    assert R.best_readings(1, {}, skip=[1.0]) == []  # nothing readable: no reading at all, never an empty text


def test_a_tilted_line_is_deskewed():
    line = _line([_ring(), _bar(), _ring(), _ring(), _bar()], [30, 30, 30, 30])
    for angle in (-8.0, 6.0):
        tilted = np.asarray(Image.fromarray(line.astype(np.uint8) * 255).rotate(-angle, Image.Resampling.NEAREST,
                                                                                 expand=True)) > 127
        assert R.estimate_tilt(tilted) == pytest.approx(angle, abs=1.0)
        straight, inverse, _ = R.deskew(tilted, R.estimate_tilt(tilted))
        rows = np.nonzero(straight.any(1))[0]
        assert np.ptp(rows) < 1.1 * 100  # the band of ink is one digit tall again, not 100 px + the slope
        ys, xs = np.nonzero(straight)
        x, y = inverse @ np.stack([xs, ys, np.ones(len(xs))])  # and maps back onto the tilted ink
        assert tilted[np.clip(np.round(y).astype(int), 0, tilted.shape[0] - 1),
                      np.clip(np.round(x).astype(int), 0, tilted.shape[1] - 1)].mean() > 0.9
    assert R.estimate_tilt(_ring()) == 0.0  # one digit: no line to measure


def test_touching_digits_are_split_and_read(judge):
    line = _line([_ring(), _ring(), _bar(), _ring()], [-6, 25, -3])  # 0 touching 0, then 1 touching 0
    reading = R.read_number(judge, _png(line), weights=R.Weights(stroke_cuts=True))  # the 1 needs stroke cuts
    assert reading.text == "0010"
    boxes = [d.box for d in reading.digits]
    assert all(a[2] <= b[0] + 12 for a, b in zip(boxes, boxes[1:]))  # left to right, barely overlapping
    assert all(R.NOT_DIGIT not in t for t, _ in reading.alternatives) and len(reading.alternatives) == 2
    assert len({reading.text, *(t for t, _ in reading.alternatives)}) == 3


@pytest.mark.parametrize("overlap", [10, 16])
def test_bold_round_digits_that_overlap_are_cut_where_they_meet(judge, overlap):
    # two bold 0s pressed together: the ink profile peaks where they meet (two strokes side by side) and has its
    # valleys inside each 0, so only a cut at the even boundary separates them
    line = _line([_ring(pen=18), _ring(pen=18)], [-overlap])
    assert R.read_number(judge, _png(line)).text == "00"


def test_a_detached_bar_joins_its_digit(judge):
    body = _ring(70, 70)
    five = np.zeros((100, 70), bool)
    five[30:100] = body
    five[0:9, 10:70] = True  # the flag of a 5, not touching the body
    reading = judge.read(_png(_line([_bar(), five], [30])), multi=True)
    assert len(reading.digits) == 2, reading
    x0, y0, x1, y1 = reading.digits[1].box
    assert y1 - y0 >= 95  # the bar and the body are one digit (the judge calls it a 0; a real model a 5)


def test_not_digit_is_never_read_and_its_probability_is_exposed(judge):
    speck = np.zeros((100, 40), bool)
    speck[60:75, 15:30] = True  # square blob: the judge says not-digit
    reading = judge.read(_png(_line([_ring(), speck, _bar()], [30, 30])), multi=True)
    assert reading.text == "01"  # the blob is skipped, not read
    blob = judge.read(_png(_line([speck[55:80]], [])))  # one photo of the blob alone
    assert blob.text != R.NOT_DIGIT and blob.text.isdigit()
    assert blob.not_digit is not None and blob.not_digit > 0.9 and blob.digits[0].to_dict()["not_digit"] > 0.9
    assert abs(sum(p for _, p in blob.digits[0].top_k) - 1) < 1e-3 or len(blob.digits[0].top_k) == 3
    assert reading.to_dict()["alternatives"] and all(isinstance(s, float) for _, s in reading.alternatives)


def test_a_stroke_above_the_line_is_left_out(judge):
    line = _line([_ring(), _bar(), _ring()], [30, 30], pad=0)
    page = np.zeros((line.shape[0] + 180, line.shape[1] + 120), bool)
    page[140:140 + line.shape[0], 40:40 + line.shape[1]] = line
    page[20:80, line.shape[1] + 60:line.shape[1] + 69] = True  # a 60 px stroke (a ruled line's end, a tick) well above
    reading = judge.read(_png(page), multi=True)
    assert reading.text == "010", reading  # the judge calls the stroke a 1; off the line, it is not part of the number
    assert R.read_number(judge, _png(page), weights=dataclasses.replace(R.READER_WEIGHTS, off_line=0.0)).text == "0101"


def test_bad_input_gives_one_line_errors(judge):
    with pytest.raises(DigitlabError, match="not an image"):
        judge.read(b"hello", multi=True)
    with pytest.raises(DigitlabError, match="no writing"):
        judge.read(_png(np.zeros((80, 200), bool)), multi=True)
    number = judge.read_number(_png(_line([_ring(), _bar()], [30])))  # the server's path for numbers
    assert len(number.digits) == 2 and all(d.image.shape == (1, 28, 28) and d.box is not None for d in number.digits)


def test_a_number_ten_pixels_tall_is_read_from_its_grey_levels(judge):
    line = _line([_ring(), _bar(), _ring()], [40, 40], pad=0).astype(np.float32)
    small = np.asarray(Image.fromarray(line).resize((round(line.shape[1] / 10), 10), Image.Resampling.BOX))  # 10 px tall
    cover = np.pad(small, ((12, 12), (10, 10)))
    paper = np.linspace(235, 150, cover.shape[1], dtype=np.float32)[None]  # lit from the left
    buf = io.BytesIO()
    Image.fromarray((paper * (1 - cover) + 40 * cover).round().astype(np.uint8)).save(buf, "PNG")
    assert R.find_line(buf.getvalue()).ink is not None  # small writing: its grey levels are kept for the digits
    assert R.find_line(_png(_line([_ring(), _bar()], [30]))).ink is None  # big writing: the binary recipe
    reading = judge.read(buf.getvalue(), multi=True)
    assert reading.text == "010", reading
    assert all(d.image.max() > 0.85 for d in reading.digits)  # stretched to full ink (a 2-px bar upscaled: 0.89)


def test_a_thumb_at_the_edge_goes_but_a_digit_in_a_tight_crop_stays():
    line = _line([_ring(), _bar(), _ring()], [30, 30], pad=60)
    thumb = line.copy()
    thumb[-50:, 100:180] = True  # a blob entering from the bottom edge, clear of the writing
    assert np.array_equal(R.drop_border_shapes(thumb), line)
    tight = _line([_bar(), _ring(), _ring()], [30, 30], pad=0)  # the 1 touches the left edge, so does everything
    assert np.array_equal(R.drop_border_shapes(tight), tight)
