"""A trained model ready to use: `digitlab.load(path).predict(images)`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import ImageData, normalize
from ..device import pick_device
from ..errors import DigitlabError


@dataclass
class Prediction:
    labels: torch.Tensor  # (N,) class indices
    probs: torch.Tensor  # (N, K) softmax probabilities
    classes: list[str]

    @property
    def names(self) -> list[str]:
        return [self.classes[i] for i in self.labels.tolist()]

    def top_k(self, k: int = 3) -> list[list[tuple[str, float]]]:
        values, indices = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[i], round(v, 6)) for i, v in zip(ii.tolist(), vv.tolist())] for ii, vv in zip(indices, values)]


class Classifier:
    """A model plus the record that says how to feed it (classes, input shape, normalisation)."""

    def __init__(self, model: torch.nn.Module, record: dict[str, Any], device: str | torch.device = "cpu"):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.record = record
        self.classes: list[str] = record["classes"]
        self.input_shape: tuple[int, int, int] = tuple(record["input_shape"])  # type: ignore[assignment]
        self.mean = torch.tensor(record["mean"], device=self.device)
        self.std = torch.tensor(record["std"], device=self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Classifier":
        from ..train.checkpoint import load_model

        model, record = load_model(path)
        return cls(model, record, device)

    def _as_batch(self, images: Any) -> torch.Tensor:
        """Any of (H,W), (C,H,W), (N,H,W), (N,C,H,W); uint8 0-255 or float 0-1 -> float batch in [0, 1]."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        c, h, w = self.input_shape
        if x.ndim == 2:
            x = x[None, None]
        elif x.ndim == 3:
            x = x[None] if x.shape[0] == c and c in (1, 3) and x.shape[0] != x.shape[1] else x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise DigitlabError(f"expected images of shape ({c}, {h}, {w}) (single or batched), got {tuple(x.shape)}; "
                                "for photos of any size use `digitlab predict`, which preprocesses them")
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        x = x.float()
        if not torch.isfinite(x).all():
            raise DigitlabError("images contain NaN or infinite values")
        return x.div(255.0) if x.max() > 1.5 else x

    @torch.inference_mode()
    def predict(self, images: Any) -> Prediction:
        """Class indices and probabilities for one image or a batch."""
        x = normalize(self._as_batch(images).to(self.device), self.mean, self.std)
        probs = torch.cat([self.model(x[i:i + 1024]).float().softmax(1).cpu() for i in range(0, x.shape[0], 1024)])
        return Prediction(probs.argmax(1), probs, self.classes)

    def evaluate(self, dataset: "str | ImageData", split: str = "test", root: str | None = None):
        """Score the model on a dataset (name or ImageData); the data must match its input shape and classes."""
        from ..data import load_dataset
        from ..train.evaluate import evaluate

        c, h, _ = self.input_shape
        if isinstance(dataset, str):
            splits = load_dataset(dataset, root=root, val_split=0.0, image_size=h, channels=c)
            data = {"test": splits.test, "train": splits.train}.get(split)
            if data is None:
                raise DigitlabError(f"unknown split '{split}'; choose test or train")
        else:
            data = dataset
        if data.shape != self.input_shape:
            raise DigitlabError(f"the data is {data.shape} but the model takes {self.input_shape}")
        if len(data.classes) != len(self.classes):
            raise DigitlabError(f"the data has {len(data.classes)} classes ({', '.join(data.classes[:5])}...) "
                                f"but the model was trained on {len(self.classes)} ({', '.join(self.classes[:5])}...)")
        return evaluate(self.model, data, self.record["mean"], self.record["std"])


def load(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a checkpoint file or run folder as a Classifier."""
    return Classifier.from_checkpoint(path, device)
