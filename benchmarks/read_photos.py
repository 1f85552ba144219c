"""Reading digits and numbers from photos, on writing the reader never saw (issue 15 point 4), beside a naive baseline.

    python benchmarks/read_photos.py [MODEL] [--set a,b,c,uci] [--singles 300] [--numbers 100] [--seed 0]
                                     [--split test|val] [--timing 30] [--show-errors N] [--sheets DIR]
                                     [--breakdown N]

Sets, each reported on its own rows:
  a    tests/photo_digits.py: MNIST test digits as ink on paper, photographed (numbers of 2-6 digits)
  b    tests/photo_renderer_b.py: an independent renderer, handwriting-style fonts on graph/lined/sticky paper,
       coloured ink, tilt, thumb, shadows (numbers of 2-8 digits; needs the Debian font packages it names)
  c    tests/photo_lowres.py: MNIST test digits only 8-12 px tall in the photo (numbers of 2-8 digits)
  uci  scikit-learn's UCI 8x8 digits (43 writers who are not MNIST's) upscaled into photos (2-8 digits)
For each: single-digit accuracy and whole-number exact match of `Classifier.read` (multi=False / True), and of
the naive path a tutorial takes, done fairly: grayscale, invert (ink bright, as in MNIST), resize to 28x28 and
predict; for a number, the photo is cut into equal-width slices, one per digit (it is told the digit count).
Then per-photo time of `read` on ONE thread (torch.set_num_threads(1)): mean and 90th percentile for the set's
single-digit photos and for `--timing` extra photos of 6-digit numbers.

Splits never overlap: `--split test` (report on it) generates from seeds 0..999,999 and `--split val` (tune on it)
from 1,000,000..1,999,999 (seed = split base + set * 100,000 + purpose * 10,000 + --seed, with 0 <= --seed <
10,000). The pools differ too: val draws MNIST test images 0-4,999, test 5,000-9,999; renderer b's val and test
use disjoint font groups; UCI digits are split into two fixed halves. The images are made fresh from the seeds.

MODEL is a run folder or checkpoint (`digitlab train ...`); without it, `digitlab.load()`'s default model.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photo_digits import Photo, make_photos, number_photo  # noqa: E402
from photo_lowres import make_lowres, make_uci  # noqa: E402
from photo_renderer_b import FontsMissing, contact_sheet, make_photos_b  # noqa: E402

import digitlab  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402

SETS = {"a": "a: photo generator, MNIST test digits", "b": "b: renderer b, handwriting fonts",
        "c": "c: MNIST digits 8-12 px tall", "uci": "uci: UCI 8x8 digits upscaled"}
SPLIT_BASE = {"test": 0, "val": 1_000_000}
MAX_DIGITS = {"a": 6, "b": 8, "c": 8, "uci": 8}  # set a's generator writes 2-6 digits
TIMING_DIGITS = 6


def seed_for(split: str, set_name: str, purpose: int, seed: int) -> int:
    """A generator seed that no other split, set or purpose (0: scored photos, 1: timing photos) uses."""
    if not 0 <= seed < 10_000:
        raise SystemExit("--seed must be in 0..9999 (the seed ranges of the splits must not overlap)")
    return SPLIT_BASE[split] + list(SETS).index(set_name) * 100_000 + purpose * 10_000 + seed


def mnist_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images for this split: the first half for val, the second for test."""
    test = digitlab.load_dataset("mnist", val_split=0).test
    half = slice(0, 5000) if split == "val" else slice(5000, 10000)
    return test.images[half, 0].numpy(), test.labels[half].numpy()


def photos(set_name: str, split: str, seed: int, singles: int, numbers: int, digits: tuple[int, int]) -> tuple[list[Photo], list[Photo]]:
    """One set's single-digit and number photos; numbers have digits[0]..digits[1] digits (set a: 2-6 only)."""
    if set_name == "a":
        images, labels = mnist_pool(split)
        if digits == (2, MAX_DIGITS["a"]):
            return make_photos(images, labels, singles, numbers, seed)
        rng = np.random.default_rng(seed)  # a fixed digit count (the timing photos): the generator's number_photo
        idx = [rng.choice(len(images), digits[0], replace=False) for _ in range(numbers)]
        return [], [number_photo([images[i] for i in ix], [int(labels[i]) for i in ix], rng) for ix in idx]
    if set_name == "b":
        return make_photos_b(seed, singles, numbers, *digits, fonts=split)
    if set_name == "c":
        return make_lowres(*mnist_pool(split), seed, singles, numbers, *digits)
    return make_uci(seed, singles, numbers, *digits, split=split)


def naive_crops(data: bytes, n_digits: int) -> np.ndarray:
    """The tutorial path: grayscale, invert so ink is bright, `n_digits` equal-width slices, each squashed to 28x28."""
    gray = 1.0 - np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255.0
    cuts = np.linspace(0, gray.shape[1], n_digits + 1).round().astype(int)
    return np.stack([np.asarray(Image.fromarray(gray[:, a:max(b, a + 1)], "F").resize((28, 28), Image.Resampling.BILINEAR))[None]
                     for a, b in zip(cuts[:-1], cuts[1:])])


def naive_read(clf, batch: list[Photo]) -> list[str]:
    """Naive readings of many photos, predicted in one batch."""
    crops = [naive_crops(p.data, len(p.label)) for p in batch]
    if not crops:
        return []
    probs = clf.predict(np.clip(np.concatenate(crops), 0, 1)).probs
    digits = [i for i, c in enumerate(clf.classes) if c.isdigit()]  # a reader's 'not-digit' is no answer here either
    names = [clf.classes[digits[j]] for j in probs[:, digits].argmax(1).tolist()]
    ends = np.cumsum([len(c) for c in crops])
    return ["".join(names[e - len(c):e]) for c, e in zip(crops, ends)]


@dataclass
class Scored:
    """What `read` made of a list of photos: texts and seconds per photo."""
    texts: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def read_all(clf, batch: list[Photo], multi: bool) -> Scored:
    out = Scored()
    for p in batch:
        t0 = time.perf_counter()
        try:
            text = clf.read(p.data, multi=multi).text
        except DigitlabError as e:
            text = f"error: {e}"
        out.seconds.append(time.perf_counter() - t0)
        out.texts.append(text)
    return out


def rate(texts: list[str], batch: list[Photo]) -> float:
    return 100.0 * float(np.mean([t == p.label for t, p in zip(texts, batch)])) if batch else float("nan")


def ms(seconds: list[float]) -> str:
    if not seconds:
        return "n/a"
    return f"{1000 * np.mean(seconds):.1f} / {1000 * np.percentile(seconds, 90):.1f}"


def median_size(batch: list[Photo]) -> str:
    sizes = [Image.open(io.BytesIO(p.data)).size for p in batch]
    return f"{int(np.median([s[0] for s in sizes]))}x{int(np.median([s[1] for s in sizes]))}" if sizes else "n/a"


def conditions(singles: list[Photo], one: list[str], numbers: list[Photo], many: list[str]) -> dict[str, list[list[bool]]]:
    """Right/wrong per photo under each condition its description names ('thumb', 'graph', 'pencil ink', a font):
    the parts of `Photo.kind` that carry no number (sizes, blur, JPEG quality are left out)."""
    out: dict[str, list[list[bool]]] = {}
    for column, (batch, texts) in enumerate(((singles, one), (numbers, many))):
        for p, t in zip(batch, texts):
            for part in p.kind.split(","):
                part = part.strip()
                if part and (" " not in part or not re.search(r"\d", part)):
                    out.setdefault(part, [[], []])[column].append(t == p.label)
    return out


def breakdown(results: list[dict], least: int) -> None:
    """Accuracy under each condition seen at least `least` times, worst first (singles and numbers pooled for the
    order): where the reader loses."""
    for r in results:
        rows = [(name, s, n) for name, (s, n) in r["conditions"].items() if len(s) + len(n) >= least]
        rows.sort(key=lambda row: np.mean(row[1] + row[2]))
        print(f"\n| set {r['set']}: condition | single digits right | numbers exactly right |")
        print("|---|---|---|")
        for name, s, n in rows:
            cell = lambda v: f"{100 * np.mean(v):.0f}% of {len(v)}" if v else "-"  # noqa: E731
            print(f"| {name} | {cell(s)} | {cell(n)} |")


def measure(clf, set_name: str, args: argparse.Namespace) -> dict | None:
    """Generate one set, score both paths, time `read`; None (with a note) when the set cannot be made here."""
    t0 = time.perf_counter()
    digits = (2, MAX_DIGITS[set_name])
    try:
        singles, numbers = photos(set_name, args.split, seed_for(args.split, set_name, 0, args.seed), args.singles, args.numbers, digits)
        _, timing = photos(set_name, args.split, seed_for(args.split, set_name, 1, args.seed), 0, args.timing, (TIMING_DIGITS, TIMING_DIGITS))
    except FontsMissing as e:
        print(f"set {set_name} skipped: {e}", file=sys.stderr)
        return None
    made = time.perf_counter() - t0
    one, many, six = read_all(clf, singles, False), read_all(clf, numbers, True), read_all(clf, timing, True)
    result = {
        "set": set_name, "made_s": made, "singles": len(singles), "numbers": len(numbers), "digits": digits,
        "single": rate(one.texts, singles), "naive_single": rate(naive_read(clf, singles), singles),
        "number": rate(many.texts, numbers), "naive_number": rate(naive_read(clf, numbers), numbers),
        "count_ok": 100.0 * float(np.mean([len(t) == len(p.label) for t, p in zip(many.texts, numbers)])) if numbers else float("nan"),
        "t_single": ms(one.seconds), "t_six": ms(six.seconds),
        "size_single": median_size(singles), "size_six": median_size(timing),
    }
    result["conditions"] = conditions(singles, one.texts, numbers, many.texts)
    wrong = [(p, t) for p, t in zip(singles + numbers, one.texts + many.texts) if t != p.label]
    for p, t in wrong[:args.show_errors]:
        print(f"  [{set_name}] {p.label} read as {t!r}  ({p.kind})", file=sys.stderr)
    if args.sheets and wrong:
        Path(args.sheets).mkdir(parents=True, exist_ok=True)
        shown = [Photo(p.data, f"{p.label} read {t[:12]}", p.kind) for p, t in wrong[:36]]
        contact_sheet(shown, Path(args.sheets) / f"misread-{set_name}-{args.split}.png")
    print(f"set {set_name}: made {len(singles) + len(numbers) + len(timing)} photos in {made:.0f} s", file=sys.stderr)
    return result


def report(results: list[dict], clf, args: argparse.Namespace) -> None:
    """The markdown tables: accuracy per set and path, then one-thread timing."""
    try:
        acc = f"{100 * json.loads((Path(args.model) / 'metrics.json').read_text())['test']['accuracy']:.2f}%"
    except (OSError, TypeError, ValueError, KeyError):
        acc = "n/a"
    print(f"model: {args.model or 'digitlab.load() default'} ({clf.name}, MNIST test accuracy {acc}); "
          f"split {args.split}, seed {args.seed}, torch threads 1\n")
    print("| set | photos | digitlab read | naive: invert, resize to 28x28 |")
    print("|---|---|---|---|")
    for r in results:
        lo, hi = r["digits"]
        print(f"| {SETS[r['set']]} | {r['singles']} single digits | {r['single']:.1f}% | {r['naive_single']:.1f}% |")
        print(f"| {SETS[r['set']]} | {r['numbers']} numbers of {lo}-{hi} digits, exact match | {r['number']:.1f}% "
              f"(digit count right: {r['count_ok']:.0f}%) | {r['naive_number']:.1f}% (equal slices) |")
    print(f"\n| set | single-digit photo, ms mean / p90 (median size) | {TIMING_DIGITS}-digit number photo, ms mean / p90 ({args.timing} photos) |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['set']} | {r['t_single']} ({r['size_single']}) | {r['t_six']} ({r['size_six']}) |")


def open_model(path: str | None):
    if path:
        return digitlab.load(path)
    try:
        return digitlab.load()
    except TypeError:
        raise SystemExit("read_photos.py: give MODEL (a run folder or checkpoint); digitlab.load() has no default model yet") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="run folder or checkpoint (default: digitlab.load()'s model)")
    ap.add_argument("--set", default="a,b,c,uci", help="comma-separated sets: a, b, c, uci")
    ap.add_argument("--singles", type=int, default=300)
    ap.add_argument("--numbers", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="0..9999")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="tune on val, report on test")
    ap.add_argument("--timing", type=int, default=30, help=f"extra {TIMING_DIGITS}-digit number photos to time per set")
    ap.add_argument("--show-errors", type=int, default=0, help="print this many misread photos per set")
    ap.add_argument("--sheets", help="write a contact sheet of misread photos per set into this folder")
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="also print accuracy per condition (paper, ink, light, thumb, font ...) seen in N+ photos")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.set.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SETS]
    if unknown:
        raise SystemExit(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    torch.set_num_threads(1)
    clf = open_model(args.model)
    clf.read(make_photos(*mnist_pool("val"), 1, 0, seed=10**7)[0][0].data)  # warm-up, not timed
    results = [r for r in (measure(clf, s, args) for s in chosen) if r is not None]
    report(results, clf, args)
    if args.breakdown:
        breakdown(results, args.breakdown)


if __name__ == "__main__":
    main()
