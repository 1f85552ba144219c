"""Seconds per epoch for 1 vs N DDP processes on this machine (same global batch, same data), with efficiency.

    DIGITLAB_DATA=../shared/data .venv/bin/python benchmarks/ddp_scaling.py [--model lenet5] [--nproc 2] [--epochs 2]

Each process gets cores // N threads, so 1 process x 2 threads is compared with 2 processes x 1 thread.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, threads: int, args: argparse.Namespace, out: Path) -> list[dict]:
    train = ["-m", "digitlab", "train", "--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs),
             "--batch-size", "128", "--out", str(out), "--threads", str(threads)]
    cmd = [sys.executable, *train] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *train]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="lenet5")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, cores, args, Path(tmp) / "one")
        many = run(args.nproc, max(1, cores // args.nproc), args, Path(tmp) / "many")
    # the first epoch includes warm-up; report the last
    t1, tn = one[-1]["seconds"], many[-1]["seconds"]
    speedup = t1 / tn
    print(f"machine: {cores} cores; model {args.model} on {args.dataset}, global batch 128")
    print(f"| processes | threads each | s/epoch | speed-up | efficiency | val acc |")
    print(f"|---|---|---|---|---|---|")
    print(f"| 1 | {cores} | {t1:.1f} | 1.00x | 100% | {100 * one[-1]['val_acc']:.2f}% |")
    print(f"| {args.nproc} | {max(1, cores // args.nproc)} | {tn:.1f} | {speedup:.2f}x | {100 * speedup / args.nproc:.0f}% | {100 * many[-1]['val_acc']:.2f}% |")


if __name__ == "__main__":
    main()
