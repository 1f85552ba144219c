"""The usual way, as a baseline: the official PyTorch MNIST example's data path and recipe.

torchvision's `datasets.MNIST` with per-sample `ToTensor()` + `Normalize((0.1307,), (0.3081,))`, a `DataLoader`
(shuffle, batch 64), the example's 2-conv net, Adadelta lr 1.0 and StepLR gamma 0.7. The data is read from the
same local IDX files digitlab uses ($DIGITLAB_DATA), unpacked into torchvision's own layout in a temporary folder.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


class ExampleNet(nn.Module):
    """pytorch/examples mnist/main.py: conv32-conv64 (3x3), max-pool, dropout 0.25, fc 9216-128, dropout 0.5, fc 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def torchvision_root() -> Path:
    """A temporary folder in torchvision's MNIST layout (ROOT/MNIST/raw/*-ubyte) made from $DIGITLAB_DATA/mnist."""
    src = Path(os.environ.get("DIGITLAB_DATA", "../shared/data")) / "mnist"
    root = Path(tempfile.mkdtemp(prefix="tv-mnist-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        gz = src / f"{name}.gz"
        if gz.is_file():
            with gzip.open(gz) as f_in, open(raw / name, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
        else:
            shutil.copy(src / name, raw / name)
    return root


def loaders(root: Path, batch_size: int = 64, test_batch_size: int = 1000, workers: int = 0):
    """The example's loaders; on CPU it passes no num_workers (0: batches built in the training process). On CUDA it
    uses 1 worker; pass workers=1 to see that setting on CPU too."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    test = datasets.MNIST(str(root), train=False, download=False, transform=transform)
    kwargs = {"num_workers": workers, "persistent_workers": workers > 0}
    return (torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, **kwargs),
            torch.utils.data.DataLoader(test, batch_size=test_batch_size, **kwargs))


def test_accuracy(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    model.train()
    return correct / total


def train_epoch(model: nn.Module, loader, optimizer, loss_fn=F.nll_loss,
                layout: torch.memory_format = torch.contiguous_format) -> float:
    """One epoch the way the example does it (in its default memory layout unless `layout` says otherwise; the model
    must already be in that layout); returns seconds."""
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        x = x.contiguous(memory_format=layout)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def run_example(epochs: int, targets: tuple[float, ...], max_seconds: float, seed: int = 1, workers: int = 0, log=print) -> dict:
    """The example's recipe, scoring the test set after every epoch; returns seconds to each target accuracy. It stops
    once every target is reached or after `max_seconds`."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    root = torchvision_root()
    try:
        train_loader, test_loader = loaders(root, workers=workers)
        model = ExampleNet()
        optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
        reached: dict[float, float] = {}
        history = []
        for epoch in range(1, epochs + 1):
            seconds = train_epoch(model, train_loader, optimizer)
            scheduler.step()
            acc = test_accuracy(model, test_loader)
            elapsed = time.perf_counter() - start
            history.append({"epoch": epoch, "seconds": seconds, "test_acc": acc, "elapsed": elapsed})
            log(f"  baseline epoch {epoch}: {seconds:.1f} s, test {100 * acc:.2f}%, {elapsed:.0f} s since start")
            for t in targets:
                if acc >= t and t not in reached:
                    reached[t] = elapsed
            if len(reached) == len(targets) or elapsed > max_seconds:
                break
        return {"reached": reached, "history": history}
    finally:
        shutil.rmtree(root, ignore_errors=True)
