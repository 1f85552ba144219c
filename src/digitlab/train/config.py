"""Training configuration as plain data: defaults < recipe < model defaults < config file < CLI flags."""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DigitlabError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("none", "step", "cosine", "onecycle")

# Per-dataset defaults, below the model's and the recipe's. Measured, cnn on Fashion-MNIST, 10 epochs, test accuracy:
# the digits' affine warps 89.74%, crop + flip 90.21%, none 91.47% (ten epochs are too few for augmentation to pay)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"fashion-mnist": {"augment": "none"}}

# Recipes: named sets of options chosen by measurement (see benchmarks/ and the README).
RECIPES: dict[str, dict[str, Any]] = {
    # the speed recipe, chosen with benchmarks/time_to_accuracy.py (seeds 0-2, 2 CPU cores): fastcnn, AdamW one-cycle,
    # light augmentation, label smoothing and a warmed-up EMA of the weights; 4 epochs. Measured: 99.0% after epoch 1
    # (22-23 s), 99.5% after epoch 2-3 (46-65 s), 99.54-99.59% at the end. Batch 128 beat 256 (99.14 vs 99.03% after
    # epoch 1, more steps for the same compute); EMA 0.99 lifted epoch 1 from 98.74-99.14% to 99.23-99.30%.
    "fast": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
             "label_smoothing": 0.1, "augment": "light", "batch_size": 128, "epochs": 4, "ema": 0.99},
    # the most accurate single model within 10 minutes on 2 CPU cores (README): the fast recipe run 4x longer with a
    # slower EMA; measured 99.67% test (best validation epoch 13 of 16), 99.5% first reached after epoch 4
    "accurate": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
                 "label_smoothing": 0.1, "augment": "light", "batch_size": 128, "epochs": 16, "ema": 0.998},
    # the reader that ships inside the package (src/digitlab/weights/reader.safetensors): the fast recipe's net and
    # optimiser, trained longer on MNIST plus a 'not-digit' class of wrong cuts (data/reject.py: pairs, parts of
    # digits, digit + slice; 25% as many as the digits) under photo-like augmentation (data/batches.py
    # reader_augment: rotation, shear, elastic, off-centre, stroke width, blur, low resolution). Seed fixed: the same
    # command on the same data gives the same weights on the same machine type.
    "reader": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
               "label_smoothing": 0.1, "augment": "reader", "batch_size": 128, "epochs": 10, "ema": 0.995, "reject": 0.25,
               "seed": 0},
    # the official PyTorch MNIST example's recipe (its 2-conv net is digitlab's 'cnn'-like baseline)
    "pytorch-example": {"optimizer": "adadelta", "lr": 1.0, "schedule": "step", "gamma": 0.7, "batch_size": 64, "epochs": 14},
}


@dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str | None = None  # None: MNIST, falling back to mnist-sample when offline
    data_root: str | None = None
    image_size: int | None = None
    channels: int | None = None
    recipe: str | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None  # None: the model's default
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    gamma: float = 0.7  # step schedule: multiply the LR by this every epoch
    label_smoothing: float = 0.0
    augment: str = "light"
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    reject: float = 0.0  # digit datasets: add this fraction of 'not-digit' wrong cuts as an extra class (the reader)
    val_split: float = 0.1
    early_stop: int = 0  # patience in epochs; 0 = off
    time_budget: float = 0.0  # seconds of training; stop before an epoch that would overrun it; 0 = off
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0: PyTorch's default
    stream: bool = False  # image folders: stream from disk with DataLoader workers even if the folder fits in memory
    workers: int | None = None  # DataLoader processes for a streamed folder; None: one per core, at most 8
    compile: bool = False
    tensorboard: bool = False
    track_test: bool = False  # also score the test set each epoch (for time-to-accuracy curves, never for selection)
    out: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        from ..data import AUGMENT_CHOICES

        checks = [
            (self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}'; choose one of: {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"unknown schedule '{self.schedule}'; choose one of: {', '.join(SCHEDULES)}"),
            (self.augment in AUGMENT_CHOICES, f"unknown augmentation '{self.augment}'; choose one of: {', '.join(AUGMENT_CHOICES)}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema}"),
            (0 <= self.reject <= 1, f"--reject must be in [0, 1], got {self.reject}"),
            (0 <= self.val_split < 1, f"--val-split must be in [0, 1), got {self.val_split}"),
            (self.early_stop >= 0, f"--early-stop must be >= 0, got {self.early_stop}"),
            (self.workers is None or self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DigitlabError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML, YAML or JSON file with the same keys as the CLI flags (dashes or underscores)."""
    p = Path(path)
    if not p.is_file():
        raise DigitlabError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise DigitlabError(f"config file {p}: use a .toml, .yaml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as e:
        raise DigitlabError(f"config file {p} is not valid: {str(e).splitlines()[0]}") from None
    except Exception as e:  # yaml.YAMLError without importing yaml at module level
        raise DigitlabError(f"config file {p} is not valid: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DigitlabError(f"config file {p} must hold a table of options")
    return {k.replace("-", "_"): v for k, v in data.items()}


def resolve_config(options: dict[str, Any]) -> TrainConfig:
    """Explicit options win over the recipe, which wins over the model's own defaults."""
    unknown = set(options) - FIELDS
    if unknown:
        raise DigitlabError(f"unknown option(s) {', '.join(sorted(unknown))}; valid options: {', '.join(sorted(FIELDS))}")
    recipe = options.get("recipe")
    if recipe is not None and recipe not in RECIPES:
        raise DigitlabError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")
    recipe_options = RECIPES.get(recipe, {}) if recipe else {}
    from ..models import get_entry

    model = options.get("model") or recipe_options.get("model") or TrainConfig.model
    if model != recipe_options.get("model"):  # the recipe's model options belong to the recipe's model
        recipe_options = {k: v for k, v in recipe_options.items() if k != "model_args"}
    explicit = {k: v for k, v in options.items() if v is not None}
    dataset_options = DATASET_DEFAULTS.get(options.get("dataset") or "", {})
    return TrainConfig(**{**dataset_options, **get_entry(model).train_defaults, **recipe_options, **explicit}).validate()
