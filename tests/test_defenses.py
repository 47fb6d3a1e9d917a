"""MagNet's parts: autoencoder shapes, detector scores with known answers, thresholds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import attacks, data, defenses, models

pytestmark = pytest.mark.usefixtures("single_thread")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_autoencoder_shapes_and_sizes(channels):
    conv = lambda c_in, c_out: 9 * c_in * c_out + c_out  # noqa: E731 - 3x3 conv with bias
    ae1, ae2 = defenses.magnet_autoencoder(channels), defenses.magnet_autoencoder(channels, False)
    size = 28 if channels == 1 else 32
    x = torch.rand(2, channels, size, size)
    for ae in (ae1, ae2):
        y = ae(x)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1  # sigmoid output
    assert _params(ae1) == conv(channels, 3) + 3 * conv(3, 3) + conv(3, channels)
    assert _params(ae2) == conv(channels, 3) + conv(3, channels)


def test_jensen_shannon_known_values():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.3, 0.2]])
    js = defenses.jensen_shannon(p, q)
    assert js[0] == pytest.approx(0.0, abs=1e-7)           # identical
    assert js[1] == pytest.approx(math.log(2), rel=1e-6)   # disjoint support: the maximum
    m = [(a + b) / 2 for a, b in zip(p[2].tolist(), q[2].tolist(), strict=True)]
    by_hand = 0.5 * sum(a * math.log(a / c) for a, c in zip(p[2].tolist(), m, strict=True)) \
        + 0.5 * sum(b * math.log(b / c) for b, c in zip(q[2].tolist(), m, strict=True))
    assert js[2] == pytest.approx(by_hand, rel=1e-5)
    assert torch.allclose(js, defenses.jensen_shannon(q, p))  # symmetric


def test_threshold_rejects_the_stated_share_of_clean_scores():
    scores = torch.randperm(1000).float()
    for fpr in (0.0, 0.001, 0.01, 0.05):
        threshold = defenses.threshold_at(scores, fpr)
        assert (scores > threshold).sum().item() == round(fpr * 1000)
    with pytest.raises(ValueError, match="false_positive_rate"):
        defenses.threshold_at(scores, 1.0)


def test_scores_are_zero_for_a_perfect_autoencoder():
    x = torch.rand(8, 3, 32, 32)
    identity = nn.Identity()
    assert torch.all(defenses.reconstruction_error(identity, x) == 0)
    classifier = models.cifar_classifier().eval()
    assert torch.allclose(defenses.divergence_score(classifier, identity, x, 10.0),
                          torch.zeros(8), atol=1e-7)


@pytest.mark.parametrize("p", [1, 2])
def test_reconstruction_error_of_a_zero_autoencoder_is_the_image_norm(p):
    x = torch.rand(4, 1, 28, 28)
    blank = lambda z: torch.zeros_like(z)  # noqa: E731
    expected = x.pow(p).flatten(1).mean(1)
    assert torch.allclose(defenses.reconstruction_error(blank, x, p=p), expected)
    with pytest.raises(ValueError):
        defenses.reconstruction_error(blank, x, p=3)


def test_reformer_is_differentiable_end_to_end():
    reformer = defenses.Reformer(defenses.magnet_autoencoder(1), models.mnist_classifier()).eval()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    reformer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    adv = attacks.fgsm(reformer, x.detach(), torch.zeros(4, dtype=torch.long), 0.1)
    assert (adv - x.detach()).abs().max() <= 0.1 + 1e-6


def test_denoising_training_learns(mnist_test):
    # Sigmoid autoencoders sit on a plateau (a blurry mean digit) before they learn. 5,000
    # images x 6 epochs got past it from each of 4 initialisations tried; 2,000 x 3 did not.
    images = data.load("mnist", "train", n=5000).images
    recipe = defenses.AutoencoderRecipe(5000, 6, 32, 3e-3, noise=0.1)
    torch.manual_seed(0)
    ae = defenses.magnet_autoencoder(1)
    history = defenses._fit_autoencoder(ae, images, recipe, seed=0, desc="test")
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    x, _ = mnist_test
    blank = x.mean(0, keepdim=True).expand_as(x)  # the best constant guess
    assert defenses.reconstruction_error(ae, x).mean() < 0.7 * ((x - blank) ** 2).mean()


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="gtsrb"):
        defenses.autoencoder("gtsrb")
