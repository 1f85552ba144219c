"""99.7% within 10 minutes: `digitlab train --recipe accurate --ensemble 3`, seed after seed, each the whole command
timed from outside (start-up, data loading, every member, the combined model's scores), with its own members, single
runs of the recipe, as the baseline in the same runs.

    DIGITLAB_DATA=../shared/data python benchmarks/ensemble_record.py [--seeds 5] [--recipe accurate] [--ensemble 3]
        [--out runs/ensemble-record] [-- EXTRA TRAIN FLAGS]

Prints a markdown table: the ensemble's test and validation accuracy, mean ± std over the seeds and each seed's own,
the members' test accuracy, and wall seconds. The members' count and recipe are fixed before any score is seen; the
test score is the one each `train` prints at its end, which chooses nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def mean_std(values: list[float], digits: int = 2) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def run_seed(args: argparse.Namespace, seed: int, extra: list[str]) -> dict:
    out = Path(args.out) / f"seed-{seed}"
    cmd = [sys.executable, "-m", "digitlab", "train", "--recipe", args.recipe, "--ensemble", str(args.ensemble),
           "--seed", str(seed), "--out", str(out), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"seed": seed, "wall": wall, "test": 100 * metrics["test"]["accuracy"], "val": 100 * (metrics["best_val_acc"] or 0),
            "members": [100 * m["test_accuracy"] for m in metrics["members"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--recipe", default="accurate")
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--out", default="runs/ensemble-record", help="one run folder per seed is made below this")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    results = [run_seed(args, seed, extra) for seed in range(args.seeds)]
    members = [acc for r in results for acc in r["members"]]
    each = ", ".join(f"{r['test']:.2f}" for r in results)
    print(f"\n| command | test accuracy, mean ± std (seeds 0-{args.seeds - 1}) | validation | wall time |")
    print("|---|---|---|---|")
    print(f"| `digitlab train --recipe {args.recipe} --ensemble {args.ensemble}` | **{mean_std([r['test'] for r in results])}%** "
          f"({each}) | {mean_std([r['val'] for r in results])}% | {mean_std([r['wall'] for r in results], 0)} s |")
    print(f"| its {len(members)} members, each a single `{args.recipe}` run (the baseline) | {mean_std(members)}% | | |")


if __name__ == "__main__":
    main()
