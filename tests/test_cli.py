"""Bad input through the CLI: one line saying what to do, a non-zero exit code, never a traceback."""
from __future__ import annotations

import gzip

import pytest
import torch

from conftest import assert_user_error, make_idx_dataset, run_cli, run_process


def test_help_and_version():
    r = run_process("--help")  # the real entry point, once
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout
    assert run_cli("--version").stdout.startswith("digitlab ")


def test_models_list_and_summary():
    r = run_cli("models", "list")
    assert r.returncode == 0 and "109,386" in r.stdout and "61,706" in r.stdout and "googlenet" in r.stdout
    r = run_cli("models", "summary", "cnn", "--input-shape", "3,32,32")
    assert r.returncode == 0 and "Total params:" in r.stdout and "Multiply-adds per image" in r.stdout


def test_data_show_writes_a_grid(tiny_root, tmp_path):
    out = tmp_path / "grid.png"
    r = run_cli("data", "show", "mnist", "--data-root", str(tiny_root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "train:   200 images" in r.stdout and out.stat().st_size > 1000


def test_unknown_model(tmp_path):
    assert_user_error(run_cli("train", "--model", "lenet6", "--dataset", "mnist-sample", "--out", str(tmp_path / "r")), "lenet6", "lenet5")
    assert_user_error(run_cli("models", "summary", "vgg16"), "vgg16")


def test_input_too_small_for_model(tmp_path):
    assert_user_error(run_cli("models", "summary", "cnn-small", "--input-shape", "1,12,12"), "at least 18x18")


def test_unknown_dataset_and_missing_paths(tmp_path):
    assert_user_error(run_cli("data", "show", "mnsit"), "unknown dataset")
    assert_user_error(run_cli("data", "show", f"folder:{tmp_path / 'nope'}"), "does not exist")
    assert_user_error(run_cli("data", "show", "mnist", "--data-root", str(tmp_path / "nope")), "not a folder")
    assert_user_error(run_cli("evaluate", str(tmp_path / "missing-run")), "no such checkpoint")


def test_missing_dataset_offline(tmp_path):
    r = run_cli("data", "show", "kmnist", "--data-root", str(tmp_path), env={"DIGITLAB_OFFLINE": "1"})
    assert_user_error(r, "kmnist", "DIGITLAB_DATA")


def test_corrupt_dataset_file(tmp_path):
    root = tmp_path / "d"
    make_idx_dataset(root)
    bad = root / "mnist" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x05"))
    assert_user_error(run_cli("data", "show", "mnist", "--data-root", str(root)), "t10k-images-idx3-ubyte.gz")


def test_folder_with_one_class(tmp_path):
    (tmp_path / "f" / "cats").mkdir(parents=True)
    assert_user_error(run_cli("data", "show", f"folder:{tmp_path / 'f'}"), "at least 2")


def test_not_a_checkpoint(tmp_path):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"garbage")
    assert_user_error(run_cli("evaluate", str(fake)), "model.safetensors")


def test_bad_training_options(tmp_path):
    out = str(tmp_path / "r")
    assert_user_error(run_cli("train", "--dataset", "mnist-sample", "--optimizer", "lion", "--out", out), "lion")
    assert_user_error(run_cli("train", "--dataset", "mnist-sample", "--epochs", "0", "--out", out), "--epochs")
    assert_user_error(run_cli("train", "--config", str(tmp_path / "none.toml")), "none.toml")
    assert_user_error(run_cli("train", "--resume", str(tmp_path)), "nothing to resume")
    if not torch.cuda.is_available():  # on a CUDA machine --device cuda is no mistake
        assert_user_error(run_cli("train", "--dataset", "mnist-sample", "--device", "cuda", "--out", out), "cuda")


@pytest.mark.slow
def test_train_streams_a_folder_with_dataloader_workers(tmp_path):
    """`--stream --workers 2`: the folder is decoded by DataLoader processes each epoch; the run completes with its
    report and learns (each class here has its own brightness), and `--stream` on a built-in dataset is refused."""
    import json

    from PIL import Image

    for k in range(3):
        (tmp_path / "shades" / f"s{k}").mkdir(parents=True)
        for i in range(40):
            noise = (i * 7 + k * 13) % 20
            Image.new("L", (12, 12), 30 + 80 * k + noise).save(tmp_path / "shades" / f"s{k}" / f"{i}.png")
    args = ["--model", "mlp", "--dataset", f"folder:{tmp_path / 'shades'}", "--epochs", "3", "--image-size", "12", "--augment", "none",
            "--batch-size", "16"]
    r = run_cli("train", *args, "--stream", "--workers", "2", "--out", str(tmp_path / "streamed"))
    assert r.returncode == 0, r.stderr
    assert "streaming from disk" in r.stdout and "2 DataLoader worker(s)" in r.stdout
    r = run_cli("train", *args, "--out", str(tmp_path / "in-memory"))
    assert r.returncode == 0, r.stderr
    streamed, in_memory = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("streamed", "in-memory"))
    assert streamed["test"]["accuracy"] == in_memory["test"]["accuracy"] and (tmp_path / "streamed" / "mistakes.png").exists()
    history = [[json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()] for name in ("streamed", "in-memory")]
    assert len(history[0]) == len(history[1]) == 3
    for a, b in zip(*history):  # the same batches in the same order: the same run
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and a["val_acc"] == b["val_acc"]
    assert_user_error(run_cli("train", "--dataset", "mnist-sample", "--stream", "--out", str(tmp_path / "r2")), "--stream")


def test_user_errors_exit_with_code_2_and_one_line(tmp_path):
    """argparse's own errors are one line too (no usage block), and every user mistake exits with 2."""
    r = run_cli("train", "--epochs", "three")
    assert_user_error(r, "--epochs", "invalid int value")
    assert r.returncode == 2 and "usage:" not in r.stderr
    r = run_cli("train", "--model", "lenet6", "--dataset", "mnist-sample", "--out", str(tmp_path / "r"))
    assert_user_error(r, "lenet6")
    assert r.returncode == 2
