"""MagNet's parts: autoencoder shapes, detector scores with known answers, thresholds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import attacks, defenses, models, profiles, train, zoo
from tests.course_models import as_a_chapter_would

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
    # as the authors' code builds them: AE I from [3, "average", 3] mirrored plus the output
    # conv (5 convolutions), AE II from [3] mirrored plus the output conv (3)
    assert _params(ae1) == conv(channels, 3) + 3 * conv(3, 3) + conv(3, channels)
    assert _params(ae2) == conv(channels, 3) + conv(3, 3) + conv(3, channels)
    convolutions = [sum(isinstance(m, nn.Conv2d) for m in ae.modules()) for ae in (ae1, ae2)]
    assert convolutions == [5, 3]


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
    blank = nn.Sequential(nn.Conv2d(1, 1, 1))  # an "autoencoder" that outputs zeros
    nn.init.zeros_(blank[0].weight)
    nn.init.zeros_(blank[0].bias)
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


@pytest.fixture(scope="module")
def quick_models(data_dir) -> tuple[nn.Module, nn.Module]:
    """The quick profile's MNIST classifier and AE I, Chapter 3's (about 45 s on 2 cores when
    the course's cache does not hold them yet)."""
    with as_a_chapter_would():
        quick, cpu = profiles.get_profile("quick"), torch.device("cpu")
        classifier = zoo.classifier("mnist", profile=quick, device=cpu, progress=False)
        ae = defenses.autoencoder("mnist", pooling=True, profile=quick, device=cpu)
    return classifier, ae


@pytest.fixture(scope="module")
def denoiser(quick_models) -> nn.Module:
    return quick_models[1]


@pytest.fixture(scope="module")
def small_mnist_classifier(quick_models) -> nn.Module:
    return quick_models[0]


def test_denoising_training_learns(denoiser, mnist_test):
    history = denoiser.train_info["history"]
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    x, _ = mnist_test
    blank = x.mean(0, keepdim=True).expand_as(x)  # the best constant guess
    assert defenses.reconstruction_error(denoiser, x).mean() < 0.7 * ((x - blank) ** 2).mean()


def test_trained_autoencoder_keeps_clean_accuracy_and_a_collapsed_one_does_not(
        denoiser, small_mnist_classifier, mnist_test):
    x, y = mnist_test
    clean = train.evaluate(small_mnist_classifier, x, y)
    reformed = train.evaluate(defenses.Reformer(denoiser, small_mnist_classifier), x, y)
    assert clean > 0.8
    assert reformed > clean - 0.03, (clean, reformed)
    collapsed = _Constant(x.mean().item())  # a near-constant output: a collapsed AE
    assert train.evaluate(defenses.Reformer(collapsed, small_mnist_classifier), x, y) < 0.3


def test_reformer_improves_accuracy_on_small_eps_fgsm(denoiser, small_mnist_classifier,
                                                      mnist_test):
    x, y = mnist_test
    clf = small_mnist_classifier
    adv = attacks.fgsm(clf, x, y, 0.2, quantize=True)
    plain = train.evaluate(clf, adv, y)
    reformed = train.evaluate(defenses.Reformer(denoiser, clf), adv, y)
    assert reformed > plain + 0.15, (plain, reformed)


class _InputRecorder(nn.Module):
    """A trainable 'autoencoder' that remembers every input it was shown."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return x * self.scale


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.1])
def test_denoising_training_adds_the_recipes_noise(noise):
    images = torch.full((64, 1, 8, 8), 128, dtype=torch.uint8)  # mid-grey: no clipping
    recorder = _InputRecorder()
    recipe = defenses.AutoencoderRecipe(64, 2, 16, 1e-3, noise=noise)
    defenses._fit_autoencoder(recorder, images, recipe, seed=0, desc="test")
    seen = torch.cat(recorder.inputs) - 128 / 255
    assert len(seen) == 2 * 64
    assert abs(seen.std().item() - noise) < 0.1 * noise + 1e-6, seen.std()
    assert abs(seen.mean().item()) < 0.01


def test_unknown_dataset_is_an_error():
    with pytest.raises(ValueError, match="gtsrb"):
        defenses.autoencoder("gtsrb", profiles.get_profile("quick"))


# ---------------------------------------------------------------------------------------------
# Detectors, MagNet's decision and the two accuracies
# ---------------------------------------------------------------------------------------------

def _linear_classifier(pixels: int = 16, classes: int = 3, seed: int = 0) -> nn.Module:
    """A fixed, seeded linear classifier on flattened images (has parameters: predict needs)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes)).eval()


class _Constant(nn.Module):
    """An 'autoencoder' that maps every image to the same constant image."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


class _Invert(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - x


def _mean_detector(threshold: float) -> defenses.Detector:
    return defenses.Detector("mean", lambda x: x.flatten(1).mean(1), threshold)


def _max_detector(threshold: float) -> defenses.Detector:
    return defenses.Detector("max", lambda x: x.flatten(1).amax(1), threshold)


def test_defense_accuracies_known_answers():
    labels = torch.tensor([0, 1, 2, 3])
    # correct+accepted, correct+rejected, wrong+rejected, wrong+accepted
    predictions = torch.tensor([0, 1, 0, 0])
    rejected = torch.tensor([False, True, True, False])
    acc = defenses.defense_accuracies(predictions, rejected, labels)
    assert acc == pytest.approx({"defended": 0.75, "plain": 0.25, "rejected": 0.5})
    # nothing rejected: both accuracies are the ordinary accuracy
    none = defenses.defense_accuracies(predictions, torch.zeros(4, dtype=torch.bool), labels)
    assert none == pytest.approx({"defended": 0.5, "plain": 0.5, "rejected": 0.0})
    # everything rejected: a perfect "defended" score and no useful answers at all
    every = defenses.defense_accuracies(predictions, torch.ones(4, dtype=torch.bool), labels)
    assert every == pytest.approx({"defended": 1.0, "plain": 0.0, "rejected": 1.0})


def test_defended_is_plain_plus_rejected_for_random_cases():
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        n = int(torch.randint(1, 50, (1,), generator=g))
        labels = torch.randint(0, 4, (n,), generator=g)
        predictions = torch.randint(0, 4, (n,), generator=g)
        rejected = torch.rand(n, generator=g) < torch.rand(1, generator=g)
        acc = defenses.defense_accuracies(predictions, rejected, labels)
        assert acc["defended"] >= acc["plain"]
        # correct-or-rejected splits into accepted-and-correct plus rejected, disjointly
        assert acc["defended"] == pytest.approx(acc["plain"] + acc["rejected"], abs=1e-6)
        correct = predictions == labels
        assert acc["plain"] == pytest.approx((correct & ~rejected).sum().item() / n)
        assert acc["rejected"] == pytest.approx(rejected.sum().item() / n)


def test_magnet_predict_classifies_the_reformed_images():
    classifier = _linear_classifier()
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    plain = classifier(x).argmax(1)
    # None: the plain classifier; identity autoencoder: the same predictions
    for ae in (None, nn.Identity()):
        predictions, rejected = defenses.magnet_predict(classifier, ae, [], x)
        assert torch.equal(predictions, plain)
        assert rejected.dtype == torch.bool and rejected.shape == (64,) and not rejected.any()
    # a real change of input: predictions are classifier(AE(x)), not classifier(x)
    inverted = classifier(1 - x).argmax(1)
    assert not torch.equal(inverted, plain)  # so the check below can tell them apart
    predictions, _ = defenses.magnet_predict(classifier, _Invert(), [], x)
    assert torch.equal(predictions, inverted)
    # an autoencoder that forgets the input: every image gets the constant image's class
    predictions, _ = defenses.magnet_predict(classifier, _Constant(0.3), [], x)
    expected = classifier(torch.full((1, 1, 4, 4), 0.3)).argmax(1).item()
    assert torch.equal(predictions, torch.full((64,), expected))


def test_magnet_predict_rejects_what_any_detector_flags():
    classifier = _linear_classifier()
    # means 0.1, 0.5, 0.8, 0.3; maxima 0.1, 0.5, 0.8, 0.95 (image 3: one bright, one dark pixel)
    x = torch.stack([torch.full((1, 4, 4), v) for v in (0.1, 0.5, 0.8, 0.3)])
    x[3, 0, 0, 0], x[3, 0, 0, 1] = 0.95, 0.3 - 0.65
    assert x.flatten(1).mean(1).tolist() == pytest.approx([0.1, 0.5, 0.8, 0.3])
    assert x.flatten(1).amax(1).tolist() == pytest.approx([0.1, 0.5, 0.8, 0.95])
    mean_det, max_det = _mean_detector(0.6), _max_detector(0.9)
    assert mean_det.flags(x).tolist() == [False, False, True, False]
    assert max_det.flags(x).tolist() == [False, False, False, True]
    _, rejected = defenses.magnet_predict(classifier, None, [mean_det, max_det], x)
    assert rejected.tolist() == [False, False, True, True]  # the OR
    _, rejected = defenses.magnet_predict(classifier, nn.Identity(), [mean_det], x)
    assert rejected.tolist() == [False, False, True, False]
    # a score equal to the threshold is not flagged (strictly above)
    _, rejected = defenses.magnet_predict(classifier, None, [_mean_detector(0.5)], x[1:2])
    assert not rejected.any()
    # detectors judge the input, not the reformed image (which is constant here)
    _, rejected = defenses.magnet_predict(classifier, _Constant(0.0), [mean_det], x)
    assert rejected.tolist() == [False, False, True, False]


def _validation(n: int = 500, seed: int = 0) -> torch.Tensor:
    """Synthetic 'clean' images around mid-grey, each with its own noise level."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.rand(n, 1, 1, 1, generator=g) * 0.2
    return (0.5 + spread * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.2])
def test_reconstruction_detector_threshold_is_set_on_validation(p, fpr):
    validation = _validation()
    ae = _Constant(0.5)
    detector = defenses.reconstruction_detector(ae, p, validation, fpr)
    scores = defenses.reconstruction_error(ae, validation, p)
    assert detector.threshold == defenses.threshold_at(scores, fpr)
    assert torch.equal(detector.score(validation), scores)
    flagged = detector.flags(validation).sum().item()
    assert flagged <= fpr * len(validation)
    assert flagged == round(fpr * len(validation))  # distinct scores: exactly that many
    assert detector.name == f"L{p} reconstruction"
    # images far from what the autoencoder reconstructs are flagged
    far = torch.cat([torch.zeros(5, 1, 4, 4), torch.ones(5, 1, 4, 4)])
    assert detector.flags(far).all()


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05])
def test_divergence_detector_threshold_is_set_on_validation(fpr):
    validation = _validation()
    classifier = _linear_classifier()
    with torch.no_grad():
        classifier[1].weight.mul_(100)  # confident enough that softmaxes at T=10 differ
    ae = _Constant(0.5)
    detector = defenses.divergence_detector(classifier, ae, 10.0, validation, fpr)
    scores = defenses.divergence_score(classifier, ae, validation, 10.0)
    assert scores.min() >= -1e-6 and scores.max() > 1e-3  # rounding can dip just below 0
    assert detector.threshold == defenses.threshold_at(scores, fpr)
    assert torch.equal(detector.score(validation), scores)
    assert detector.flags(validation).sum().item() <= fpr * len(validation)
    assert detector.name == "JSD T=10"
    # the temperature is used: a hotter softmax gives smaller divergences
    hot = defenses.divergence_detector(classifier, ae, 100.0, validation, fpr)
    assert hot.threshold < detector.threshold


def test_identity_autoencoder_scores_exactly_zero_and_flags_nothing():
    validation, x = _validation(), _validation(seed=1)
    classifier, identity = _linear_classifier(), nn.Identity()
    recon = defenses.reconstruction_detector(identity, 2, validation, 0.01)
    jsd = defenses.divergence_detector(classifier, identity, 1.0, validation, 0.01)
    assert recon.threshold == 0 and jsd.threshold == 0
    assert torch.equal(jsd.score(x), torch.zeros(len(x)))  # exactly, not approximately
    assert torch.equal(recon.score(x), torch.zeros(len(x)))
    _, rejected = defenses.magnet_predict(classifier, identity, [recon, jsd], x)
    assert not rejected.any()


def test_detector_is_frozen():
    detector = _mean_detector(0.5)
    with pytest.raises(AttributeError):
        detector.threshold = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Chapter 3's profile settings
# ---------------------------------------------------------------------------------------------

TRAIN_FILE_SIZE = {"mnist": 60_000, "cifar10": 50_000}


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_profile_thresholds_rest_on_at_least_five_images(name):
    profile = profiles.get_profile(name)
    assert 0 < profile.detector_fpr < 1
    assert profile.validation_size * profile.detector_fpr >= 5 - 1e-9
    # and threshold_at really leaves that many distinct validation scores above it
    scores = torch.randperm(profile.validation_size).float()
    threshold = defenses.threshold_at(scores, profile.detector_fpr)
    assert (scores > threshold).sum().item() >= 5


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_profile_kappas_start_at_zero_and_increase(name):
    kappas = profiles.get_profile(name).magnet_kappas
    assert len(kappas) >= 2 and kappas[0] == 0
    assert all(a < b for a, b in zip(kappas[:-1], kappas[1:], strict=True))


def test_pooled_epochs_apply_to_ae_i_only(monkeypatch):
    keys = {}
    monkeypatch.setattr(defenses.cache, "cached_model",
                        lambda key, make, fit, device: keys.setdefault(key["model"], key))
    quick = profiles.get_profile("quick")
    for pooling in (True, False):
        defenses.autoencoder("cifar10", quick, pooling=pooling, device=torch.device("cpu"))
    recipe = defenses.AUTOENCODER_RECIPES["quick"]["cifar10"]
    assert keys["magnet-ae1"]["recipe"]["epochs"] == recipe.pooled_epochs
    assert keys["magnet-ae2"]["recipe"]["epochs"] == recipe.epochs != recipe.pooled_epochs


@pytest.mark.parametrize("name", sorted(profiles.PROFILES))
def test_profile_leaves_validation_images_out_of_training(name):
    profile = profiles.get_profile(name)
    assert set(defenses.AUTOENCODER_RECIPES[name]) == set(TRAIN_FILE_SIZE)
    for dataset, size in TRAIN_FILE_SIZE.items():
        for recipe in (defenses.AUTOENCODER_RECIPES[name][dataset], profile.recipe(dataset)):
            assert recipe.train_size is not None, (name, dataset, recipe)
            assert recipe.train_size + profile.validation_size <= size, (name, dataset, recipe)


def test_scores_and_predictions_leave_every_submodule_mode_as_found():
    """A Reformer built from eval-mode parts must not switch them to training mode.

    Found in Chapter 3: restoring only the wrapper's flag with ``train(True)`` put the frozen
    classifier in training mode, and the divergence detector then ran BatchNorm on batch
    statistics and overwrote its running averages with adversarial images'.
    """
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                               nn.LazyLinear(3))
    classifier(torch.rand(2, 1, 8, 8))
    classifier.eval()
    ae = defenses.magnet_autoencoder(1, pooling=False).eval()
    reformer = defenses.Reformer(ae, classifier)
    assert not reformer.training
    running = classifier[1].running_mean.clone()
    x = torch.rand(16, 1, 8, 8) * 0.2 + 0.8  # far from the BatchNorm statistics
    train.predict(reformer, x)
    defenses.divergence_score(classifier, ae, x, temperature=10)
    defenses.reconstruction_error(ae, x)
    defenses.magnet_predict(classifier, ae, [], x)
    assert not classifier.training and not ae.training
    assert torch.equal(classifier[1].running_mean, running)

    wrapper = nn.Sequential(classifier).train()  # a training wrapper around a frozen part
    classifier.eval()
    train.predict(wrapper, x)
    assert wrapper.training and not classifier.training and not classifier[1].training


def test_magnet_runs_each_network_once_per_image_and_decides_as_before():
    """CIFAR-10's MagNet: an L1 reconstruction detector and two divergence detectors around
    the reformer. One shared pass runs the autoencoder once and the classifier twice per image
    (not 4 and 5 times), and decides exactly as each detector and the reformer alone do."""
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                               nn.Linear(4 * 8 * 8, 10)).eval()
    ae = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Sigmoid()).eval()
    x = torch.rand(40, 3, 8, 8)
    detectors = [defenses.reconstruction_detector(ae, 1, x, 0.2),
                 *[defenses.divergence_detector(classifier, ae, t, x, 0.2) for t in (10, 40)]]
    runs = {"classifier": 0, "autoencoder": 0}
    hooks = [classifier.register_forward_hook(
                 lambda *_: runs.__setitem__("classifier", runs["classifier"] + 1)),
             ae.register_forward_hook(
                 lambda *_: runs.__setitem__("autoencoder", runs["autoencoder"] + 1))]
    predicted, rejected = defenses.magnet_predict(classifier, ae, detectors, x)
    for hook in hooks:
        hook.remove()
    assert runs == {"classifier": 2, "autoencoder": 1}  # one chunk of 40 images
    flagged = torch.zeros(len(x), dtype=torch.bool)
    for detector in detectors:
        flagged |= detector.flags(x)
    assert torch.equal(rejected, flagged) and 0 < rejected.sum() < len(x)
    assert torch.equal(predicted, train.predict(defenses.Reformer(ae, classifier), x).argmax(1))
