"""Fine-tuning from a trained model (`digitlab train --init-from RUN`): teach it a new hand without a new model.

The new run takes the source's architecture, classes, input shape and normalisation from its record, starts from
its weights, and trains on the new images (e.g. the corrections a server saved) mixed with a replay sample of the
source's own training set (MNIST for the shipped reader), so it learns the new writing without forgetting the old.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..data import DATASETS, DataSplits, DatasetNotFound, ImageData, load_dataset, relabel
from ..data.reject import with_reject_class
from ..errors import DigitlabError
from ..runs import load_model, read_record, resolve_checkpoint
from ..weights import reader_path

DEFAULT_REPLAY = 500  # source images mixed into every epoch when --replay is not given (picked in benchmarks/corrections.py)
READER = "reader"  # --init-from reader: the model that ships inside the package


def source_path(init_from: str) -> Path:
    """The checkpoint a fine-tune starts from: 'reader' is the shipped reader, anything else a run folder or file."""
    if init_from == READER:
        return reader_path()
    path = Path(init_from).expanduser()
    if not path.exists():
        raise DigitlabError(f"--init-from {init_from}: no such run folder or checkpoint (or '{READER}', the shipped model)")
    return resolve_checkpoint(path)


def fine_tune_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options with the source's model and model options filled in; an option that contradicts the source
    (another model, input size, channel count) is refused before anything is loaded."""
    init_from = options["init_from"]
    record = read_record(source_path(init_from))
    model, (c, h, _) = record["model"], record["input_shape"]
    given = {"--model": (options.get("model"), model["name"]), "--model-arg": (options.get("model_args") or None, model["kwargs"]),
             "--image-size": (options.get("image_size"), h), "--channels": (options.get("channels"), c)}
    for flag, (value, source) in given.items():
        if value is not None and value != source:
            raise DigitlabError(f"--init-from {init_from} is a {model['name']} on {c}x{h}x{h} images; {flag} {value} does not "
                                f"match it (leave {flag} out: a fine-tune keeps the source's)")
    for flag, key in (("--reject", "reject"), ("--stream", "stream")):
        if options.get(key):
            raise DigitlabError(f"{flag} cannot be combined with --init-from (a fine-tune keeps the source's classes and "
                                "reads its images into memory)")
    return {**options, "model": model["name"], "model_args": model["kwargs"]}


def source_record(init_from: str) -> dict[str, Any]:
    return read_record(source_path(init_from))


def replay_count(replay: int | None) -> int:
    """--replay as given, or the default when left out."""
    return DEFAULT_REPLAY if replay is None else replay


def replay_sample(init_from: str, record: dict[str, Any], n: int, seed: int, root: str | None) -> tuple[ImageData, dict[str, str]]:
    """`n` random training images of the source's own dataset, labelled in the source's classes, with the MD5s of
    the files read: mixed into every epoch, they keep what the source knew."""
    name = record.get("dataset")
    if name not in DATASETS:
        raise DigitlabError(f"--replay mixes in the source's training images, but {init_from} was trained on {name}; "
                            "pass --replay 0")
    c, h, _ = record["input_shape"]
    try:
        splits = load_dataset(name, root=root, val_split=0.0, image_size=h, channels=c)
    except DatasetNotFound as e:
        raise DigitlabError(f"--replay needs {name}, the training set of {init_from}: {e}; or pass --replay 0") from None
    if n > len(splits.train):
        raise DigitlabError(f"--replay {n} is more than the {len(splits.train)} training images of {name}")
    pick = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return relabel(splits.train.subset(pick), list(record["classes"]), name), splits.checksums


def training_data(cfg: Any, source: dict[str, Any] | None) -> DataSplits:
    """The splits a run trains and is scored on: a fine-tune's (the source's record given) or the dataset's, with the
    reader's 'not-digit' class added when the config asks for it. One function, so an ensemble scores its combined
    model on the very splits its members trained on."""
    if source:
        data = fine_tune_data(cfg, source, replay_count(cfg.replay))
    else:
        data = load_dataset(cfg.dataset, root=cfg.data_root, val_split=cfg.val_split, seed=cfg.data_seed, image_size=cfg.image_size,
                            channels=cfg.channels, stream=cfg.stream or None, workers=cfg.workers)
    return with_reject_class(data, cfg.reject, cfg.seed) if cfg.reject else data


def fine_tune_data(cfg: Any, record: dict[str, Any], replay: int) -> DataSplits:
    """The new images at the source's input shape, labelled in its classes and normalised with its mean and std,
    plus the replay sample in the training split (validation and test hold the new images only)."""
    c, h, _ = record["input_shape"]
    classes = list(record["classes"])
    is_folder = (cfg.dataset or "").startswith("folder:")
    data = load_dataset(cfg.dataset, root=cfg.data_root, val_split=cfg.val_split, seed=cfg.data_seed, image_size=h, channels=c,
                        classes=classes if is_folder else None)
    if not isinstance(data.train, ImageData):
        raise DigitlabError(f"{cfg.dataset} does not fit in memory; a fine-tune reads its images into memory")
    if not is_folder:
        data = dataclasses.replace(data, **{k: relabel(getattr(data, k), classes, data.name) for k in ("train", "val", "test")})
    train, sums = data.train, dict(data.checksums)
    if replay:
        sample, replay_sums = replay_sample(cfg.init_from, record, replay, cfg.seed, cfg.data_root)
        train = ImageData(torch.cat([train.images, sample.images]), torch.cat([train.labels, sample.labels]), classes)
        sums.update(replay_sums)
    note = (f"fine-tuning from {cfg.init_from}: {len(data.train)} new images + {replay} replayed from "
            f"{record.get('dataset')}, in every epoch")
    return dataclasses.replace(data, train=train, mean=tuple(record["mean"]), std=tuple(record["std"]),
                               notes=[*data.notes, note], checksums=sums)


def load_source_weights(model: torch.nn.Module, init_from: str) -> Path:
    """Copy the source's weights into `model` (built from the same record); returns the checkpoint read."""
    path = source_path(init_from)
    source, _ = load_model(path)
    model.load_state_dict(source.state_dict())
    return path


def source_summary(init_from: str, record: dict[str, Any], replay: int) -> dict[str, Any]:
    """What a fine-tuned checkpoint records about where it started."""
    return {"init_from": {"source": init_from, "path": str(source_path(init_from)), "model": record["model"]["name"],
                          "dataset": record.get("dataset"), "command": record.get("command")}, "replay": replay}
