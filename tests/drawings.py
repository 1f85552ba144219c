"""Drawings and untrained models shared by the page's tests (saliency, API fields, browser)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from digitlab.models import create_model
from digitlab.predict import Classifier


def untrained(name: str) -> Classifier:
    """A zoo model with random weights and an MNIST record: shapes and geometry do not depend on training."""
    model = create_model(name, num_classes=10, in_chans=1, image_size=28)
    record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28],
              "mean": [0.1307], "std": [0.3081], "dataset": "mnist", "preprocess": "digits"}
    return Classifier(model, record)


def seven() -> np.ndarray:
    """A 7 drawn black on white in a 280x280 canvas, as the page sends it; its ink spans x 60-220, y 50-240."""
    img = np.full((280, 280), 255, np.uint8)
    img[50:70, 60:220] = 0
    for y in range(70, 240):
        x = int(200 - (y - 70) * 0.55)
        img[y, x - 10:x + 10] = 0
    return img


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()
