"""Occlusion saliency and the receptive fields of the look-inside view: pure torch, every model in the zoo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from digitlab.models import create_model
from digitlab.predict import Classifier, load
from digitlab.predict.inspect import Field, receptive_fields
from digitlab.predict.saliency import frame_in_photo, occlusion, patch_cover
from drawings import seven, untrained


@pytest.fixture(scope="module")
def reader() -> Classifier:
    return load()


def test_patches_tile_the_axis():
    cover = patch_cover(28, 8, 4)
    assert cover.shape == (7, 28)
    assert (cover.sum(0) >= 1).all() and cover.sum(1).max() == 8


@pytest.mark.parametrize("name", ["mlp", "lenet5", "fastcnn"])
def test_one_map_per_class_and_blank_regions_score_zero(name):
    clf = untrained(name)
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 2:10, 2:10] = 1.0  # ink in the top-left corner only
    result = occlusion(clf, image)
    assert result.maps.shape == (10, 28, 28) and result.probs.shape == (10,)
    assert torch.isclose(result.probs.sum(), torch.tensor(1.0), atol=1e-4)
    far = result.maps[:, 16:, 16:]  # no patch over these pixels touches the ink: hiding them changes nothing
    assert far.abs().max() < 1e-5, far.abs().max()
    assert result.maps[:, :12, :12].abs().max() > 1e-4  # while hiding ink does change the answer


def test_the_answer_rests_on_the_ink(reader):
    image = reader.prepare(seven())
    result = occlusion(reader, image)
    answer = result.ranked()[0]
    assert result.classes[answer] == "7"
    m = result.maps[answer].numpy()
    near_ink = ndi.binary_dilation(image[0] > 0.3, iterations=2)
    peak = np.unravel_index(np.argmax(m), m.shape)
    assert near_ink[peak], "the strongest evidence for the answer lies on or next to a stroke"
    assert m[near_ink].mean() > 5 * np.abs(m[~near_ink]).mean()
    assert m.clip(0).sum() > np.abs(m.clip(None, 0)).sum()  # on balance the ink speaks for the answer
    assert result.classes[result.ranked()[1]] != "7" and "not-digit" not in [result.classes[i] for i in result.ranked()]


def test_frame_maps_the_model_input_back_over_the_photo():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 4:24, 12:16] = 1.0  # ink 4 wide, 20 tall
    x0, y0, x1, y1 = frame_in_photo(image, (124, 60, 156, 220))  # the same ink, 8x bigger in the photo
    assert (x1 - x0, y1 - y0) == (224, 224)
    assert (x0 + 12 * 8, y0 + 4 * 8) == (124, 60)  # the ink lands on the ink


def test_receptive_fields_follow_kernels_strides_and_branches():
    fields = receptive_fields(create_model("lenet5"))
    assert fields["features.0"] == Field(5, 1, 0)  # 5x5 conv, padding 2: centred on its own pixel
    assert fields["features.3"] == Field(14, 2, 4.5)  # after a 2x2 pool and a 5x5 valid conv
    for name in ("resnet18", "googlenet", "alexnet", "cnn"):
        model = create_model(name)
        convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
        fields = receptive_fields(model)
        assert all(n in fields for n in convs), name
        sizes = [fields[n].size for n in convs]
        assert sizes[0] == 3 and max(sizes) >= 28, name  # deep units see the whole digit


def test_a_stride_wider_than_the_image_leaves_one_patch_in_the_middle():
    """Found by the API fuzzer: ?patch=1&stride=58 on a 28x28 input was a 500 (an empty range of patch centres)."""
    from digitlab.predict.saliency import patch_cover

    cover = patch_cover(28, 1, 58)
    assert cover.shape == (1, 28) and cover.sum() == 1 and cover[0, 14] == 1
    assert patch_cover(28, 8, 4).sum(0).min() >= 1  # the default tiles every pixel
