"""How far from the machine's arithmetic limit each recipe trains: achieved GFLOP/s of the training step and of a
whole epoch vs the peak this CPU reaches on plain large kernels of the same kind.

    DIGITLAB_DATA=../shared/data python benchmarks/roofline.py [--models fastcnn,lenet5,cnn] [--epoch]

Peak: a 2048x2048 fp32 matmul loop and a large 3x3 conv (64->64 channels at 28x28, batch 128, channels_last,
forward + both backward passes), on all of torch's threads. Achieved: FLOPs of one training step (forward, backward
and optimizer, counted by torch's FlopCounterMode, so the backward pass is counted, not estimated) divided by its
measured time on a fixed batch in the recipe's layout (no data path); with --epoch also one real epoch of
`digitlab train` (data path, augmentation and validation included), FLOPs of its steps over its seconds.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

# as the digitlab command does: OpenMP threads that spin while waiting starve everything else on a shared CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import digitlab
from digitlab.models import create_model
from digitlab.training.config import resolve_config
from digitlab.training.loop import make_optimizer


def timed(fn, min_seconds: float = 2.0) -> float:
    """Seconds per call: one warm-up call, then as many calls as fit in `min_seconds`."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def counted(fn) -> int:
    with FlopCounterMode(display=False) as flops:
        fn()
    return flops.get_total_flops()


def peak_matmul() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / timed(lambda: a @ b) / 1e9


def peak_conv() -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(128, 64, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step():
        conv(x).sum().backward()
    return counted(step) / timed(step) / 1e9


def training_step(model_name: str):
    """The recipe's training step (model default options for models without a recipe) on a fixed batch."""
    cfg = resolve_config({"recipe": "fast"} if model_name == "fastcnn" else {"model": model_name})
    model = create_model(model_name).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(cfg, model, cfg.lr or 1e-3)
    x = torch.randn(cfg.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (cfg.batch_size,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing).backward()
        optimizer.step()
    return cfg, step


def epoch_gflops(model_name: str, cfg, step_flops: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        options = {"recipe": "fast"} if model_name == "fastcnn" else {"model": model_name}
        run = digitlab.train(**options, dataset="mnist", epochs=1, out=f"{tmp}/run", verbose=False)
    steps = math.ceil(round(60_000 * (1 - cfg.val_split)) / cfg.batch_size)  # MNIST's training images less validation
    return step_flops * steps / run.history[0]["seconds"] / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="fastcnn,lenet5,cnn")
    ap.add_argument("--epoch", action="store_true", help="also time one real epoch per model (needs DIGITLAB_DATA)")
    args = ap.parse_args()
    mm, conv = peak_matmul(), peak_conv()
    print(f"{torch.get_num_threads()} threads; peak: matmul {mm:.1f} GFLOP/s, 3x3 conv fwd+bwd {conv:.1f} GFLOP/s")
    print("\n| model (batch) | GFLOP per step | step GFLOP/s | % of conv peak | epoch GFLOP/s | % of conv peak |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        cfg, step = training_step(name)
        flops = counted(step)
        achieved = flops / timed(step) / 1e9
        epoch = epoch_gflops(name, cfg, flops) if args.epoch else None
        tail = f"{epoch:.1f} | {100 * epoch / conv:.0f}%" if epoch else "- | -"
        print(f"| {name} ({cfg.batch_size}) | {flops / 1e9:.2f} | {achieved:.1f} | {100 * achieved / conv:.0f}% | {tail} |", flush=True)


if __name__ == "__main__":
    main()
