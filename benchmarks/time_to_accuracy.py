"""Time to accuracy on real MNIST: digitlab's `sprint` and `fast` recipes vs the official PyTorch example's recipe and data path,
mean ± std over several seeds per side, the two sides interleaved seed by seed in one process.

    DIGITLAB_DATA=../shared/data python benchmarks/time_to_accuracy.py [--seeds 5] [--recipe sprint --recipe fast] [--set KEY=VALUE ...]
        [--baseline-workers 0] [--skip-baseline]

Both score the test set after every epoch (for this measurement only; the recipe itself was chosen on the validation
split) and report the wall seconds from the start (data loading included) until the test accuracy first reaches
99.0% and 99.5%. The baseline runs as the example runs on CPU (no DataLoader workers; `--baseline-workers 1` is its
CUDA setting) and stops once it reaches 99.0% (it does not reach 99.5% in its 14 epochs) or after
`--baseline-max-seconds`. `--set` overrides the recipe's options to try variants; the README uses the recipe as is.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# as the digitlab command does: OpenMP threads that spin while waiting starve everything else on a shared CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import run_example  # noqa: E402

import digitlab  # noqa: E402
from digitlab.training.config import RECIPES  # noqa: E402

TARGETS = (0.99, 0.995)


def run_digitlab(recipe: str, overrides: dict, seed: int, out: str) -> dict:
    t0 = time.perf_counter()
    digitlab.load_dataset("mnist")  # what the loop does before its clock starts: counted here
    setup = time.perf_counter() - t0
    run = digitlab.train(recipe=recipe, dataset="mnist", track_test=True, out=out, verbose=False, seed=seed,
                         **{k: v for k, v in overrides.items() if k != "seed"})
    reached = {}
    for e in run.history:
        for t in TARGETS:
            if e["test_acc"] >= t and t not in reached:
                reached[t] = e["elapsed"] + setup
    per_epoch = sum(e["seconds"] for e in run.history) / len(run.history)
    return {"reached": reached, "per_epoch": per_epoch, "final": run.test_accuracy}


def run_baseline(seed: int, workers: int, max_seconds: float) -> dict:
    base = run_example(14, TARGETS[:1], max_seconds, seed=seed, workers=workers, log=lambda *a: None)
    per_epoch = sum(e["seconds"] for e in base["history"]) / len(base["history"])
    return {"reached": base["reached"], "per_epoch": per_epoch, "final": base["history"][-1]["test_acc"]}


def spread(values: list[float], unit: str = " s", scale: float = 1.0, digits: int = 0) -> str:
    if not values:
        return "not reached"
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


def row(name: str, runs: list[dict], tracked: tuple[float, ...] = TARGETS) -> str:
    cells = [spread([r["per_epoch"] for r in runs], "", digits=1)]
    for t in TARGETS:
        if t not in tracked:
            cells.append(f"not run to it (stops at {100 * tracked[-1]:.1f}%)")
            continue
        times = [r["reached"][t] for r in runs if t in r["reached"]]
        cells.append(spread(times, digits=1) + (f" ({len(times)}/{len(runs)} seeds)" if len(times) < len(runs) else ""))
    cells.append(spread([r["final"] for r in runs], "%", 100, 2))
    return f"| {name} | " + " | ".join(cells) + " |"


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="runs per side (digitlab seeds 0.., the example's 1..)")
    ap.add_argument("--recipe", action="append", choices=sorted(RECIPES),
                    help="digitlab recipe(s) to time, each seed in turn (default: sprint and fast)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe option")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-workers", type=int, default=0)
    ap.add_argument("--baseline-max-seconds", type=float, default=900)
    args = ap.parse_args()
    if not os.environ.get("DIGITLAB_DATA"):
        raise SystemExit("set DIGITLAB_DATA to the folder holding mnist/ (e.g. ../shared/data)")
    overrides = parse_overrides(args.set)
    recipes = args.recipe or ["sprint", "fast"]
    for name in recipes:
        print(f"recipe {name} = {RECIPES[name]} + {overrides}")
    print(f"{torch.get_num_threads()} CPU threads; {args.seeds} seeds per side")
    ours: dict[str, list[dict]] = {name: [] for name in recipes}
    base = []
    for seed in range(args.seeds):
        for name in recipes:
            with tempfile.TemporaryDirectory() as tmp:
                ours[name].append(run_digitlab(name, overrides, seed, f"{tmp}/run"))
            print(f"  digitlab {name} seed {seed}: {ours[name][-1]}", flush=True)
        if not args.skip_baseline:
            base.append(run_baseline(seed + 1, args.baseline_workers, args.baseline_max_seconds))
            print(f"  example seed {seed + 1}: {base[-1]}", flush=True)
    print("\n| recipe (mean ± std) | s/epoch | to 99.0% | to 99.5% | test acc at the end |")
    print("|---|---|---|---|---|")
    for name in recipes:
        print(row(f"digitlab {name}", ours[name]))
    if base:
        print(row(f"PyTorch example ({args.baseline_workers} workers)", base, TARGETS[:1]))
        b = [r["reached"][0.99] for r in base if 0.99 in r["reached"]]
        for name in recipes:
            a = [r["reached"][0.99] for r in ours[name] if 0.99 in r["reached"]]
            if a and b:
                print(f"to 99.0%: digitlab {name} is {statistics.fmean(b) / statistics.fmean(a):.1f}x sooner (ratio of means; "
                      f"{len(a)} of {len(ours[name])} seeds reached it)")


if __name__ == "__main__":
    main()
