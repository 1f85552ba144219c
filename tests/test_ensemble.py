"""`train --ensemble N`: members on one validation split, one servable model that averages them, resume, export."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import digitlab
from conftest import assert_user_error, run_cli
from digitlab.models import create_model
from digitlab.runs import load_model, read_record

FAST = dict(model="lenet5", dataset="mnist-sample", epochs=1, threads=1, verbose=False)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory) -> digitlab.Run:
    return digitlab.train(**FAST, ensemble=2, seed=3, out=str(tmp_path_factory.mktemp("ens") / "run"))


def test_members_share_the_split_and_differ_in_seed(ensemble_run):
    configs = [json.loads((ensemble_run.dir / f"member-{i}" / "config.json").read_text()) for i in range(2)]
    assert [c["seed"] for c in configs] == [6, 7]  # seed * N + i: no member of another ensemble seed repeats them
    assert [c["split_seed"] for c in configs] == [3, 3] and all(c["ensemble"] == 1 for c in configs)
    weights = [load_model(ensemble_run.dir / f"member-{i}")[0].state_dict() for i in range(2)]
    assert not torch.equal(weights[0]["features.0.weight"], weights[1]["features.0.weight"])


def test_the_saved_model_averages_its_members_probabilities(ensemble_run):
    model, record = load_model(ensemble_run.dir)
    assert record["model"]["name"] == "ensemble" and record["model"]["kwargs"]["size"] == 2
    assert record["classes"] == [str(d) for d in range(10)] and "--ensemble 2" in record["command"]
    metrics = json.loads((ensemble_run.dir / "metrics.json").read_text())
    assert record["metrics"]["val_acc"] == metrics["best_val_acc"] > 0  # what serve's /api/models shows
    members = [load_model(ensemble_run.dir / f"member-{i}")[0] for i in range(2)]
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
        assert torch.allclose(model(x).softmax(1), expected, atol=1e-6)


def test_its_test_score_is_the_classifiers(ensemble_run):
    metrics = json.loads((ensemble_run.dir / "metrics.json").read_text())
    test = digitlab.load_dataset("mnist-sample", val_split=0).test
    pred = digitlab.load(ensemble_run.dir).predict(test.images).labels
    assert (pred == test.labels).float().mean().item() == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert ensemble_run.test_accuracy == metrics["test"]["accuracy"]
    assert [m["folder"] for m in metrics["members"]] == ["member-0", "member-1"]
    assert "ensemble of 2 lenet5" in (ensemble_run.dir / "report.md").read_text()


def test_resume_keeps_finished_members_and_retrains_the_lost_one(ensemble_run, tmp_path):
    run = Path(shutil.copytree(ensemble_run.dir, tmp_path / "run"))
    kept = (run / "member-0" / "best.safetensors").stat().st_mtime_ns
    shutil.rmtree(run / "member-1")  # killed before member 1 saved anything
    (run / "best.safetensors").unlink()
    result = run_cli("train", "--resume", str(run), "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "already trained" in result.stdout
    assert (run / "member-0" / "best.safetensors").stat().st_mtime_ns == kept
    after = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert after == pytest.approx(ensemble_run.test_accuracy, abs=1e-9)  # member 1 retrained to the same weights


def test_a_new_run_in_an_ensembles_folder_needs_resume(ensemble_run):
    result = run_cli("train", "--model", "lenet5", "--dataset", "mnist-sample", "--ensemble", "2", "--out", str(ensemble_run.dir))
    assert_user_error(result, "--resume")


def test_bad_ensemble_options_are_one_line_errors(ensemble_run, tmp_path):
    assert_user_error(run_cli("train", "--dataset", "mnist-sample", "--ensemble", "0", "--out", str(tmp_path / "a")), "--ensemble")
    assert_user_error(run_cli("train", "--init-from", str(ensemble_run.dir / "member-0"), "--dataset", "mnist-sample",
                              "--ensemble", "2", "--out", str(tmp_path / "b")), "--init-from")
    with pytest.raises(digitlab.DigitlabError, match="single model"):
        create_model("ensemble", member="ensemble")


def test_onnx_export_of_an_ensemble_matches_torch(ensemble_run, tmp_path):
    pytest.importorskip("onnxruntime")
    result = run_cli("export", str(ensemble_run.dir), "--out", str(tmp_path / "e.onnx"))
    assert result.returncode == 0, result.stderr
    images = digitlab.load_dataset("mnist-sample", val_split=0).test.images[:33]
    a = digitlab.load(ensemble_run.dir).predict(images).probs
    b = digitlab.load(tmp_path / "e.onnx").predict(images).probs
    assert torch.allclose(a, b, atol=1e-4)
    assert read_record(ensemble_run.dir / "best.safetensors")["model"]["kwargs"]["member"] == "lenet5"
