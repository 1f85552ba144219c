"""The pictures a run leaves behind: learning curves, confusion matrix and image grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure


def new_figure(rows: int = 1, cols: int = 1, **kwargs):
    """A figure that belongs to no GUI backend and no pyplot state (a notebook's own plots are left alone):
    (fig, axes), like plt.subplots."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(rows, cols, **kwargs)


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss and accuracy, train vs validation, per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = new_figure(1, 2, figsize=(10, 4))
    for key, style in (("train", "-o"), ("val", "-s")):
        if any(h.get(f"{key}_loss") is not None for h in history):
            ax_loss.plot(epochs, [h.get(f"{key}_loss") for h in history], style, label=key, markersize=3)
            ax_acc.plot(epochs, [100 * h[f"{key}_acc"] if h.get(f"{key}_acc") is not None else None for h in history], style, label=key, markersize=3)
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="%")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path, title: str = "Confusion matrix (test)") -> None:
    k = len(classes)
    fig, ax = new_figure(figsize=(max(5, 0.55 * k + 2), max(4.5, 0.55 * k + 1.5)))
    ax.imshow(confusion.float().log1p().numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            v = int(confusion[i, j])
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if i == j else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right" if max(map(len, classes)) > 2 else "center")
    ax.set_yticklabels(classes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_grid(images: torch.Tensor, titles: list[str], path: Path, colors: list[str] | None = None, cols: int = 10,
              suptitle: str = "") -> None:
    """uint8 (N, C, H, W) images in a grid with a caption over each, drawn as one mosaic with N labels on a single
    axes (an axes per image took ~2 s to lay out for a 100-image grid; this takes a tenth of that)."""
    n, c, h, w = images.shape
    cols = min(cols, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    gap_x, gap_y = max(2, w // 4), max(4, h // 2)  # the space above each image holds its caption
    cell_w, cell_h = w + gap_x, h + gap_y
    pictures = images.cpu().numpy()
    if c == 1:
        pictures = np.repeat(pictures, 3, axis=1)
    mosaic = np.full((rows * cell_h, cols * cell_w, 3), 255, np.uint8)
    for i in range(n):
        row, col = divmod(i, cols)
        y, x = row * cell_h + gap_y, col * cell_w + gap_x // 2
        mosaic[y:y + h, x:x + w] = pictures[i].transpose(1, 2, 0)
    title_inches = 0.4 if suptitle else 0.0
    fig = Figure(figsize=(1.25 * cols, 1.45 * rows + title_inches))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - title_inches / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for i in range(n):
        row, col = divmod(i, cols)
        ax.text(col * cell_w + cell_w / 2, row * cell_h + gap_y - 1, titles[i], ha="center", va="bottom", fontsize=7,
                color=colors[i] if colors else "black")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.savefig(path, dpi=110)
