"""Correctness of the batched data path: alignment, coverage, reproducibility, batch-size independence."""
from __future__ import annotations

import pytest
import torch

from conftest import labelled_images
from digitlab.data import augment, epoch_order, iterate_batches
from digitlab.data.core import ImageData
from digitlab.models import create_model
from digitlab.evaluation import predict_logits


def _encoded(n: int = 500, channels: int = 1) -> ImageData:
    images, labels = labelled_images(n)
    x = torch.from_numpy(images)[:, None].expand(-1, channels, -1, -1).contiguous()
    return ImageData(x, torch.from_numpy(labels), [str(i) for i in range(10)])


@pytest.mark.parametrize("policy", ["none", "light", "strong", "flip"])
@pytest.mark.parametrize("channels", [1, 3])
def test_augmentation_keeps_labels_aligned(policy, channels):
    data = _encoded(channels=channels)
    g = torch.Generator().manual_seed(0)
    for images, labels in iterate_batches(data, 64, epoch_order(len(data), g)):
        out = augment(images, policy, g)
        assert out.shape == images.shape and out.dtype == torch.float32
        centre = out[:, 0, 14, 14] * 255  # the centre stays inside the image under every warp
        assert torch.allclose(centre, (20 + 20 * labels).float(), atol=1.0)


def test_augmentation_changes_images_and_is_reproducible():
    data = _encoded()
    digit = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    digit[:, :, 8:20, 12:16] = 255  # a bar: warps move it
    a = augment(digit, "strong", torch.Generator().manual_seed(1))
    b = augment(digit, "strong", torch.Generator().manual_seed(1))
    c = augment(digit, "strong", torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, digit.float() / 255)
    assert len(data) == 500


def test_every_sample_once_per_epoch_and_seeded_order():
    data = _encoded(1000)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    o1, o2 = epoch_order(len(data), g1), epoch_order(len(data), g2)
    assert torch.equal(o1, o2) and torch.equal(o1.sort().values, torch.arange(1000))
    seen = torch.cat([labels for _, labels in iterate_batches(data, 96, o1)])
    assert torch.equal(seen.sort().values, data.labels.sort().values)
    assert not torch.equal(epoch_order(len(data), g1), o1)  # the next epoch is shuffled anew


@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_the_dataset_without_duplicates_beyond_padding(world):
    n = 1001
    g = [torch.Generator().manual_seed(0) for _ in range(world)]
    shards = [epoch_order(n, g[r], r, world) for r in range(world)]
    assert len({s.numel() for s in shards}) == 1
    everything = torch.cat(shards)
    assert set(everything.tolist()) == set(range(n))
    assert everything.numel() - n < world  # only the padding repeats


def test_large_batch_evaluation_equals_small_batches():
    torch.manual_seed(0)
    model = create_model("lenet5-modern").eval()
    images = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    mean, std = torch.tensor([0.13]), torch.tensor([0.31])
    big = predict_logits(model, images, mean, std, batch_size=1024)
    small = predict_logits(model, images, mean, std, batch_size=7)
    assert torch.allclose(big, small, atol=1e-5)
