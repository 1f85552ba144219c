"""Weights that ship inside the package, so a fresh install reads handwriting with no training step.

`reader.safetensors` is `digitlab train --recipe reader` on MNIST (fastcnn, 11 classes: the digits and
`not-digit`, the wrong cuts a number reader must refuse). Its record carries the exact command, the digitlab version
that trained it and the MD5 of each MNIST file it read; to make it again:

    digitlab train --recipe reader --out runs/reader
    cp runs/reader/best.safetensors src/digitlab/weights/reader.safetensors
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DigitlabError

WEIGHTS = Path(__file__).resolve().parent
READER = WEIGHTS / "reader.safetensors"


def reader_path() -> Path:
    """The shipped reader's checkpoint; a clear error if the install lost it."""
    if not READER.is_file():
        raise DigitlabError(f"the shipped reader model is missing ({READER}); reinstall digitlab, or pass a run folder "
                            "trained with `digitlab train`")
    return READER
