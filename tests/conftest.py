"""Shared fixtures: tiny datasets written in the real on-disk formats, and the real data root."""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = os.environ.get("DIGITLAB_DATA")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write an IDX file exactly as MNIST's are laid out: 0, 0, type 0x08, ndim, big-endian dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def labelled_images(n: int, size: int = 28, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose brightness encodes their label (label k -> value 20 + 20k), so alignment can be checked."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = np.broadcast_to((20 + 20 * labels)[:, None, None], (n, size, size)).astype(np.uint8).copy()
    return images, labels


def make_idx_dataset(root: Path, folder: str = "mnist", n_train: int = 200, n_test: int = 50, compress: bool = True) -> Path:
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images, labels = labelled_images(n, seed=n)
        write_idx(d / f"{part}-images-idx3-ubyte", images, compress)
        write_idx(d / f"{part}-labels-idx1-ubyte", labels, compress)
    return d


def make_cifar(root: Path, n: int = 20) -> Path:
    d = root / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    return d


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_idx_dataset(root)
    return root


@pytest.fixture
def real_root() -> Path:
    if not REAL_DATA:
        pytest.skip("DIGITLAB_DATA is not set (the README's test command sets it to ../shared/data)")
    root = Path(REAL_DATA)
    assert (root / "mnist").is_dir(), f"DIGITLAB_DATA={root} has no mnist/ folder"
    return root


@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory) -> Path:
    """A lenet5 trained for 2 epochs on real MNIST (~98%), shared by the predict, export and browser tests."""
    if not REAL_DATA:
        pytest.skip("DIGITLAB_DATA is not set (the README's test command sets it to ../shared/data)")
    import digitlab

    out = tmp_path_factory.mktemp("runs") / "lenet5"
    digitlab.train(model="lenet5", dataset="mnist", data_root=REAL_DATA, epochs=2, out=str(out), verbose=False)
    return out


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's download cache or the network from tests."""
    monkeypatch.setenv("DIGITLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("DIGITLAB_OFFLINE", "1")


def run_process(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m digitlab ARGS` in a new process: for what only a process shows (the entry point, signals, exit)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "digitlab", *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`digitlab ARGS` in this process through `cli.main` (what the console script calls), with its stdout, stderr and
    exit code; ~0.1 s instead of the ~3 s a new interpreter spends importing torch. `env` is set for the call only."""
    from digitlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["digitlab", *args], code, out.getvalue(), err.getvalue())


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user mistake: non-zero exit, no traceback, one line on stderr that says what is wrong."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("digitlab: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
