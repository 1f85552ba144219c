"""Time to accuracy on real MNIST: digitlab's `fast` recipe vs the official PyTorch example's recipe and data path.

    DIGITLAB_DATA=../shared/data python benchmarks/time_to_accuracy.py [--set KEY=VALUE ...] [--skip-baseline]

Both score the test set after every epoch (for this measurement only) and report the wall seconds from the start
(data loading included) until the test accuracy first reaches 99.0% and 99.5%. `--set` overrides the recipe's
options (e.g. --set epochs=6 --set model=lenet5) to try variants; the README's figures use the recipe as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import run_example  # noqa: E402

import digitlab  # noqa: E402
from digitlab.training.config import RECIPES  # noqa: E402

TARGETS = (0.99, 0.995)


def run_digitlab(overrides: dict, out: str) -> dict:
    t0 = time.perf_counter()
    digitlab.load_dataset("mnist")  # what the loop does before its clock starts: counted here
    setup = time.perf_counter() - t0
    run = digitlab.train(recipe="fast", dataset="mnist", track_test=True, out=out, verbose=True, **overrides)
    reached = {}
    for e in run.history:
        for t in TARGETS:
            if e["test_acc"] >= t and t not in reached:
                reached[t] = e["elapsed"] + setup
    return {"reached": reached, "history": run.history, "final_test": run.test_accuracy}


def fmt(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe option")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-epochs", type=int, default=14)
    ap.add_argument("--baseline-max-seconds", type=float, default=1800)
    ap.add_argument("--out", help="run folder for digitlab's run (default: a new temporary folder)")
    args = ap.parse_args()
    if not os.environ.get("DIGITLAB_DATA"):
        raise SystemExit("set DIGITLAB_DATA to the folder holding mnist/ (e.g. ../shared/data)")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    print(f"recipe fast = {RECIPES['fast']} + {overrides}; {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_digitlab(overrides, args.out or f"{tmp}/run")
    base = None
    if not args.skip_baseline:
        print("baseline: PyTorch MNIST example (DataLoader + ToTensor + Normalize, Adadelta 1.0, StepLR 0.7, batch 64)")
        base = run_example(args.baseline_epochs, TARGETS, args.baseline_max_seconds)
    print("\n| recipe | s/epoch | to 99.0% | to 99.5% | final test acc |")
    print("|---|---|---|---|---|")
    per_epoch = sum(e["seconds"] for e in ours["history"]) / len(ours["history"])
    print(f"| digitlab fast | {per_epoch:.1f} | {fmt(ours['reached'].get(0.99))} | {fmt(ours['reached'].get(0.995))} | "
          f"{100 * ours['final_test']:.2f}% |")
    if base:
        b_epoch = sum(e["seconds"] for e in base["history"]) / len(base["history"])
        print(f"| PyTorch example | {b_epoch:.1f} | {fmt(base['reached'].get(0.99))} | {fmt(base['reached'].get(0.995))} | "
              f"{100 * base['history'][-1]['test_acc']:.2f}% |")
        for t in TARGETS:
            a, b = ours["reached"].get(t), base["reached"].get(t)
            if a and b:
                print(f"to {100 * t:.1f}%: digitlab is {b / a:.1f}x sooner")


if __name__ == "__main__":
    main()
