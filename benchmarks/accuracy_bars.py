"""The accuracy bars: default `digitlab train` runs on real data, with their wall time.

    DIGITLAB_DATA=../shared/data python benchmarks/accuracy_bars.py [--only mlp,lenet5,cnn,fashion-cnn,fast,accurate]

Each row is `digitlab train --model NAME` with the model's defaults (or `--recipe fast` / `--recipe accurate`), one process after
the other; wall time counts the whole command (start-up, data loading, training, test scoring, plots).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = {  # name: (command-line arguments, bar)
    "mlp": (["--model", "mlp"], 0.98),
    "lenet5": (["--model", "lenet5"], 0.99),
    "cnn": (["--model", "cnn"], 0.992),
    "fashion-cnn": (["--model", "cnn", "--dataset", "fashion-mnist"], 0.91),
    "fast": (["--recipe", "fast"], 0.995),
    "accurate": (["--recipe", "accurate"], 0.996),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(ROWS))
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            argv, bar = ROWS[name]
            out = Path(tmp) / name
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "digitlab", "train", *argv, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            metrics = json.loads((out / "metrics.json").read_text())
            acc = metrics["test"]["accuracy"]
            per_epoch = metrics["train_seconds"] / metrics["epochs_run"]
            results.append((name, " ".join(argv), metrics["epochs_run"], acc, bar, per_epoch, wall))
            print(f"{name}: {100 * acc:.2f}% in {wall:.0f} s", flush=True)
    print("\n| run | command | epochs | test accuracy | bar | s/epoch | wall time |")
    print("|---|---|---|---|---|---|---|")
    for name, cmd, epochs, acc, bar, per_epoch, wall in results:
        mark = "pass" if acc >= bar else "MISS"
        print(f"| {name} | `digitlab train {cmd}` | {epochs} | {100 * acc:.2f}% | >= {100 * bar:.1f}% ({mark}) | {per_epoch:.1f} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
