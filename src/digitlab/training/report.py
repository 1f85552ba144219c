"""Everything a finished run writes besides checkpoints: plots, metrics.json and report.md."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import ImageData
from ..models import count_params
from ..runs import atomic_write_text
from .config import TrainConfig
from ..evaluation import EvalResult
from .plots import plot_confusion, plot_curves, plot_grid


def write_eval_pictures(out: Path, result: EvalResult, data: ImageData, prefix: str = "") -> None:
    """confusion.png, mistakes.png (most confident wrong answers) and samples.png (predictions on the first images)."""
    classes = result.classes
    plot_confusion(result.confusion, classes, out / f"{prefix}confusion.png")
    worst = result.worst_mistakes(30)
    if worst.numel():
        probs = result.probs[worst]
        titles = [f"true {classes[int(t)]}\npred {classes[int(p)]} {100 * float(q):.0f}%"
                  for t, p, q in zip(result.labels[worst], probs.argmax(1), probs.max(1).values)]
        plot_grid(data.take(worst), titles, out / f"{prefix}mistakes.png", colors=["crimson"] * len(titles),
                  suptitle="Most confident mistakes (test set)")
    n = min(40, len(data))
    preds = result.preds[:n]
    titles = [f"{classes[int(p)]} ({100 * float(q):.0f}%)" for p, q in zip(preds, result.probs[:n].max(1).values)]
    colors = ["green" if p == t else "crimson" for p, t in zip(preds.tolist(), result.labels[:n].tolist())]
    plot_grid(data.take(torch.arange(n)), titles, out / f"{prefix}samples.png", colors=colors, suptitle="Test images with predictions (red = wrong)")


def _percent(fraction: float | None) -> str:
    return f"{100 * fraction:.2f}" if fraction is not None else "-"


def _test_section(result: EvalResult) -> str:
    """The end of every report.md: per-class scores and the pictures write_eval_pictures made."""
    per_class = "\n".join(f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
                          for r in result.per_class())
    return f"""## Per-class scores (test)
| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

![confusion matrix](confusion.png)

## Most confident mistakes
![mistakes](mistakes.png)

## Sample predictions
![samples](samples.png)
"""


def write_run_outputs(run_dir: Path, cfg: TrainConfig, history: list[dict], best_epoch: int, result: EvalResult,
                      test: ImageData, model: torch.nn.Module, input_shape: tuple[int, int, int]) -> None:
    plot_curves(history, run_dir / "curves.png")
    write_eval_pictures(run_dir, result, test)
    train_seconds = sum(h["seconds"] for h in history)
    metrics = {"best_epoch": best_epoch, "epochs_run": len(history), "train_seconds": round(train_seconds, 2),
               "wall_seconds": history[-1]["elapsed"] if history else 0, "params": count_params(model),
               "best_val_acc": max((h["val_acc"] for h in history if h["val_acc"] is not None), default=None),
               "test": result.to_dict()}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    rows = "\n".join(f"| {h['epoch']} | {h['seconds']:.1f} | {h['train_loss']:.4f} | {100 * h['train_acc']:.2f} | "
                     + (f"{h['val_loss']:.4f} | {100 * h['val_acc']:.2f}" if h["val_acc"] is not None else "- | -")
                     + f" | {h['lr']:.2e} |" for h in history)
    text = f"""# Run report: {cfg.model} on {cfg.dataset or 'mnist (default)'}

**Test accuracy: {100 * result.accuracy:.2f}%** (loss {result.loss:.4f}, {len(test)} images), from the checkpoint of
epoch {best_epoch} (chosen on validation accuracy; the test set was not used for selection).
{count_params(model):,} parameters, input {input_shape}, {len(history)} epochs, {train_seconds:.1f} s of training.

## Config
```json
{json.dumps(cfg.to_dict(), indent=2)}
```

## Epochs
| epoch | seconds | train loss | train acc % | val loss | val acc % | lr |
|---|---|---|---|---|---|---|
{rows}

![curves](curves.png)

{_test_section(result)}"""
    atomic_write_text(run_dir / "report.md", text)


def write_ensemble_report(run_dir: Path, cfg: TrainConfig, metrics: dict, result: EvalResult, test: ImageData) -> None:
    """metrics.json, report.md and the test pictures of `train --ensemble N`; the members' folders hold their own."""
    write_eval_pictures(run_dir, result, test)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    rows = "\n".join(f"| [{m['folder']}]({m['folder']}/report.md) | {m['seed']} | {_percent(m['best_val_acc'])} | "
                     f"{_percent(m['test_accuracy'])} |" for m in metrics["members"])
    val = metrics["best_val_acc"]
    text = f"""# Run report: an ensemble of {cfg.ensemble} {cfg.model} on {cfg.dataset or 'mnist (default)'}

**Test accuracy: {100 * result.accuracy:.2f}%** (loss {result.loss:.4f}, {len(test)} images), the members' probabilities
averaged{f"; validation {100 * val:.2f}%" if val is not None else ""}. {metrics['params']:,} parameters in all,
{metrics['train_seconds']:.1f} s of training, {metrics['wall_seconds']:.1f} s with validation and scoring.

## Members (each chose its best epoch on the same validation split)
| member | seed | val acc % | test acc % |
|---|---|---|---|
{rows}

## Config
```json
{json.dumps(cfg.to_dict(), indent=2)}
```

{_test_section(result)}"""
    atomic_write_text(run_dir / "report.md", text)
