"""A folder of images with one sub-folder per class (the cats-vs-dogs layout): decoded once into memory when it
fits, else streamed from disk by DataLoader worker processes (`FolderImages`)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DigitlabError, warn
from .core import ImageData, split_train_val

DEFAULT_IMAGE_SIZE = 64
MAX_IN_MEMORY_BYTES = 8 << 30  # never more than this in memory, whatever the machine has
TEST_NAMES = ("test", "val", "validation", "valid")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))


def _decode(path: Path, size: int, mode: str) -> np.ndarray | str:
    """Decode one file, or return why it can't be (never raise: one bad file must not stop a load)."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    except Exception as e:  # PIL raises many types for bad files (incl. decompression bombs)
        return f"{path.name}: {e.__class__.__name__}"


def default_workers() -> int:
    """DataLoader worker processes for streamed folders: one per core, at most 8 (decoding is what they do)."""
    return max(1, min(8, os.cpu_count() or 1))


def memory_budget() -> int:
    """Bytes a dataset may take in memory: a quarter of what is available now (splitting copies it once)."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 4 * MAX_IN_MEMORY_BYTES
    return min(MAX_IN_MEMORY_BYTES, available // 4)


class _Files(torch.utils.data.Dataset):
    """What a DataLoader worker sees: index -> (uint8 CHW array or None if unreadable, label)."""

    def __init__(self, paths: list[Path], labels: list[int], size: int, mode: str):
        self.paths, self.labels, self.size, self.mode = paths, labels, size, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int]:
        image = _decode(self.paths[i], self.size, self.mode)
        return (None if isinstance(image, str) else image), self.labels[i]


def _collate(items: list[tuple[np.ndarray | None, int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack a batch in the worker, dropping unreadable files (counted, so the main process can say so)."""
    good = [(image, label) for image, label in items if image is not None]
    images = torch.from_numpy(np.stack([image for image, _ in good])) if good else torch.zeros(0, dtype=torch.uint8)
    return images, torch.tensor([label for _, label in good], dtype=torch.long), len(items) - len(good)


class FolderImages:
    """A split too big for memory: the file list and labels, decoded batch by batch in DataLoader worker
    processes (pinned memory on CUDA). The training loop uses it exactly like ImageData: len, shape, labels,
    classes, subset, to, batches, take; the augmentation and normalisation still run on whole batches."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, classes: list[str], size: int, channels: int,
                 workers: int | None = None, pin: bool = False):
        self.paths, self.labels, self.classes = paths, labels.long(), classes
        self.size, self.channels = size, channels
        self.workers = default_workers() if workers is None else workers
        self.pin = pin
        self._warned = False

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.size, self.size

    def subset(self, index: torch.Tensor) -> "FolderImages":
        return FolderImages([self.paths[i] for i in index.tolist()], self.labels[index], self.classes, self.size,
                            self.channels, self.workers, self.pin)

    def to(self, device: torch.device | str) -> "FolderImages":
        """Batches stay on the CPU (pinned for a GPU); the training loop moves each one to the device."""
        return FolderImages(self.paths, self.labels, self.classes, self.size, self.channels, self.workers,
                            pin=torch.device(device).type == "cuda")

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def _files(self) -> _Files:
        return _Files(self.paths, self.labels.tolist(), self.size, "L" if self.channels == 1 else "RGB")

    def batches(self, batch_size: int, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) in `order`, decoded ahead by `workers` processes (0: in this process)."""
        chunks = [order[i:i + batch_size].tolist() for i in range(0, order.numel(), batch_size)]
        loader = torch.utils.data.DataLoader(self._files(), batch_sampler=chunks, num_workers=self.workers,
                                             collate_fn=_collate, pin_memory=self.pin,
                                             prefetch_factor=4 if self.workers else None)
        bad = 0
        for images, labels, n_bad in loader:
            bad += n_bad
            if len(labels):
                yield images, labels
        if bad and not self._warned:  # once per split, not every epoch
            self._warned = True
            warn(f"skipped {bad} unreadable image file(s) while streaming {self.paths[0].parent.parent}")

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """Decode a few images here (sample grids, reports); unreadable ones come back black."""
        if not index.numel():
            return torch.zeros(0, *self.shape, dtype=torch.uint8)
        decoded = (image for image, _ in map(self._files().__getitem__, index.tolist()))
        return torch.from_numpy(np.stack([image if image is not None else np.zeros(self.shape, np.uint8) for image in decoded]))


def _list_split(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for i, name in enumerate(classes):
        class_dir = folder / name
        files = _files(class_dir) if class_dir.is_dir() else []
        paths += files
        labels += [i] * len(files)
    return paths, labels


def _read_split(folder: Path, classes: list[str], size: int, channels: int) -> tuple[ImageData, list[str]]:
    paths, labels = _list_split(folder, classes)
    mode = "L" if channels == 1 else "RGB"
    with ThreadPoolExecutor(max_workers=4) as pool:
        decoded = list(pool.map(lambda p: _decode(p, size, mode), paths))
    bad = [d for d in decoded if isinstance(d, str)]
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    images = torch.from_numpy(np.stack([decoded[i] for i in keep])) if keep else torch.zeros(0, channels, size, size, dtype=torch.uint8)
    return ImageData(images, torch.tensor([labels[i] for i in keep], dtype=torch.long), classes), bad


def _guess_channels(folders: list[Path]) -> int:
    """RGB unless every image we sample is grayscale (scans of digits usually are)."""
    for folder in folders:
        for class_dir in _class_dirs(folder):
            for path in _files(class_dir)[:20]:
                try:
                    with Image.open(path) as im:
                        if im.mode not in ("L", "1", "I;16", "LA"):
                            return 3
                except Exception:
                    continue
    return 1


def _folder_classes(folder: Path, split_dirs: list[Path], classes: list[str] | None) -> list[str]:
    """The class sub-folders found, or the `classes` asked for (a fine-tune names its model's, in the model's order;
    sub-folders may be missing, e.g. corrections of one digit only, but an unknown one is refused)."""
    found = sorted({p.name for d in split_dirs for p in _class_dirs(d)})
    if classes is None:
        return found
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise DigitlabError(f"{folder}: sub-folder(s) {', '.join(unknown[:5])} are not classes of the model "
                            f"({', '.join(classes[:12])}); rename or move them")
    if not found:
        raise DigitlabError(f"{folder}: no class sub-folders; expected one sub-folder per class, e.g. {folder / classes[0]}")
    return list(classes)


def load_folder(folder: Path, image_size: int | None = None, channels: int | None = None, seed: int = 0,
                stream: bool | None = None, workers: int | None = None,
                classes: list[str] | None = None) -> tuple[ImageData | FolderImages, ImageData | FolderImages, str]:
    """Read FOLDER/<class>/* (or FOLDER/train/<class> + FOLDER/test/<class>) into train and test splits: into
    memory when they fit in `memory_budget()`, else (or with `stream=True`) as FolderImages streamed from disk.
    `classes` fixes the class list and its order (sub-folders named otherwise are refused)."""
    if not folder.is_dir():
        raise DigitlabError(f"image folder {folder} does not exist; expected a folder with one sub-folder per class")
    sub = {p.name.lower(): p for p in _class_dirs(folder)}
    test_dir = next((sub[n] for n in TEST_NAMES if n in sub), None)
    split_dirs = [sub["train"], test_dir] if "train" in sub and test_dir else [folder]
    classes = _folder_classes(folder, split_dirs, classes)
    if len(classes) < 2:
        raise DigitlabError(f"{folder}: found {len(classes)} class sub-folder(s); a classifier needs at least 2 (one sub-folder per class)")
    size = image_size or DEFAULT_IMAGE_SIZE
    channels = channels or _guess_channels(split_dirs)
    listed = [_list_split(d, classes) for d in split_dirs]
    needed, budget = sum(len(paths) for paths, _ in listed) * channels * size * size, memory_budget()
    if stream is None:
        stream = needed > budget
    if stream:
        parts = [FolderImages(paths, torch.tensor(labels, dtype=torch.long), classes, size, channels, workers) for paths, labels in listed]
        if sum(len(p) for p in parts) == 0:
            raise DigitlabError(f"{folder}: no image files in the class sub-folders")
        train, test = parts if len(parts) == 2 else split_train_val(parts[0], 0.2, seed=0)
        why = f"{needed / 2**30:.1f} GB would not fit the in-memory budget of {budget / 2**30:.1f} GB" if needed > budget else "as asked"
        source = (f"{folder} ({sum(len(p) for p in parts)} files, {size}x{size}, {channels} channel(s), streamed from disk by "
                  f"{train.workers} DataLoader worker(s): {why})")
        return train, test, source
    parts, skipped = [], []
    for d in split_dirs:
        data, bad = _read_split(d, classes, size, channels)
        parts.append(data)
        skipped += bad
    total = sum(len(p) for p in parts)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        warn(f"{folder}: skipped {len(skipped)} unreadable file(s) of {total + len(skipped)}: {shown}")
    if total == 0:
        raise DigitlabError(f"{folder}: no readable images in the class sub-folders")
    if len(parts) == 2:
        train, test = parts
    else:  # one folder: hold out a fixed 20% as the test set, independent of the training seed
        train, test = split_train_val(parts[0], 0.2, seed=0)
    source = f"{folder} ({total} images, {len(skipped)} unreadable skipped, {size}x{size}, {channels} channel(s))"
    return train, test, source
