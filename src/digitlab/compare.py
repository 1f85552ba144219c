"""`digitlab compare`: train several models on the same data, split and budget, and put them side by side.

Each (model, seed) is an ordinary run folder under the comparison folder, so re-running the same command reuses
finished runs and resumes an unfinished one from its checkpoint. The table's numbers are read back from the
runs' own files (metrics.json, metrics.jsonl), never kept separately.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from .data import load_dataset
from .errors import DigitlabError
from .models import get_entry, summary
from .predict import load
from .training import train
from .runs import atomic_write_text
from .training.plots import new_figure

TARGET = 0.99  # "time to 99%" column


@dataclass
class ModelResult:
    model: str
    runs: list[Path] = field(default_factory=list)
    error: str | None = None
    params: int | None = None
    macs: int | None = None
    seconds_per_epoch: float | None = None
    images_per_second: float | None = None
    best_val_acc: float | None = None
    test_accs: list[float] = field(default_factory=list)
    seconds_to_target: float | None = None
    per_class_recall: list[float] | None = None
    classes: list[str] | None = None

    @property
    def test_mean(self) -> float | None:
        return statistics.fmean(self.test_accs) if self.test_accs else None

    @property
    def test_std(self) -> float | None:
        return statistics.stdev(self.test_accs) if len(self.test_accs) > 1 else (0.0 if self.test_accs else None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "error": self.error, "params": self.params, "macs": self.macs,
                "seconds_per_epoch": self.seconds_per_epoch, "images_per_second": self.images_per_second,
                "best_val_acc": self.best_val_acc, "test_acc_mean": self.test_mean, "test_acc_std": self.test_std,
                "test_accs": self.test_accs, f"seconds_to_{int(TARGET * 100)}": self.seconds_to_target,
                "runs": [str(r) for r in self.runs]}


def compare(models: list[str], dataset: str = "mnist", epochs: int | None = None, budget_seconds: float | None = None,
            seeds: int = 1, out: str | Path | None = None, data_root: str | None = None, verbose: bool = True,
            **train_options: Any) -> list[ModelResult]:
    """Train every model (for every seed) under the same conditions, then write compare.md/csv/json, the charts
    and report.html into `out`. A model that fails is reported with its error; the others go on."""

    if not models:
        raise DigitlabError("--models needs at least one model name")
    if seeds < 1:
        raise DigitlabError("--seeds must be at least 1")
    for name in models:
        get_entry(name)  # an unknown name is a typo: stop before training anything
    out = Path(out or f"runs/compare-{dataset.replace('folder:', '').replace('/', '_')}-{'-'.join(models)}"[:120])
    out.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    results = []
    for name in models:
        result = ModelResult(name)
        results.append(result)
        for seed in range(seeds):
            run_dir = out / f"{name}-seed{seed}"
            result.runs.append(run_dir)
            if (run_dir / "metrics.json").is_file():
                say(f"== {name} seed {seed}: finished earlier, reusing {run_dir}")
                continue
            try:
                if (run_dir / "last.state.pt").is_file():
                    say(f"== {name} seed {seed}: resuming {run_dir}")
                    train(resume=str(run_dir), verbose=verbose)
                else:
                    say(f"== {name} seed {seed}")
                    options = {**train_options, "epochs": epochs, "time_budget": budget_seconds}
                    train(model=name, dataset=dataset, data_root=data_root, seed=seed, out=str(run_dir), track_test=True,
                          verbose=verbose, **{k: v for k, v in options.items() if v is not None})
            except DigitlabError as e:
                result.error = str(e)
                say(f"digitlab: {name} failed: {e}; going on with the others")
                break
        if result.error is None:
            _collect(result)
    write_outputs(out, results, {"dataset": dataset, "epochs": epochs, "budget_seconds": budget_seconds, "seeds": seeds})
    say(markdown_table(results))
    say(f"comparison in {out}: compare.md, compare.csv, compare.json, charts and report.html")
    return results


def _collect(result: ModelResult) -> None:
    """Read each run's own files; measure inference speed once on the first seed's best checkpoint."""

    vals, per_epoch, to_target = [], [], []
    for run_dir in result.runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        result.test_accs.append(metrics["test"]["accuracy"])
        result.params = metrics["params"]
        vals.append(metrics["best_val_acc"])
        per_epoch.append(metrics["train_seconds"] / max(metrics["epochs_run"], 1))
        reached = [e["elapsed"] for e in history if (e.get("test_acc") or 0) >= TARGET]
        to_target.append(reached[0] if reached else math.inf)
    result.best_val_acc = max(vals)
    result.seconds_per_epoch = statistics.fmean(per_epoch)
    finite = [t for t in to_target if math.isfinite(t)]
    result.seconds_to_target = statistics.fmean(finite) if len(finite) == len(to_target) else None
    first = json.loads((result.runs[0] / "metrics.json").read_text())["test"]
    result.per_class_recall = [row["recall"] for row in first["per_class"]]
    result.classes = [row["class"] for row in first["per_class"]]
    clf = load(result.runs[0])
    result.macs = summary(clf.model, clf.input_shape).macs
    cfg = json.loads((result.runs[0] / "config.json").read_text())
    c, h, _ = clf.input_shape
    images = load_dataset(cfg["dataset"], root=cfg.get("data_root"), val_split=0.0, image_size=h, channels=c).test
    images = images.take(torch.arange(min(2048, len(images))))
    clf.predict(images[:64])  # warm up
    best = math.inf
    for _ in range(3):  # best of three: the figure is the machine's speed, not a hiccup
        t0 = time.perf_counter()
        clf.predict(images)
        best = min(best, time.perf_counter() - t0)
    result.images_per_second = len(images) / best


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def markdown_table(results: list[ModelResult]) -> str:
    head = ("| model | params | M mult-adds | s/epoch | images/s | best val acc | test acc (mean ± std) | "
            f"s to {int(TARGET * 100)}% test |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for r in results:
        if r.error:
            rows.append(f"| {r.model} | failed: {r.error.replace('|', '/')} | | | | | | |")
            continue
        n = len(r.test_accs)
        rows.append(f"| {r.model} | {r.params:,} | {r.macs / 1e6:.2f} | {r.seconds_per_epoch:.1f} | {r.images_per_second:,.0f} | "
                    f"{100 * r.best_val_acc:.2f}% | {100 * r.test_mean:.2f}% ± {100 * r.test_std:.2f} (n={n}) | "
                    f"{_fmt(r.seconds_to_target, '.0f', 'not reached')} |")
    return "\n".join([head, *rows])


def write_outputs(out: Path, results: list[ModelResult], settings: dict[str, Any]) -> None:

    table = markdown_table(results)
    atomic_write_text(out / "compare.md", f"# Model comparison\n\nSettings: {json.dumps(settings)}\n\n{table}\n")
    atomic_write_text(out / "compare.json", json.dumps({"settings": settings, "models": [r.to_dict() for r in results]}, indent=2))
    rows = [r.to_dict() for r in results]
    keys = [k for k in rows[0] if k not in ("test_accs", "runs")]
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    charts = plot_charts(out, [r for r in results if r.error is None])
    write_html(out, results, settings, table, charts)


def plot_charts(out: Path, results: list[ModelResult]) -> list[Path]:

    if not results:
        return []
    paths = []
    names = [r.model for r in results]
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]

    fig, ax = new_figure(figsize=(max(5, 1.1 * len(results) + 2), 4))
    means = [100 * r.test_mean for r in results]
    ax.bar(names, means, yerr=[100 * r.test_std for r in results], capsize=6, color=colors[: len(results)])
    low = min(m - 100 * r.test_std for m, r in zip(means, results))
    ax.set_ylim(max(0, low - max(1.0, (100 - low) * 0.5)), 100)
    for i, m in enumerate(means):
        ax.text(i, m, f"{m:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy (mean ± std over {max(len(r.test_accs) for r in results)} seed(s))")
    paths.append(_save(fig, out / "accuracy.png"))

    histories = {r.model: [json.loads(line) for line in (r.runs[0] / "metrics.jsonl").read_text().splitlines() if line.strip()]
                 for r in results}
    curves = [  # file, x, y, axis labels, title
        ("accuracy_vs_time.png", lambda e: e["elapsed"], lambda e: e.get("test_acc") or e["val_acc"] or 0,
         "training time (s, wall clock)", "test accuracy (%)", "Accuracy vs training time (seed 0)"),
        ("val_curves.png", lambda e: e["epoch"], lambda e: e["val_acc"] or 0, "epoch", "validation accuracy (%)",
         "Validation curves (seed 0)"),
    ]
    for filename, x, y, xlabel, ylabel, title in curves:
        fig, ax = new_figure(figsize=(6.5, 4))
        for i, (name, hist) in enumerate(histories.items()):
            ax.plot([x(e) for e in hist], [100 * y(e) for e in hist], "o-", color=colors[i % len(colors)], label=name)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend()
        paths.append(_save(fig, out / filename))

    classes = results[0].classes or []
    grid = np.array([[100 * v for v in (r.per_class_recall or [])] for r in results])
    fig, ax = new_figure(figsize=(max(6, 0.7 * len(classes) + 2), 0.55 * len(results) + 1.8))
    im = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=min(grid.min(), 99.9), vmax=100)
    ax.set_xticks(range(len(classes)), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right" if max(map(len, classes)) > 2 else "center")
    ax.set_yticks(range(len(results)), names)
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v < (grid.min() + 100) / 2 else "black")
    fig.colorbar(im, ax=ax, label="recall (%)")
    ax.set_title("Per-class accuracy (recall, seed 0)")
    paths.append(_save(fig, out / "per_class.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(out: Path, results: list[ModelResult], settings: dict[str, Any], table: str, charts: list[Path]) -> None:
    """One self-contained page: the table, the charts and every model's confusion matrix and worst mistakes."""

    lines = [line for line in table.splitlines() if not line.startswith("|---")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    width = len(cells[0])
    rows = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells[0]) + "</tr>"
    for row in cells[1:]:
        if row[1].startswith("failed:"):  # the error spans the numbers it replaces
            rows += f"<tr><td>{html.escape(row[0])}</td><td colspan={width - 1} class=err>{html.escape(row[1])}</td></tr>"
        else:
            rows += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
    sections = []
    for r in results:
        if r.error:
            sections.append(f"<h3>{html.escape(r.model)}</h3><p class=err>failed: {html.escape(r.error)}</p>")
            continue
        pics = [_img(r.runs[0] / n, f"{r.model} {n}") for n in ("confusion.png", "mistakes.png") if (r.runs[0] / n).is_file()]
        sections.append(f"<h3>{html.escape(r.model)}</h3><div class=pics>{''.join(pics)}</div>")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
<title>digitlab model comparison</title><style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330;max-width:1200px}}
table{{border-collapse:collapse;margin:1rem 0;font-size:.92rem}}td,th{{border:1px solid #ccd;padding:.35rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}th{{background:#eef}}img{{max-width:100%;margin:.4rem;border:1px solid #eee}}
.pics,.charts{{display:flex;flex-wrap:wrap;align-items:flex-start}}.err{{color:#b3261e}}code{{background:#f3f3f6;padding:0 .3rem}}
</style></head><body>
<h1>Model comparison</h1><p>Settings: <code>{html.escape(json.dumps(settings))}</code></p>
<table>{rows}</table>
<h2>Charts</h2><div class=charts>{''.join(_img(p, p.stem) for p in charts)}</div>
<h2>Each model: confusion matrix and worst mistakes (seed 0)</h2>{''.join(sections)}
</body></html>"""
    atomic_write_text(out / "report.html", page)
