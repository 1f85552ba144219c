"""A folder of images with one sub-folder per class (the cats-vs-dogs layout), decoded once into memory."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DigitlabError, warn
from .core import ImageData, split_train_val

DEFAULT_IMAGE_SIZE = 64
MAX_IN_MEMORY_BYTES = 8 << 30
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


def _read_split(folder: Path, classes: list[str], size: int, channels: int) -> tuple[ImageData, list[str]]:
    paths, labels = [], []
    for i, name in enumerate(classes):
        class_dir = folder / name
        files = _files(class_dir) if class_dir.is_dir() else []
        paths += files
        labels += [i] * len(files)
    if len(paths) * channels * size * size > MAX_IN_MEMORY_BYTES:
        raise DigitlabError(f"{folder}: {len(paths)} images at {size}x{size} would need more than 8 GB in memory; pass a smaller --image-size")
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


def load_folder(folder: Path, image_size: int | None = None, channels: int | None = None, seed: int = 0) -> tuple[ImageData, ImageData, str]:
    """Read FOLDER/<class>/* (or FOLDER/train/<class> + FOLDER/test/<class>) into train and test splits."""
    if not folder.is_dir():
        raise DigitlabError(f"image folder {folder} does not exist; expected a folder with one sub-folder per class")
    sub = {p.name.lower(): p for p in _class_dirs(folder)}
    test_dir = next((sub[n] for n in TEST_NAMES if n in sub), None)
    split_dirs = [sub["train"], test_dir] if "train" in sub and test_dir else [folder]
    classes = sorted({p.name for d in split_dirs for p in _class_dirs(d)})
    if len(classes) < 2:
        raise DigitlabError(f"{folder}: found {len(classes)} class sub-folder(s); a classifier needs at least 2 (one sub-folder per class)")
    size = image_size or DEFAULT_IMAGE_SIZE
    channels = channels or _guess_channels(split_dirs)
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
