"""digitlab: train, compare, inspect and serve image classifiers for handwritten digits and other small images.

    >>> import digitlab
    >>> run = digitlab.train(model="lenet5", dataset="mnist", epochs=3)   # doctest: +SKIP
    >>> clf = digitlab.load(run.dir)                                        # doctest: +SKIP
    >>> clf.predict(images).labels                                          # doctest: +SKIP
    >>> digitlab.load().read("number.jpg", multi=True).text                 # the shipped reader  # doctest: +SKIP
"""
from __future__ import annotations

__version__ = "0.4.0"

_LAZY = {
    "train": ("digitlab.training", "train"),
    "TrainConfig": ("digitlab.training.config", "TrainConfig"),
    "load": ("digitlab.predict.classifier", "load"),
    "Classifier": ("digitlab.predict.classifier", "Classifier"),
    "create_model": ("digitlab.models", "create_model"),
    "list_models": ("digitlab.models", "list_models"),
    "summary": ("digitlab.models", "summary"),
    "load_dataset": ("digitlab.data", "load_dataset"),
    "DigitlabError": ("digitlab.errors", "DigitlabError"),
}


def __getattr__(name: str):
    """Import heavy parts (torch) only when used, so `digitlab --help` stays quick."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        loaded = importlib.import_module(module)
        return getattr(loaded, attr)
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


__all__ = list(_LAZY) + ["__version__"]
