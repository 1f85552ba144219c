"""Reading photos of handwriting: digitlab's MNIST-style preprocessing vs the naive 'resize to 28x28' path.

    python benchmarks/predict_photos.py RUN [--singles 1000] [--numbers 300] [--seed 0]

RUN is a model trained by `digitlab train` (default lenet5 or cnn on MNIST). The photos are MNIST *test* digits
rendered as ink on paper and photographed (tests/photo_digits.py), made fresh from the seed.
Prints single-digit accuracy and whole-number exact match for both paths, and the ratio.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photo_digits import make_photos  # noqa: E402

from digitlab import load, load_dataset  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402
from digitlab.predict.preprocess import naive_28x28  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--singles", type=int, default=1000)
    ap.add_argument("--numbers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show-errors", type=int, default=0, help="print this many misread photos")
    args = ap.parse_args()
    clf = load(args.run)
    test = load_dataset("mnist", val_split=0).test
    t0 = time.perf_counter()
    singles, numbers = make_photos(test.images[:, 0].numpy(), test.labels.numpy(), args.singles, args.numbers, args.seed)
    print(f"made {len(singles)} single-digit and {len(numbers)} number photos in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    errors: list[str] = []

    def score(photos, multi: bool) -> list[bool]:
        ok = []
        for p in photos:
            try:
                text = clf.read(p.data, multi=multi).text
            except DigitlabError as e:
                text = f"error: {e}"
            ok.append(text == p.label)
            if text != p.label:
                errors.append(f"  {p.label} read as {text}  ({p.kind})")
        return ok

    ours = score(singles, multi=False)
    t_single = time.perf_counter() - t0
    naive = clf.predict(np.stack([naive_28x28(p.data) for p in singles])).names
    naive_ok = [n == p.label for n, p in zip(naive, singles)]

    t0 = time.perf_counter()
    multi = score(numbers, multi=True)
    t_multi = time.perf_counter() - t0
    naive_multi = []
    for p in numbers:  # the naive path for a number: split the line into equal slices, one per digit
        im = Image.open(io.BytesIO(p.data)).convert("L")
        w, h = im.size
        k = len(p.label)
        crops = [np.asarray(im.crop((i * w // k, 0, (i + 1) * w // k, h)).resize((28, 28)), np.float32)[None] / 255 for i in range(k)]
        naive_multi.append("".join(clf.predict(np.stack(crops)).names) == p.label)

    acc, nacc = float(np.mean(ours)), float(np.mean(naive_ok))
    macc, nmacc = float(np.mean(multi)), float(np.mean(naive_multi))
    try:
        test_acc = f"{100 * json.loads((Path(args.run) / 'metrics.json').read_text())['test']['accuracy']:.2f}%"
    except (OSError, ValueError, KeyError):
        test_acc = "n/a"
    print(f"model: {args.run} ({clf.name}, MNIST test accuracy {test_acc})")
    print("| photos | digitlab predict | naive resize to 28x28 |")
    print("|---|---|---|")
    print(f"| single digits ({len(singles)}) | {100 * acc:.1f}% | {100 * nacc:.1f}% |")
    print(f"| whole numbers, 2-6 digits ({len(numbers)}), exact match | {100 * macc:.1f}% | {100 * nmacc:.1f}% (equal slices) |")
    print(f"time: {1000 * t_single / max(len(singles), 1):.1f} ms per single photo, {1000 * t_multi / max(len(numbers), 1):.1f} ms per number photo")
    for line in errors[: args.show_errors]:
        print(line)


if __name__ == "__main__":
    main()
