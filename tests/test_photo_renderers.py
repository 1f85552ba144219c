"""The photo generators behind benchmarks/read_photos.py: decodable images, labels of the right length, the same
bytes for the same seed (a benchmark is only repeatable if its photos are)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from photo_digits import make_photos
from photo_lowres import make_lowres, make_uci, uci_indices
from photo_renderer_b import FONTS, FontsMissing, font_paths, make_photos_b


def _fake_mnist(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped stand-ins (a bright bar each), so these tests need no dataset."""
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        images[i, 4:24, 10 + i % 6:14 + i % 6] = 255
    return images, np.arange(n) % 10


def _check(singles, numbers, lo: int, hi: int, max_side: int | None = None) -> None:
    for p in singles + numbers:
        im = Image.open(io.BytesIO(p.data))
        im.load()  # decodes the whole file, not only its header
        assert p.label.isdigit() and p.kind
        if max_side:
            assert max(im.size) <= max_side
    assert all(len(p.label) == 1 for p in singles)
    assert all(lo <= len(p.label) <= hi for p in numbers)


def _same(a, b) -> bool:
    return [p.data for p in a[0] + a[1]] == [p.data for p in b[0] + b[1]]


def test_photo_generator_a_is_deterministic():
    images, labels = _fake_mnist()
    first = make_photos(images, labels, 3, 3, seed=5)
    _check(*first, 2, 6)
    assert _same(first, make_photos(images, labels, 3, 3, seed=5))
    assert not _same(first, make_photos(images, labels, 3, 3, seed=6))


def test_renderer_b_is_deterministic_and_labels_match_digit_counts():
    try:
        font_paths("all")
    except FontsMissing as e:
        pytest.skip(str(e))
    first = make_photos_b(3, 2, 2, min_digits=2, max_digits=8)
    _check(*first, 2, 8)
    assert all(p.data[:2] == b"\xff\xd8" for p in first[0] + first[1])  # always a JPEG, as a phone writes
    assert _same(first, make_photos_b(3, 2, 2, min_digits=2, max_digits=8))
    assert [p.data for p in first[0]] != [p.data for p in make_photos_b(4, 2, 0)[0]]
    _check(*make_photos_b(0, 0, 1, min_digits=8, max_digits=8, fonts="val"), 8, 8)


def test_renderer_b_font_groups_are_disjoint_and_named_by_package():
    groups = {g: {name for _, name, grp in FONTS if grp == g} for g in ("val", "test")}
    assert groups["val"] and groups["test"] and not groups["val"] & groups["test"]
    assert all(pkg.startswith("fonts-") for pkg, _, _ in FONTS)


def test_lowres_digits_are_small_and_deterministic():
    images, labels = _fake_mnist()
    first = make_lowres(images, labels, 1, 3, 3, min_digits=2, max_digits=8)
    _check(*first, 2, 8)
    for p in first[0]:  # 8-12 px tall digits with at most three digit-heights of margin each side
        assert max(Image.open(io.BytesIO(p.data)).size) <= 12 * 7 + 8
    assert _same(first, make_lowres(images, labels, 1, 3, 3, min_digits=2, max_digits=8))


def test_uci_photos_come_from_disjoint_halves():
    val, test = set(uci_indices("val").tolist()), set(uci_indices("test").tolist())
    assert not val & test and len(val | test) == 1797
    first = make_uci(2, 3, 2, min_digits=2, max_digits=4, split="val")
    _check(*first, 2, 4)
    assert _same(first, make_uci(2, 3, 2, min_digits=2, max_digits=4, split="val"))
