"""Peak memory (RSS) of a full MNIST training run in its own process: `digitlab train --model lenet5`.

    DIGITLAB_DATA=../shared/data python benchmarks/memory.py [--epochs 2] [--model lenet5]

RSS does not grow with epochs (the data is one uint8 tensor, batches are views), so 2 epochs show the peak.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    probe = subprocess.run([sys.executable, "-c", "import torch, torchvision, digitlab.training"], check=True)
    import_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "digitlab", "train", "--model", args.model, "--epochs", str(args.epochs),
                        "--dataset", "mnist", "--out", out], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    del probe
    print(f"| run | peak RSS |\n|---|---|")
    print(f"| import torch + torchvision + digitlab only | {import_peak:.0f} MB |")
    print(f"| digitlab train --model {args.model} --epochs {args.epochs} on MNIST ({wall:.0f} s) | {peak:.0f} MB |")


if __name__ == "__main__":
    main()
