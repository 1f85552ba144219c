"""Training configuration as plain data: defaults < dataset < model defaults < recipe < config file < CLI flags."""
from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.batches import AUGMENT_CHOICES
from ..device import PRECISIONS
from ..errors import DigitlabError
from ..models import get_entry

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("none", "step", "cosine", "onecycle")

# Per-dataset defaults, below the model's and the recipe's. Measured, cnn on Fashion-MNIST, 10 epochs, test accuracy:
# the digits' affine warps 89.74%, crop + flip 90.21%, none 91.47% (ten epochs are too few for augmentation to pay)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"fashion-mnist": {"augment": "none"}}

# Each model's own defaults, above the dataset's and below a recipe's: the learning rate its family trains well with
# (Adam 1e-3 unless listed), and longer training for the fast, small MLPs. Training knowledge, so it lives here and
# not in the model registry.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 20},
    "mlp-dropout": {"epochs": 20, "weight_decay": 1e-4},
    "lenet5-modern": {"lr": 2e-3},
    "fastcnn": {"lr": 3e-3},
}

# Recipes: named sets of options chosen by measurement (see benchmarks/ and the README). The rule: choose on the
# validation split (the last `val_split` of the training set; benchmarks/recipe_search.py compares variants there and
# reads no test score) and score the test set once per reported run, after the choice. `reader` and `teach` were
# chosen that way (MNIST validation and the validation photos / the writer's validation drawings); `fast` and
# `accurate` were chosen in 0.2 on time_to_accuracy's test-set curves, then re-checked on validation with
# recipe_search (2 seeds each): fast's batch 128 beats 256 and its EMA lifts epoch 1 from 98.68% to 99.01%;
# fastcnn's width 32 against 24 (99.51% at the end, 0.06 points less) and 48 (99.58%, the same within noise, at twice
# the time per epoch); accurate's EMA 0.998 against fast's 0.99 (99.70% vs 99.68% at the end). All hold.
RECIPES: dict[str, dict[str, Any]] = {
    # the speed recipe, chosen with benchmarks/time_to_accuracy.py (seeds 0-2, 2 CPU cores): fastcnn, AdamW one-cycle,
    # light augmentation, label smoothing and a warmed-up EMA of the weights; 4 epochs. Measured: 99.0% after epoch 1
    # (22-23 s), 99.5% after epoch 2-3 (46-65 s), 99.54-99.59% at the end. Batch 128 beat 256 (99.14 vs 99.03% after
    # epoch 1, more steps for the same compute); EMA 0.99 lifted epoch 1 from 98.74-99.14% to 99.23-99.30%.
    "fast": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
             "label_smoothing": 0.1, "augment": "light", "batch_size": 128, "epochs": 4, "ema": 0.99},
    # the shortest time to 99% (issue 17): sprintcnn (a sixth of fastcnn's FLOPs), one epoch; chosen on the validation
    # split with benchmarks/recipe_search.py (README)
    "sprint": {"model": "sprintcnn", "optimizer": "adamw", "lr": 8e-3, "weight_decay": 5e-4, "schedule": "onecycle",
               "label_smoothing": 0.1, "augment": "none", "batch_size": 96, "epochs": 1, "ema": 0.99},
    # the most accurate single model within 10 minutes on 2 CPU cores (README): the fast recipe run 4x longer with a
    # slower EMA; measured 99.67% test (best validation epoch 13 of 16), 99.5% first reached after epoch 4
    "accurate": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
                 "label_smoothing": 0.1, "augment": "light", "batch_size": 128, "epochs": 16, "ema": 0.998},
    # the reader that ships inside the package (src/digitlab/weights/reader.safetensors): the fast recipe's net and
    # optimiser, trained longer on MNIST plus a 'not-digit' class of wrong cuts (data/reject.py: pairs, parts of
    # digits, digit + slice; 25% as many as the digits), 30% of its 1s flagged and 7s crossed (data/styles.py), under
    # photo-like augmentation (data/batches.py reader_augment: rotation, shear, elastic, off-centre, stroke width,
    # blur, low resolution in grey levels). Seed fixed: the same
    # command on the same data gives the same weights on the same machine type.
    "reader": {"model": "fastcnn", "optimizer": "adamw", "lr": 4e-3, "weight_decay": 5e-4, "schedule": "onecycle",
               "label_smoothing": 0.1, "augment": "reader", "batch_size": 128, "epochs": 10, "ema": 0.995, "reject": 0.25,
               "seed": 0},
    # fine-tuning from corrections (train --init-from MODEL --dataset folder:DIR), picked with benchmarks/corrections.py on
    # a validation set of one writer (the shipped reader, 20 corrections; grid: epochs 3/8, lr 3e-4/1e-3,
    # replay 500/2000); no validation split: a handful of corrections is too few to spare any
    "teach": {"epochs": 8, "lr": 1e-3, "val_split": 0.0},
    # the official PyTorch MNIST example's recipe (its 2-conv net is digitlab's 'cnn'-like baseline)
    "pytorch-example": {"optimizer": "adadelta", "lr": 1.0, "schedule": "step", "gamma": 0.7, "batch_size": 64, "epochs": 14},
}


def opt(default: Any = None, *, ge: float | None = None, gt: float | None = None, lt: float | None = None,
        le: float | None = None, choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None) -> Any:
    """A TrainConfig field with its rule: the type comes from the annotation, the range and choices from here, so a new
    option is one line and is checked the same way from flags, config files and the Python API."""
    rule = {"ge": ge, "gt": gt, "lt": lt, "le": le, "choices": choices}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=rule)
    return field(default=default, metadata=rule)


def _augment_choices() -> Sequence[str]:
    return AUGMENT_CHOICES


def _recipe_choices() -> Sequence[str]:
    return tuple(RECIPES)


@dataclass
class TrainConfig:
    model: str = opt("lenet5")
    dataset: str | None = opt(None)  # None: MNIST, falling back to mnist-sample when offline
    data_root: str | None = opt(None)
    image_size: int | None = opt(None, ge=1)
    channels: int | None = opt(None, choices=(1, 3))
    recipe: str | None = opt(None, choices=_recipe_choices)
    epochs: int = opt(10, ge=1)
    batch_size: int = opt(128, ge=1)
    optimizer: str = opt("adam", choices=OPTIMIZERS)
    lr: float | None = opt(None, gt=0)  # None: MODEL_DEFAULTS, else 1e-3
    momentum: float = opt(0.9, ge=0)
    weight_decay: float = opt(0.0, ge=0)
    schedule: str = opt("cosine", choices=SCHEDULES)
    gamma: float = opt(0.7, gt=0)  # step schedule: multiply the LR by this every epoch
    label_smoothing: float = opt(0.0, ge=0, lt=1)
    augment: str = opt("light", choices=_augment_choices)
    ema: float = opt(0.0, ge=0, lt=1)  # decay of an exponential moving average of the weights; 0 = off
    reject: float = opt(0.0, ge=0, le=1)  # digit datasets: this fraction of 'not-digit' wrong cuts as an extra class (the reader)
    val_split: float = opt(0.1, ge=0, lt=1)
    early_stop: int = opt(0, ge=0)  # patience in epochs; 0 = off
    time_budget: float = opt(0.0, ge=0)  # seconds of training; stop before an epoch that would overrun it; 0 = off
    seed: int = opt(0, ge=0, lt=2**31)
    split_seed: int | None = opt(None, ge=0, lt=2**31)  # which images go to validation; None: seed
    ensemble: int = opt(1, ge=1, le=16)  # train this many members (seeds from seed) and save them as one model
    device: str = opt("auto")
    precision: str = opt("auto", choices=PRECISIONS)  # training's arithmetic (device.autocast)
    threads: int = opt(0, ge=0, le=1024)  # 0: one per CPU this process may use (see loop.default_threads)
    stream: bool = opt(False)  # image folders: stream from disk with DataLoader workers even if the folder fits in memory
    workers: int | None = opt(None, ge=0)  # DataLoader processes for a streamed folder; None: one per core, at most 8
    compile: bool = opt(False)
    tensorboard: bool = opt(False)
    track_test: bool = opt(False)  # also score the test set each epoch (for time-to-accuracy curves, never for selection)
    out: str | None = opt(None)
    model_args: dict[str, Any] = opt({})
    init_from: str | None = opt(None)  # fine-tune: start from this run folder, checkpoint or 'reader' (its classes, input, normalisation)
    replay: int | None = opt(None, ge=0)  # with init_from: random images of the source's training set mixed into train; None: DEFAULT_REPLAY

    def validate(self) -> "TrainConfig":
        """Check every field's type, range and choices; floats given as ints become floats."""
        for name in FIELDS:
            setattr(self, name, check_option(name, getattr(self, name)))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def data_seed(self) -> int:
        """The seed that picks the validation images: split_seed where set (an ensemble's members share one split)."""
        return self.seed if self.split_seed is None else self.split_seed


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table of KEY = VALUE"}


def flag(name: str) -> str:
    """How the CLI spells an option, so messages name what the user typed."""
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _coerce(name: str, value: Any, label: str) -> Any:
    """The value in the field's type, or a DigitlabError; bool is never taken for an int (True is not 1 epoch)."""
    hint = _HINTS[name]
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    allowed = tuple(typing.get_origin(t) or t for t in allowed)
    if value is None:
        if type(None) in allowed:
            return None
    elif isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, (str, dict)) and type(value) in allowed:
        return value
    wanted = " or ".join(_TYPE_NAMES[t] for t in allowed if t in _TYPE_NAMES)
    raise DigitlabError(f"{label} must be {wanted}, got {_show(value)}")


def check_option(name: str, value: Any, label: str | None = None) -> Any:
    """One option checked against its field: type, then choices, then range. Returns the (coerced) value."""
    if name not in FIELDS:
        raise DigitlabError(unknown_option_message(name, label))
    label = label or flag(name)
    value = _coerce(name, value, label)
    if value is None:
        return value
    rule = FIELDS[name].metadata
    choices = rule.get("choices")
    choices = choices() if callable(choices) else choices
    if choices is not None and value not in choices:
        raise DigitlabError(f"{label}: unknown value {_show(value)}; choose one of: {', '.join(map(str, choices))}")
    bounds = [("ge", "at least", lambda v, b: v >= b), ("gt", "more than", lambda v, b: v > b),
              ("lt", "less than", lambda v, b: v < b), ("le", "at most", lambda v, b: v <= b)]
    for key, words, ok in bounds:
        bound = rule.get(key)
        if bound is not None and not ok(value, bound):
            raise DigitlabError(f"{label} must be {words} {bound}, got {_show(value)}")
    return value


def unknown_option_message(name: str, where: str | None = None) -> str:
    """'unknown option' with the closest valid name, e.g. epoch -> epochs."""
    guess = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.6)
    hint = f"; did you mean '{guess[0]}'?" if guess else f"; valid options: {', '.join(sorted(FIELDS))}"
    return f"{where + ': ' if where else ''}unknown option '{name}'{hint}"


def check_options(options: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """Every key known, every value valid; `where` (a config file) prefixes the messages."""
    checked = {}
    for name, value in options.items():
        if name not in FIELDS:
            raise DigitlabError(unknown_option_message(name, where))
        if value is None:  # unset: the recipe's or the model's default applies
            checked[name] = None
            continue
        checked[name] = check_option(name, value, f"{where}: {name}" if where else None)
    return checked


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
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise DigitlabError(f"config file {p}: use a .toml, .yaml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, ValueError) as e:
        raise DigitlabError(f"config file {p} is not valid: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DigitlabError(f"config file {p} must hold a table of options")
    return check_options({str(k).replace("-", "_"): v for k, v in data.items()}, where=str(p))


def resolve_config(options: dict[str, Any]) -> TrainConfig:
    """Explicit options win over the recipe, which wins over the model's own defaults."""
    options = check_options(options)
    recipe = options.get("recipe")
    recipe_options = RECIPES.get(recipe, {}) if recipe else {}
    model = options.get("model") or recipe_options.get("model") or TrainConfig.model
    if model != recipe_options.get("model"):  # the recipe's model options belong to the recipe's model
        recipe_options = {k: v for k, v in recipe_options.items() if k != "model_args"}
    explicit = {k: v for k, v in options.items() if v is not None}
    dataset_options = DATASET_DEFAULTS.get(options.get("dataset") or "", {})
    get_entry(model)  # an unknown model name fails here, with the list of known ones
    return TrainConfig(**{**dataset_options, **MODEL_DEFAULTS.get(model, {}), **recipe_options, **explicit}).validate()
