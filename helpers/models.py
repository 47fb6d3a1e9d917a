"""The course's classifiers: plain ``nn.Module``s that take images in [0, 1].

Normalisation lives inside the model, so attacks and defenses work in pixel space.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std per channel, as a layer so gradients reach the [0, 1] input."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mnist_classifier() -> nn.Sequential:
    """MagNet's MNIST classifier: Conv32-Conv32-Pool-Conv64-Conv64-Pool-FC200-FC200-FC10."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(200, 200), nn.ReLU(),
        nn.Linear(200, 10),
    )


def mnist_mlp(hidden: int = 512) -> nn.Sequential:
    """A fully connected MNIST classifier (784-512-512-10): no convolutions at all, so a
    different architecture to test whether adversarial examples transfer (Chapter 2)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """airbench's block: conv, 2x2 max-pool, BN, GELU, conv, BN, GELU."""
    first = _conv_bn(c_in, c_out)
    return nn.Sequential(first[0], nn.MaxPool2d(2), *first[1:], *_conv_bn(c_out, c_out))


def cifar_classifier(num_classes: int = 10,
                     widths: tuple[int, int, int] = (32, 64, 128)) -> nn.Sequential:
    """A small, fast convolutional net for 32x32 RGB images (CIFAR-10, GTSRB), after airbench.

    ``widths=(64, 256, 256)`` is airbench94's size (about 2M parameters, meant for a GPU);
    the quick profile's ``(32, 64, 128)`` has about 0.3M and trains on a CPU in a minute or two.
    """
    w1, w2, w3 = widths
    return nn.Sequential(
        Normalize(CIFAR10_MEAN, CIFAR10_STD),
        *_conv_bn(3, w1),
        _block(w1, w1), _block(w1, w2), _block(w2, w3),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(w3, num_classes, bias=False),
    )


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """An image batch in channels-last memory layout (other tensors unchanged).

    The same values, and the convolutions that follow run about 1.6x faster on a CPU (and use
    tensor cores on a GPU); inference paths pass their batches through this.
    """
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


def channels_last_model(model: nn.Module) -> nn.Module:
    """``model`` with its convolution weights in channels-last layout, in place; returned.

    The same function up to float rounding. On a CPU it trains about 1.5x faster and computes
    an attack's input gradient about 1.5x faster, whatever the layout of the images fed to it;
    so every model the course trains or loads from its cache is kept this way.
    """
    return model.to(memory_format=torch.channels_last)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, then restore every submodule's own training flag.

    Attacks, predictions and detector scores must see the deployed model (no dropout noise,
    BatchNorm running statistics) and must not change a model that is mid-training. Restoring
    only the top-level flag is not enough: ``model.train(True)`` would also switch submodules
    that were in eval mode (say, a frozen classifier inside a defense) into training mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
