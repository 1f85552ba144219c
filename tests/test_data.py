from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import labelled_images, make_cifar, make_idx_dataset, write_idx
from digitlab.data import DatasetNotFound, load_dataset, split_train_val
from digitlab.data.core import ImageData
from digitlab.errors import DigitlabError


def test_idx_dataset_loads_with_labels_aligned(tiny_root):
    splits = load_dataset("mnist", root=tiny_root, val_split=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 40, 50)
    assert splits.train.images.dtype == torch.uint8 and splits.train.shape == (1, 28, 28)
    for part in (splits.train, splits.val, splits.test):  # brightness encodes the label
        assert torch.equal(part.images[:, 0, 0, 0].long(), 20 + 20 * part.labels)
    assert splits.classes == [str(i) for i in range(10)]
    assert 0 < splits.mean[0] < 1 and splits.std[0] > 0


def test_torchvision_cache_layout_and_uncompressed_files(tmp_path):
    root = tmp_path / "tv"
    make_idx_dataset(root, folder="FashionMNIST/raw", compress=False)
    splits = load_dataset("fashion-mnist", root=root, val_split=0)
    assert len(splits.train) == 200 and len(splits.val) == 0 and splits.classes[0] == "T-shirt/top"


def test_data_root_from_environment(tiny_root, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(tiny_root))
    assert len(load_dataset("mnist", val_split=0).train) == 200


@pytest.mark.parametrize("damage", ["magic", "truncate", "gzip", "count"])
def test_corrupt_files_name_the_file(tiny_root, damage):
    path = tiny_root / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    if damage == "magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + raw[4:]))
    elif damage == "truncate":
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    elif damage == "gzip":
        path.write_bytes(path.read_bytes()[:40])
    else:  # a labels file with a different count than the images
        write_idx(tiny_root / "mnist" / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DigitlabError) as err:
        load_dataset("mnist", root=tiny_root)
    message = str(err.value)
    assert "\n" not in message
    assert ("train-images" in message) or (damage == "count" and "labels" in message)


def test_official_sized_file_with_wrong_checksum_is_rejected(tmp_path):
    root = tmp_path / "d"
    make_idx_dataset(root, n_train=10, n_test=10000)  # t10k claims the official count but is not the official file
    with pytest.raises(DigitlabError, match="checksum mismatch"):
        load_dataset("mnist", root=root)


def test_incomplete_folder_lists_missing_files(tiny_root):
    (tiny_root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DigitlabError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tiny_root)


def test_cifar_batches(tmp_path):
    make_cifar(tmp_path / "c")
    splits = load_dataset("cifar10", root=tmp_path / "c", val_split=0)
    assert splits.train.images.shape == (100, 3, 32, 32) and len(splits.test) == 20
    assert len(splits.mean) == 3 and splits.classes[0] == "airplane"


def test_cifar_bad_pickle(tmp_path):
    d = make_cifar(tmp_path / "c")
    (d / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DigitlabError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path / "c")


def _write_folder(root: Path, classes: dict[str, int], size: int = 40) -> None:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size + 5, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_folder_dataset_skips_and_reports_unreadable(tmp_path, capsys):
    _write_folder(tmp_path / "pets", {"cats": 12, "dogs": 8})
    (tmp_path / "pets" / "cats" / "broken.jpg").write_bytes(b"not an image")
    splits = load_dataset("folder:" + str(tmp_path / "pets"), image_size=32, val_split=0)
    assert splits.classes == ["cats", "dogs"]
    assert len(splits.train) + len(splits.test) == 20  # 20 readable of 21 files
    assert splits.train.shape == (3, 32, 32)
    err = capsys.readouterr().err
    assert "skipped 1 unreadable file(s) of 21" in err and "broken.jpg" in err


def test_folder_with_train_and_test_subfolders(tmp_path):
    _write_folder(tmp_path / "d" / "train", {"a": 5, "b": 5})
    _write_folder(tmp_path / "d" / "test", {"a": 2, "b": 3})
    splits = load_dataset(f"folder:{tmp_path / 'd'}", image_size=16, channels=1, val_split=0)
    assert len(splits.train) == 10 and len(splits.test) == 5 and splits.train.shape == (1, 16, 16)


def test_folder_with_one_class_is_an_error(tmp_path):
    _write_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DigitlabError, match="at least 2"):
        load_dataset(f"folder:{tmp_path / 'one'}")


def test_mnist_sample_ships_offline_with_every_class():
    splits = load_dataset("mnist-sample", val_split=0)
    assert (len(splits.train), len(splits.test)) == (4000, 1000)
    assert min(splits.train.class_counts()) > 300 and splits.test.class_counts() == [100] * 10


def test_default_dataset_falls_back_loudly_when_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    splits = load_dataset(None, root=tmp_path)  # empty root, no cache, downloads off (conftest)
    assert splits.name == "mnist-sample" and splits.notes
    assert "FALLING BACK" in capsys.readouterr().err


def test_explicit_missing_dataset_is_an_error_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFound, match="DIGITLAB_DATA"):
        load_dataset("kmnist", root=tmp_path)


def test_unknown_dataset_lists_choices():
    with pytest.raises(DigitlabError, match="fashion-mnist"):
        load_dataset("mnsit")


def test_validation_split_is_fixed_by_seed_and_disjoint():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    data = ImageData(images, torch.zeros(100, dtype=torch.long), ["a", "b"])
    a_train, a_val = split_train_val(data, 0.2, seed=3)
    b_train, b_val = split_train_val(data, 0.2, seed=3)
    assert torch.equal(a_val.images, b_val.images) and len(a_val) == 20
    assert set(a_train.images.flatten().tolist()).isdisjoint(a_val.images.flatten().tolist())
    assert not torch.equal(split_train_val(data, 0.2, seed=4)[1].images, a_val.images)


def test_real_mnist(real_root):
    splits = load_dataset("mnist", root=real_root, val_split=0)
    assert (len(splits.train), len(splits.test)) == (60000, 10000)
    # the per-class counts published with MNIST
    assert splits.train.class_counts() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert splits.test.class_counts() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert splits.mean == (0.1307,) and splits.std == (0.3081,)


def test_real_fashion_mnist(real_root):
    splits = load_dataset("fashion-mnist", root=real_root, val_split=0)
    assert splits.train.class_counts() == [6000] * 10 and splits.test.class_counts() == [1000] * 10


def _write_labelled_folder(root: Path, n: int = 60) -> None:
    """PNGs whose brightness encodes their class (k -> 40 + 60k), so batches can be checked for alignment."""
    images, labels = labelled_images(n, size=20, classes=3, seed=1)
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((40 + 60 * np.full_like(image, label)).astype(np.uint8)).save(root / f"c{label}" / f"{i:03d}.png")


def test_streamed_folder_gives_the_batches_the_in_memory_path_gives(tmp_path):
    from digitlab.data import iterate_batches
    from digitlab.data.folder import FolderImages

    _write_labelled_folder(tmp_path / "f")
    memory = load_dataset(f"folder:{tmp_path / 'f'}", image_size=16, val_split=0.2, seed=3)
    streamed = load_dataset(f"folder:{tmp_path / 'f'}", image_size=16, val_split=0.2, seed=3, stream=True, workers=2)
    assert isinstance(streamed.train, FolderImages) and streamed.train.workers == 2 and isinstance(memory.train, ImageData)
    assert "streaming from disk" in streamed.notes[0] and not memory.notes
    assert (memory.mean, memory.std) == (streamed.mean, streamed.std)  # 48 images: the 'sample' is all of them
    for a, b in ((memory.train, streamed.train), (memory.val, streamed.val), (memory.test, streamed.test)):
        assert torch.equal(a.labels, b.labels)
        order = torch.randperm(len(a), generator=torch.Generator().manual_seed(0))
        batches = list(zip(iterate_batches(a, 7, order), iterate_batches(b, 7, order)))
        assert len(batches) == -(-len(a) // 7)
        for (xa, ya), (xb, yb) in batches:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert torch.equal(xb[:, 0, 0, 0].long(), 40 + 60 * yb)  # each image still has its own label
        assert torch.equal(torch.cat([y for _, y in iterate_batches(b, 7, order)]).sort().values, b.labels.sort().values)


def test_streamed_folder_skips_files_that_fail_to_decode(tmp_path, capsys):
    from digitlab.evaluation import evaluate
    from digitlab.models import create_model

    _write_labelled_folder(tmp_path / "f", n=30)
    (tmp_path / "f" / "c0" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    splits = load_dataset(f"folder:{tmp_path / 'f'}", image_size=16, val_split=0, stream=True, workers=1)
    total = len(splits.train) + len(splits.test)
    assert total == 31  # listed: nothing is decoded up front
    seen = sum(len(y) for d in (splits.train, splits.test) for _, y in d.batches(8, torch.arange(len(d))))
    assert seen == 30
    assert "skipped 1 unreadable image file(s)" in capsys.readouterr().err
    model = create_model("mlp", num_classes=3, in_chans=1, image_size=16)
    result = evaluate(model, splits.train, splits.mean, splits.std)
    assert result.labels.numel() in (len(splits.train), len(splits.train) - 1) and result.confusion.sum() == result.labels.numel()


def test_folder_too_big_for_memory_is_streamed_automatically(tmp_path, monkeypatch):
    from digitlab.data import folder

    _write_labelled_folder(tmp_path / "f", n=20)
    monkeypatch.setattr(folder, "memory_budget", lambda: 1000)  # 20 images of 16x16 need 5 KB
    splits = load_dataset(f"folder:{tmp_path / 'f'}", image_size=16, val_split=0)
    assert isinstance(splits.train, folder.FolderImages) and "would not fit" in splits.notes[0]


def test_stream_is_only_for_folders():
    with pytest.raises(DigitlabError, match="--stream is for image folders"):
        load_dataset("mnist-sample", stream=True)
