"""Datasets: registry, loaders, in-memory splits and the batched fast path."""
from .batches import AUGMENT_CHOICES, augment, epoch_order, iterate_batches, normalize
from .core import DataSplits, ImageData, channel_stats, relabel, split_train_val
from .sources import DATASETS, DEFAULT_DATASET, DatasetNotFound, DatasetSpec, data_roots, list_datasets, load_dataset

__all__ = [
    "AUGMENT_CHOICES", "DATASETS", "DEFAULT_DATASET", "DataSplits", "DatasetNotFound", "DatasetSpec", "ImageData",
    "augment", "channel_stats", "data_roots", "epoch_order", "iterate_batches", "list_datasets", "load_dataset",
    "normalize", "relabel", "split_train_val",
]
