"""The training loop: one function you can read top to bottom (nanoGPT style).

Data lives on the device as one uint8 tensor; each step indexes a batch, augments and normalises
it as a whole, and takes an optimizer step. The LR is a pure function of the step and the random
draws a pure function of (seed, epoch, rank), so resuming needs neither a scheduler object nor RNG
state; every epoch ends with an atomic checkpoint that resumes exactly.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..data import augment, epoch_order, iterate_batches, normalize
from ..device import autocast, memory_format, pick_device
from ..errors import DigitlabError
from ..models import count_params, create_model
from ..runs import (atomic_write_all, atomic_write_text, check_free_space, clean_stale_temps, load_model, load_state, model_writer,
                         verify_checkpoint)
from .config import TrainConfig, check_options, read_config_file, resolve_config
from .finetune import fine_tune_options, load_source_weights, replay_count, source_record, source_summary, training_data
from ..evaluation import EvalResult, evaluate
from .report import write_run_outputs
from .ensemble import holds_ensemble, train_ensemble
from .record import Run, run_record

RESUMABLE_OVERRIDES = {"epochs", "device", "threads", "tensorboard", "early_stop", "compile", "stream", "workers"}


def lr_at(cfg: TrainConfig, base_lr: float, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate for a global step: a pure function, so a resumed run picks up the same curve."""
    progress = step / max(1, total_steps)
    if cfg.schedule == "step":
        return base_lr * cfg.gamma ** (step // steps_per_epoch)
    if cfg.schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "onecycle":  # linear warm-up over 20% of the run, then linear decay to zero
        warm = 0.2
        return base_lr * (0.04 + 0.96 * progress / warm if progress < warm else (1 - progress) / (1 - warm))
    return base_lr


def ema_with_warmup(decay: float):
    """An EMA update for AveragedModel whose decay ramps up as (1 + n) / (10 + n) over the first updates, so the
    average follows the fast-moving early weights instead of dragging the random init along (after one epoch of
    422 steps a fixed 0.995 still holds 12% of the init)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm's batch counter) follow the model
            torch._foreach_copy_(averaged, current)
    return update


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """The optimizer with two parameter groups: weight decay on weight matrices and conv kernels only, none on
    biases and norm scales/shifts (as nanoGPT, timm and torchvision's references do: decaying a BatchNorm scale only
    fights the next layer's weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr)
    return torch.optim.Adadelta(groups, lr=lr)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _all_reduce(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(values)
    return values


def _prepare(config: TrainConfig | dict | None, resume: str | Path | None, config_file: str | None, options: dict) -> tuple[TrainConfig, Path, dict | None]:
    """Resolve the config (file < flags) and the run folder; load the resume state if asked to. Everything that can
    be checked before training (paths, options, checkpoints) is checked here, so a mistake costs no epoch."""
    if resume is not None:
        return _prepare_resume(Path(resume), options)
    merged: dict[str, Any] = {}
    if config_file:
        merged.update(read_config_file(config_file))
    if isinstance(config, TrainConfig):
        merged.update(config.to_dict())
    elif config:
        merged.update(config)
    merged.update({k: v for k, v in options.items() if v is not None})
    if merged.get("init_from"):
        merged = fine_tune_options(merged)
    elif merged.get("replay") is not None:
        raise DigitlabError("--replay mixes source images into a fine-tune; it needs --init-from RUN")
    cfg = resolve_config(merged)
    if cfg.ensemble > 1 and (cfg.init_from or _distributed()[1] > 1):
        raise DigitlabError("--ensemble trains its members from scratch one after another; use it without --init-from and --nproc")
    dataset_tag = (cfg.dataset or "mnist").replace("folder:", "").replace("/", "_").strip("_.") or "data"
    run_dir = Path(cfg.out or Path("runs") / f"{cfg.model}-{dataset_tag}-{datetime.now():%Y%m%d-%H%M%S}")
    check_output_folder(run_dir, "--out")
    if (run_dir / "last.state.pt").exists() or holds_ensemble(run_dir):
        raise DigitlabError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pass --out NEW_FOLDER")
    clean_stale_temps(run_dir)
    return cfg, run_dir, None


def _prepare_resume(run_dir: Path, options: dict) -> tuple[TrainConfig, Path, dict]:
    """The saved config with the allowed overrides, and the resume state; both checkpoints are read in full first."""
    state_path = run_dir / "last.state.pt"
    if not state_path.is_file() and not holds_ensemble(run_dir):
        raise DigitlabError(f"{run_dir}: nothing to resume (no last.state.pt); start a new run without --resume")
    clean_stale_temps(run_dir)
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DigitlabError(f"{run_dir}/config.json is missing or unreadable ({e.__class__.__name__}); the run cannot be resumed") from None
    if not isinstance(saved, dict):
        raise DigitlabError(f"{run_dir}/config.json does not hold a table of options; the run cannot be resumed")
    saved = check_options(saved, where=str(run_dir / "config.json"))
    options = check_options({k: v for k, v in options.items() if v is not None})
    changed = {k for k, v in options.items() if saved.get(k) != v} - RESUMABLE_OVERRIDES
    if changed:
        raise DigitlabError(f"cannot change {', '.join(sorted(changed))} when resuming; only {', '.join(sorted(RESUMABLE_OVERRIDES))} may change")
    saved.update({k: v for k, v in options.items() if k in RESUMABLE_OVERRIDES})
    if saved.get("ensemble", 1) > 1:  # its members resume themselves (training/ensemble.py)
        return TrainConfig(**saved).validate(), run_dir, None
    state = load_state(state_path)
    for name in ("last.safetensors", "best.safetensors"):
        if not (run_dir / name).is_file():
            raise DigitlabError(f"{run_dir / name} is missing; the run cannot be resumed (start a new run)")
        try:
            verify_checkpoint(run_dir / name)
        except DigitlabError as e:
            raise DigitlabError(f"{e}; the run cannot be resumed (restore the file or start a new run)") from None
    return TrainConfig(**saved).validate(), run_dir, state


def check_output_folder(folder: Path, what: str) -> None:
    """A folder we are about to create or write into: not an existing file, under a writable folder. Checked before any
    work starts, so a typo costs nothing."""
    if folder.exists() and not folder.is_dir():
        raise DigitlabError(f"{what} {folder} is an existing file, not a folder; choose a folder name")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DigitlabError(f"{what} {folder}: {parent} is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DigitlabError(f"{what} {folder}: no permission to write in {parent}")


def _cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine's CPUs since boot, from Linux's /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def busy_cpus(interval: float = 0.1) -> float:
    """CPUs that other processes keep busy right now: the machine's idle time over `interval` seconds (Linux). The
    1-minute load average, used where /proc/stat is missing, still counts a run that ended a minute ago, which gave
    the second of two back-to-back runs one thread instead of two."""
    try:
        all0, idle0 = _cpu_times()
        time.sleep(interval)
        all1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if all1 <= all0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (all1 - all0))


def default_threads() -> int:
    """CPU threads for a run that did not ask for a number: the CPUs this process may use that other processes are not
    keeping busy, at least 1. More threads than free CPUs makes every small parallel op (the batch augmentation's
    grid_sample, an mlp's matmuls) wait at OpenMP barriers for a descheduled thread: measured on 2 shared cores at
    load ~4, an mlp step with light augmentation ran 2-3 steps/s on 2 threads, 115 on 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, torch.get_num_threads(), int(cpus - busy_cpus() + 0.5)))


@contextmanager
def scoped_globals(threads: int):
    """Set torch's thread count for the run and give the caller back its thread count and RNG states afterwards:
    train() seeds the global RNG (dropout draws from it), which must not leak into the caller's program."""
    saved_threads = torch.get_num_threads()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.set_num_threads(threads or default_threads())
        try:
            yield
        finally:
            torch.set_num_threads(saved_threads)


@dataclass
class _Session:
    """Everything one training run holds between its phases (set-up, restore, epochs, finish)."""

    cfg: TrainConfig
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    fmt: torch.memory_format
    data: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: Any
    base_lr: float
    local_batch: int
    steps_per_epoch: int
    say: Any
    verbose: bool
    start_epoch: int = 1
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "epoch": 0})
    bad_epochs: int = 0
    elapsed_before: float = 0.0
    step_model: Any = None
    train_data: Any = None
    val_data: Any = None
    mean: Any = None
    std: Any = None
    record: dict = field(default_factory=dict)
    writer: Any = None
    source: dict | None = None  # a fine-tune's source record (--init-from)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model


def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None, config_file: str | None = None,
          verbose: bool = True, **options) -> Run:
    """Train a model and leave a complete run folder. Options are TrainConfig fields; a TOML/YAML
    `config_file` gives defaults that the options override; `resume=RUN` continues a run. Torch's thread count
    and global RNG are as they were when this returns.

    >>> run = train(model="lenet5", dataset="mnist", epochs=3)   # doctest: +SKIP
    """
    cfg, run_dir, state = _prepare(config, resume, config_file, options)
    if cfg.ensemble > 1:
        with scoped_globals(cfg.threads):
            return train_ensemble(cfg, run_dir, verbose, train_member=train)
    with scoped_globals(cfg.threads):
        s = _set_up(cfg, run_dir, verbose)
        if state is not None:
            _restore(s, state)
        elif cfg.init_from:
            _start_from_source(s)
        _open_run_folder(s)
        try:
            _run_epochs(s)
        finally:
            if s.writer:
                s.writer.close()
        return _finish(s)


def _set_up(cfg: TrainConfig, run_dir: Path, verbose: bool) -> _Session:
    """Device, process group, data, model, optimizer and EMA; nothing is written yet."""
    rank, world, local_rank = _distributed()
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=int(os.environ.get("DIGITLAB_DIST_TIMEOUT", "120"))))
    fmt = memory_format(device)
    torch.manual_seed(cfg.seed)

    source = source_record(cfg.init_from) if cfg.init_from else None
    data = training_data(cfg, source)
    c, h, w = data.input_shape
    if h != w:
        raise DigitlabError(f"images are {h}x{w}; digitlab models take square images, pass --image-size")
    model = create_model(cfg.model, num_classes=len(data.classes), in_chans=c, image_size=h, **cfg.model_args).to(device, memory_format=fmt)
    base_lr = cfg.lr or 1e-3
    optimizer = make_optimizer(cfg, model, base_lr)
    ema = None
    if cfg.ema:
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(cfg.ema), use_buffers=True)
    if cfg.batch_size % world:
        raise DigitlabError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes ({world})")
    local_batch = cfg.batch_size // world
    steps_per_epoch = math.ceil(math.ceil(len(data.train) / world) / local_batch)
    say = print if verbose and rank == 0 else (lambda *a, **k: None)
    return _Session(cfg, run_dir, rank, world, device, fmt, data, model, optimizer, ema, base_lr, local_batch, steps_per_epoch,
                    say, verbose, source=source)


def _restore(s: _Session, state: dict) -> None:
    """Model, optimizer, EMA, history and early-stop state from last.state.pt."""
    s.model.load_state_dict(state["model"])
    try:
        s.optimizer.load_state_dict(state["optimizer"])
    except ValueError:  # parameter groups changed (digitlab 0.3 kept one group): the moments cannot be matched up
        raise DigitlabError(f"{s.run_dir}: its optimizer state was written by an older digitlab and cannot be resumed; "
                            "start a new run (its best.safetensors still loads for predict and evaluate)") from None
    if s.ema is not None:
        s.ema.load_state_dict(state["ema"])
    s.start_epoch, s.history, s.best, s.bad_epochs = state["epoch"] + 1, state["history"], state["best"], state["bad_epochs"]
    s.elapsed_before = s.history[-1]["elapsed"] if s.history else 0.0
    if s.rank == 0:  # a kill between the checkpoint's rename and the metrics' left them an epoch apart: the state wins
        atomic_write_all(_history_writes(s.run_dir, s.history))
    s.say(f"resuming {s.run_dir} after epoch {state['epoch']}")


def _start_from_source(s: _Session) -> None:
    """A fine-tune's first step, in place of a resume: the source's weights instead of the random init (the
    optimizer starts fresh; the EMA, if any, starts from the same weights)."""
    path = load_source_weights(s.model, s.cfg.init_from)
    if s.ema is not None:
        s.ema.module.load_state_dict(s.model.state_dict())
    s.say(f"fine-tuning from {path}")


def checkpoint_bytes(s: _Session) -> int:
    """Disk a run needs beyond what its folder already holds: two weight files and the resume state (model, up to two
    optimizer moments, EMA), once as the files and once as their temporary copies during an epoch's save, and 256 KB
    for metrics and reports."""
    weights = sum(t.numel() * t.element_size() for t in s.model.state_dict().values())
    files = 2 * weights + weights * (3 + (1 if s.ema is not None else 0))
    existing = sum((s.run_dir / n).stat().st_size for n in ("last.safetensors", "best.safetensors", "last.state.pt")
                   if (s.run_dir / n).is_file())
    return max(0, files - existing) + files + 256 * 1024


def _open_run_folder(s: _Session) -> None:
    """Move data to the device, create the folder (rank 0), check its free space, write config.json, say what runs."""
    cfg, data = s.cfg, s.data
    c, h, w = data.input_shape
    s.step_model = torch.nn.parallel.DistributedDataParallel(s.model) if s.world > 1 else s.model
    if cfg.compile:
        s.step_model = torch.compile(s.step_model)
    s.train_data, s.val_data = data.train.to(s.device), data.val.to(s.device)
    s.mean = torch.tensor(data.mean, device=s.device)
    s.std = torch.tensor(data.std, device=s.device)
    s.record = run_record(cfg, data, s.model)
    if s.source:
        s.record.update(preprocess=s.source.get("preprocess"), **source_summary(cfg.init_from, s.source, replay_count(cfg.replay)))
    if s.rank == 0:
        s.run_dir.mkdir(parents=True, exist_ok=True)
        check_free_space(s.run_dir, checkpoint_bytes(s), f"the checkpoints of a {cfg.model} run")
        atomic_write_text(s.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
        if cfg.tensorboard:
            from .tensorboard import TensorBoardLogger

            s.writer = TensorBoardLogger(s.run_dir / "tensorboard", s.model, s.train_data.take(torch.arange(min(64, len(s.train_data)))),
                                         s.mean, s.std)
    s.say(f"digitlab: training {cfg.model} ({count_params(s.model):,} params) on {data.name} "
          f"[train {len(data.train)} / val {len(data.val)} / test {len(data.test)}, {c}x{h}x{w}] "
          f"on {s.device}{f' x{s.world} processes' if s.world > 1 else ''}, {torch.get_num_threads()} threads -> {s.run_dir}")
    for note in data.notes:
        s.say(f"digitlab: NOTE: {note}")


def _run_epochs(s: _Session) -> None:
    """The epoch loop: train, evaluate, checkpoint, then the early-stop and time-budget checks."""
    cfg = s.cfg
    start_time = time.perf_counter()
    epoch = s.start_epoch - 1
    try:
        for epoch in range(s.start_epoch, cfg.epochs + 1):
            entry = train_one_epoch(s, epoch)
            entry.update(_validate_epoch(s))
            entry["elapsed"] = round(s.elapsed_before + time.perf_counter() - start_time, 3)
            if not end_epoch(s, entry):
                break
    except KeyboardInterrupt:
        if s.rank == 0:
            print(f"\ninterrupted during epoch {epoch}; {_what_is_kept(s)}. "
                  f"Continue with: digitlab train --resume {s.run_dir}", file=sys.stderr)
        raise


def _what_is_kept(s: _Session) -> str:
    """What the run folder holds now, said plainly (a run stopped in epoch 1 has no checkpoint to fall back on)."""
    if s.history and (s.run_dir / "last.state.pt").is_file():
        return f"the last good checkpoint (epoch {s.history[-1]['epoch']}) in {s.run_dir} is intact"
    held = sorted(p.name for p in s.run_dir.iterdir() if not p.name.startswith(".")) if s.run_dir.is_dir() else []
    return f"no checkpoint was saved yet ({s.run_dir} holds only {', '.join(held) or 'nothing'})"


def train_one_epoch(s: _Session, epoch: int) -> dict:
    """One pass over this rank's shard; returns the epoch's train loss, accuracy, seconds and its last step's LR."""
    cfg, device = s.cfg, s.device
    epoch_start = time.perf_counter()
    s.model.train()
    # every random draw of an epoch comes from (seed, epoch, rank): resuming needs no RNG state,
    # all ranks agree on the permutation, and each rank augments its shard differently
    epoch_seed = cfg.seed * 100_003 + epoch
    order = epoch_order(len(s.train_data), torch.Generator().manual_seed(epoch_seed), s.rank, s.world)
    generator = torch.Generator().manual_seed(epoch_seed * 1_000 + s.rank + 1)
    torch.manual_seed(epoch_seed * 1_000 + s.rank + 1)  # dropout
    totals = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, correct (synced only every 25 steps)
    seen, lr = 0, s.base_lr
    bar = tqdm(total=s.steps_per_epoch, desc=f"Epoch {epoch}/{cfg.epochs}", leave=False, unit="batch",
               disable=not (s.verbose and s.rank == 0 and sys.stderr.isatty()))
    for i, (images, labels) in enumerate(iterate_batches(s.train_data, s.local_batch, order)):
        lr = lr_at(cfg, s.base_lr, (epoch - 1) * s.steps_per_epoch + i, s.total_steps, s.steps_per_epoch)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)  # no-op in memory
        x = normalize(augment(images, cfg.augment, generator), s.mean, s.std).contiguous(memory_format=s.fmt)
        with autocast(device, cfg.precision, training=True):
            logits = s.step_model(x)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        if s.ema is not None:
            s.ema.update_parameters(s.model)
        totals += torch.stack([loss.detach().double() * labels.numel(), (logits.argmax(1) == labels).sum().double()])
        seen += labels.numel()
        if i % 25 == 0 or i == s.steps_per_epoch - 1:
            running = totals[0].item() / seen
            if not math.isfinite(running):
                raise DigitlabError(f"the loss became {running} in epoch {epoch} (step {i}); stopped. {_what_is_kept(s).capitalize()}. "
                                    f"Try a lower --lr (now {s.base_lr:g})")
            bar.set_postfix(loss=f"{running:.4f}", acc=f"{totals[1].item() / seen:.4f}")
        bar.update()
    bar.close()
    loss_sum, correct, seen = _all_reduce(torch.cat([totals, totals.new_tensor([seen])]), s.world).tolist()
    return {"epoch": epoch, "seconds": round(time.perf_counter() - epoch_start, 3), "train_loss": loss_sum / seen,
            "train_acc": correct / seen, "lr": lr}


def _validate_epoch(s: _Session) -> dict:
    val = evaluate(s.eval_model, s.val_data, s.data.mean, s.data.std) if len(s.val_data) else None
    entry = {"val_loss": val.loss if val else None, "val_acc": val.accuracy if val else None}
    if s.cfg.track_test:  # recorded for time-to-accuracy plots only; never used to pick a model
        entry["test_acc"] = evaluate(s.eval_model, s.data.test, s.data.mean, s.data.std).accuracy
    return entry


def end_epoch(s: _Session, entry: dict) -> bool:
    """Record the epoch, checkpoint it (rank 0), print its line; False when early stopping or the time budget ends the run."""
    cfg, epoch = s.cfg, entry["epoch"]
    entry = {k: entry[k] for k in ("epoch", "seconds", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "test_acc", "elapsed")
             if k in entry}
    improved = entry["val_acc"] is None or entry["val_acc"] > s.best["val_acc"]
    previous = (list(s.history), dict(s.best), s.bad_epochs)
    s.history.append(entry)
    if improved:
        s.best, s.bad_epochs = {"val_acc": entry["val_acc"] if entry["val_acc"] is not None else -1.0, "epoch": epoch}, 0
    else:
        s.bad_epochs += 1
    if s.rank == 0:
        try:
            _save_epoch(s, entry, improved)
        except DigitlabError as e:
            s.history, s.best, s.bad_epochs = previous
            raise DigitlabError(f"{e}. Stopped after epoch {epoch}: {_what_is_kept(s)}; "
                                f"continue with: digitlab train --resume {s.run_dir}") from None
        if s.writer:
            s.writer.epoch(epoch, entry, s.model)
    s.say(_epoch_line(entry, cfg.epochs))
    if cfg.early_stop and s.bad_epochs >= cfg.early_stop:
        s.say(f"early stop: validation accuracy has not improved for {cfg.early_stop} epochs (best: epoch {s.best['epoch']})")
        return False
    if cfg.time_budget and entry["elapsed"] + entry["seconds"] > cfg.time_budget and epoch < cfg.epochs:
        s.say(f"time budget: {entry['elapsed']:.0f} s used of {cfg.time_budget:.0f} s; another epoch would overrun it")
        return False
    return True


def _save_epoch(s: _Session, entry: dict, improved: bool) -> None:
    """last, best (if improved), the resume state and the history, all written before any is renamed into place: a
    failed write (full disk) leaves the whole previous epoch as it was, and a kill between renames resumes cleanly."""
    meta = {**s.record, "epoch": entry["epoch"], "metrics": entry}
    writes = [(s.run_dir / "last.safetensors", model_writer(s.eval_model, meta))]
    if improved:
        writes.append((s.run_dir / "best.safetensors", model_writer(s.eval_model, meta)))
    state = {"epoch": entry["epoch"], "model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
             "ema": s.ema.state_dict() if s.ema is not None else None, "history": s.history, "best": s.best, "bad_epochs": s.bad_epochs}
    writes.append((s.run_dir / "last.state.pt", lambda tmp: torch.save(state, tmp)))
    atomic_write_all(writes + _history_writes(s.run_dir, s.history))


def _finish(s: _Session) -> Run:
    """Score the best checkpoint on the test set once and write the reports (rank 0)."""
    test_scores = None
    if s.rank == 0:
        best_model = load_model(s.run_dir / "best.safetensors")[0].to(s.device, memory_format=s.fmt).eval()
        result: EvalResult = evaluate(best_model, s.data.test, s.data.mean, s.data.std)
        test_scores = result.to_dict()
        write_run_outputs(s.run_dir, s.cfg, s.history, s.best["epoch"], result, s.data.test, s.model, s.data.input_shape)
        s.say(f"test accuracy: {100 * result.accuracy:.2f}% (loss {result.loss:.4f}), best epoch {s.best['epoch']}; "
              f"model: {s.run_dir / 'best.safetensors'}; plots and report.md in {s.run_dir}")
    if s.world > 1:
        dist.barrier()
    return Run(s.run_dir, s.cfg, s.history, test_scores, s.best["epoch"])


def _epoch_line(e: dict, epochs: int) -> str:
    parts = [f"Epoch {e['epoch']}/{epochs}", f"{e['seconds']:.1f}s", f"loss: {e['train_loss']:.4f}", f"acc: {e['train_acc']:.4f}"]
    if e["val_loss"] is not None:
        parts += [f"val_loss: {e['val_loss']:.4f}", f"val_acc: {e['val_acc']:.4f}"]
    if "test_acc" in e:
        parts.append(f"test_acc: {e['test_acc']:.4f}")
    parts.append(f"lr: {e['lr']:.2e}")
    return " - ".join(parts)


def _history_writes(run_dir: Path, history: list[dict]) -> list[tuple[Path, Callable[[str], None]]]:
    """metrics.jsonl and metrics.csv as (path, writer) pairs for atomic_write_all."""
    keys = list(dict.fromkeys(k for h in history for k in h))
    jsonl = "".join(json.dumps(h) + "\n" for h in history)

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)

    return [(run_dir / "metrics.jsonl", lambda tmp: Path(tmp).write_text(jsonl)), (run_dir / "metrics.csv", write_csv)]
