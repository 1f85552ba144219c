"""A timm-style registry: every model is built by name with the same arguments."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..errors import DigitlabError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str
    builder: Callable[..., nn.Module]
    min_size: int  # smallest square input the layer stack can take
    # CPU batch inference through a torch.fx graph kept in oneDNN's blocked layout (predict/classifier.py): set
    # only where measured faster than eager channels_last; it is for nets with few channels (lenet5: 6 and 16)
    cpu_graph: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, family: str, description: str, min_size: int = 1, cpu_graph: bool = False):
    """Decorator: add a builder `fn(num_classes, in_chans, image_size, **kwargs) -> nn.Module`. A name can be
    registered once: a second model of the same name would silently change what old checkpoints load as. How a model
    trains (learning rate, epochs) is training knowledge: training/config.py MODEL_DEFAULTS."""
    if name in _REGISTRY:
        raise DigitlabError(f"a model named '{name}' is already registered ({_REGISTRY[name].description}); pick another name")

    def wrap(fn):
        _REGISTRY[name] = ModelEntry(name, family, description, fn, min_size, cpu_graph)
        return fn
    return wrap


def list_models() -> list[ModelEntry]:
    return list(_REGISTRY.values())


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise DigitlabError(f"unknown model '{name}'; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int = 10, in_chans: int = 1, image_size: int = 28, **kwargs) -> nn.Module:
    """Build a model by registry name for inputs of shape (in_chans, image_size, image_size)."""
    entry = get_entry(name)
    if image_size < entry.min_size:
        raise DigitlabError(f"model '{name}' needs images of at least {entry.min_size}x{entry.min_size} pixels, "
                            f"got {image_size}x{image_size}; use --image-size {entry.min_size} or a smaller model")
    if num_classes < 2:
        raise DigitlabError(f"a classifier needs at least 2 classes, got {num_classes}")
    try:
        model = entry.builder(num_classes=num_classes, in_chans=in_chans, image_size=image_size, **kwargs)
    except TypeError as e:
        raise DigitlabError(f"bad option for model '{name}': {e}") from None
    # what a checkpoint needs to rebuild the model; plain data so it serialises to JSON
    model.digitlab_config = {"name": name, "num_classes": num_classes, "in_chans": in_chans,
                             "image_size": image_size, "kwargs": dict(kwargs)}
    return model


def flat_features(features: nn.Module, in_chans: int, image_size: int) -> int:
    """Size of the flattened feature map, found by running the conv stack once on a dummy input."""
    import torch

    with torch.no_grad():
        return features(torch.zeros(1, in_chans, image_size, image_size)).numel()
