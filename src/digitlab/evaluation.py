"""Evaluation in large inference-mode batches: loss, accuracy, confusion matrix, per-class scores."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import ImageData, normalize
from .device import autocast, inference_batch, memory_format


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor | Iterable[torch.Tensor], mean: torch.Tensor,
                   std: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Logits (N, K) as float32 on the CPU for uint8 images (N, C, H, W), or for an iterable of such batches.
    `batch_size` None: the device's inference batch (256 on CPU, 1024 on a GPU)."""
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch(device)
    fmt = memory_format(device)
    mean, std = mean.to(device), std.to(device)
    was_training = model.training
    model.eval()
    out = []
    if isinstance(images, torch.Tensor):
        tensor = images
        images = (tensor[start:start + batch_size] for start in range(0, tensor.shape[0], batch_size))
    for batch in images:
        x = normalize(batch.to(device, non_blocking=True), mean, std).contiguous(memory_format=fmt)
        with autocast(device):
            out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (K, K) int64, rows = true class, columns = predicted
    probs: torch.Tensor  # (N, K)
    labels: torch.Tensor  # (N,)
    classes: list[str]

    @property
    def preds(self) -> torch.Tensor:
        return self.probs.argmax(1)

    def per_class(self) -> list[dict]:
        cm = self.confusion.double()
        tp = cm.diag()
        precision = tp / cm.sum(0).clamp_min(1)
        recall = tp / cm.sum(1).clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        return [{"class": c, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": int(s)}
                for c, p, r, f, s in zip(self.classes, precision.tolist(), recall.tolist(), f1.tolist(), cm.sum(1).tolist())]

    def worst_mistakes(self, k: int = 25) -> torch.Tensor:
        """Indices of the most confident wrong predictions, most confident first."""
        wrong = (self.preds != self.labels).nonzero().flatten()
        confidence = self.probs[wrong].max(1).values
        return wrong[confidence.argsort(descending=True)[:k]]

    def to_dict(self) -> dict:
        return {"loss": round(self.loss, 6), "accuracy": round(self.accuracy, 6), "n": int(self.labels.numel()),
                "per_class": self.per_class(), "confusion": self.confusion.tolist(), "classes": self.classes}


def evaluate(model: torch.nn.Module, data: ImageData, mean, std, batch_size: int | None = None) -> EvalResult:
    mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    batch_size = batch_size or inference_batch(next(model.parameters()).device)
    if isinstance(data, ImageData):
        logits, labels = predict_logits(model, data.images, mean_t, std_t, batch_size), data.labels.cpu()
    else:  # streamed from disk: unreadable files drop out, so the labels come with the batches
        seen: list[torch.Tensor] = []

        def images_only():
            for images, batch_labels in data.batches(batch_size, torch.arange(len(data))):
                seen.append(batch_labels)
                yield images

        logits = predict_logits(model, images_only(), mean_t, std_t)
        labels = torch.cat(seen) if seen else data.labels[:0]
    return score(logits, labels, data.classes)


def score(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> EvalResult:
    """Loss, accuracy, confusion and probabilities from a model's logits (or log-probabilities) on labelled images."""
    k = len(classes)
    if labels.numel() == 0:
        return EvalResult(float("nan"), float("nan"), torch.zeros(k, k, dtype=torch.long), torch.zeros(0, k), labels, classes)
    loss = F.cross_entropy(logits, labels).item()
    preds = logits.argmax(1)
    confusion = torch.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    return EvalResult(loss, (preds == labels).double().mean().item(), confusion, logits.softmax(1), labels, classes)
