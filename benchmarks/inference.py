"""Inference speed on this machine's CPU: single-image latency and batch-1024 throughput, PyTorch vs onnxruntime.

    python benchmarks/inference.py [--models lenet5,cnn] [--threads N]

Weights don't change the arithmetic, so freshly initialised models are timed; each is exported to ONNX in a
temporary folder. Latency is the median of 300 single-image calls through `Classifier.predict` (the in-process API,
normalisation included); throughput is images/s over repeated batches of 1024. The baseline is what one writes by
hand: `model.eval()` and `model(x)` on the whole normalised batch under `torch.inference_mode()`.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from digitlab.models import create_model
from digitlab.predict import Classifier, load
from digitlab.predict.onnx import export_onnx
from digitlab.runs import save_model


def time_calls(fn, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def measure_plain(model: torch.nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """The hand-written way: eager model, default memory format, one call per batch."""
    model.eval()
    x = (images.float() / 255 - 0.1307) / 0.3081

    def call(batch: torch.Tensor) -> None:
        with torch.inference_mode():
            model((batch.float() / 255 - 0.1307) / 0.3081).softmax(1)

    for _ in range(20):
        call(images[:1])
    latency = statistics.median(time_calls(lambda: call(images[:1]), 300))
    call(images)
    return latency * 1000, len(x) / statistics.median(time_calls(lambda: call(images), 8))


def measure(clf: Classifier, images: torch.Tensor) -> tuple[float, float]:
    one = images[:1]
    for _ in range(20):
        clf.predict(one)
    latency = statistics.median(time_calls(lambda: clf.predict(one), 300))
    clf.predict(images)
    batch_times = time_calls(lambda: clf.predict(images), 8)
    return latency * 1000, len(images) / statistics.median(batch_times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,cnn")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.randint(0, 256, (1024, 1, 28, 28), dtype=torch.uint8)
    print(f"CPU threads: {torch.get_num_threads()}")
    print("| model | backend | latency, batch 1 (ms) | images/s, batch 1024 |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = create_model(name, num_classes=10, in_chans=1, image_size=28)
            record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28],
                      "mean": [0.1307], "std": [0.3081], "dataset": "mnist", "preprocess": "digits"}
            ckpt = Path(tmp) / f"{name}.safetensors"
            save_model(ckpt, model, record)
            results = {"plain": measure_plain(model, images)}
            print(f"| {name} | plain model(x) | {results['plain'][0]:.3f} | {results['plain'][1]:,.0f} |", flush=True)
            for backend in ("torch", "onnx"):
                clf = load(ckpt) if backend == "torch" else load(export_onnx(ckpt))
                results[backend] = measure(clf, images)
                lat, ips = results[backend]
                print(f"| {name} | {backend} | {lat:.3f} | {ips:,.0f} |", flush=True)
            (lp, ip), (lt, it), (lo, io) = results["plain"], results["torch"], results["onnx"]
            print(f"| {name} | torch / plain | {lp / lt:.2f}x faster | {it / ip:.2f}x |", flush=True)
            print(f"| {name} | onnx / torch | {lt / lo:.2f}x faster | {io / it:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
