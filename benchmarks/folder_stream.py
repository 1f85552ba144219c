"""A folder dataset in memory vs streamed from disk by DataLoader workers, one run.

    python benchmarks/folder_stream.py [--images 10000] [--size 28]

Writes MNIST training digits as PNG files, one sub-folder per class (the layout `folder:PATH` reads), then times
one pass over the training split (images/s delivered to the loop), and one epoch of `digitlab train --model mlp`,
for the in-memory path and for `--stream` with 0, 1 and 2 worker processes.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from digitlab import load_dataset
from digitlab.data import iterate_batches
from digitlab.training import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=28)
    args = ap.parse_args()
    mnist = load_dataset("mnist", val_split=0).train
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        for i in range(args.images):
            label = int(mnist.labels[i])
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(mnist.images[i, 0].numpy()).save(root / str(label) / f"{i:05d}.png")
        print(f"{args.images} PNG files, {args.size}x{args.size}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
        print("| path | load (s) | one pass over train (images/s) | mlp epoch (s) | mlp test accuracy |")
        print("|---|---|---|---|---|")
        for label, options in [("in memory", {}), ("--stream, 0 workers", {"stream": True, "workers": 0}),
                               ("--stream, 1 worker", {"stream": True, "workers": 1}),
                               ("--stream, 2 workers", {"stream": True, "workers": 2})]:
            t0 = time.perf_counter()
            splits = load_dataset(f"folder:{root}", image_size=args.size, channels=1, val_split=0.1, **options)
            load_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            n = sum(len(y) for _, y in iterate_batches(splits.train, 128, torch.randperm(len(splits.train))))
            rate = n / (time.perf_counter() - t0)
            run = train(model="mlp", dataset=f"folder:{root}", image_size=args.size, channels=1, epochs=1, augment="none",
                        out=str(Path(tmp) / label.replace(" ", "_").replace(",", "")), verbose=False,
                        stream=options.get("stream", False), workers=options.get("workers"))
            print(f"| {label} | {load_seconds:.1f} | {rate:,.0f} | {run.history[0]['seconds']:.1f} | {100 * run.test_accuracy:.2f}% |")


if __name__ == "__main__":
    main()
