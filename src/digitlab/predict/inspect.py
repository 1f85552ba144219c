"""Look inside a CNN: the activations of every conv layer for one input, and the first layer's filters."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import normalize
from ..errors import DigitlabError


@dataclass
class Inspection:
    image: np.ndarray  # (C, H, W) 0-1, what the model saw
    layers: list[tuple[str, torch.Tensor]]  # (layer name, (channels, h, w) activations after the layer's ReLU)
    filters: torch.Tensor | None  # first conv's weights (out, in, k, k)
    probs: torch.Tensor  # (classes,)
    classes: list[str]


def inspect_image(clf: Any, source: Any) -> Inspection:
    """Run one image (photo path/bytes, or an already prepared (C, H, W) array) through the model with hooks
    on every Conv2d; activations are shown after ReLU, as CNN Explainer does."""
    if clf.model is None:
        raise DigitlabError("inspect needs the PyTorch checkpoint, not an ONNX file")
    image = source if isinstance(source, np.ndarray) else clf.prepare(source)
    convs = [(name, m) for name, m in clf.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise DigitlabError(f"'{clf.name}' has no convolutional layers to look inside (it is fully connected)")
    captured: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: captured.append((name, out[0].detach().relu().float().cpu())))
             for name, m in convs]
    try:
        x = normalize(torch.as_tensor(image, dtype=torch.float32)[None].clone().to(clf.device), clf.mean, clf.std)
        with torch.inference_mode():
            probs = clf.model(x).float().softmax(1)[0].cpu()
    finally:
        for h in hooks:
            h.remove()
    return Inspection(image, captured, convs[0][1].weight.detach().float().cpu(), probs, clf.classes)


def to_png(array: np.ndarray | torch.Tensor, scale: int = 1) -> bytes:
    """2-D array -> grayscale PNG, min-max scaled (a blank map stays black)."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    im = Image.fromarray((a * 255).astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def montage(maps: torch.Tensor, cols: int = 8, scale: int = 4, gap: int = 2) -> Image.Image:
    """(N, h, w) maps -> one grid image, each map scaled on its own."""
    n, h, w = maps.shape
    rows = (n + cols - 1) // cols
    sheet = Image.new("L", (cols * (w * scale + gap), rows * (h * scale + gap)), 64)
    for i in range(n):
        tile = Image.open(io.BytesIO(to_png(maps[i], scale)))
        sheet.paste(tile, ((i % cols) * (w * scale + gap), (i // cols) * (h * scale + gap)))
    return sheet


def write_inspection(result: Inspection, out: Path) -> list[Path]:
    """The CLI's pictures: input.png, one feature-map grid per conv layer, filters.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    c = result.image.shape[0]
    img = result.image[0] if c == 1 else result.image.mean(0)
    path = out / "input.png"
    path.write_bytes(to_png(img, 8))
    written.append(path)
    for i, (name, act) in enumerate(result.layers, 1):
        path = out / f"layer{i}-{name.replace('.', '_')}.png"
        montage(act, scale=max(1, 112 // act.shape[-1])).save(path)
        written.append(path)
    if result.filters is not None:
        path = out / "filters.png"
        montage(result.filters.mean(1), scale=12).save(path)
        written.append(path)
    return written
