"""Faults a user can cause or suffer (issue 19): every one is a single `digitlab: error:` line and exit code 2, work is
refused before it starts where it can be, and what is on disk afterwards is what the message says."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import digitlab
from conftest import make_idx_dataset
from digitlab.cli import main
from digitlab.errors import DigitlabError
from digitlab.runs import clean_stale_temps, read_record, save_model

TINY = ["--model", "mlp", "--dataset", "mnist", "--augment", "none", "--batch-size", "16", "--threads", "1"]


def assert_main_error(capsys, argv: list[str], *fragments: str) -> str:
    """main(argv) in-process: exit code 2, exactly one line on stderr, `digitlab: error: ...`, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("digitlab: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root)
    make_idx_dataset(root, "fashion-mnist")
    return root


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """An mlp trained for one epoch on 200 generated digits: the run folder the fault tests copy and break."""
    out = tmp_path_factory.mktemp("runs") / "mlp"
    digitlab.train(model="mlp", dataset="mnist", data_root=str(tiny_data), augment="none", epochs=1, batch_size=16, threads=1,
                   out=str(out), verbose=False)
    return out


# 1-2: one typed schema for flags, config files and the Python API

@pytest.mark.parametrize("text, fragments", [
    ('epochs = "three"', ("epochs must be an integer", "'three'")),
    ("epochs = true", ("epochs must be an integer", "True")),
    ("epoch = 3", ("unknown option 'epoch'", "did you mean 'epochs'")),
    ("lr = -1.0", ("lr must be more than 0",)),
    ('optimizer = "lion"', ("optimizer", "'lion'", "adamw")),
    ('stream = "yes"', ("stream must be true or false",)),
])
def test_config_file_values_are_typed_and_checked(capsys, tmp_path, text, fragments):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'model = "mlp"\n{text}\n')
    line = assert_main_error(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], *fragments)
    assert "run.toml" in line
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_flags_and_api_use_the_same_checks(capsys, tmp_path):
    out = str(tmp_path / "r")
    assert_main_error(capsys, ["train", "--threads", "-3", "--out", out], "--threads must be at least 0", "-3")
    assert_main_error(capsys, ["train", "--epochs", "three"], "--epochs", "invalid int value")  # argparse, one line too
    assert_main_error(capsys, ["train", "--recipe", "fats", "--out", out], "fats", "fast")
    assert_main_error(capsys, ["train", "--val-split", "1.5", "--out", out], "--val-split must be less than 1")
    with pytest.raises(DigitlabError, match="epochs must be an integer, got True"):
        digitlab.train(model="mlp", epochs=True, out=out)
    with pytest.raises(DigitlabError, match="did you mean 'batch_size'"):
        digitlab.train(model="mlp", batchsize=32, out=out)
    with pytest.raises(DigitlabError, match="at least 1"):
        digitlab.train(config=digitlab.TrainConfig(epochs=0), out=out)
    assert not Path(out).exists()


def test_an_extra_option_is_one_line(monkeypatch):
    """The schema reads rules from the dataclass: a new field declared with opt() is checked with no other change."""
    from digitlab.training import config as config_module

    assert config_module.check_option("label_smoothing", 0) == 0.0 and isinstance(config_module.check_option("lr", 1), float)
    with pytest.raises(DigitlabError, match="--ema must be less than 1, got 1.5"):
        config_module.check_option("ema", 1.5)
    with pytest.raises(DigitlabError, match="--channels: unknown value 2"):
        config_module.check_option("channels", 2)


# 3: paths that cannot be written

def test_out_naming_an_existing_file_is_refused_before_work(capsys, tmp_path, tiny_run):
    existing = tmp_path / "afile"
    existing.write_text("keep me")
    assert_main_error(capsys, ["train", "--model", "mlp", "--out", str(existing)], "--out", "existing file")
    assert_main_error(capsys, ["train", "--model", "mlp", "--out", str(existing / "run")], "is a file")
    assert_main_error(capsys, ["predict", str(tmp_path / "no-model"), "x.png", "--save-preprocessed", str(existing)],
                      "--save-preprocessed", "existing file")
    assert_main_error(capsys, ["evaluate", str(tiny_run), "--out", str(existing)], "--out", "existing file")
    assert existing.read_text() == "keep me"


# 4: NaN on the first epoch

def test_nan_in_the_first_epoch_says_no_checkpoint_exists(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(DigitlabError) as info:  # diverges within epoch 1 (tests/test_train.py's NaN run)
        digitlab.train(model="lenet5", dataset="mnist-sample", optimizer="sgd", lr=1e12, epochs=2, threads=1, out=str(out),
                       verbose=False)
    message = str(info.value)
    assert "loss became" in message and "No checkpoint was saved yet" in message and "holds only config.json" in message
    assert "epoch 0" not in message
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


# 5: a dataset whose classes the model does not know

def test_evaluate_refuses_other_class_names_and_maps_a_subset_by_name(capsys, tmp_path, tiny_data, tiny_run):
    assert_main_error(capsys, ["evaluate", str(tiny_run), "--dataset", "fashion-mnist", "--data-root", str(tiny_data)],
                      "fashion-mnist", "classes the model does not know", "T-shirt/top")
    # a model with classes 0-9 + not-digit, whose not-digit output always wins except where the digit is certain
    model = digitlab.create_model("mlp", num_classes=11)
    record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)] + ["not-digit"], "input_shape": [1, 28, 28],
              "mean": [0.5], "std": [0.5], "dataset": "reader", "digitlab_version": digitlab.__version__}
    save_model(tmp_path / "reader.safetensors", model, record)
    clf = digitlab.load(tmp_path / "reader.safetensors")
    test = digitlab.load_dataset("mnist", root=str(tiny_data)).test
    result = clf.evaluate(test)
    assert result.classes == record["classes"] and result.confusion.shape == (11, 11)
    assert result.confusion[10].sum() == 0 and result.confusion.sum() == len(test)  # no sample is labelled not-digit
    expected = (clf.predict(test.images).labels == test.labels).double().mean().item()
    assert result.accuracy == pytest.approx(expected)
    # the same names in another order are matched by name, not by index
    shuffled = list(reversed(test.classes))
    relabelled = digitlab.load_dataset("mnist", root=str(tiny_data)).test
    relabelled = type(relabelled)(relabelled.images, 9 - relabelled.labels, shuffled)
    assert clf.evaluate(relabelled).accuracy == pytest.approx(expected)
    code = main(["evaluate", str(tmp_path / "reader.safetensors"), "--dataset", "mnist", "--data-root", str(tiny_data), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["classes"][-1] == "not-digit"


# 6: full disk

def test_disk_full_while_checkpointing_keeps_the_last_good_epoch(capsys, monkeypatch, tmp_path, tiny_data):
    """torch.save fails the way it does on a full disk (its message, not an OSError) while epoch 2 is saved."""
    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            Path(f).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                               "file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "full"
    line = assert_main_error(capsys, ["train", *TINY, "--data-root", str(tiny_data), "--epochs", "3", "--out", str(out)],
                             f"{out}: no space left", "last good checkpoint (epoch 1)", f"--resume {out}")
    assert "epoch 2" in line and temp_files(out) == []
    assert torch.load(out / "last.state.pt", weights_only=True)["epoch"] == 1
    assert read_record(out / "best.safetensors")["epoch"] == 1


def test_disk_full_errors_become_one_line(monkeypatch, capsys, tmp_path, tiny_run):
    """A full disk outside the checkpoint writer (e.g. a plot) is one line too, naming the file."""
    import digitlab.cli as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "curves.png"))

    monkeypatch.setattr(cli, "cmd_evaluate", full)  # build_parser() binds the patched function
    assert_main_error(capsys, ["evaluate", str(tiny_run)], "No space left on device", "curves.png")


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'}); the ENOSPC test above simulates it")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs Linux and root")
@pytest.mark.parametrize("size", ["3m", "1m", "600k", "20k"])
def test_real_full_tmpfs_as_out(capsys, tmp_path, tiny_data, size):
    """A small tmpfs as --out: refused up front (or the run fits); never a traceback, never temp debris."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, size)
    try:
        code = main(["train", *TINY, "--data-root", str(tiny_data), "--epochs", "2", "--out", str(mnt / "run")])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if code != 0:
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and str(mnt / "run") in lines[0] and "free" in lines[0], err
        assert temp_files(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs Linux and root")
def test_real_disk_filling_up_during_training(capsys, tmp_path, tiny_data):
    """The disk fills up (another program) after epoch 1: the run stops with one line; epoch 1's checkpoint resumes."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "8m")
    out = mnt / "run"
    stop = threading.Event()

    def fill_after_first_checkpoint():
        while not stop.is_set() and not (out / "last.state.pt").exists():
            time.sleep(0.005)
        try:
            with open(mnt / "ballast", "wb") as f:
                while not stop.is_set():
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:  # full: that was the point
            pass

    filler = threading.Thread(target=fill_after_first_checkpoint, daemon=True)
    filler.start()
    try:
        code = main(["train", *TINY, "--data-root", str(tiny_data), "--epochs", "30", "--out", str(out)])
        stop.set()
        filler.join()
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and "Traceback" not in err and len(lines) == 1, err
        assert str(out) in lines[0] and "--resume" in lines[0]
        assert temp_files(mnt) == []
        saved = torch.load(out / "last.state.pt", weights_only=True)["epoch"]
        assert saved >= 1 and read_record(out / "last.safetensors")["epoch"] >= saved
        (mnt / "ballast").unlink()
        assert main(["train", "--resume", str(out), "--epochs", str(saved + 1)]) == 0
    finally:
        stop.set()
        subprocess.run(["umount", str(mnt)], check=False)


# 7: temporary files of killed writers

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_are_removed_live_ones_kept(tmp_path, tiny_run, tiny_data, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    dead = run / f".last.safetensors.{_dead_pid()}.k2j4h1a0.tmp"
    live = run / f".best.safetensors.{os.getppid()}.p0q9r8s7.tmp"
    for p in (dead, live):
        p.write_bytes(b"half a checkpoint")
    assert clean_stale_temps(run) == [dead] and live.exists()
    dead.write_bytes(b"again")
    assert main(["evaluate", str(run), "--data-root", str(tiny_data), "--json"]) == 0  # it writes into the run: cleans first
    capsys.readouterr()
    assert not dead.exists() and live.exists()


def _mtimes(folder: Path) -> dict[Path, int]:
    """Modification times of a folder's files; a temporary file renamed between listing and stat is left out."""
    times = {}
    for p in folder.iterdir():
        try:
            times[p] = p.stat().st_mtime_ns
        except FileNotFoundError:
            continue
    return times


@pytest.mark.slow
def test_repeated_sigkill_leaves_no_debris_and_resume_completes(tmp_path, tiny_data):
    """Ten kill -9 at random moments of a tiny training (mostly while checkpoints are written), each time started
    again or resumed; at the end no temporary file is left and the resumed run completes every epoch."""
    out = tmp_path / "run"
    out.mkdir()
    (out / f".config.json.{_dead_pid()}.a1b2c3d4.tmp").write_text("{")  # debris of an earlier kill, for certain
    base = [sys.executable, "-m", "digitlab", "train"]
    new = [*base, *TINY, "--data-root", str(tiny_data), "--epochs", "60", "--out", str(out)]
    env = {**os.environ, "DIGITLAB_OFFLINE": "1"}
    rng = random.Random(19)
    for _ in range(10):
        cmd = [*base, "--resume", str(out)] if (out / "last.state.pt").exists() else new
        before = _mtimes(out)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:  # wait for its first write, then kill it a moment later
            if _mtimes(out) != before:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cmd = [*base, "--resume", str(out)] if (out / "last.state.pt").exists() else new
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert temp_files(out) == []
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 61))
    assert (out / "metrics.json").is_file()


def test_resume_rewrites_metrics_a_kill_left_behind_the_checkpoint(tmp_path, tiny_run, capsys):
    # killed between the renames of last.state.pt and metrics.jsonl: the checkpoint has the epoch, the metrics not
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "metrics.jsonl").write_text("")
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]


# 8: a corrupt checkpoint is found before an epoch is spent

def test_resume_with_a_corrupt_best_checkpoint_fails_up_front(capsys, tmp_path, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = (run / "best.safetensors").read_bytes()
    (run / "best.safetensors").write_bytes(data[: len(data) // 2])
    assert_main_error(capsys, ["train", "--resume", str(run), "--epochs", "3"], "best.safetensors", "cannot be resumed")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # no epoch was trained first


# 9: no hidden globals

def test_train_leaves_threads_and_rng_as_it_found_them(tiny_data, tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    digitlab.train(model="mlp", dataset="mnist", data_root=str(tiny_data), augment="none", epochs=1, threads=1,
                   out=str(tmp_path / "r"), verbose=False)
    assert torch.get_num_threads() == 2
    assert torch.equal(torch.rand(3), expected)


def test_nproc_relaunches_the_argv_given_to_main(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(sys, "argv", ["something", "else", "entirely"])
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", "--nproc", "2", "--model", "mlp", "--epochs", "1"]) == 0
    assert calls[0][-5:] == ["digitlab", "train", "--model", "mlp", "--epochs", "1"][-5:] and "--nproc" not in calls[0]
    assert "entirely" not in calls[0]


@pytest.mark.parametrize("load, expected", [(0.0, 2), (0.4, 2), (0.6, 1), (1.7, 1), (6.0, 1)])
def test_default_threads_leave_busy_cpus_alone(monkeypatch, load, expected):
    """On 2 CPUs: as many threads as CPUs are free right now (rounded), never fewer than 1."""
    from digitlab.training import loop

    monkeypatch.setattr(loop.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(loop, "busy_cpus", lambda: load)
    monkeypatch.setattr(loop.torch, "get_num_threads", lambda: 2)
    assert loop.default_threads() == expected


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_busy_cpus_sees_a_spinning_process_now_and_forgets_it_when_it_ends():
    """The CPUs counted busy follow what runs now: a process spinning on a core adds about one (the load average
    would keep counting it for a minute after it ends)."""
    from digitlab.training.loop import busy_cpus

    idle = busy_cpus(0.3)
    if (os.cpu_count() or 1) - idle < 1.0:
        pytest.skip(f"{idle:.1f} of {os.cpu_count()} CPUs busy already: no free core for the spinner to show on")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = busy_cpus(0.3)
    finally:
        spinner.kill()
        spinner.wait()
    after = busy_cpus(0.3)
    assert busy - idle > 0.6 and busy - after > 0.6, (idle, busy, after)
