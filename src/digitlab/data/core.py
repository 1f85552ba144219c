"""In-memory image data: one uint8 tensor (N, C, H, W) and int64 labels, nothing per sample."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from ..errors import DigitlabError


@dataclass
class ImageData:
    """A split held as one uint8 tensor, so batching is indexing and never per-sample Python."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DigitlabError(f"images must be a uint8 tensor of shape (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DigitlabError(f"{self.images.shape[0]} images but labels have shape {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor) -> "ImageData":
        return ImageData(self.images[index], self.labels[index], self.classes)

    def to(self, device: torch.device | str) -> "ImageData":
        return ImageData(self.images.to(device), self.labels.to(device), self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=len(self.classes)).tolist()

    def batches(self, batch_size: int, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) on the data's device, one index slice at a time."""
        order = order.to(self.images.device)
        for start in range(0, order.numel(), batch_size):
            idx = order[start:start + batch_size]
            yield self.images[idx], self.labels[idx]

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """These images as one uint8 tensor (for sample grids and reports)."""
        return self.images[index.to(self.images.device)]


def relabel(data: ImageData, classes: list[str], name: str = "the data") -> ImageData:
    """The same images labelled by index into `classes`, matched by name: MNIST's 0-9 for a 0-9 + not-digit model.
    A class `classes` lacks is refused, since no label could stand for it."""
    unknown = [k for k in data.classes if k not in classes]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DigitlabError(f"{name} has classes the model does not know ({shown}); the model's classes are "
                            f"{', '.join(classes[:12])}{' ...' if len(classes) > 12 else ''}")
    if list(data.classes) == list(classes):
        return data
    index = torch.tensor([classes.index(k) for k in data.classes], dtype=torch.long, device=data.labels.device)
    return ImageData(data.images, index[data.labels], list(classes))


SplitT = TypeVar("SplitT")  # ImageData, or data.folder.FolderImages (anything with len and subset)


@dataclass
class DataSplits:
    """train / val / test plus what a model needs to know about the data."""

    name: str
    train: ImageData  # or FolderImages (same interface) for a folder streamed from disk
    val: ImageData
    test: ImageData
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # where the files came from, for humans
    notes: list[str] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> md5 of the files read (for provenance)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.shape


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units, in chunks so a full dataset never doubles in float64."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square_().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def split_train_val(data: SplitT, val_split: float, seed: int) -> tuple[SplitT, SplitT]:
    """Carve a validation set from train with a fixed seed; the test set is never touched."""
    if not 0.0 <= val_split < 1.0:
        raise DigitlabError(f"--val-split must be in [0, 1), got {val_split}")
    n_val = int(round(len(data) * val_split))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return data.subset(train_idx), data.subset(val_idx)
