"""Using trained models: loading, predicting, and (for photos) MNIST-style preprocessing."""
from .classifier import Classifier, Prediction, load

__all__ = ["Classifier", "Prediction", "load"]
