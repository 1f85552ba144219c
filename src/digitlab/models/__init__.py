"""Model zoo: `create_model(name, num_classes=, in_chans=, image_size=)`, one file per family."""
from . import mlp, lenet, cnn, alexnet, resnet, googlenet, ensemble  # noqa: F401,I001  (registers the models, in this order)
from .registry import ModelEntry, create_model, get_entry, list_models, register
from .summary import ModelSummary, count_params, summary

__all__ = ["ModelEntry", "ModelSummary", "count_params", "create_model", "get_entry", "list_models", "register", "summary"]
