"""int8 vs fp32 ONNX accuracy on the full MNIST test set, through `digitlab.load(...).predict`.

    python benchmarks/int8_accuracy.py RUN [RUN ...] [--calibration 300]   (RUN: a run folder or checkpoint;
                                                                           "reader": the shipped reader)

Each run is exported twice into a temporary folder (fp32, and int8 calibrated on the run's training images).
Accuracy is the arg-max over all of the model's classes (a reader's `not-digit` answer counts as wrong), as
`digitlab evaluate` scores; "agree" is the share of test digits on which int8 and fp32 give the same class.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import digitlab
from digitlab.data.reject import NOT_DIGIT
from digitlab.predict.onnx import export_onnx
from digitlab.predict.quantize import CALIBRATION_IMAGES, export_int8
from digitlab.weights import reader_path


def labels_of(path: Path, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The arg-max over all classes, and over the digit classes only (what `read` answers for a reader model)."""
    clf = digitlab.load(path)
    probs = clf.predict(images).probs
    digits = [i for i, c in enumerate(clf.classes) if c != NOT_DIGIT]
    return probs.argmax(1), torch.tensor(digits)[probs[:, digits].argmax(1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--calibration", type=int, default=CALIBRATION_IMAGES)
    ap.add_argument("--data-root")
    args = ap.parse_args()
    test = digitlab.load_dataset("mnist", root=args.data_root, val_split=0).test
    print(f"MNIST test: {len(test):,} digits; int8 calibrated on {args.calibration} training images")
    print("| model | run | fp32 ONNX | int8 ONNX | loss (points) | agree | size fp32 -> int8 |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            source = reader_path() if run == "reader" else Path(run)
            fp32 = export_onnx(source, Path(tmp) / f"{i}.onnx")
            int8 = export_int8(source, Path(tmp) / f"{i}.int8.onnx", calibration=args.calibration, data_root=args.data_root)
            (a, a_digits), (b, b_digits) = labels_of(fp32, test.images), labels_of(int8, test.images)
            clf = digitlab.load(fp32)
            kb = f"{fp32.stat().st_size / 1024:.0f} KB -> {int8.stat().st_size / 1024:.0f} KB"
            rows = [("", a, b)] + ([(" (digit classes)", a_digits, b_digits)] if NOT_DIGIT in clf.classes else [])
            for note, x, y in rows:
                acc_x, acc_y = (100 * (z == test.labels).float().mean().item() for z in (x, y))
                agree = 100 * (x == y).float().mean().item()
                print(f"| {clf.name}{note} | {run} | {acc_x:.2f}% | {acc_y:.2f}% | {acc_x - acc_y:+.2f} | {agree:.2f}% | {kb} |",
                      flush=True)


if __name__ == "__main__":
    main()
