"""helpers.models: output shapes, exact parameter counts (worked out from the layer sizes),
gradients that reach the pixels, and the Normalize layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import models, profiles, zoo
from helpers.models import CIFAR10_MEAN, CIFAR10_STD, Normalize

pytestmark = pytest.mark.usefixtures("single_thread")


def conv_params(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def magnet_mnist_params() -> int:
    """Conv32-Conv32-Pool-Conv64-Conv64-Pool-FC200-FC200-FC10 on 28x28x1, valid 3x3 convs."""
    side = 28
    side = (side - 2 - 2) // 2  # two valid convs, 2x2 pool: 12
    side = (side - 2 - 2) // 2  # again: 4
    flat = 64 * side * side
    return (conv_params(1, 32) + conv_params(32, 32) + conv_params(32, 64)
            + conv_params(64, 64) + linear_params(flat, 200) + linear_params(200, 200)
            + linear_params(200, 10))


def airbench_params(widths: tuple[int, int, int], num_classes: int = 10) -> int:
    """Bias-free 3x3 convs, BatchNorm (weight and bias), a bias-free linear head."""
    def conv_bn(c_in: int, c_out: int) -> int:
        return conv_params(c_in, c_out, bias=False) + 2 * c_out

    w1, w2, w3 = widths
    blocks = sum(conv_bn(a, b) + conv_bn(b, b) for a, b in ((w1, w1), (w1, w2), (w2, w3)))
    return conv_bn(3, w1) + blocks + linear_params(w3, num_classes, bias=False)


def test_parameter_counts_by_hand():
    assert magnet_mnist_params() == 312_202
    assert airbench_params((32, 64, 128)) == 298_016


def test_mnist_mlp_is_fully_connected_and_counted_by_hand():
    mlp = models.mnist_mlp()
    assert models.parameter_count(mlp) == (784 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)
    assert not any(isinstance(m, torch.nn.Conv2d) for m in mlp.modules())
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_mnist_classifier_parameter_count():
    assert models.parameter_count(models.mnist_classifier()) == magnet_mnist_params()


@pytest.mark.parametrize(("widths", "classes"), [((32, 64, 128), 10), ((64, 256, 256), 10),
                                                 ((32, 64, 128), 43), ((8, 16, 24), 5)])
def test_cifar_classifier_parameter_count(widths, classes):
    model = models.cifar_classifier(classes, widths)
    assert models.parameter_count(model) == airbench_params(widths, classes)


def test_cifar_classifier_default_size():
    assert models.parameter_count(models.cifar_classifier()) == airbench_params((32, 64, 128))
    # normalisation is inside the model (it takes [0, 1] pixels), with constant buffers
    first = models.cifar_classifier()[0]
    assert isinstance(first, Normalize)
    assert torch.allclose(first.mean.flatten(), torch.tensor(CIFAR10_MEAN))
    assert torch.allclose(first.std.flatten(), torch.tensor(CIFAR10_STD))


@pytest.mark.parametrize(("make", "shape", "classes"), [
    (models.mnist_classifier, (1, 28, 28), 10),
    (models.cifar_classifier, (3, 32, 32), 10),
    (lambda: models.cifar_classifier(43), (3, 32, 32), 43),
])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shapes(make, shape, classes, batch):
    model = make().eval()
    with torch.no_grad():
        out = model(torch.rand(batch, *shape))
    assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()


def test_make_classifier_follows_the_profile():
    quick, full = profiles.get_profile("quick"), profiles.get_profile("full")
    assert models.parameter_count(zoo.make_classifier("mnist", full)) == 312_202
    assert (models.parameter_count(zoo.make_classifier("cifar10", quick))
            == airbench_params(quick.recipe("cifar10").widths))
    gtsrb = zoo.make_classifier("gtsrb", full)
    assert gtsrb(torch.rand(2, 3, 32, 32)).shape == (2, 43)
    assert models.parameter_count(gtsrb) == airbench_params((64, 256, 256), 43)


@pytest.mark.parametrize(("make", "shape"), [(models.mnist_classifier, (1, 28, 28)),
                                              (models.cifar_classifier, (3, 32, 32))])
def test_gradients_reach_the_input(make, shape):
    torch.manual_seed(0)
    model = make().double().eval()  # float64: the finite-difference check below is exact
    x = torch.rand(4, *shape, dtype=torch.float64, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().flatten(1).sum(1) > 0).all()  # every image gets a gradient
    # and it is the true gradient: a small step along it raises the loss as predicted
    step = 1e-3 * x.grad / x.grad.norm()
    with torch.no_grad():
        after = nn.functional.cross_entropy(model(x + step), torch.tensor([0, 1, 2, 3]))
    predicted = (x.grad * step).sum()
    assert (after - loss).item() == pytest.approx(predicted.item(), rel=0.05)


def test_normalize_is_per_channel_standardisation():
    layer = Normalize(CIFAR10_MEAN, CIFAR10_STD)
    x = torch.rand(2, 3, 5, 5)
    out = layer(x)
    for c in range(3):
        expected = (x[:, c] - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert torch.allclose(out[:, c], expected, atol=1e-6)
    # buffers: saved with the model and moved by .to(), but not trained
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"mean", "std"}
    assert layer.to(torch.float64)(x.double()).dtype == torch.float64


def test_normalize_gradient_is_one_over_std():
    layer = Normalize((0.5, 0.25), (0.5, 0.1))
    x = torch.rand(1, 2, 3, 3, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad[0, 0], torch.full((3, 3), 2.0))
    assert torch.allclose(x.grad[0, 1], torch.full((3, 3), 10.0))


def test_normalize_single_channel_broadcasts():
    layer = Normalize((0.1307,), (0.3081,))
    x = torch.rand(3, 1, 4, 4)
    assert torch.allclose(layer(x), (x - 0.1307) / 0.3081)


def test_channels_last_keeps_the_values_and_changes_only_image_batches():
    x = torch.rand(2, 3, 5, 4)
    y = models.channels_last(x)
    assert torch.equal(x, y) and y.is_contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous(memory_format=torch.channels_last)   # the input is untouched
    flat = torch.rand(2, 6)
    assert models.channels_last(flat) is flat
