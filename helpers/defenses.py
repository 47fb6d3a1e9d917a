"""MagNet (Meng & Chen, 2017): autoencoder reformers and the detectors built on them.

The reformer pulls an input back toward the data (``classifier(autoencoder(x))``); detectors
reject inputs whose reconstruction error, or whose change in the classifier's softmax under
reconstruction, is larger than almost any clean image's. Everything here is an ordinary
``nn.Module`` or tensor function, so Chapter 6 can attack the whole defense end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import batching, cache, data
from .device import get_device
from .images import as_float
from .models import channels_last, channels_last_model, eval_mode
from .profiles import Profile


@dataclass(frozen=True)
class AutoencoderRecipe:
    """How MagNet's autoencoders are trained (the paper: 100 epochs, batch 256, Adam)."""

    train_size: int | None
    epochs: int
    batch_size: int
    lr: float
    noise: float  # std of the Gaussian noise added to training inputs ("noise volume")
    activity_l2: float = 1e-9  # the paper's L2 activity penalty on the code
    pooled_epochs: int | None = None  # AE I's epochs, where they differ from AE II's


# Measured here: sigmoid autoencoders collapse to a constant image with 3 epochs at Adam's
# default rate; 10 epochs at 3e-3 with small batches reconstruct well.
AUTOENCODER_RECIPES = {
    "quick": {"mnist": AutoencoderRecipe(10_000, 10, 32, 3e-3, noise=0.1),
              # AE II as the authors built it (3 convolutions) cost the quick CIFAR-10 classifier
              # 5.3 points of clean accuracy after 20 epochs, 3.0 after 40, 1.7 after 60 (55 s;
              # 3e-3 was worse); the authors trained CIFAR-10's for 400
              # (AE I, only shown to be too small for CIFAR-10, trains 10)
              "cifar10": AutoencoderRecipe(10_000, 60, 64, 1e-2, noise=0.025,
                                           pooled_epochs=10)},
    "full": {"mnist": AutoencoderRecipe(55_000, 100, 256, 1e-3, noise=0.1),
             "cifar10": AutoencoderRecipe(45_000, 100, 256, 1e-3, noise=0.025)},
}


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.Sigmoid()]


def magnet_autoencoder(channels: int = 1, pooling: bool = True) -> nn.Sequential:
    """MagNet's small autoencoder: 3x3 convolutions with 3 channels and sigmoid activations.

    As the authors' code builds them: an encoder from a structure list, the same list mirrored
    as the decoder, then an output conv back to the image's channels. ``pooling=True`` is
    "AE I" (structure ``[3, "average", 3]``: conv, average-pool, conv | conv, upsample, conv |
    output conv, 5 convolutions); ``False`` is "AE II" (structure ``[3]``: conv | conv |
    output conv, 3 convolutions, full resolution). Three channels keep it too small to copy
    pixels through, so it must learn what images of the data set look like.
    """
    if pooling:
        body = [*_conv(channels, 3), nn.AvgPool2d(2), *_conv(3, 3),
                *_conv(3, 3), nn.Upsample(scale_factor=2), *_conv(3, 3)]
    else:
        body = [*_conv(channels, 3), *_conv(3, 3)]
    return nn.Sequential(*body, *_conv(3, channels))


def _fit_autoencoder(model: nn.Module, images: torch.Tensor, recipe: AutoencoderRecipe,
                     seed: int, desc: str) -> list[dict]:
    """Denoising training: reconstruct clean images from noisy ones, MSE plus activity L2.

    In channels-last layout (2.6x faster on a CPU for the CIFAR-10 autoencoders; the model
    stays that way) and float32: the detectors threshold small differences of reconstruction
    error.
    """
    from tqdm.auto import tqdm

    channels_last_model(model)  # before the optimizer takes the parameters
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
            clean = as_float(clean)
            noise = torch.randn(clean.shape, generator=generator).to(clean.device)
            output = model(channels_last((clean + recipe.noise * noise).clamp(0, 1)))
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


def autoencoder(dataset: str, profile: Profile, *, pooling: bool = True, seed: int = 0,
                device: torch.device | None = None) -> nn.Module:
    """MagNet's autoencoder for ``dataset`` (``mnist`` or ``cifar10``), trained or from cache."""
    device = device or get_device()
    if dataset not in AUTOENCODER_RECIPES[profile.name]:
        raise ValueError(f"MagNet autoencoders exist for {list(AUTOENCODER_RECIPES['quick'])}, "
                         f"not {dataset!r}.")
    recipe = AUTOENCODER_RECIPES[profile.name][dataset]
    if pooling and recipe.pooled_epochs is not None:
        recipe = replace(recipe, epochs=recipe.pooled_epochs, pooled_epochs=None)
    channels = 1 if dataset == "mnist" else 3
    kind = "magnet-ae1" if pooling else "magnet-ae2"
    key = {"dataset": dataset, "model": kind, "profile": profile.name, "transform": "none",
           "seed": seed, "recipe": asdict(recipe)}

    def fit(model: nn.Module) -> list[dict]:
        train_set = data.load(dataset, "train", n=recipe.train_size)
        return _fit_autoencoder(model, train_set.images.to(device), recipe, seed,
                                desc=f"{dataset} {kind}")

    return cache.cached_model(key, lambda: magnet_autoencoder(channels, pooling), fit, device)


class Reformer(nn.Module):
    """``classifier(autoencoder(x))``: MagNet's reformer as one differentiable model."""

    def __init__(self, autoencoder: nn.Module, classifier: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder
        self.classifier = classifier
        self.training = autoencoder.training or classifier.training  # as its parts are

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.autoencoder(x))


class Pass:
    """One batch through MagNet's networks, each network run on each input once.

    ``p(model)`` is ``model(images)``, ``p(model, after=ae)`` is ``model(ae(images))``; both are
    computed the first time they are asked for and reused after, so the detectors and the
    reformer share the autoencoder's reconstruction and the classifier's two outputs: two
    classifier passes and one autoencoder pass per image for CIFAR-10's MagNet, not five and
    four. Keeps the graph, so attacks use it too.
    """

    def __init__(self, images: torch.Tensor):
        self.images = images
        self._outputs: dict[tuple[int, int | None], torch.Tensor] = {}

    def __call__(self, model: nn.Module, after: nn.Module | None = None) -> torch.Tensor:
        key = (id(model), None if after is None else id(after))
        if key not in self._outputs:
            inputs = self.images if after is None else self(after)
            with eval_mode(model):
                self._outputs[key] = model(inputs)
        return self._outputs[key]


def _scores(score: Callable[[Pass], torch.Tensor], images: torch.Tensor,
            model: nn.Module) -> torch.Tensor:
    """``score`` of each image, without gradients, in memory-bounded chunks."""
    with torch.no_grad():
        return batching.in_chunks(lambda x: score(Pass(channels_last(x))),
                                  batching.chunk_size(model, images.device), images)


def reconstruction_error_of(p: Pass, autoencoder: nn.Module, norm: int = 2) -> torch.Tensor:
    """Per-image mean |x - AE(x)|^norm of a :class:`Pass` (the autoencoder run in eval mode)."""
    if norm not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {norm!r}")
    return (p.images - p(autoencoder)).abs().pow(norm).flatten(1).mean(1)


def reconstruction_error_differentiable(autoencoder: nn.Module, images: torch.Tensor,
                                        p: int = 2) -> torch.Tensor:
    """Per-image mean |x - AE(x)|^p, keeping the graph: what an attack on the detector needs.

    The autoencoder runs in eval mode (its own mode is restored after).
    """
    return reconstruction_error_of(Pass(images), autoencoder, p)


def reconstruction_error(autoencoder: nn.Module, images: torch.Tensor,
                         p: int = 2) -> torch.Tensor:
    """Per-image mean |x - AE(x)|^p (p = 1 or 2): MagNet's reconstruction detectors' score."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return _scores(lambda q: reconstruction_error_of(q, autoencoder, p), images, autoencoder)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence (natural log) between probability vectors."""
    m = (p + q) / 2

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a > 0, a * (a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log()),
                           torch.zeros_like(a)).sum(1)

    return (kl(p, m) + kl(q, m)) / 2


def divergence_of(p: Pass, classifier: nn.Module, autoencoder: nn.Module,
                  temperature: float) -> torch.Tensor:
    """JSD between the classifier's softmax (at ``temperature``) on x and on AE(x) in a pass."""
    return jensen_shannon(F.softmax(p(classifier) / temperature, dim=1),
                          F.softmax(p(classifier, after=autoencoder) / temperature, dim=1))


def divergence_score_differentiable(classifier: nn.Module, autoencoder: nn.Module,
                                    images: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`divergence_score` keeping the graph (both models in eval mode), for attacks."""
    return divergence_of(Pass(images), classifier, autoencoder, temperature)


def divergence_score(classifier: nn.Module, autoencoder: nn.Module, images: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """JSD between the classifier's softmax (at ``temperature``) on x and on AE(x), per image."""
    return _scores(lambda q: divergence_of(q, classifier, autoencoder, temperature), images,
                   classifier)


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
    # the same score of a shared Pass, so MagNet runs each network once per image
    score_of: Callable[[Pass], torch.Tensor] | None = None

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
                    threshold_at(score(validation), false_positive_rate), differentiable,
                    lambda q: reconstruction_error_of(q, autoencoder, p))


def divergence_detector(classifier: nn.Module, autoencoder: nn.Module, temperature: float,
                        validation: torch.Tensor, false_positive_rate: float,
                        name: str | None = None) -> Detector:
    """Jensen-Shannon divergence detector at ``temperature``, thresholded on ``validation``."""
    def score(x: torch.Tensor) -> torch.Tensor:
        return divergence_score(classifier, autoencoder, x, temperature)

    def differentiable(x: torch.Tensor) -> torch.Tensor:
        return divergence_score_differentiable(classifier, autoencoder, x, temperature)

    return Detector(name or f"JSD T={temperature:g}", score,
                    threshold_at(score(validation), false_positive_rate), differentiable,
                    lambda q: divergence_of(q, classifier, autoencoder, temperature))


@torch.no_grad()
def magnet_predict(classifier: nn.Module, autoencoder: nn.Module | None,
                   detectors: Sequence[Detector], images: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """MagNet's decision: ``(predicted labels, rejected)`` for each image.

    An image is rejected when any detector flags it; every image is still classified (after
    reforming with ``autoencoder``, if given) so both accuracy definitions can be computed.
    Detectors and reformer share one :class:`Pass` per chunk of images, so each network runs
    once per input (detectors built without ``score_of`` score on their own).
    """
    def decide(x: torch.Tensor) -> torch.Tensor:
        p = Pass(channels_last(x))
        rejected = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for detector in detectors:
            score = (detector.score_of(p) if detector.score_of is not None
                     else detector.score(x))
            rejected |= score > detector.threshold
        predicted = p(classifier, after=autoencoder).argmax(1)
        return torch.stack([predicted, rejected.long()], dim=1)

    size = batching.chunk_size(classifier, images.device)
    decisions = batching.in_chunks(decide, size, images)
    return decisions[:, 0], decisions[:, 1].bool()


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


def magnet(dataset: str, classifier: nn.Module, profile: Profile, *,
           device: torch.device | None = None) -> tuple[nn.Module, list[Detector]]:
    """MagNet as Meng & Chen set it up for ``dataset``: ``(reformer autoencoder, detectors)``.

    MNIST: AE I reforms; the detectors are AE I's L2 and AE II's L1 reconstruction errors.
    CIFAR-10: AE II reforms and detects by L1 error, plus the divergence detectors at
    temperatures 10 and 40. Each threshold flags ``profile.detector_fpr`` of held-out clean
    training images that neither the classifier nor the autoencoders trained on.
    """
    device = device or get_device()
    fpr = profile.detector_fpr
    validation = data.held_out(dataset, profile.validation_size,
                               profile.recipe(dataset).train_size).float(device)
    ae_2 = autoencoder(dataset, profile, pooling=False, device=device)
    if dataset == "mnist":
        ae_1 = autoencoder(dataset, profile, pooling=True, device=device)
        return ae_1, [reconstruction_detector(ae_1, 2, validation, fpr, "AE I, L2"),
                      reconstruction_detector(ae_2, 1, validation, fpr, "AE II, L1")]
    return ae_2, [reconstruction_detector(ae_2, 1, validation, fpr, "AE II, L1"),
                  *[divergence_detector(classifier, ae_2, t, validation, fpr, f"JSD, T={t}")
                    for t in (10, 40)]]
