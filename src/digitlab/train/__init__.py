"""Training, evaluation and run outputs.

`digitlab.train` is both this package and the function `digitlab.train(model=..., dataset=...)`:
the package module is made callable, so `import digitlab.train` can never shadow the API.
"""
import sys
import types

from ..runs import load_model, resolve_checkpoint, save_model
from .config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from ..evaluation import EvalResult, evaluate, predict_logits
from .loop import Run, train


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Run:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["OPTIMIZERS", "RECIPES", "SCHEDULES", "EvalResult", "Run", "TrainConfig", "evaluate", "load_model",
           "predict_logits", "resolve_checkpoint", "save_model", "train"]
