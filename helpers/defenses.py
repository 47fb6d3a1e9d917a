"""MagNet (Meng & Chen, 2017): autoencoder reformers and the detectors built on them.

The reformer pulls an input back toward the data (``classifier(autoencoder(x))``); detectors
reject inputs whose reconstruction error, or whose change in the classifier's softmax under
reconstruction, is larger than almost any clean image's. Everything here is an ordinary
``nn.Module`` or tensor function, so Chapter 6 can attack the whole defense end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import data, train
from .device import get_device
from .models import channels_last, eval_mode
from .profiles import Profile, get_profile


@dataclass(frozen=True)
class AutoencoderRecipe:
    """How MagNet's autoencoders are trained (the paper: 100 epochs, batch 256, Adam)."""

    train_size: int | None
    epochs: int
    batch_size: int
    lr: float
    noise: float  # std of the Gaussian noise added to training inputs ("noise volume")
    activity_l2: float = 1e-9  # the paper's L2 activity penalty on the code


# Measured here: sigmoid autoencoders collapse to a constant image with 3 epochs at Adam's
# default rate; 10 epochs at 3e-3 with small batches reconstruct well.
AUTOENCODER_RECIPES = {
    "quick": {"mnist": AutoencoderRecipe(10_000, 10, 32, 3e-3, noise=0.1),
              # 10 epochs at 3e-3 cost CIFAR-10 5 points of clean accuracy; this keeps it within 1
              "cifar10": AutoencoderRecipe(10_000, 20, 64, 1e-2, noise=0.025)},
    "full": {"mnist": AutoencoderRecipe(55_000, 100, 256, 1e-3, noise=0.1),
             "cifar10": AutoencoderRecipe(45_000, 100, 256, 1e-3, noise=0.025)},
}


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.Sigmoid()]


def magnet_autoencoder(channels: int = 1, pooling: bool = True) -> nn.Sequential:
    """MagNet's small autoencoder: 3x3 convolutions with 3 channels and sigmoid activations.

    ``pooling=True`` is the paper's "AE I" (conv, average-pool, conv | conv, upsample, conv,
    output conv); ``False`` is "AE II" (conv, output conv). Three channels keep it too small
    to copy pixels through, so it must learn what images of the data set look like.
    """
    if pooling:
        body = [*_conv(channels, 3), nn.AvgPool2d(2), *_conv(3, 3),
                *_conv(3, 3), nn.Upsample(scale_factor=2), *_conv(3, 3)]
    else:
        body = _conv(channels, 3)
    return nn.Sequential(*body, *_conv(3, channels))


def _fit_autoencoder(model: nn.Module, images: torch.Tensor, recipe: AutoencoderRecipe,
                     seed: int, desc: str) -> list[dict]:
    """Denoising training: reconstruct clean images from noisy ones, MSE plus activity L2."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = -(-len(images) // recipe.batch_size)
    history = []
    model.train()
    bar = tqdm(total=recipe.epochs * steps, desc=desc)
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        total = torch.zeros((), device=images.device)
        for step in range(steps):
            clean = images[order[step * recipe.batch_size:(step + 1) * recipe.batch_size]]
            clean = train.as_float(clean)
            noise = torch.randn(clean.shape, generator=generator).to(clean.device)
            output = model((clean + recipe.noise * noise).clamp(0, 1))
            loss = F.mse_loss(output, clean) + recipe.activity_l2 * output.pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(clean)
            bar.update(1)
        history.append({"epoch": epoch + 1, "loss": total.item() / len(images)})
        bar.set_postfix(epoch=epoch + 1, mse=f"{history[-1]['loss']:.4f}")
    bar.close()
    model.eval()
    return history


def autoencoder(dataset: str, pooling: bool = True, *, seed: int = 0,
                profile: Profile | None = None,
                device: torch.device | None = None) -> nn.Module:
    """MagNet's autoencoder for ``dataset`` (``mnist`` or ``cifar10``), trained or from cache."""
    profile = profile or get_profile()
    device = device or get_device()
    if dataset not in AUTOENCODER_RECIPES[profile.name]:
        raise ValueError(f"MagNet autoencoders exist for {list(AUTOENCODER_RECIPES['quick'])}, "
                         f"not {dataset!r}.")
    recipe = AUTOENCODER_RECIPES[profile.name][dataset]
    channels = 1 if dataset == "mnist" else 3
    kind = "magnet-ae1" if pooling else "magnet-ae2"
    key = {"dataset": dataset, "model": kind, "profile": profile.name, "transform": "none",
           "seed": seed, "recipe": asdict(recipe)}

    def fit(model: nn.Module) -> list[dict]:
        train_set = data.load(dataset, "train", n=recipe.train_size)
        return _fit_autoencoder(model, train_set.images.to(device), recipe, seed,
                                desc=f"{dataset} {kind}")

    return train.cached_model(key, lambda: magnet_autoencoder(channels, pooling), fit, device)


class Reformer(nn.Module):
    """``classifier(autoencoder(x))``: MagNet's reformer as one differentiable model."""

    def __init__(self, autoencoder: nn.Module, classifier: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder
        self.classifier = classifier
        self.training = autoencoder.training or classifier.training  # as its parts are

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.autoencoder(x))


def _in_batches(score: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                batch_size: int) -> torch.Tensor:
    return torch.cat([score(channels_last(images[start:start + batch_size]))
                      for start in range(0, len(images), batch_size)])


def reconstruction_error_differentiable(autoencoder: nn.Module, images: torch.Tensor,
                                        p: int = 2) -> torch.Tensor:
    """Per-image mean |x - AE(x)|^p, keeping the graph: what an attack on the detector needs.

    The autoencoder runs in eval mode (its own mode is restored after).
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    with eval_mode(autoencoder):
        return (images - autoencoder(images)).abs().pow(p).flatten(1).mean(1)


@torch.no_grad()
def reconstruction_error(autoencoder: nn.Module, images: torch.Tensor, p: int = 2,
                         batch_size: int = 1000) -> torch.Tensor:
    """Per-image mean |x - AE(x)|^p (p = 1 or 2): MagNet's reconstruction detectors' score."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return _in_batches(lambda x: reconstruction_error_differentiable(autoencoder, x, p),
                       images, batch_size)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence (natural log) between probability vectors."""
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log()),
                           torch.zeros_like(a)).sum(1)

    return (kl(p, m) + kl(q, m)) / 2


def divergence_score_differentiable(classifier: nn.Module, autoencoder: nn.Module,
                                    images: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`divergence_score` keeping the graph (both models in eval mode), for attacks."""
    with eval_mode(classifier), eval_mode(autoencoder):
        p = F.softmax(classifier(images) / temperature, dim=1)
        q = F.softmax(classifier(autoencoder(images)) / temperature, dim=1)
        return jensen_shannon(p, q)


@torch.no_grad()
def divergence_score(classifier: nn.Module, autoencoder: nn.Module, images: torch.Tensor,
                     temperature: float, batch_size: int = 1000) -> torch.Tensor:
    """JSD between the classifier's softmax (at ``temperature``) on x and on AE(x), per image."""
    return _in_batches(
        lambda x: divergence_score_differentiable(classifier, autoencoder, x, temperature),
        images, batch_size)


def threshold_at(clean_scores: torch.Tensor, false_positive_rate: float) -> float:
    """The score above which at most ``false_positive_rate`` of clean validation images lie."""
    if not 0 <= false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in [0, 1), got {false_positive_rate}")
    ordered = clean_scores.flatten().sort().values
    keep = int(torch.ceil(torch.tensor((1 - false_positive_rate) * len(ordered))).item())
    return ordered[max(keep - 1, 0)].item()


@dataclass(frozen=True)
class Detector:
    """A MagNet detector: flag images whose ``score`` exceeds ``threshold``."""

    name: str
    score: Callable[[torch.Tensor], torch.Tensor]
    threshold: float
    # the same score keeping the graph (no batching, no no_grad), for attacks that must evade
    # the detector (Chapter 6); None where the score is not differentiable
    differentiable_score: Callable[[torch.Tensor], torch.Tensor] | None = None

    def flags(self, images: torch.Tensor) -> torch.Tensor:
        return self.score(images) > self.threshold


def reconstruction_detector(autoencoder: nn.Module, p: int, validation: torch.Tensor,
                            false_positive_rate: float, name: str | None = None) -> Detector:
    """Reconstruction-error detector with its threshold set on clean ``validation`` images."""
    def score(x: torch.Tensor) -> torch.Tensor:
        return reconstruction_error(autoencoder, x, p)

    def differentiable(x: torch.Tensor) -> torch.Tensor:
        return reconstruction_error_differentiable(autoencoder, x, p)

    return Detector(name or f"L{p} reconstruction", score,
                    threshold_at(score(validation), false_positive_rate), differentiable)


def divergence_detector(classifier: nn.Module, autoencoder: nn.Module, temperature: float,
                        validation: torch.Tensor, false_positive_rate: float,
                        name: str | None = None) -> Detector:
    """Jensen-Shannon divergence detector at ``temperature``, thresholded on ``validation``."""
    def score(x: torch.Tensor) -> torch.Tensor:
        return divergence_score(classifier, autoencoder, x, temperature)

    def differentiable(x: torch.Tensor) -> torch.Tensor:
        return divergence_score_differentiable(classifier, autoencoder, x, temperature)

    return Detector(name or f"JSD T={temperature:g}", score,
                    threshold_at(score(validation), false_positive_rate), differentiable)


@torch.no_grad()
def magnet_predict(classifier: nn.Module, autoencoder: nn.Module | None,
                   detectors: Sequence[Detector], images: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """MagNet's decision: ``(predicted labels, rejected)`` for each image.

    An image is rejected when any detector flags it; every image is still classified (after
    reforming with ``autoencoder``, if given) so both accuracy definitions can be computed.
    """
    rejected = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    for detector in detectors:
        rejected |= detector.flags(images)
    model = classifier if autoencoder is None else Reformer(autoencoder, classifier)
    return train.predict(model, images).argmax(1), rejected


def defense_accuracies(predictions: torch.Tensor, rejected: torch.Tensor,
                       labels: torch.Tensor) -> dict[str, float]:
    """The two ways to score a defense that may reject inputs.

    ``defended``: correct *or* rejected counts as a success (the paper's "accuracy" on
    adversarial images). ``plain``: only accepted and correctly classified images count (what a
    user who needs an answer gets). ``rejected``: the share rejected.
    """
    correct = predictions.to(labels.device) == labels
    rejected = rejected.to(labels.device)
    return {"defended": (correct | rejected).float().mean().item(),
            "plain": (correct & ~rejected).float().mean().item(),
            "rejected": rejected.float().mean().item()}


def magnet(dataset: str, classifier: nn.Module, *, profile: Profile | None = None,
           device: torch.device | None = None) -> tuple[nn.Module, list[Detector]]:
    """MagNet as Meng & Chen set it up for ``dataset``: ``(reformer autoencoder, detectors)``.

    MNIST: AE I reforms; the detectors are AE I's L2 and AE II's L1 reconstruction errors.
    CIFAR-10: AE II reforms and detects by L1 error, plus the divergence detectors at
    temperatures 10 and 40. Each threshold flags ``profile.detector_fpr`` of held-out clean
    training images that neither the classifier nor the autoencoders trained on.
    """
    profile = profile or get_profile()
    device = device or get_device()
    fpr = profile.detector_fpr
    validation = data.held_out(dataset, profile.validation_size,
                               profile.recipe(dataset).train_size).float(device)
    ae_2 = autoencoder(dataset, pooling=False, profile=profile, device=device)
    if dataset == "mnist":
        ae_1 = autoencoder(dataset, pooling=True, profile=profile, device=device)
        return ae_1, [reconstruction_detector(ae_1, 2, validation, fpr, "AE I, L2"),
                      reconstruction_detector(ae_2, 1, validation, fpr, "AE II, L1")]
    return ae_2, [reconstruction_detector(ae_2, 1, validation, fpr, "AE II, L1"),
                  *[divergence_detector(classifier, ae_2, t, validation, fpr, f"JSD, T={t}")
                    for t in (10, 40)]]
