from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from digitlab.errors import DigitlabError
from digitlab.models import count_params, create_model, list_models, summary

NAMES = [e.name for e in list_models()]
HEAVY = {"resnet34", "googlenet", "alexnet", "resnet18"}


@pytest.mark.parametrize("name, expected", [
    ("mlp", 109_386), ("lenet5", 61_706), ("cnn-small", 93_322), ("cnn", 130_250),
])
def test_parameter_counts_match_keras(name, expected):
    assert count_params(create_model(name)) == expected


def test_catsdogs_parameter_count():
    # Keras prints 3,453,121 for the 1-sigmoid-unit head; a 2-way softmax head adds 513
    assert count_params(create_model("catsdogs-cnn", num_classes=2, in_chans=3, image_size=150)) == 3_453_121 + 513


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 150, 150)])
def test_forward_shapes(name, shape):
    c, s, _ = shape
    entry = next(e for e in list_models() if e.name == name)
    if s < entry.min_size or (s == 150 and name in {"resnet34", "googlenet"}):
        pytest.skip("too small for this model / too slow for the unit suite")
    model = create_model(name, num_classes=7, in_chans=c, image_size=s).eval()
    with torch.no_grad():
        assert model(torch.randn(2, c, s, s)).shape == (2, 7)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in NAMES])
def test_one_step_reduces_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    size = max(28, next(e for e in list_models() if e.name == name).min_size)
    model = create_model(name, num_classes=10, in_chans=1, image_size=size)
    x, y = torch.randn(8, 1, size, size), torch.arange(8) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01 if name not in HEAVY else 0.002)
    torch.manual_seed(1)  # the same dropout masks for both forward passes
    before = F.cross_entropy(model(x), y)
    before.backward()
    opt.step()
    torch.manual_seed(1)
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after < before


@pytest.mark.parametrize("name", NAMES)
def test_minimum_size_works_and_smaller_is_a_clear_error(name):
    entry = next(e for e in list_models() if e.name == name)
    model = create_model(name, image_size=entry.min_size).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, entry.min_size, entry.min_size)).shape == (2, 10)
    if entry.min_size > 1:
        with pytest.raises(DigitlabError, match=f"at least {entry.min_size}x{entry.min_size}"):
            create_model(name, image_size=entry.min_size - 1)


def test_unknown_model_lists_choices():
    with pytest.raises(DigitlabError) as err:
        create_model("lenet6")
    assert "lenet5" in str(err.value) and "resnet18" in str(err.value)


def test_summary_table_and_counts():
    s = summary(create_model("cnn-small"), (1, 28, 28))
    assert s.total_params == 93_322 == sum(r[3] for r in s.rows)
    assert s.rows[0][2] == (32, 26, 26) and s.rows[-1][2] == (10,)
    # multiply-adds of the conv and dense layers, computed by hand
    expected = 26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 3 * 3 * 64 * 64 * 9 + 576 * 64 + 64 * 10
    assert s.macs == expected
    text = str(s)
    assert "Output Shape" in text and "Total params: 93,322" in text and "(None, 32, 26, 26)" in text


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_lenet5_computes_the_paper_order_conv_act_pool(activation, pool):
    """LeNet-5 max-pools before its activation (cheaper); that must give exactly the textbook conv -> act -> pool."""
    torch.manual_seed(0)
    model = create_model("lenet5", activation=activation, pool=pool).eval()
    conv1, conv2 = model.features[0], model.features[3]
    act = torch.relu if activation == "relu" else torch.tanh
    sub = (lambda t: F.max_pool2d(t, 2)) if pool == "max" else (lambda t: F.avg_pool2d(t, 2))
    x = torch.randn(16, 1, 28, 28)
    assert torch.equal(model.features(x), sub(act(conv2(sub(act(conv1(x)))))))


def test_registry_refuses_a_second_model_of_the_same_name():
    from digitlab.models.registry import register

    with pytest.raises(DigitlabError, match="already registered"):
        register("lenet5", "lenet", "an impostor")
