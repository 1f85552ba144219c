"""Checkpoints: model weights as safetensors with a JSON record; resume state loadable with weights_only=True.
Every write goes to a temporary file first and is renamed into place, so a killed run never leaves half a file;
the temporary name carries the writer's PID, so the next command can tell a dead writer's debris from a live one's."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import __version__
from .errors import DigitlabError
from .models import create_model

FORMAT = "digitlab-checkpoint/1"

CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")  # what a run folder holds, in the order it is read


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# how torch.save and safetensors report a failed write: neither keeps the OSError
NO_SPACE_TEXTS = ("No space left", "file write failed", "failed writing file", "Disk quota exceeded")


def is_out_of_space(error: BaseException) -> bool:
    """True for a full disk (or quota), whichever library noticed it."""
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
        return True
    return any(text in str(error) for text in NO_SPACE_TEXTS)


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), fsync, then rename over `path` (atomic on POSIX). A full disk is a DigitlabError naming the
    folder, and the previous `path` is left as it was."""
    atomic_write_all([(path, write)])


def atomic_write_all(writes: list[tuple[Path, Callable[[str], None]]]) -> None:
    """Write every file to a temporary name and fsync it, and only then rename them all into place: a failed write
    (full disk) leaves every target as it was. Temporary files never outlive this call, whatever happens."""
    temps: list[str] = []
    try:
        for path, write in writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
            os.close(fd)
            temps.append(tmp)
            write(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give them the usual permissions
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        for (path, _), tmp in zip(writes, temps):
            os.replace(tmp, path)
    except Exception as e:
        if is_out_of_space(e):
            path = writes[len(temps) - 1][0] if temps else writes[0][0]
            raise DigitlabError(f"{path.parent}: no space left on its device (writing {path.name}); free some space") from None
        raise
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _writer_alive(pid: int) -> bool:
    """Whether the process that owns a temporary file still runs (a zombie counts as dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temps(folder: str | Path, min_age_unknown: float = 600.0) -> list[Path]:
    """Remove `.NAME.PID.xxxx.tmp` files left by a killed writer (SIGKILL, power loss) in a run folder; files of a live
    writer stay. Temporary files without a PID (older digitlab) are removed once older than `min_age_unknown` s."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        parts = p.name.split(".")
        try:
            if len(parts) >= 5 and parts[-3].isdigit():
                if _writer_alive(int(parts[-3])):
                    continue
            elif time.time() - p.stat().st_mtime < min_age_unknown:
                continue
            p.unlink()
            removed.append(p)
        except FileNotFoundError:  # its writer finished or another cleaner was first
            continue
    return removed


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start work whose output cannot fit: cheaper than a full disk after an epoch of training."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DigitlabError(f"{folder}: only {_size(free)} free on its device, and {what} need about {_size(needed)}; "
                            "free some space or choose another folder")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def verify_checkpoint(path: Path) -> None:
    """Read a checkpoint completely (record and every tensor), so a corrupt file is found before work starts."""
    read_record(path)
    try:
        load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DigitlabError(f"{path}: corrupt checkpoint ({str(e).splitlines()[0][:120]})") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def model_writer(model: torch.nn.Module, record: dict[str, Any]) -> Callable[[str], None]:
    """A writer for atomic_write: the weights as safetensors, the record in its header."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"digitlab": json.dumps({"format": FORMAT, **record})}
    return lambda tmp: save_file(tensors, tmp, metadata=metadata)


def save_model(path: Path, model: torch.nn.Module, record: dict[str, Any]) -> None:
    """Weights as safetensors; the record (architecture, classes, normalisation, input size, metrics) in its header."""
    atomic_write(path, model_writer(model, record))


def read_record(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise DigitlabError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if "digitlab" not in meta:
        raise DigitlabError(f"{path}: safetensors file without a digitlab record; was it written by digitlab train?")
    return json.loads(meta["digitlab"])


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from its record and load the weights. Accepts a checkpoint file or a run folder."""

    path = resolve_checkpoint(path)
    record = read_record(path)
    cfg = record["model"]
    model = create_model(cfg["name"], num_classes=cfg["num_classes"], in_chans=cfg["in_chans"], image_size=cfg["image_size"], **cfg["kwargs"])
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError) as e:

        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:160]  # e.g. "Missing key(s) in state_dict: ..."
        saved = record.get("digitlab_version")
        hint = (f"; it was saved by digitlab {saved} and this is {__version__}, whose '{cfg['name']}' may be built "
                f"differently: load it with digitlab {saved} or retrain") if saved and saved != __version__ else ""
        raise DigitlabError(f"{path}: weights do not fit model '{cfg['name']}' ({detail}){hint}") from None
    model.eval()
    return model, record


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its best checkpoint; a file is taken as it is."""
    p = Path(path)
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                return p / name
        raise DigitlabError(f"{p}: no best.safetensors or last.safetensors in this folder; is it a digitlab run folder?")
    if not p.is_file():
        raise DigitlabError(f"{p}: no such checkpoint file or run folder")
    return p


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of all kinds mean a bad or foreign file
        raise DigitlabError(f"{path}: cannot read the resume state ({e.__class__.__name__}); the run cannot be resumed") from None


def run_test_accuracy(path: str | Path) -> float | None:
    """The test accuracy a run folder's metrics.json records, for a run folder or a checkpoint inside one; None when
    there is none (a lone checkpoint, an ONNX file elsewhere, a run that did not finish)."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    try:
        return float(json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
