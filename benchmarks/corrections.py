"""Teach it: how much do 20 corrections of one writer's digits lift that writer, and what do they cost on MNIST?

    python benchmarks/corrections.py [--font Kristi.ttf] [--seeds 3] [--heldout 30] [--val 20] [--grid]

The writer: one handwriting font of tests/photo_renderer_b.py (default Kristi, the font the shipped reader read
worst on a first look at 60 drawings per font), each drawing a new copy of its glyph, bent by the renderer's smooth
random warp, slanted, turned, squeezed, re-inked with a thinner or thicker pen (`_digit`), drawn black on a
280x280 white canvas at a random place and size, as on the page. The page's drawing goes through the server's
preprocessing (`digit_to_mnist`) to the 28x28 the model sees: that 28x28 and the canvas PNG are what the page
sends to POST /api/corrections.

Three disjoint sets of the writer's drawings, from disjoint seeds: the corrections (2 per digit = 20, new ones for
each --seeds run), a validation set (--val per digit, used to pick the fine-tune recipe) and a held-out set
(--heldout per digit, reported only). The corrections are POSTed to a real app (`create_app(corrections=...)`)
and the model is fine-tuned from them with `digitlab.train(init_from="reader", recipe="teach")`, as
`digitlab train --init-from reader --recipe teach --dataset folder:DIR` would; `--grid` first re-runs the search
(epochs, lr, --replay) that picked the `teach` recipe and the default replay. Base model: the shipped reader.
Accuracy is the reader's answer: the best digit class (its `not-digit` class is never an answer). MNIST: the
10,000 test images. Needs $DIGITLAB_DATA (MNIST for the replay and the test) and the renderer's fonts.
"""
from __future__ import annotations

import argparse
import base64
import io
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photo_renderer_b import _digit, font_paths  # noqa: E402

import digitlab  # noqa: E402
from digitlab.predict.preprocess import digit_to_mnist  # noqa: E402
from digitlab.weights import reader_path  # noqa: E402

CANVAS = 280
SEED_BASE = {"heldout": 0, "val": 100_000, "corrections": 200_000}  # + per-run seed: no two sets share a drawing
GRID = {"epochs": (3, 8), "lr": (3e-4, 1e-3), "replay": (500, 2000)}


def drawing(font: str, digit: int, rng: np.random.Generator) -> tuple[np.ndarray, Image.Image]:
    """One drawing of `digit` by the writer: (the 28x28 the model sees, ink = 1; the canvas, black on white)."""
    ink, _, _ = _digit(font, str(digit), rng.uniform(150, 200), rng.uniform(0.9, 1.4), rng)
    h, w = ink.shape
    if max(h, w) > CANVAS - 20:  # a wide slant: shrink to fit the canvas
        s = (CANVAS - 20) / max(h, w)
        ink = np.asarray(Image.fromarray(ink).resize((max(1, round(w * s)), max(1, round(h * s)))))
        h, w = ink.shape
    y, x = int(rng.integers(5, CANVAS - h - 4)), int(rng.integers(5, CANVAS - w - 4))
    canvas = np.ones((CANVAS, CANVAS), np.float32)
    canvas[y:y + h, x:x + w] = np.minimum(canvas[y:y + h, x:x + w], 1 - ink)
    page = Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8))
    return digit_to_mnist(page, 28).image, page


def drawings(font: str, per_digit: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[Image.Image]]:
    rng = np.random.default_rng(seed)
    made = [(drawing(font, d, rng), d) for d in range(10) for _ in range(per_digit)]
    return np.stack([m[0][0] for m in made])[:, None], np.array([d for _, d in made]), [m[0][1] for m in made]


def accuracy(clf, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """The reader's answer (best digit class) against the labels."""
    digits = [i for i, c in enumerate(clf.classes) if c.isdigit()]
    probs = clf.predict(images).probs[:, digits]
    names = np.array([int(clf.classes[digits[j]]) for j in probs.argmax(1).tolist()])
    return float(np.mean(names == np.asarray(labels)))


def post_corrections(folder: Path, images: np.ndarray, labels: np.ndarray, pages: list[Image.Image]) -> None:
    """The corrections as the page sends them, through the real endpoint into folder (a folder dataset)."""
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app

    client = TestClient(create_app([reader_path()], corrections=folder))
    for image, label, page in zip(images, labels, pages):
        buf = io.BytesIO()
        page.save(buf, "PNG")
        r = client.post("/api/corrections", json={"label": int(label), "pixels": image[0].tolist(),
                                                  "png": base64.b64encode(buf.getvalue()).decode()})
        assert r.status_code == 200, r.text


def fine_tune(font: str, seed: int, recipe: dict, work: Path, val: tuple[np.ndarray, np.ndarray]) -> tuple[object, float]:
    """20 corrections (2 per digit) of drawing seed `seed` -> a fine-tuned reader and its training seconds. The
    validation drawings sit in DIR/test, so the run's own test score is the validation score, never the held-out."""
    folder = Path(tempfile.mkdtemp(prefix=f"teach-{seed}-", dir=work))
    images, labels, pages = drawings(font, 2, SEED_BASE["corrections"] + seed)
    post_corrections(folder / "train", images, labels, pages)
    for i, (image, label) in enumerate(zip(*val)):
        (folder / "test" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image[0] * 255).round().astype(np.uint8)).save(folder / "test" / str(label) / f"{i}.png")
    t0 = time.perf_counter()
    run = digitlab.train(init_from="reader", dataset=f"folder:{folder}", val_split=0.0, seed=seed, threads=1,
                         out=str(folder / "run"), verbose=False, **recipe)
    return digitlab.load(run.dir), time.perf_counter() - t0


def pick_recipe(font: str, work: Path, val: tuple[np.ndarray, np.ndarray]) -> dict:
    """The grid, fine-tuned from seed 0's corrections, scored on the validation drawings only."""
    best, best_score = None, -1.0
    print("recipe grid (seed 0 corrections; validation accuracy of the writer, MNIST test):")
    mnist = digitlab.load_dataset("mnist", val_split=0).test
    for epochs, lr, replay in itertools.product(*GRID.values()):
        recipe = {"epochs": epochs, "lr": lr, "replay": replay}
        clf, seconds = fine_tune(font, 0, recipe, work, val)
        score, kept = accuracy(clf, *val), accuracy(clf, mnist.images, mnist.labels)
        print(f"  epochs {epochs:2}  lr {lr:g}  replay {replay:5}:  val {100 * score:5.1f}%  MNIST {100 * kept:6.2f}%  ({seconds:.0f} s)")
        if score + kept > best_score:  # the writer and MNIST weigh the same: a lift that forgets MNIST is no lift
            best, best_score = recipe, score + kept
    print(f"picked: {best}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--font", default="Kristi.ttf", help="the writer: a font file name from tests/photo_renderer_b.py")
    ap.add_argument("--seeds", type=int, default=3, help="fine-tunes, each from 20 new corrections")
    ap.add_argument("--heldout", type=int, default=30, help="held-out drawings per digit")
    ap.add_argument("--val", type=int, default=20, help="validation drawings per digit (recipe choice)")
    ap.add_argument("--grid", action="store_true", help="search the recipe on the validation drawings first (~2.5 min)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    font = next((p for p in font_paths("all") if Path(p).name == args.font), None)
    if font is None:
        raise SystemExit(f"unknown font {args.font}; choose one of: {', '.join(Path(p).name for p in font_paths('all'))}")
    held = drawings(font, args.heldout, SEED_BASE["heldout"])[:2]
    val = drawings(font, args.val, SEED_BASE["val"])[:2]
    mnist = digitlab.load_dataset("mnist", val_split=0).test
    reader = digitlab.load()
    base = (accuracy(reader, *held), accuracy(reader, mnist.images, mnist.labels))
    print(f"writer {args.font}: {len(held[1])} held-out, {len(val[1])} validation drawings; base model: the shipped reader")
    print(f"reader before: writer held-out {100 * base[0]:.1f}%   MNIST test {100 * base[1]:.2f}%")
    with tempfile.TemporaryDirectory() as tmp:
        recipe = pick_recipe(font, Path(tmp), val) if args.grid else {"recipe": "teach"}
        rows = []
        for seed in range(args.seeds):
            clf, seconds = fine_tune(font, seed, recipe, Path(tmp), val)
            rows.append((accuracy(clf, *held), accuracy(clf, mnist.images, mnist.labels), seconds))
            print(f"seed {seed}: writer held-out {100 * rows[-1][0]:.1f}%   MNIST test {100 * rows[-1][1]:.2f}%   "
                  f"fine-tune {seconds:.0f} s (1 thread)")
    mean_sd = lambda xs: (100 * statistics.mean(xs), 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
    (w, ws), (m, ms) = mean_sd([r[0] for r in rows]), mean_sd([r[1] for r in rows])
    print(f"after 20 corrections ({recipe}), mean +- std over {len(rows)} seeds:")
    print(f"  writer held-out {100 * base[0]:.1f}% -> {w:.1f} +- {ws:.1f}%   ({w - 100 * base[0]:+.1f} points)")
    print(f"  MNIST test      {100 * base[1]:.2f}% -> {m:.2f} +- {ms:.2f}%   ({m - 100 * base[1]:+.2f} points)")
    print(f"  fine-tune time  {statistics.mean(r[2] for r in rows):.0f} s per run on 1 CPU thread (incl. loading MNIST and the report)")


if __name__ == "__main__":
    main()
