"""DistributedDataParallel through torchrun: gloo on CPU, two processes on this machine."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import digitlab

pytestmark = pytest.mark.slow  # every test here starts torchrun processes


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _torchrun(args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "digitlab", "train", *args]


def test_two_processes_match_one_on_real_mnist(real_root, tmp_path):
    common = ["--model", "lenet5", "--dataset", "mnist", "--data-root", str(real_root), "--epochs", "1", "--batch-size", "128", "--seed", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(_torchrun([*common, "--out", str(tmp_path / "ddp")]), capture_output=True, text=True, env=env, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("Epoch 1/1") == 1  # only rank 0 prints
    single = digitlab.train(model="lenet5", dataset="mnist", data_root=str(real_root), epochs=1, batch_size=128, seed=0,
                            out=str(tmp_path / "one"), verbose=False)
    ddp_acc = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["test"]["accuracy"]
    assert abs(ddp_acc - single.test_accuracy) <= 0.003, (ddp_acc, single.test_accuracy)
    # a DDP checkpoint loads in a single process (no 'module.' prefixes) and resumes there
    clf = digitlab.load(tmp_path / "ddp")
    assert clf.evaluate("mnist", root=str(real_root)).accuracy == pytest.approx(ddp_acc)
    resumed = digitlab.train(resume=tmp_path / "ddp", epochs=2, verbose=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_a_crashed_rank_stops_the_job(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIGITLAB_OFFLINE": "1", "DIGITLAB_DIST_TIMEOUT": "30"}
    args = ["--model", "lenet5", "--dataset", "mnist-sample", "--epochs", "50", "--batch-size", "16", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(_torchrun(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    history = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not history.exists():
        time.sleep(0.1)
    workers = [pid for agent in [proc.pid] for pid in _children(agent)]
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    start = time.time()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert time.time() - start < 120, "the job should stop, not hang"
    assert "failed" in err.lower() or "error" in err.lower()
    assert torch.load(tmp_path / "r" / "last.state.pt", weights_only=True)["epoch"] >= 1  # finished epochs are kept


def test_single_process_run_resumes_under_torchrun(tmp_path):
    out = tmp_path / "run"
    digitlab.train(model="lenet5", dataset="mnist-sample", epochs=1, threads=1, out=str(out), verbose=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIGITLAB_OFFLINE": "1"}
    r = subprocess.run(_torchrun(["--resume", str(out), "--epochs", "2"]), capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout and r.stdout.count("Epoch 2/2") == 1
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
