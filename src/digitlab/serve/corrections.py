"""Corrections: drawings the user labelled on the page, kept as a folder dataset to fine-tune on ("teach it").

`digitlab serve --corrections DIR` saves each correction as DIR/<label>/<time>-<id>.png, the 28x28 image the model
saw (white ink on black, 8-bit grey: what `data/folder.py` reads and MNIST looks like), and the larger drawing as
DIR/.large/<label>/<same name>.png, in a hidden folder the folder loader skips. `digitlab train --init-from MODEL
--dataset folder:DIR` then learns from them. Both files are written to temporary names and renamed into place
together; the folder is capped in files and bytes, so a busy page cannot fill the disk.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..runs import atomic_write_all

LARGE = ".large"  # hidden: the folder loader reads only visible class sub-folders
DEFAULT_CAP = 10_000  # corrections (each one 28x28 PNG and one larger PNG)
DEFAULT_CAP_BYTES = 1 << 30
MAX_LARGE_BYTES = 2 << 20  # one larger drawing's PNG, decoded from base64
MAX_LARGE_SIDE = 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESERVED = {"train", "test", "val", "validation", "valid"}  # names that would turn DIR into a train/test layout


class CorrectionRefused(Exception):
    """A correction not saved: the HTTP status and one line saying why (nothing was written)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _label(value: Any, classes: list[str]) -> str:
    """The class folder for a label: a digit 0-9 or a class name of the model, and a safe folder name."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        value = str(value)
    if not isinstance(value, str) or value not in classes:
        raise CorrectionRefused(422, f"label must be a digit 0-9 or one of the model's classes ({', '.join(classes[:12])}); "
                                     f"got {value!r}"[:300])
    if value.startswith(".") or "/" in value or "\\" in value or "\0" in value or value.lower() in RESERVED:
        raise CorrectionRefused(422, f"the class name {value!r} cannot be a folder name, so it cannot be saved as a correction")
    return value


def _pixels(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """The model-sized drawing, floats 0..1 with ink = 1 -> 8-bit grey with ink = 255 (MNIST's polarity)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise CorrectionRefused(422, f"pixels must be {shape[0]}x{shape[1]} rows of numbers 0..1") from None
    if a.shape != shape:
        raise CorrectionRefused(422, f"pixels must be {shape[0]}x{shape[1]} rows of numbers 0..1, got shape {list(a.shape)}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise CorrectionRefused(422, "pixels must be finite numbers from 0 (paper) to 1 (ink)")
    return (a * 255).round().astype(np.uint8)


def _large_png(value: Any) -> bytes | None:
    """The larger drawing: base64 of a real PNG (its header and pixels checked), within the size limits."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4 * math.ceil(MAX_LARGE_BYTES / 3) + 64:
        raise CorrectionRefused(422, f"png must be a base64 string of a PNG of at most {MAX_LARGE_BYTES:,} bytes")
    try:
        data = base64.b64decode(value.removeprefix("data:image/png;base64,"), validate=True)
    except (binascii.Error, ValueError):
        raise CorrectionRefused(400, "png is not valid base64") from None
    if not data.startswith(PNG_SIGNATURE):
        raise CorrectionRefused(400, "png does not hold a PNG image (wrong signature)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if max(im.size) > MAX_LARGE_SIDE:
                raise CorrectionRefused(422, f"png is {im.size[0]}x{im.size[1]}; at most {MAX_LARGE_SIDE} px a side")
            im.load()
    except CorrectionRefused:
        raise
    except Exception as e:  # PIL raises many types for broken files
        raise CorrectionRefused(400, f"png is not a readable PNG ({e.__class__.__name__})") from None
    return data


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, "PNG")
    return buf.getvalue()


@dataclass
class CorrectionsStore:
    """A folder of labelled drawings with a cap; safe to share between requests (one lock per process)."""

    root: Path
    cap: int = DEFAULT_CAP
    cap_bytes: int = DEFAULT_CAP_BYTES
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def usage(self) -> tuple[int, int]:
        """(corrections, bytes of every file) in the folder now; read from disk, so other processes count too."""
        if not self.root.is_dir():
            return 0, 0
        count, size = 0, 0
        for path in self.root.rglob("*.png"):
            try:
                size += path.stat().st_size
            except FileNotFoundError:  # moved away while we looked
                continue
            count += LARGE not in path.relative_to(self.root).parts
        return count, size

    def save(self, payload: Any, classes: list[str], shape: tuple[int, int]) -> dict[str, Any]:
        """Check a correction {"label", "pixels", "png"} completely, then write both files; CorrectionRefused if not."""
        if not isinstance(payload, dict):
            raise CorrectionRefused(422, 'send JSON {"label": 3, "pixels": [[...28 rows...]], "png": "<base64>"}')
        label = _label(payload.get("label"), classes)
        small = _png(_pixels(payload.get("pixels"), shape))
        large = _large_png(payload.get("png"))
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.png"
        writes = [(self.root / label / name, small)] + ([(self.root / LARGE / label / name, large)] if large else [])
        with self.lock:
            count, size = self.usage()
            added = sum(len(data) for _, data in writes)
            if count >= self.cap or size + added > self.cap_bytes:
                raise CorrectionRefused(507, f"the corrections folder {self.root} is full ({count:,} corrections, "
                                             f"{size / 2**20:.1f} MB; cap {self.cap:,} corrections, {self.cap_bytes / 2**20:.0f} MB): "
                                             "train on them and move them away, or raise --corrections-cap")
            atomic_write_all([(path, lambda tmp, data=data: Path(tmp).write_bytes(data)) for path, data in writes])
        return {"saved": f"{label}/{name}", "count": count + 1}
