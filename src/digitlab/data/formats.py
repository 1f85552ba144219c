"""Readers for the on-disk formats, with checks that name the bad file in one line."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DigitlabError


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DigitlabError(f"{path}: cannot read ({e.__class__.__name__}: {e}); the file is corrupt or truncated, delete it and download again") from None


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path: Path, expected: str | None, got: str | None = None) -> None:
    """The file's MD5 (`got`, when already computed) must be the published one."""
    if expected and (got := got or md5(path)) != expected:
        raise DigitlabError(f"{path}: checksum mismatch (md5 {got}, expected {expected}); the file is corrupt, delete it and download again")


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Read an IDX file (MNIST's format: big-endian header, then uint8 data), checking every field."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DigitlabError(f"{path}: truncated IDX file ({len(data)} bytes)")
    zero, dtype_code, got_ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype_code != 0x08 or got_ndim != ndim:
        magic = int.from_bytes(data[:4], "big")
        raise DigitlabError(f"{path}: wrong magic number {magic} (expected {0x800 + ndim}); not an IDX {'image' if ndim == 3 else 'label'} file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DigitlabError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DigitlabError(f"{path}: {what}: header says {dims} ({expected} bytes) but the file has {len(data)} bytes")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).reshape(dims)


def read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR-10 python batch (a pickled dict of a (N, 3072) uint8 array and labels)."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
    except Exception as e:  # any unpickling failure means a bad file
        raise DigitlabError(f"{path}: not a CIFAR-10 batch ({e.__class__.__name__}: {e}); delete it and download again") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DigitlabError(f"{path}: wrong shapes {data.shape} / {labels.shape}; expected (N, 3072) images and N labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DigitlabError(f"{path}: labels outside 0..9")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)
