"""Choose between recipe variants on the validation split only: no test score is read or printed here.

    DIGITLAB_DATA=../shared/data python benchmarks/recipe_search.py --recipe fast --seeds 2 \
        --variant batch_size=256 --variant ema=0 [--threads 1] [--dataset fashion-mnist]

Each variant is the recipe with some options changed (`KEY=VALUE,KEY=VALUE`); the recipe itself is the first row
(unless --skip-recipe). Every run trains on the training split and scores the validation split (the last `val_split` of the
training images) after each epoch; the table shows mean ± std over seeds of the validation accuracy after the first
and the last epoch, the best epoch's, and seconds per epoch. The README's recipes were checked this way; their test
scores come from separate runs made after the choice.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile

# as the digitlab command does: OpenMP threads that spin while waiting starve everything else on a shared CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import digitlab  # noqa: E402
from digitlab.training.config import RECIPES  # noqa: E402
from time_to_accuracy import parse_overrides, spread  # noqa: E402  (benchmarks/ is the script's folder)


def validation_curve(recipe: str, options: dict, seed: int, threads: int | None = None, dataset: str = "mnist") -> dict:
    """One run's validation accuracy per epoch (train() also scores the test set once at its end; that figure is not
    read, so it cannot steer the choice)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = digitlab.train(recipe=recipe, dataset=dataset, seed=seed, out=f"{tmp}/run", verbose=False, threads=threads or 0, **options)
    vals = [e["val_acc"] for e in run.history]
    return {"first": vals[0], "last": vals[-1], "best": max(vals),
            "seconds": statistics.fmean(e["seconds"] for e in run.history)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="fast", choices=sorted(RECIPES))
    ap.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE]: options changed from the recipe")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--skip-recipe", action="store_true", help="run the variants only (the recipe's row was measured before)")
    ap.add_argument("--dataset", default="mnist", help="any digitlab dataset with a validation split (fashion-mnist ...)")
    ap.add_argument("--threads", type=int, help="torch threads per run (default: digitlab's, from the CPUs idle now)")
    args = ap.parse_args()
    if not os.environ.get("DIGITLAB_DATA"):
        raise SystemExit("set DIGITLAB_DATA to the folder holding mnist/ (e.g. ../shared/data)")
    variants = [("the recipe", {})] * (not args.skip_recipe) + [(v, parse_overrides([x for x in v.split(",") if x])) for v in args.variant]
    rows = []
    for name, options in variants:
        runs = [validation_curve(args.recipe, options, seed, args.threads, args.dataset) for seed in range(args.seeds)]
        print(f"  {name}: {runs}", flush=True)
        rows.append((name, runs))
    print(f"\n| {args.recipe} variant on {args.dataset} ({args.seeds} seeds) | val acc, epoch 1 | val acc, last epoch | best epoch | s/epoch |")
    print("|---|---|---|---|---|")
    for name, runs in rows:
        pct = lambda key: spread([r[key] for r in runs], "%", 100, 2)  # noqa: E731
        print(f"| {name} | {pct('first')} | {pct('last')} | {pct('best')} | {spread([r['seconds'] for r in runs], '', 1, 1)} |")


if __name__ == "__main__":
    main()
