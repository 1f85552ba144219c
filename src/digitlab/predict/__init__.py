"""Using trained models: loading, predicting, and (for photos) MNIST-style preprocessing."""
from .classifier import Classifier, Prediction, Reading, load

__all__ = ["Classifier", "Prediction", "Reading", "load"]
