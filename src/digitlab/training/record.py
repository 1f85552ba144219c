"""What a run leaves (Run) and what its checkpoint says about itself: enough to use it (classes, input shape,
normalisation) and to make it again (the config, the equivalent command line, the digitlab version and the checksums
of the data files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data import DataSplits
from .config import TrainConfig, resolve_config

DIGIT_DATASETS = ("mnist", "mnist-sample", "kmnist")  # ink on paper: photos get MNIST-style preprocessing
NOT_REPRODUCING = ("out", "data_root", "device", "threads", "workers", "tensorboard", "track_test")  # where, not what


@dataclass
class Run:
    """What a finished training run leaves: its folder, config, per-epoch history and test scores."""

    dir: Path
    config: TrainConfig
    history: list[dict]
    test: dict | None
    best_epoch: int

    @property
    def metrics(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "history": self.history, "test": self.test}

    @property
    def test_accuracy(self) -> float | None:
        return self.test["accuracy"] if self.test else None


def command_line(cfg: TrainConfig) -> str:
    """The shortest `digitlab train` command that resolves to this config: its recipe plus every option that differs
    from what the recipe alone gives (where files go left out)."""
    base = resolve_config({"recipe": cfg.recipe} if cfg.recipe else {}).to_dict()
    parts = ["digitlab", "train"] + ([f"--recipe {cfg.recipe}"] if cfg.recipe else [])
    for key, value in cfg.to_dict().items():
        if key in NOT_REPRODUCING or key == "recipe" or value == base.get(key) or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "model_args":
            parts += [f"--model-arg {k}={v}" for k, v in value.items()]
        elif isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def run_record(cfg: TrainConfig, data: DataSplits, model: torch.nn.Module) -> dict[str, Any]:
    """The JSON record saved in every checkpoint of a run."""
    c, h, w = data.input_shape
    return {"model": model.digitlab_config, "classes": data.classes, "input_shape": [c, h, w], "mean": list(data.mean),
            "std": list(data.std), "dataset": data.name, "digitlab_version": __version__,
            "preprocess": "digits" if data.name in DIGIT_DATASETS else "resize",
            "recipe": cfg.recipe, "config": cfg.to_dict(), "command": command_line(cfg), "data_md5": data.checksums}
