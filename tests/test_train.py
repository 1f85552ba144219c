"""Training runs: outputs, checkpoints, exact resume after SIGKILL, NaN handling, configs, the Python API."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import digitlab
from conftest import assert_user_error, run_cli
from digitlab.errors import DigitlabError
from digitlab.runs import read_record
from digitlab.training import Run

FAST = dict(model="lenet5", dataset="mnist-sample", epochs=1, threads=1, verbose=False)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory) -> Run:
    """One lenet5 epoch on mnist-sample, trained once for the tests that read a finished run; a test that writes
    into a run works on its own copy (`copied`)."""
    return digitlab.train(**FAST, out=str(tmp_path_factory.mktemp("shared") / "run"))


def copied(run: Run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run.dir, tmp_path / "run"))


def test_api_run_writes_a_complete_folder(lenet_run):
    run = lenet_run
    names = {p.name for p in run.dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "metrics.csv", "metrics.json", "best.safetensors", "last.safetensors",
            "last.state.pt", "curves.png", "confusion.png", "mistakes.png", "samples.png", "report.md"} <= names
    assert 0.3 < run.test_accuracy <= 1.0 and len(run.history) == 1
    record = read_record(run.dir / "best.safetensors")
    assert record["model"]["name"] == "lenet5" and record["classes"] == [str(i) for i in range(10)]
    assert record["input_shape"] == [1, 28, 28] and len(record["mean"]) == 1 and "digitlab_version" in record
    json.dumps(record)  # plain data
    assert set(load_file(str(run.dir / "best.safetensors"))) == set(digitlab.create_model("lenet5").state_dict())
    state = torch.load(run.dir / "last.state.pt", weights_only=True)  # safe to load
    assert state["epoch"] == 1
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(run.test_accuracy)
    assert "Test accuracy" in (run.dir / "report.md").read_text()


def test_loaded_classifier_predicts_and_evaluates(lenet_run):
    run = lenet_run
    clf = digitlab.load(run.dir)
    test = digitlab.load_dataset("mnist-sample").test
    single = clf.predict(test.images[0, 0].numpy())  # (28, 28) uint8
    batch = clf.predict(test.images[:16])
    floats = clf.predict(test.images[:16].float() / 255)
    assert single.probs.shape == (1, 10) and batch.labels.shape == (16,)
    assert torch.equal(batch.labels, floats.labels) and batch.labels[0] == single.labels[0]
    assert torch.allclose(batch.probs.sum(1), torch.ones(16), atol=1e-5)
    assert clf.evaluate("mnist-sample").accuracy == pytest.approx(run.test_accuracy)
    with pytest.raises(DigitlabError, match="expected images of shape"):
        clf.predict(torch.zeros(2, 32, 32))


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(lenet_run, tmp_path):
    out = copied(lenet_run, tmp_path)
    good = (out / "last.safetensors").read_bytes()
    with pytest.raises(DigitlabError, match="loss became"):
        digitlab.train(**{**FAST, "epochs": 2}, out=str(tmp_path / "nan"), optimizer="sgd", lr=1e12)
    assert (out / "last.safetensors").read_bytes() == good
    assert not (tmp_path / "nan" / "best.safetensors").exists()  # nothing written from the diverged epoch


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "mlp"\ndataset = "mnist-sample"\nepochs = 1\nbatch-size = 64\nlr = 0.002\n')
    r = run_cli("train", "--config", str(cfg), "--lr", "0.003", "--out", str(tmp_path / "r"), "--threads", "1")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model"] == "mlp" and saved["batch_size"] == 64 and saved["lr"] == 0.003
    assert "Epoch 1/1" in r.stdout and "test accuracy" in r.stdout
    yaml_cfg = tmp_path / "run.yaml"
    yaml_cfg.write_text("model: mlp\nepochs: 1\ndataset: mnist-sample\nbogus: 3\n")
    assert_user_error(run_cli("train", "--config", str(yaml_cfg), "--out", str(tmp_path / "y")), "bogus")


def _train_cmd(out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "digitlab", "train", "--model", "lenet5", "--dataset", "mnist-sample", "--epochs", str(epochs),
            "--batch-size", "8", "--threads", "1", "--seed", "3", "--out", str(out)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "DIGITLAB_OFFLINE": "1"}
    reference = subprocess.run(_train_cmd(tmp_path / "ref", 3), capture_output=True, text=True, env=env, timeout=600)
    assert reference.returncode == 0, reference.stderr

    killed = subprocess.Popen(_train_cmd(tmp_path / "kill", 3), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    history = tmp_path / "kill" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (history.exists() and history.read_text().count("\n") >= 1):
        time.sleep(0.05)
    time.sleep(0.4 * json.loads(history.read_text())["seconds"])  # well inside epoch 2
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert history.read_text().count("\n") == 1, "the run should have died during epoch 2"

    resumed = subprocess.run([sys.executable, "-m", "digitlab", "train", "--resume", str(tmp_path / "kill")],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    ref = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in history.read_text().splitlines()]
    assert [h["epoch"] for h in got] == [1, 2, 3]
    for a, b in zip(ref, got):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    ref_test = json.loads((tmp_path / "ref" / "metrics.json").read_text())["test"]
    got_test = json.loads((tmp_path / "kill" / "metrics.json").read_text())["test"]
    assert ref_test["accuracy"] == got_test["accuracy"] and ref_test["loss"] == pytest.approx(got_test["loss"], abs=1e-6)


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_with_a_resume_hint(tmp_path):
    env = {**os.environ, "DIGITLAB_OFFLINE": "1"}
    proc = subprocess.Popen(_train_cmd(tmp_path / "int", 5), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    history = tmp_path / "int" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not history.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "--resume" in err
    assert torch.load(tmp_path / "int" / "last.state.pt", weights_only=True)["epoch"] >= 1


def test_evaluate_command(lenet_run, tmp_path):
    run = lenet_run
    run_dir = copied(run, tmp_path)  # evaluate writes its report into the run folder
    r = run_cli("evaluate", str(run_dir), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["accuracy"] == pytest.approx(run.test_accuracy) and len(report["per_class"]) == 10
    assert len(report["confusion"]) == 10 and sum(map(sum, report["confusion"])) == 1000
    r = run_cli("evaluate", str(run_dir))
    assert "accuracy:" in r.stdout and "confusion matrix" in r.stdout
    assert (run_dir / "eval-mnist-sample-test" / "mistakes.png").exists()
    assert_user_error(run_cli("evaluate", str(run_dir), "--dataset", "cifar10"), "cifar10")


def test_resume_refuses_changed_data_and_existing_run_needs_resume(lenet_run, tmp_path):
    out = copied(lenet_run, tmp_path)
    assert_user_error(run_cli("train", "--resume", str(out), "--model", "mlp"), "cannot change model")
    assert_user_error(run_cli("train", "--model", "lenet5", "--dataset", "mnist-sample", "--out", str(out)), "--resume")
    r = run_cli("train", "--resume", str(out), "--epochs", "2")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_real_mnist_one_epoch(real_root, tmp_path):
    run = digitlab.train(model="lenet5", dataset="mnist", data_root=str(real_root), epochs=1, augment="none", out=str(tmp_path / "r"), verbose=False)
    assert run.test_accuracy >= 0.95  # a broken pipeline (e.g. misaligned labels) scores ~10%


@pytest.mark.slow
def test_sprint_recipe_reaches_99_percent_in_its_one_epoch(real_root, tmp_path):
    """The sprint recipe's claim (README, time to accuracy): one epoch of sprintcnn, 99% on MNIST's test set."""
    run = digitlab.train(recipe="sprint", dataset="mnist", data_root=str(real_root), out=str(tmp_path / "s"), verbose=False)
    assert len(run.history) == 1 and run.config.model == "sprintcnn"
    assert run.test_accuracy >= 0.99


@pytest.mark.slow
def test_tensorboard_log_has_scalars_histograms_images_and_graph(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = digitlab.train(**{**FAST, "epochs": 2}, tensorboard=True, out=str(tmp_path / "tb"))
    events = EventAccumulator(str(run.dir / "tensorboard"), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/train_loss", "loss/val_loss", "acc/train_acc", "acc/val_acc", "lr/lr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("acc/val_acc")] == [1, 2]
    assert events.Scalars("acc/val_acc")[-1].value == pytest.approx(run.history[-1]["val_acc"])
    assert any(t.startswith("weights/") for t in tags["histograms"]) and any(t.startswith("grads/") for t in tags["histograms"])
    assert "samples" in tags["images"] and tags["graph"]


def test_defaults_layer_dataset_then_model_then_recipe_then_flags(monkeypatch):
    from digitlab.training.config import RECIPES, resolve_config

    assert resolve_config({"model": "cnn", "dataset": "fashion-mnist"}).augment == "none"
    assert resolve_config({"model": "cnn", "dataset": "mnist"}).augment == "light"
    assert resolve_config({"model": "cnn", "dataset": "fashion-mnist", "augment": "flip"}).augment == "flip"
    fast = resolve_config({"recipe": "fast"})
    assert (fast.model, fast.ema, fast.lr) == ("fastcnn", RECIPES["fast"]["ema"], RECIPES["fast"]["lr"])
    assert resolve_config({"recipe": "fast", "batch_size": 64}).batch_size == 64  # flags beat the recipe
    assert (resolve_config({"model": "fastcnn"}).lr, resolve_config({"model": "mlp"}).epochs) == (3e-3, 20)  # MODEL_DEFAULTS
    assert resolve_config({"model": "mlp", "recipe": "pytorch-example"}).epochs == 14  # the recipe beats the model
    monkeypatch.setitem(RECIPES, "narrow", {"model": "fastcnn", "model_args": {"width": 16}})
    assert resolve_config({"recipe": "narrow"}).model_args == {"width": 16}
    assert resolve_config({"recipe": "narrow", "model": "lenet5"}).model_args == {}  # width belongs to fastcnn


def test_ema_warms_up_then_holds_its_decay():
    """The weight average ramps its decay up as (1 + n) / (10 + n): the second update already moves most of the way
    to the model (a fixed 0.99 would keep 99% of the random init), and late updates use the configured decay."""
    from digitlab.training.loop import ema_with_warmup

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(0.99), use_buffers=True)
    ema.update_parameters(model)  # the first update copies the model
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].num_batches_tracked.fill_(7)
    before = ema.module[0].weight.clone()
    ema.update_parameters(model)  # n = 1: decay (1 + 1) / (10 + 1) = 0.18
    expected = before * (2 / 11) + 1.0 * (9 / 11)
    assert torch.allclose(ema.module[0].weight, expected)
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers follow the model
    for _ in range(2000):
        ema.update_parameters(model)
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    before = ema.module[0].weight.clone()
    ema.update_parameters(model)  # n > 990: (1 + n) / (10 + n) > 0.99, so the configured 0.99 applies
    assert torch.allclose(ema.module[0].weight, before * 0.99 + 2.0 * 0.01)


def test_weights_from_a_differently_built_model_name_the_saving_version(tmp_path):
    """A checkpoint whose weights don't fit the model this version builds (e.g. fastcnn before 0.2.0) is a one-line
    error that says which digitlab saved it."""
    from digitlab.models import create_model
    from digitlab.runs import save_model

    model = create_model("lenet5")
    record = {"model": {**model.digitlab_config, "name": "cnn"}, "classes": [str(i) for i in range(10)],
              "input_shape": [1, 28, 28], "mean": [0.1307], "std": [0.3081], "digitlab_version": "0.0.1"}
    save_model(tmp_path / "old.safetensors", model, record)
    assert_user_error(run_cli("evaluate", str(tmp_path / "old.safetensors"), "--dataset", "mnist-sample"),
                      "weights do not fit model 'cnn'", "saved by digitlab 0.0.1")


def test_weight_decay_skips_biases_and_norms():
    """Decay applies to weight matrices and conv kernels only: with no gradient, one AdamW step shrinks the conv
    weights and leaves BatchNorm scales and every bias exactly as they were."""
    from digitlab.models import create_model
    from digitlab.training.config import resolve_config
    from digitlab.training.loop import make_optimizer

    model = create_model("fastcnn")
    opt = make_optimizer(resolve_config({"recipe": "fast"}), model, lr=0.1)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert decayed and all(p.ndim >= 2 for p in opt.param_groups[0]["params"])
    assert opt.param_groups[1]["weight_decay"] == 0 and len(decayed) + len(opt.param_groups[1]["params"]) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (id(p) in decayed), name
