"""The reader model: its "not-digit" class, its augmentation, its recipe, and the weights that ship with digitlab."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import digitlab
from digitlab.cli import main
from digitlab.data import ImageData, augment, load_dataset
from digitlab.data.reject import NOT_DIGIT, reject_samples, with_reject_class
from digitlab.data.styles import other_styles
from digitlab.errors import DigitlabError
from digitlab.runs import read_record
from digitlab.training.config import FIELDS, resolve_config
from digitlab.training.record import command_line
from digitlab.weights import READER

WHERE_NOT_WHAT = {"out", "data_root", "dataset", "epochs", "device", "threads", "workers", "tensorboard", "track_test"}


@pytest.fixture(scope="module")
def sample():
    return load_dataset("mnist-sample", val_split=0.1)


def test_reject_samples_are_mnist_style_and_reproducible(sample):
    a = reject_samples(sample.train.images, 64, seed=3)
    b = reject_samples(sample.train.images, 64, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (64, 1, 28, 28) and torch.equal(a, b)
    assert not torch.equal(a, reject_samples(sample.train.images, 64, seed=4))
    ink = a[:, 0].float()
    assert (ink.flatten(1).amax(1) > 200).all()  # every sample has ink
    # normalised like MNIST: the longer side of the ink's box is ~20 px, the centre of mass near the middle
    rows, cols = ink.sum(2), ink.sum(1)
    grid = torch.arange(28.0)
    cy, cx = (rows @ grid) / rows.sum(1), (cols @ grid) / cols.sum(1)
    assert (cy - 13.5).abs().max() < 3 and (cx - 13.5).abs().max() < 3
    extent = lambda profile: 28 - (profile > 0).int().argmax(1) - (profile > 0).flip(1).int().argmax(1)  # noqa: E731
    side = torch.maximum(extent(rows), extent(cols))
    assert side.min() >= 18 and side.max() <= 23


def test_reject_class_extends_train_and_val_but_not_test(sample):
    splits = with_reject_class(sample, 0.25, seed=0)
    assert splits.classes == [*sample.classes, NOT_DIGIT]
    for name in ("train", "val"):
        before, after = getattr(sample, name), getattr(splits, name)
        added = len(after) - len(before)
        assert added == round(0.25 * len(before)) and int((after.labels == 10).sum()) == added
        assert torch.equal(after.labels[:len(before)], before.labels)
        changed = (after.images[:len(before)] != before.images).flatten(1).any(1).float().mean()
        assert 0.4 < changed < 0.6  # half the digits re-normalised like the reader's cuts
    assert torch.equal(splits.test.images, sample.test.images) and splits.test.classes == splits.classes
    assert splits.mean == sample.mean and any(NOT_DIGIT in n for n in splits.notes)


def test_other_styles_add_a_flag_to_ones_and_a_bar_to_sevens_only(sample):
    x, y, classes = sample.train.images, sample.train.labels, sample.classes
    styled = other_styles(x, y, classes, 0.5, seed=1)
    assert torch.equal(styled, other_styles(x, y, classes, 0.5, seed=1))  # reproducible
    changed = (styled != x).flatten(1).any(1)
    ones, sevens = y == classes.index("1"), y == classes.index("7")
    assert not changed[~(ones | sevens)].any()  # other digits untouched
    for which in (ones, sevens):
        assert 0.3 < changed[which].float().mean() < 0.7  # about the fraction asked for
    assert (styled >= x).all()  # ink is only added
    one = int(torch.nonzero(ones & changed)[0])
    added = (styled[one, 0].int() - x[one, 0].int()) > 100
    ink = x[one, 0] > 127
    rows = torch.nonzero(ink.any(1)).flatten()
    assert added[rows[0]:rows[0] + 8].any()  # the flag hangs from the top of the 1 ...
    cols_added = torch.nonzero(added.any(0)).flatten()
    assert cols_added.float().mean() < torch.nonzero(ink.any(0)).flatten().float().mean() + 1  # ... to its left (or a foot)


def test_reject_class_is_only_for_digits():
    clothes = ImageData(torch.zeros(20, 1, 28, 28, dtype=torch.uint8), torch.zeros(20, dtype=torch.long), ["shirt", "shoe"])
    splits = load_dataset("mnist-sample", val_split=0.1)
    splits.train, splits.val, splits.test = clothes, clothes, clothes
    with pytest.raises(DigitlabError, match="digit datasets"):
        with_reject_class(splits, 0.25, seed=0)


def test_reader_augmentation_is_batched_seeded_and_leaves_threads_alone(sample):
    images = sample.train.images[:128]
    threads = torch.get_num_threads()
    a = augment(images, "reader", torch.Generator().manual_seed(1))
    b = augment(images, "reader", torch.Generator().manual_seed(1))
    assert torch.get_num_threads() == threads
    assert a.shape == images.shape and a.dtype == torch.float32 and torch.equal(a, b)
    assert -1e-5 <= float(a.min()) and float(a.max()) <= 1 + 1e-5  # rounding of the blur and the warps
    changed = (a - images.float() / 255).abs().flatten(1).amax(1) > 0.2
    assert changed.float().mean() > 0.9  # (nearly) every digit is moved, bent, thickened, blurred or shrunk
    with pytest.raises(DigitlabError, match="grayscale"):
        augment(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), "reader", None)


def test_command_line_resolves_back_to_the_same_config():
    cfg = resolve_config({"recipe": "reader", "epochs": 3, "lr": 0.002, "out": "somewhere"})
    command = command_line(cfg)
    assert command == "digitlab train --recipe reader --epochs 3 --lr 0.002"
    options = dict(re.findall(r"--([\w-]+) (\S+)", command))
    again = resolve_config({k.replace("-", "_"): (v if k == "recipe" else float(v) if "." in v else int(v)) for k, v in options.items()})
    assert {k: v for k, v in again.to_dict().items() if k != "out"} == {k: v for k, v in cfg.to_dict().items() if k != "out"}


def test_shipped_reader_is_small_and_says_how_it_was_made():
    assert READER.is_file(), "src/digitlab/weights/reader.safetensors is missing"
    assert READER.stat().st_size <= 1_000_000
    record = read_record(READER)
    assert record["command"].startswith("digitlab train --recipe reader")
    assert record["digitlab_version"] and record["recipe"] == "reader" and record["dataset"] == "mnist"
    assert record["classes"] == [*(str(i) for i in range(10)), NOT_DIGIT] and record["preprocess"] == "digits"
    published = dict(torchvision.datasets.MNIST.resources)  # the official files' MD5s, as torchvision checks them
    assert record["data_md5"] == published


@pytest.mark.slow
def test_shipped_reader_matches_the_recipe_retrained_briefly(tmp_path):
    """The shipped file must come from the recipe as it is now: retrain it briefly and compare the records."""
    shipped = read_record(READER)
    run = digitlab.train(recipe="reader", dataset="mnist-sample", epochs=1, threads=1, out=str(tmp_path / "r"), verbose=False)
    fresh = read_record(run.dir / "best.safetensors")
    for key in ("model", "classes", "input_shape", "preprocess", "recipe"):
        assert fresh[key] == shipped[key], key
    # options added to digitlab after the reader was made (0.4's init_from, replay) are absent from its record; they
    # must sit at their defaults in the recipe, so the recipe still trains the same reader
    added = set(fresh["config"]) - set(shipped["config"])
    assert all(fresh["config"][k] == FIELDS[k].default for k in added), {k: fresh["config"][k] for k in added}
    strip = lambda cfg: {k: v for k, v in cfg.items() if k not in WHERE_NOT_WHAT and k not in added}  # noqa: E731
    assert strip(fresh["config"]) == strip(shipped["config"])
    assert strip(shipped["config"]) == strip(resolve_config({"recipe": "reader"}).to_dict())


@pytest.mark.slow
def test_reader_on_mnist_test(real_root):
    clf = digitlab.load()
    test = load_dataset("mnist", root=real_root, val_split=0).test
    probs = clf.predict(test.images).probs
    read = probs[:, :10].argmax(1)  # what the reader answers for one digit: the likeliest digit
    assert (read == test.labels).float().mean() >= 0.995
    assert (probs[:, 10] > 0.5).float().mean() <= 0.005  # clean digits are rarely called 'not-digit'
    result = clf.evaluate(ImageData(test.images, test.labels, clf.classes))  # all 11 classes, 'not-digit' an error
    assert result.accuracy >= 0.99


def _digit_photo(path: Path, digit: np.ndarray) -> Path:
    """An MNIST digit as dark ink on light paper, 5x larger."""
    ink = np.kron(digit, np.ones((5, 5)))
    Image.fromarray((235 - ink * 0.8).astype(np.uint8)).save(path)
    return path


def test_predict_without_a_model_uses_the_shipped_reader(sample, tmp_path, capsys):
    picks = [int((sample.test.labels == k).nonzero()[0]) for k in (3, 7)]
    paths = [_digit_photo(tmp_path / f"{k}.png", sample.test.images[i, 0].numpy()) for k, i in zip((3, 7), picks)]
    assert main(["predict", *map(str, paths), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"label": "3"' in out and '"label": "7"' in out and NOT_DIGIT not in out


def test_predict_with_only_a_model_says_what_is_missing(tmp_path, capsys):
    (tmp_path / "best.safetensors").write_bytes(READER.read_bytes())
    assert main(["predict", str(tmp_path)]) != 0
    assert "name the images" in capsys.readouterr().err
