"""`train --ensemble N`: N complete runs of one recipe, saved together as one servable model (models/ensemble.py).

The members share the ensemble's train/validation split and differ in their seed (initial weights, batch order,
augmentation draws), so the ensemble's validation score is honest: no member trained on a validation image. Each
member is an ordinary run folder, RUN/member-I: a killed ensemble resumes inside the member it was training, and the
finished members are kept. The combined model is scored on the test set once, like any run's best checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from ..device import memory_format, pick_device
from ..errors import DigitlabError
from ..evaluation import evaluate
from ..models import count_params, create_model
from ..runs import atomic_write_text, load_model, save_model
from .config import TrainConfig
from .finetune import training_data
from .record import Run, run_record
from .report import write_ensemble_report


def member_folder(run_dir: Path, index: int) -> Path:
    return run_dir / f"member-{index}"


def holds_ensemble(run_dir: Path) -> bool:
    """Has an ensemble run started in this folder (its first member's folder exists)?"""
    return member_folder(run_dir, 0).is_dir()


def member_config(cfg: TrainConfig, index: int, run_dir: Path) -> TrainConfig:
    """Member `index`: the ensemble's options and validation split, seed `seed * N + index` (so members of the
    ensembles of seeds 0, 1, 2 ... never share a seed), its own folder."""
    seed = cfg.seed * cfg.ensemble + index
    if seed >= 2**31:
        raise DigitlabError(f"--seed {cfg.seed} is too large for an ensemble of {cfg.ensemble}; use a seed below {2**31 // cfg.ensemble}")
    return dataclasses.replace(cfg, ensemble=1, seed=seed, split_seed=cfg.data_seed, out=str(member_folder(run_dir, index)))


def train_ensemble(cfg: TrainConfig, run_dir: Path, verbose: bool, train_member: Callable[..., Run]) -> Run:
    """Train (or resume, or keep) every member with `train_member` (loop.train), then combine, score and save."""
    say = print if verbose else (lambda *a, **k: None)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    for index in range(cfg.ensemble):
        member = member_config(cfg, index, run_dir)
        folder = Path(member.out)
        say(f"digitlab: ensemble member {index + 1} of {cfg.ensemble} (seed {member.seed}) -> {folder}")
        if (folder / "metrics.json").is_file():
            say(f"digitlab: {folder} is already trained; kept as it is")
        elif (folder / "last.state.pt").is_file():
            train_member(resume=folder, verbose=verbose, threads=member.threads, device=member.device)
        else:
            train_member(member, verbose=verbose)
    return _combine(cfg, run_dir, say)


def _combine(cfg: TrainConfig, run_dir: Path, say) -> Run:
    """The members' best checkpoints as one model: scored on validation (reported) and on test (once), then saved."""
    started = time.perf_counter()
    configs = [member_config(cfg, i, run_dir) for i in range(cfg.ensemble)]
    folders = [Path(member.out) for member in configs]
    members = [load_model(folder / "best.safetensors")[0] for folder in folders]
    data = training_data(cfg, None)
    c, h, _ = data.input_shape
    model = create_model("ensemble", num_classes=len(data.classes), in_chans=c, image_size=h, member=cfg.model,
                         size=cfg.ensemble, member_args=dict(cfg.model_args))
    for slot, member in zip(model.members, members):
        slot.load_state_dict(member.state_dict())
    device = pick_device(cfg.device)
    model = model.to(device, memory_format=memory_format(device)).eval()
    val = evaluate(model, data.val, data.mean, data.std) if len(data.val) else None
    test = evaluate(model, data.test, data.mean, data.std)
    done = [_member_metrics(f) for f in folders]
    # the same figures whether or not the ensemble was resumed: each member's own clock, plus this combining step
    metrics = {"ensemble": cfg.ensemble, "params": count_params(model), "best_val_acc": val.accuracy if val else None,
               "train_seconds": round(sum(m["train_seconds"] for m in done), 2),
               "wall_seconds": round(sum(m["wall_seconds"] for m in done) + time.perf_counter() - started, 3),
               "members": [{"folder": f.name, "seed": member.seed, "best_val_acc": m["best_val_acc"],
                            "test_accuracy": m["test"]["accuracy"]} for f, member, m in zip(folders, configs, done)],
               "test": test.to_dict()}
    record = {**run_record(cfg, data, model),  # "metrics" named as in a run's checkpoints (serve shows val_acc)
              "metrics": {"val_acc": metrics["best_val_acc"], "ensemble": cfg.ensemble, "train_seconds": metrics["train_seconds"]}}
    save_model(run_dir / "best.safetensors", model, record)
    write_ensemble_report(run_dir, cfg, metrics, test, data.test)
    say(f"ensemble of {cfg.ensemble}: test accuracy {100 * test.accuracy:.2f}% (members "
        + ", ".join(f"{100 * m['test_accuracy']:.2f}%" for m in metrics["members"])
        + (f"; validation {100 * val.accuracy:.2f}%" if val else "") + f"), {metrics['wall_seconds']:.0f} s of training and scoring in all; "
        f"model: {run_dir / 'best.safetensors'}")
    return Run(run_dir, cfg, [], metrics["test"], 0)


def _member_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())
