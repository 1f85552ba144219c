"""Optional TensorBoard logging (pip install 'digitlab[tensorboard]')."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import normalize
from ..errors import DigitlabError


class TensorBoardLogger:
    """Scalars and learning rate per epoch, weight/gradient histograms, sample images and the model graph."""

    def __init__(self, log_dir: Path, model: torch.nn.Module, sample_images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DigitlabError("--tensorboard needs the tensorboard package: pip install 'digitlab[tensorboard]'") from None
        self.writer = SummaryWriter(str(log_dir))
        self.writer.add_images("samples", sample_images[:32].float().div(255).cpu(), 0)
        try:
            was_training = model.training
            model.eval()
            self.writer.add_graph(model, normalize(sample_images[:2], mean, std))
            model.train(was_training)
        except Exception:  # some graphs (e.g. GoogLeNet's) do not trace; the rest of the log still matters
            pass

    def epoch(self, epoch: int, entry: dict, model: torch.nn.Module) -> None:
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "test_acc", "lr", "seconds"):
            if entry.get(key) is not None:
                group = key.split("_")[-1] if "_" in key else key
                self.writer.add_scalar(f"{group}/{key}", entry[key], epoch)
        for name, p in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), epoch)
            if p.grad is not None:
                self.writer.add_histogram(f"grads/{name}", p.grad.detach().float().cpu(), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
