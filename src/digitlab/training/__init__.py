"""Training: typed config and recipes, the loop, plots, the run's report, TensorBoard. The function is
`digitlab.train(...)` (this package is `digitlab.training`, so importing it can never replace the function)."""
from .config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from .loop import Run, train

__all__ = ["OPTIMIZERS", "RECIPES", "SCHEDULES", "Run", "TrainConfig", "train"]
