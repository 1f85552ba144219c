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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..data import augment, epoch_order, iterate_batches, load_dataset, normalize
from ..data.reject import with_reject_class
from ..device import autocast, memory_format, pick_device
from ..errors import DigitlabError
from ..models import count_params, create_model
from .checkpoint import atomic_write_text, load_state, save_model, save_state
from .config import TrainConfig, read_config_file, resolve_config
from .evaluate import EvalResult, evaluate
from .record import run_record

RESUMABLE_OVERRIDES = {"epochs", "device", "threads", "tensorboard", "early_stop", "compile", "stream", "workers"}


@dataclass
class Run:
    """What a finished training run leaves: its folder, config, per-epoch history and test scores."""

    dir: Path
    config: TrainConfig
    history: list[dict]
    test: dict | None
    best_epoch: int

    @property
    def metrics(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "history": self.history, "test": self.test}

    @property
    def test_accuracy(self) -> float | None:
        return self.test["accuracy"] if self.test else None


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
    params, wd = model.parameters(), cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _all_reduce(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(values)
    return values


def _prepare(config: TrainConfig | dict | None, resume: str | Path | None, config_file: str | None, options: dict) -> tuple[TrainConfig, Path, dict | None]:
    """Resolve the config (file < flags) and the run folder; load the resume state if asked to."""
    if resume is not None:
        run_dir = Path(resume)
        state_path = run_dir / "last.state.pt"
        if not state_path.is_file():
            raise DigitlabError(f"{run_dir}: nothing to resume (no last.state.pt); start a new run without --resume")
        try:
            saved = json.loads((run_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DigitlabError(f"{run_dir}/config.json is missing or unreadable ({e.__class__.__name__}); the run cannot be resumed") from None
        changed = {k for k, v in options.items() if v is not None and saved.get(k) != v} - RESUMABLE_OVERRIDES
        if changed:
            raise DigitlabError(f"cannot change {', '.join(sorted(changed))} when resuming; only {', '.join(sorted(RESUMABLE_OVERRIDES))} may change")
        saved.update({k: v for k, v in options.items() if v is not None and k in RESUMABLE_OVERRIDES})
        return TrainConfig(**saved).validate(), run_dir, load_state(state_path)
    merged: dict[str, Any] = {}
    if config_file:
        merged.update(read_config_file(config_file))
    if isinstance(config, TrainConfig):
        merged.update(config.to_dict())
    elif config:
        merged.update(config)
    merged.update({k: v for k, v in options.items() if v is not None})
    cfg = resolve_config(merged)
    dataset_tag = (cfg.dataset or "mnist").replace("folder:", "").replace("/", "_").strip("_.") or "data"
    run_dir = Path(cfg.out or Path("runs") / f"{cfg.model}-{dataset_tag}-{datetime.now():%Y%m%d-%H%M%S}")
    if (run_dir / "last.state.pt").exists():
        raise DigitlabError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or pass --out NEW_FOLDER")
    return cfg, run_dir, None


def train(config: TrainConfig | dict | None = None, *, resume: str | Path | None = None, config_file: str | None = None,
          verbose: bool = True, **options) -> Run:
    """Train a model and leave a complete run folder. Options are TrainConfig fields; a TOML/YAML
    `config_file` gives defaults that the options override; `resume=RUN` continues a run.

    >>> run = train(model="lenet5", dataset="mnist", epochs=3)   # doctest: +SKIP
    """
    cfg, run_dir, state = _prepare(config, resume, config_file, options)
    rank, world, local_rank = _distributed()
    say = print if verbose and rank == 0 else (lambda *a, **k: None)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=int(os.environ.get("DIGITLAB_DIST_TIMEOUT", "120"))))
    fmt = memory_format(device)
    torch.manual_seed(cfg.seed)

    data = load_dataset(cfg.dataset, root=cfg.data_root, val_split=cfg.val_split, seed=cfg.seed, image_size=cfg.image_size,
                        channels=cfg.channels, stream=cfg.stream or None, workers=cfg.workers)
    if cfg.reject:
        data = with_reject_class(data, cfg.reject, cfg.seed)
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
    shard_size = math.ceil(len(data.train) / world)
    steps_per_epoch = math.ceil(shard_size / local_batch)
    total_steps = steps_per_epoch * cfg.epochs

    start_epoch, history, best, bad_epochs, elapsed_before = 1, [], {"val_acc": -1.0, "epoch": 0}, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, history, best, bad_epochs = state["epoch"] + 1, state["history"], state["best"], state["bad_epochs"]
        elapsed_before = history[-1]["elapsed"] if history else 0.0
        say(f"resuming {run_dir} after epoch {state['epoch']}")

    step_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if cfg.compile:
        step_model = torch.compile(step_model)
    train_data, val_data = data.train.to(device), data.val.to(device)
    mean = torch.tensor(data.mean, device=device)
    std = torch.tensor(data.std, device=device)
    eval_model = ema.module if ema is not None else model
    record = run_record(cfg, data, model)
    writer = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
        if cfg.tensorboard:
            from .tensorboard import TensorBoardLogger

            writer = TensorBoardLogger(run_dir / "tensorboard", model, train_data.take(torch.arange(min(64, len(train_data)))), mean, std)
    say(f"digitlab: training {cfg.model} ({count_params(model):,} params) on {data.name} "
        f"[train {len(data.train)} / val {len(data.val)} / test {len(data.test)}, {c}x{h}x{w}] "
        f"on {device}{f' x{world} processes' if world > 1 else ''}, {torch.get_num_threads()} threads -> {run_dir}")
    for note in data.notes:
        say(f"digitlab: NOTE: {note}")

    start_time = time.perf_counter()
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            # every random draw of an epoch comes from (seed, epoch, rank): resuming needs no RNG state,
            # all ranks agree on the permutation, and each rank augments its shard differently
            epoch_seed = cfg.seed * 100_003 + epoch
            order = epoch_order(len(train_data), torch.Generator().manual_seed(epoch_seed), rank, world)
            generator = torch.Generator().manual_seed(epoch_seed * 1_000 + rank + 1)
            torch.manual_seed(epoch_seed * 1_000 + rank + 1)  # dropout
            totals = torch.zeros(2, device=device, dtype=torch.float64)  # loss sum, correct (synced only every 25 steps)
            seen = 0
            bar = tqdm(total=steps_per_epoch, desc=f"Epoch {epoch}/{cfg.epochs}", leave=False, unit="batch",
                       disable=not (verbose and rank == 0 and sys.stderr.isatty()))
            for i, (images, labels) in enumerate(iterate_batches(train_data, local_batch, order)):
                lr = lr_at(cfg, base_lr, (epoch - 1) * steps_per_epoch + i, total_steps, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)  # no-op in memory
                x = normalize(augment(images, cfg.augment, generator), mean, std).contiguous(memory_format=fmt)
                with autocast(device):
                    logits = step_model(x)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                totals += torch.stack([loss.detach().double() * labels.numel(), (logits.argmax(1) == labels).sum().double()])
                seen += labels.numel()
                if i % 25 == 0 or i == steps_per_epoch - 1:
                    running = totals[0].item() / seen
                    if not math.isfinite(running):
                        raise DigitlabError(f"the loss became {running} in epoch {epoch} (step {i}); stopped. The last good checkpoint "
                                            f"(epoch {epoch - 1}) in {run_dir} is intact. Try a lower --lr (now {base_lr:g})")
                    bar.set_postfix(loss=f"{running:.4f}", acc=f"{totals[1].item() / seen:.4f}")
                bar.update()
            bar.close()
            loss_sum, correct, seen = _all_reduce(torch.cat([totals, totals.new_tensor([seen])]), world).tolist()
            train_seconds = time.perf_counter() - epoch_start

            val = evaluate(eval_model, val_data, data.mean, data.std) if len(val_data) else None
            entry = {"epoch": epoch, "seconds": round(train_seconds, 3), "train_loss": loss_sum / seen, "train_acc": correct / seen,
                     "val_loss": val.loss if val else None, "val_acc": val.accuracy if val else None, "lr": lr}
            if cfg.track_test:  # recorded for time-to-accuracy plots only; never used to pick a model
                entry["test_acc"] = evaluate(eval_model, data.test, data.mean, data.std).accuracy
            entry["elapsed"] = round(elapsed_before + time.perf_counter() - start_time, 3)
            history.append(entry)
            improved = val is None or val.accuracy > best["val_acc"]
            if improved:
                best = {"val_acc": val.accuracy if val else -1.0, "epoch": epoch}
                bad_epochs = 0
            else:
                bad_epochs += 1
            if rank == 0:
                meta = {**record, "epoch": epoch, "metrics": entry}
                save_model(run_dir / "last.safetensors", eval_model, meta)
                if improved:
                    save_model(run_dir / "best.safetensors", eval_model, meta)
                save_state(run_dir / "last.state.pt", {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None, "history": history, "best": best, "bad_epochs": bad_epochs})
                _write_history(run_dir, history)
                if writer:
                    writer.epoch(epoch, entry, model)
            say(_epoch_line(entry, cfg.epochs))
            if cfg.early_stop and bad_epochs >= cfg.early_stop:
                say(f"early stop: validation accuracy has not improved for {cfg.early_stop} epochs (best: epoch {best['epoch']})")
                break
            if cfg.time_budget and entry["elapsed"] + entry["seconds"] > cfg.time_budget and epoch < cfg.epochs:
                say(f"time budget: {entry['elapsed']:.0f} s used of {cfg.time_budget:.0f} s; another epoch would overrun it")
                break
    except KeyboardInterrupt:
        if rank == 0:
            print(f"\ninterrupted during epoch {epoch}; checkpoints up to epoch {epoch - 1} are in {run_dir}. "
                  f"Continue with: digitlab train --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        if writer:
            writer.close()

    test_scores = None
    if rank == 0:
        from ..predict.classifier import Classifier
        from .report import write_run_outputs

        best_model = Classifier.from_checkpoint(run_dir / "best.safetensors").model.to(device, memory_format=fmt)
        result: EvalResult = evaluate(best_model, data.test, data.mean, data.std)
        test_scores = result.to_dict()
        write_run_outputs(run_dir, cfg, history, best["epoch"], result, data.test, model, data.input_shape)
        say(f"test accuracy: {100 * result.accuracy:.2f}% (loss {result.loss:.4f}), best epoch {best['epoch']}; "
            f"model: {run_dir / 'best.safetensors'}; plots and report.md in {run_dir}")
    if world > 1:
        dist.barrier()
    return Run(run_dir, cfg, history, test_scores, best["epoch"])


def _epoch_line(e: dict, epochs: int) -> str:
    parts = [f"Epoch {e['epoch']}/{epochs}", f"{e['seconds']:.1f}s", f"loss: {e['train_loss']:.4f}", f"acc: {e['train_acc']:.4f}"]
    if e["val_loss"] is not None:
        parts += [f"val_loss: {e['val_loss']:.4f}", f"val_acc: {e['val_acc']:.4f}"]
    if "test_acc" in e:
        parts.append(f"test_acc: {e['test_acc']:.4f}")
    parts.append(f"lr: {e['lr']:.2e}")
    return " - ".join(parts)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    keys = list(dict.fromkeys(k for h in history for k in h))

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)

    from .checkpoint import atomic_write

    atomic_write(run_dir / "metrics.csv", write_csv)
