"""A Keras-style model summary: layer, output shape, params; plus multiply-adds and memory per image."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ModelSummary:
    rows: list[tuple[str, str, tuple[int, ...], int]]  # (name, type, output shape, params)
    input_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    macs: int  # multiply-adds per image (torch's FLOP counter / 2)
    activation_bytes: int  # forward activations per image, float32
    param_bytes: int

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #")
        lines = [(f"{name} ({kind})", str((None,) + shape), f"{params:,}") for name, kind, shape, params in self.rows]
        w0 = max(len(header[0]), *(len(r[0]) for r in lines)) + 2
        w1 = max(len(header[1]), *(len(r[1]) for r in lines)) + 2
        w2 = max(len(header[2]), *(len(r[2]) for r in lines))
        rule = "=" * (w0 + w1 + w2)
        out = [f"Input shape: {self.input_shape}", rule, f"{header[0]:<{w0}}{header[1]:<{w1}}{header[2]:>{w2}}", rule]
        out += [f"{a:<{w0}}{b:<{w1}}{c:>{w2}}" for a, b, c in lines]
        out += [rule,
                f"Total params: {self.total_params:,}",
                f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                "-" * (w0 + w1 + w2),
                f"Multiply-adds per image: {self.macs:,} ({self.macs / 1e6:.2f} M)",
                f"Parameter memory: {self.param_bytes / 2**20:.2f} MB",
                f"Forward activations per image: {self.activation_bytes / 2**10:.1f} KB "
                f"(training needs about 2x that per image in the batch)"]
        return "\n".join(out)


def summary(model: nn.Module, input_shape: tuple[int, int, int] = (1, 28, 28)) -> ModelSummary:
    """Run one image through the model and record every leaf layer's output shape and parameters."""
    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(module, _inputs, output):
        if isinstance(output, torch.Tensor):
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append((names[module], type(module).__name__, tuple(output.shape[1:]), params))

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        flops = FlopCounterMode(display=False)
        with torch.no_grad(), flops:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    activation_bytes = sum(4 * int(torch.tensor(shape).prod()) for _, _, shape, _ in rows)
    total = count_params(model)
    return ModelSummary(rows, tuple(input_shape), total, count_params(model, trainable_only=True),
                        flops.get_total_flops() // 2, activation_bytes, sum(p.numel() * p.element_size() for p in model.parameters()))
