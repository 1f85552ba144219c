"""Look inside a CNN: the activations of every conv and dense layer for one input, the first layer's filters, and
the network's static side (each conv's kernels and receptive field) for a page to explore."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx
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
    dense: list[tuple[str, torch.Tensor]] = field(default_factory=list)  # each Linear's (features,) output; ReLU'd
    # but for the last, whose outputs are the logits


def inspect_image(clf: Any, source: Any) -> Inspection:
    """Run one image (photo path/bytes, or an already prepared (C, H, W) array) through the model with hooks
    on every Conv2d and Linear; conv activations are shown after ReLU, as CNN Explainer does."""
    if clf.model is None:
        raise DigitlabError("inspect needs the PyTorch checkpoint, not an ONNX file")
    image = source if isinstance(source, np.ndarray) else clf.prepare(source)
    convs = [(name, m) for name, m in clf.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise DigitlabError(f"'{clf.name}' has no convolutional layers to look inside (it is fully connected)")
    captured: list[tuple[str, torch.Tensor]] = []
    dense: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: captured.append((name, out[0].detach().relu().float().cpu())))
             for name, m in convs]
    hooks += [m.register_forward_hook(lambda _m, _i, out, name=name: dense.append((name, out[0].detach().float().cpu())))
              for name, m in clf.model.named_modules() if isinstance(m, torch.nn.Linear)]
    try:
        x = normalize(torch.as_tensor(image, dtype=torch.float32)[None].clone().to(clf.device), clf.mean, clf.std)
        with torch.inference_mode():
            probs = clf.model(x).float().softmax(1)[0].cpu()
    finally:
        for h in hooks:
            h.remove()
    dense = [(n, a if i == len(dense) - 1 else a.relu()) for i, (n, a) in enumerate(dense)]
    return Inspection(image, captured, convs[0][1].weight.detach().float().cpu(), probs, clf.classes, dense)


@dataclass
class Field:
    """Where a layer's units look on the input, along each axis: unit i is centred on input pixel
    `start + i * jump` and sees `size` pixels (clipped at the image's edges)."""
    size: float
    jump: float
    start: float

    def grow(self, kernel: int, stride: int, padding: int, dilation: int = 1) -> "Field":
        span = (kernel - 1) * dilation
        return Field(self.size + span * self.jump, self.jump * stride, self.start + (span / 2 - padding) * self.jump)

    @staticmethod
    def union(fields: list["Field"]) -> "Field":
        """Branches that meet (a residual add, an inception concat): the box that covers them all."""
        lo = min(f.start - (f.size - 1) / 2 for f in fields)
        hi = max(f.start + (f.size - 1) / 2 for f in fields)
        return Field(hi - lo + 1, max(f.jump for f in fields), (lo + hi) / 2)


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def receptive_fields(model: torch.nn.Module) -> dict[str, Field]:
    """The theoretical receptive field of every conv and pool module's output, from the kernels, strides and paddings
    along the traced graph (torch.fx), so branches and skips are followed as they run: where paths meet, the field
    is the union. Square kernels are assumed (the zoo has no others); {} when the model cannot be traced."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - an untraceable model just has no fields to show
        return {}
    modules = dict(model.named_modules())
    geo: dict[Any, Field | None] = {}
    out: dict[str, Field] = {}
    for node in graph.nodes:
        ins = [geo.get(a) for a in node.all_input_nodes]
        known = [f for f in ins if f is not None]
        if node.op == "placeholder":
            geo[node] = Field(1.0, 1.0, 0.0)
            continue
        m = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)) and known:
            dilation = _first(getattr(m, "dilation", 1))
            geo[node] = known[0].grow(_first(m.kernel_size), _first(m.stride), _first(m.padding), dilation)
            out[node.target] = geo[node]
        elif isinstance(m, (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d, torch.nn.Linear, torch.nn.Flatten)):
            geo[node] = None  # from here on every unit sees the whole image
        else:
            geo[node] = Field.union(known) if len(known) > 1 else (known[0] if known else None)
    return out


def conv_kernels(model: torch.nn.Module, layer: str, channels: int, inputs: int = 4) -> list[list[tuple[int, np.ndarray]]]:
    """For each of the first `channels` output channels of conv `layer`: the `inputs` kernels (input channel,
    kh x kw weights) with the largest total |weight|, the ones that made most of that feature map."""
    weight = dict(model.named_modules())[layer].weight.detach().float().cpu()
    result = []
    for w in weight[:channels]:
        strongest = w.abs().sum((1, 2)).argsort(descending=True)[:inputs].tolist()
        result.append([(i, w[i].numpy()) for i in strongest])
    return result


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
