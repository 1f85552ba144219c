"""Data-path overhead: seconds per epoch for the same model and hyperparameters, digitlab's in-memory tensor path
vs a torchvision DataLoader with per-sample ToTensor + Normalize (the tutorials' way).

    DIGITLAB_DATA=../shared/data python benchmarks/pipeline_overhead.py [--models mlp,lenet5] [--workers 0,1]

Both: Adam lr 1e-3, batch 128, no augmentation, no LR schedule, all 60,000 training images; the second of two
epochs is timed (the first pays one-off costs). The ratio uses the fastest DataLoader setting.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import loaders, torchvision_root, train_epoch  # noqa: E402

import digitlab  # noqa: E402
from digitlab.models import create_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,lenet5")
    ap.add_argument("--workers", default="0,1", help="DataLoader worker counts to try")
    args = ap.parse_args()
    root = torchvision_root()
    print(f"{torch.get_num_threads()} CPU threads")
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = digitlab.train(model=name, dataset="mnist", epochs=2, augment="none", val_split=0.0, schedule="none",
                                 optimizer="adam", lr=1e-3, batch_size=128, out=f"{tmp}/run", verbose=False)
        ours = run.history[1]["seconds"]
        base = {}
        for workers in (int(w) for w in args.workers.split(",")):
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_chans=1, image_size=28)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            train_loader, _ = loaders(root, batch_size=128, workers=workers)
            train_epoch(model, train_loader, optimizer, F.cross_entropy)
            base[workers] = train_epoch(model, train_loader, optimizer, F.cross_entropy)
            print(f"  {name}: DataLoader, {workers} workers: {base[workers]:.2f} s/epoch", flush=True)
        best = min(base.values())
        rows.append((name, ours, base, best / ours))
        print(f"  {name}: digitlab: {ours:.2f} s/epoch", flush=True)
    print("\n| model | digitlab s/epoch | DataLoader s/epoch | ratio |")
    print("|---|---|---|---|")
    for name, ours, base, ratio in rows:
        dl = ", ".join(f"{s:.2f} ({w} workers)" for w, s in base.items())
        print(f"| {name} | {ours:.2f} | {dl} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
