"""Data-path overhead: seconds per epoch for the same model and hyperparameters, digitlab's in-memory tensor path
vs a torchvision DataLoader with per-sample ToTensor + Normalize (the tutorials' way).

    DIGITLAB_DATA=../shared/data python benchmarks/pipeline_overhead.py [--models mlp,lenet5] [--workers 0,1]

Both: Adam lr 1e-3, batch 128, no augmentation, no LR schedule, all 60,000 training images; the second of two
epochs is timed (the first pays one-off costs). digitlab trains conv nets in channels_last on CPU, so the DataLoader
side runs in both layouts: channels_last (the same layout: the ratio measures the data path alone) and the default
contiguous layout (what a tutorial gets). The ratio uses the DataLoader's fastest worker count in channels_last.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# as the digitlab command does: OpenMP threads that spin while waiting starve everything else on a shared CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import loaders, torchvision_root, train_epoch  # noqa: E402

import digitlab  # noqa: E402
from digitlab.models import create_model  # noqa: E402


LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def dataloader_epochs(name: str, root: Path, workers: list[int]) -> dict[tuple[str, int], float]:
    """Seconds for the second epoch of the DataLoader path, per (layout, workers)."""
    seconds = {}
    for layout_name, layout in LAYOUTS.items():
        for w in workers:
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_chans=1, image_size=28).to(memory_format=layout)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            train_loader, _ = loaders(root, batch_size=128, workers=w)
            train_epoch(model, train_loader, optimizer, F.cross_entropy, layout)
            seconds[layout_name, w] = train_epoch(model, train_loader, optimizer, F.cross_entropy, layout)
            print(f"  {name}: DataLoader, {layout_name}, {w} workers: {seconds[layout_name, w]:.2f} s/epoch", flush=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,lenet5")
    ap.add_argument("--workers", default="0,1", help="DataLoader worker counts to try")
    args = ap.parse_args()
    root = torchvision_root()
    workers = [int(w) for w in args.workers.split(",")]
    print(f"{torch.get_num_threads()} CPU threads")
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = digitlab.train(model=name, dataset="mnist", epochs=2, augment="none", val_split=0.0, schedule="none",
                                 optimizer="adam", lr=1e-3, batch_size=128, out=f"{tmp}/run", verbose=False)
        ours = run.history[1]["seconds"]
        print(f"  {name}: digitlab (channels_last): {ours:.2f} s/epoch", flush=True)
        base = dataloader_epochs(name, root, workers)
        same_layout = min(v for (layout, _), v in base.items() if layout == "channels_last")
        rows.append((name, ours, base, same_layout / ours))
    print("\n| model | digitlab s/epoch | DataLoader, channels_last | DataLoader, contiguous | ratio (same layout) |")
    print("|---|---|---|---|---|")
    for name, ours, base, ratio in rows:
        cells = [", ".join(f"{base[layout, w]:.2f} ({w} workers)" for w in workers) for layout in LAYOUTS]
        print(f"| {name} | {ours:.2f} | {cells[0]} | {cells[1]} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
