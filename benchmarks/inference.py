"""Inference speed on this machine's CPU: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, in one run.

    python benchmarks/inference.py [--models lenet5,cnn,fastcnn] [--threads N] [--rounds 5] [--batch 256] [--data-root DIR]

Weights don't change the arithmetic, so freshly initialised models are timed; each is exported to ONNX fp32 and to
int8 (static quantisation, calibrated on 300 MNIST training images: needs MNIST under --data-root, $DIGITLAB_DATA or
the download cache) in a temporary folder. Backends:

- eager: what one writes by hand, `model.eval()` and `model(x)` on the whole normalised batch in inference mode;
- torch: `digitlab.load(checkpoint).predict` (chunks of 256, channels_last, the fx graph for lenet5);
- onnx fp32 / onnx int8: `digitlab.load(file.onnx).predict`, onnxruntime on the CPU.

Throughput is images/s on batches of 256 (--batch); latency is one image per `predict` call (normalisation
included), median and p90. The backends take turns within each round, so a slow spell of this shared machine hits
all of them; the figures are medians over the rounds, and each ratio is taken within a round (median and range over
the rounds).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from digitlab.models import create_model
from digitlab.predict import load
from digitlab.predict.onnx import export_onnx
from digitlab.predict.quantize import export_int8
from digitlab.runs import save_model

BACKENDS = ("eager", "torch", "onnx fp32", "onnx int8")


def time_calls(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def eager_predict(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The hand-written way: eager model, default memory format, one call per batch."""
    model.eval()

    def call(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model((batch.float() / 255 - 0.1307) / 0.3081).softmax(1)

    return call


def make_backends(name: str, folder: Path, data_root: str | None) -> dict[str, Callable[[torch.Tensor], object]]:
    """The four ways to run one freshly initialised model, each a function of a uint8 batch."""
    model = create_model(name, num_classes=10, in_chans=1, image_size=28)
    record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28],
              "mean": [0.1307], "std": [0.3081], "dataset": "mnist", "preprocess": "digits"}
    ckpt = folder / f"{name}.safetensors"
    save_model(ckpt, model, record)
    fp32 = load(export_onnx(ckpt, folder / f"{name}.onnx"))
    int8 = load(export_int8(ckpt, folder / f"{name}.int8.onnx", data_root=data_root))
    return {"eager": eager_predict(model), "torch": load(ckpt).predict, "onnx fp32": fp32.predict,
            "onnx int8": int8.predict}


def measure_round(backends: dict[str, Callable], images: torch.Tensor, results: dict[str, dict[str, list[float]]]) -> None:
    """One turn of every backend: 8 batches (images/s of their median), then 100 single images."""
    for key, predict in backends.items():
        predict(images)  # warm-up: first-call allocations, the fx graph, onnxruntime's arenas
        for _ in range(10):
            predict(images[:1])
        results[key]["ips"].append(len(images) / statistics.median(time_calls(lambda: predict(images), 8)))
        results[key]["lat"] += time_calls(lambda: predict(images[:1]), 100)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def report(name: str, results: dict[str, dict[str, list[float]]]) -> None:
    for key in BACKENDS:
        lat = sorted(results[key]["lat"])
        p90 = lat[int(0.9 * (len(lat) - 1))]
        print(f"| {name} | {key} | {statistics.median(results[key]['ips']):,.0f} | "
              f"{1000 * statistics.median(lat):.3f} | {1000 * p90:.3f} |", flush=True)
    for a, b in (("onnx int8", "onnx fp32"), ("onnx fp32", "torch"), ("onnx int8", "torch")):
        ips = [x / y for x, y in zip(results[a]["ips"], results[b]["ips"])]
        print(f"| {name} | {a} / {b} | {spread(ips)} | | |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,cnn,fastcnn")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--data-root", help="folder holding mnist/ for int8 calibration (default: $DIGITLAB_DATA)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.randint(0, 256, (args.batch, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    print(f"CPU threads: {torch.get_num_threads()}; {args.rounds} rounds, backends interleaved in each")
    print(f"| model | backend | images/s, batch {args.batch} | latency, batch 1, median (ms) | p90 (ms) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            backends = make_backends(name, Path(tmp), args.data_root)
            results = {key: {"ips": [], "lat": []} for key in BACKENDS}
            for _ in range(args.rounds):
                measure_round(backends, images, results)
            report(name, results)


if __name__ == "__main__":
    main()
