"""Tests for helpers.adaptive: BPDA's exact forward and approximated backward, Defended as the
bare model when there is no defense, EOT's average over draws, and PGD against detectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import attacks, defenses, jpeg, train
from helpers.adaptive import EOT, Defended, Ensemble, bpda, pgd_against_detectors

pytestmark = pytest.mark.usefixtures("single_thread")

QUALITY = 75


def _jpeg(x: torch.Tensor) -> torch.Tensor:
    return jpeg.jpeg(x, QUALITY)


def _jpeg_differentiable(x: torch.Tensor) -> torch.Tensor:
    return jpeg.jpeg_differentiable(x, QUALITY)


def _input_gradient(f, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x, upstream)
    return grad


# ---------------------------------------------------------------------------------------------
# BPDA
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backward", [None, _jpeg_differentiable])
def test_bpda_forward_is_the_real_transform_bit_for_bit(cifar_test, mnist_test, backward):
    for images in (cifar_test[0][:32], mnist_test[0][:32]):
        x = images.clone().requires_grad_(True)
        y = bpda(_jpeg, backward)(x)
        assert torch.equal(y, _jpeg(images))
        assert y.requires_grad  # and it is in the graph, unlike jpeg.jpeg's output
        assert not _jpeg(x).requires_grad


def test_bpda_identity_backward_passes_the_upstream_gradient(cifar_test):
    x = cifar_test[0][:16]
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_input_gradient(bpda(_jpeg), x, upstream), upstream)


def test_bpda_backward_is_the_approximations_gradient(cifar_test):
    x = cifar_test[0][:16]
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    grad = _input_gradient(bpda(_jpeg, _jpeg_differentiable), x, upstream)
    expected = _input_gradient(_jpeg_differentiable, x, upstream)
    assert torch.equal(grad, expected)
    assert not torch.allclose(grad, upstream, atol=1e-3)  # not the identity's, so it is used


def test_bpda_gradient_reaches_a_model_behind_it(mnist_mlp):
    model, x, y = mnist_mlp
    defended = Defended(model, bpda(_jpeg))
    # the same chain rule as differentiating the model at the compressed images
    compressed = _jpeg(x).requires_grad_(True)
    (expected,) = torch.autograd.grad(F.cross_entropy(model(compressed), y), compressed)
    got = _input_gradient(lambda t: F.cross_entropy(defended(t), y), x, torch.tensor(1.0))
    assert torch.equal(got, expected)


def test_jpeg_stops_attacks_until_bpda_lets_them_through(mnist_mlp):
    model, x, y = mnist_mlp
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        attacks.pgd(Defended(model, _jpeg), x, y, eps=0.3, steps=2)  # obfuscated gradient
    adv = attacks.pgd(Defended(model, bpda(_jpeg)), x, y, eps=0.3, steps=10,
                      generator=torch.Generator().manual_seed(0))
    assert attacks.linf_norms(adv, x).max() <= 0.3 + 1e-6
    # a large budget and a working gradient: almost nothing survives JPEG (Carlini et al.'s
    # check that an attack reaches near 100% success at large eps)
    assert train.evaluate(model, adv, y, transform=_jpeg) < 0.1


def test_bpda_registers_module_transforms_and_checks_its_input():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    wrapped = bpda(conv)
    assert list(wrapped.parameters()) == list(conv.parameters())
    with pytest.raises(TypeError, match="transform must be callable"):
        bpda(3)
    with pytest.raises(TypeError, match="backward must be callable"):
        bpda(_jpeg, "identity")
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    with pytest.raises(ValueError, match="keeps the shape"):
        bpda(lambda t: t[:, :, :4])(x)
    with pytest.raises(ValueError, match="approximation's output has shape"):
        bpda(lambda t: t.clone(), lambda t: t[:, :, :4])(x).sum().backward()


# ---------------------------------------------------------------------------------------------
# Defended
# ---------------------------------------------------------------------------------------------

def _model_with_modes() -> nn.Module:
    """Dropout and BatchNorm in training mode: attacks that forgot eval mode would differ."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 26 * 26, 10)).train()


@pytest.mark.parametrize("transform", [None, "lambda", "identity", "bpda"])
def test_identity_defense_gives_exactly_the_bare_models_attacks(mnist_test, transform):
    transform = {None: None, "lambda": lambda t: t, "identity": nn.Identity(),
                 "bpda": bpda(lambda t: t)}[transform]
    x, y = mnist_test[0][:64], mnist_test[1][:64]
    model = _model_with_modes()
    bn = model[1]
    running = bn.running_mean.clone()
    defended = Defended(model, transform)
    for eps in (0.05, 0.2):
        assert torch.equal(attacks.fgsm(defended, x, y, eps), attacks.fgsm(model, x, y, eps))
        assert torch.equal(
            attacks.pgd(defended, x, y, eps, steps=3, generator=torch.Generator().manual_seed(1)),
            attacks.pgd(model, x, y, eps, steps=3, generator=torch.Generator().manual_seed(1)))
    assert all(m.training for m in model.modules())  # modes restored, and stats untouched
    assert torch.equal(bn.running_mean, running)


def test_defended_applies_the_transform_before_the_model(mnist_mlp):
    model, x, _ = mnist_mlp
    assert torch.equal(Defended(model, _jpeg)(x), model(_jpeg(x)))
    assert torch.equal(Defended(model)(x), model(x))
    with pytest.raises(TypeError, match="nn.Module"):
        Defended(lambda t: t)
    with pytest.raises(TypeError, match="transform must be callable"):
        Defended(model, 75)


# ---------------------------------------------------------------------------------------------
# EOT
# ---------------------------------------------------------------------------------------------

class _Noise:
    """A randomized defense: add Gaussian noise drawn from the generator; counts its calls."""

    def __init__(self, sigma: float = 0.3):
        self.sigma, self.calls = sigma, 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        self.calls += 1
        return x + self.sigma * torch.randn(x.shape, generator=generator)


@pytest.mark.parametrize("samples", [1, 3, 8])
def test_eot_averages_the_probabilities_of_exactly_samples_draws(mnist_mlp, samples):
    model, x, y = mnist_mlp
    x, y = x[:32], y[:32]
    noise = _Noise()
    eot = EOT(model, samples, noise, generator=torch.Generator().manual_seed(0))
    x_eot = x.clone().requires_grad_(True)
    out = eot(x_eot)
    assert noise.calls == samples
    # by hand, replaying the same draws
    replay = torch.Generator().manual_seed(0)
    x_hand = x.clone().requires_grad_(True)
    draws = [x_hand + 0.3 * torch.randn(x.shape, generator=replay) for _ in range(samples)]
    probs = torch.stack([F.softmax(model(d), dim=1) for d in draws]).mean(0)
    torch.testing.assert_close(out, probs.log(), atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.exp().sum(1), torch.ones(len(x)))  # log-probabilities
    # the attack's gradient: the draws' average gradient of p(label), scaled per image by
    # -1 / E[p(label)] (a signed step is the sign of the average gradient)
    (grad,) = torch.autograd.grad(F.cross_entropy(out, y, reduction="sum"), x_eot)
    p_label = probs.gather(1, y[:, None]).squeeze(1)
    (mean_grad,) = torch.autograd.grad(p_label.sum(), x_hand)
    torch.testing.assert_close(grad * p_label.detach()[:, None, None, None], -mean_grad,
                               atol=1e-6, rtol=1e-4)
    eot(x)
    assert noise.calls == 2 * samples  # every call draws anew


def test_eot_of_a_deterministic_model_is_its_log_softmax(mnist_mlp):
    model, x, _ = mnist_mlp
    torch.testing.assert_close(EOT(model, 4)(x), F.log_softmax(model(x), dim=1))


def test_ensemble_is_the_log_of_its_members_mean_probability(mnist_mlp):
    model, x, y = mnist_mlp
    x = x[:16]
    members = [model, Defended(model, lambda t: t.flip(-1)), Defended(model, lambda t: 1 - t)]
    probs = torch.stack([F.softmax(m(x), dim=1) for m in members]).mean(0)
    torch.testing.assert_close(Ensemble(members)(x), probs.log(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Ensemble([model])(x), F.log_softmax(model(x), dim=1))
    # the gradient reaches every member (an attack on it sees all of them)
    x_grad = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(Ensemble(members)(x_grad)[:, 0].sum(), x_grad)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def test_eot_checks_its_arguments(mnist_mlp):
    model = mnist_mlp[0]
    for samples in (0, -1, 2.5):
        with pytest.raises(ValueError, match="samples must be a positive integer"):
            EOT(model, samples, _Noise())
    with pytest.raises(TypeError, match="nn.Module"):
        EOT(lambda t: t, 2)
    with pytest.raises(TypeError, match="transform must be callable"):
        EOT(model, 2, "noise")


def test_pgd_through_eot_beats_a_randomized_defense(mnist_mlp):
    model, x, y = mnist_mlp
    eps, noise = 0.1, _Noise(sigma=0.5)
    defense = EOT(model, 16, noise, generator=torch.Generator().manual_seed(0))
    adv = attacks.pgd(EOT(model, 8, noise, generator=torch.Generator().manual_seed(1)), x, y,
                      eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert attacks.linf_norms(adv, x).max() <= eps + 1e-6
    with torch.no_grad():
        clean = (defense(x).argmax(1) == y).float().mean().item()
        attacked = (defense(adv).argmax(1) == y).float().mean().item()
    assert attacked < clean - 0.4


# ---------------------------------------------------------------------------------------------
# PGD against MagNet's detectors
# ---------------------------------------------------------------------------------------------

class _Constant(nn.Module):
    """An 'autoencoder' that maps every image to mid-grey: its error is the distance to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.5)


@pytest.fixture(scope="module")
def guarded():
    """A linear classifier on 1x4x4 images near mid-grey, a reconstruction-error and a JSD
    detector thresholded at 0% false positives on such images, and 200 test images labelled
    by the classifier."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    with torch.no_grad():  # logits W (x - 0.5): the classes split images around mid-grey
        classifier[1].bias.copy_(-0.5 * classifier[1].weight.sum(1))

    def images(n: int) -> torch.Tensor:
        return (0.5 + 0.05 * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)

    validation, x = images(500), images(200)
    ae = _Constant()
    detectors = [defenses.reconstruction_detector(ae, 2, validation, 0.0),
                 defenses.divergence_detector(classifier, ae, 2.0, validation, 0.0)]
    with torch.no_grad():
        y = classifier(x).argmax(1)
    return classifier, detectors, x, y


def _fooled_and_accepted(classifier, detectors, adv, y) -> torch.Tensor:
    predictions, rejected = defenses.magnet_predict(classifier, None, detectors, adv)
    return (predictions != y) & ~rejected


def test_pgd_against_detectors_evades_what_plain_pgd_cannot(guarded):
    classifier, detectors, x, y = guarded
    eps = 0.15
    plain = attacks.pgd(classifier, x, y, eps=eps, steps=20,
                        generator=torch.Generator().manual_seed(0))
    adaptive_adv = pgd_against_detectors(classifier, x, y, eps, detectors, steps=20,
                                         generator=torch.Generator().manual_seed(0))
    for adv in (plain, adaptive_adv):
        assert attacks.linf_norms(adv, x).max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1 and not adv.requires_grad
    assert attacks.success_rate(classifier, plain, y) > 0.9  # plain PGD fools the classifier
    assert _fooled_and_accepted(classifier, detectors, plain, y).float().mean() < 0.05
    # ... but is caught; the combined loss fools it and slips past both detectors
    assert _fooled_and_accepted(classifier, detectors, adaptive_adv, y).float().mean() > 0.9


def test_pgd_against_detectors_without_the_penalty_is_caught(guarded):
    classifier, detectors, x, y = guarded
    adv = pgd_against_detectors(classifier, x, y, 0.15, detectors, steps=20, weight=0.0,
                                generator=torch.Generator().manual_seed(0))
    strong = pgd_against_detectors(classifier, x, y, 0.15, detectors, steps=20,
                                   generator=torch.Generator().manual_seed(0))
    assert (_fooled_and_accepted(classifier, detectors, adv, y).float().mean()
            < _fooled_and_accepted(classifier, detectors, strong, y).float().mean() - 0.2)


def test_pgd_against_detectors_through_a_reformer_checks_its_input(guarded):
    classifier, detectors, x, y = guarded
    reformer = defenses.Reformer(nn.Identity(), classifier)
    adv = pgd_against_detectors(reformer, x, y, 0.1, detectors[:1], steps=3)
    assert adv.shape == x.shape
    for kwargs, match in [({"eps": -0.1}, "eps must be >= 0"), ({"steps": 0}, "steps"),
                          ({"weight": -1.0}, "weight must be >= 0"),
                          ({"alpha": -0.01}, "alpha must be >= 0")]:
        with pytest.raises(ValueError, match=match):
            pgd_against_detectors(reformer, x, y, **{"eps": 0.1, "detectors": detectors,
                                                     **kwargs})
    opaque = defenses.Detector("opaque", lambda t: t.flatten(1).mean(1), 0.5)
    with pytest.raises(ValueError, match="differentiable_score"):
        pgd_against_detectors(reformer, x, y, 0.1, [opaque])
    zero = defenses.Detector("zero", opaque.score, 0.0, opaque.score)
    with pytest.raises(ValueError, match="must be > 0"):
        pgd_against_detectors(reformer, x, y, 0.1, [zero])
    with pytest.raises(ValueError, match="4-D"):
        pgd_against_detectors(reformer, x[0], y, 0.1, detectors)
    with pytest.raises(ValueError, match="one label per image"):
        pgd_against_detectors(reformer, x, y[:3], 0.1, detectors)


def test_differentiable_scores_equal_the_detectors_scores(guarded):
    classifier, detectors, x, _ = guarded
    for detector in detectors:
        scores = detector.differentiable_score(x.clone().requires_grad_(True))
        assert scores.requires_grad
        torch.testing.assert_close(scores.detach(), detector.score(x), atol=0, rtol=1e-6)


def test_differentiable_scores_run_the_models_in_eval_mode():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 4, 4)
    classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    autoencoder = nn.Sequential(nn.Dropout(0.5), nn.Sigmoid()).train()
    for score in (lambda: defenses.reconstruction_error_differentiable(autoencoder, x),
                  lambda: defenses.divergence_score_differentiable(classifier, autoencoder, x,
                                                                   2.0)):
        assert torch.equal(score(), score())  # no dropout noise
        assert classifier.training and autoencoder.training  # modes restored
    with torch.no_grad():
        expected = defenses.jensen_shannon(F.softmax(classifier.eval()(x) / 2, dim=1),
                                           F.softmax(classifier(autoencoder.eval()(x)) / 2,
                                                     dim=1))
    torch.testing.assert_close(
        defenses.divergence_score_differentiable(classifier, autoencoder, x, 2.0), expected)

