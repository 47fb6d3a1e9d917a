"""The course's trained models: which network each data set gets, how it is trained (the
profile's recipe and augmentation), and the cache that trains each one only once.

``classifier("cifar10")`` is the model every chapter attacks and defends; ``finetuned`` trains
one further (on shifted, JPEG-compressed or adversarial images). Both are cached by
:mod:`helpers.cache`, whose key covers the settings, the data and the code that trains them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from . import cache, data, models
from .device import get_device
from .profiles import Profile, TrainRecipe
from .train import Perturbation, fit
from .transforms import Transform, random_crop_flip

# Other architectures a chapter may ask for by name (Chapter 2's cross-architecture transfer).
ALTERNATIVES = {"mnist": {"mlp": models.mnist_mlp}}


def make_classifier(dataset: str, profile: Profile, architecture: str | None = None
                    ) -> nn.Module:
    """The architecture the course uses for ``dataset`` at ``profile``'s size, or the named
    alternative (``architecture="mlp"`` for MNIST)."""
    if architecture is not None:
        known = ALTERNATIVES.get(dataset, {})
        if architecture not in known:
            raise ValueError(f"no architecture {architecture!r} for {dataset!r}; known: "
                             f"{sorted(known)} (or None for the course's default)")
        return known[architecture]()
    if dataset == "mnist":
        return models.mnist_classifier()
    n_classes = len(data.class_names(dataset))
    return models.cifar_classifier(n_classes, profile.recipe(dataset).widths)


def augmentation_for(dataset: str) -> Callable | None:
    """Shifts and flips for CIFAR-10; shifts only for GTSRB (signs are not mirror-symmetric)."""
    if dataset == "cifar10":
        return random_crop_flip
    if dataset == "gtsrb":
        return lambda x, g: random_crop_flip(x, g, flip=False)
    return None


def model_name(dataset: str, architecture: str | None = None) -> str:
    """The architecture's name in cache keys: MagNet's CNN for MNIST, else the airbench CNN,
    unless an alternative is named."""
    if architecture is not None:
        return architecture
    return "magnet-cnn" if dataset == "mnist" else "airbench-cnn"


def _transform_key(transform: Transform | None) -> str:
    """The readable name of how training batches are transformed (``"none"``, ``"jpeg75"``)."""
    if transform is None:
        return "none"
    if not isinstance(transform, Transform):
        raise TypeError("a training transform must be a helpers.transforms.Transform (e.g. "
                        "transforms.jpeg_at(75)), which names itself in the cache key; got "
                        f"{type(transform).__name__}")
    return transform.key


def _fit_on_training_set(model: nn.Module, dataset: str, recipe: TrainRecipe,
                         device: torch.device, **fit_args) -> list[dict]:
    """:func:`fit` on ``dataset``'s training images with ``recipe``'s batch size, label
    smoothing and the data set's augmentation; epochs, lr and the rest come in ``fit_args``."""
    train_set = data.load(dataset, "train", n=recipe.train_size)
    return fit(model, train_set.images.to(device), train_set.labels.to(device),
               batch_size=recipe.batch_size, augment=augmentation_for(dataset),
               label_smoothing=recipe.label_smoothing, **fit_args)


def classifier(dataset: str, profile: Profile, *, seed: int = 0,
               device: torch.device | None = None, transform: Transform | None = None,
               progress: bool = True, cached_only: bool = False,
               architecture: str | None = None) -> nn.Module:
    """The course's classifier for ``dataset``, trained by the profile's recipe, from the cache.

    ``architecture`` names an alternative network (see ``ALTERNATIVES``) trained the same way.
    ``transform`` (a :class:`~helpers.transforms.Transform`, e.g. ``jpeg_at(75)``) is applied
    to every training batch. ``cached_only``: raise ``FileNotFoundError`` rather than train
    (for benchmarks that must not train).
    """
    transform_key = _transform_key(transform)
    device = device or get_device()
    recipe = profile.recipe(dataset)
    key = {"dataset": dataset, "model": model_name(dataset, architecture),
           "profile": profile.name, "transform": transform_key, "seed": seed,
           "recipe": asdict(recipe)}
    what = f"{dataset} {architecture or 'classifier'}"

    def train(model: nn.Module) -> list[dict]:
        return _fit_on_training_set(model, dataset, recipe, device, epochs=recipe.epochs,
                                    lr=recipe.lr, transform=transform, seed=seed,
                                    progress=progress,
                                    desc=f"{what} (seed {seed}, {transform_key})")

    return cache.cached_model(key, lambda: make_classifier(dataset, profile, architecture),
                              train, device, cached_only)


def finetuned(base: nn.Module, dataset: str, profile: Profile, *, name: str, epochs: int,
              lr_scale: float = 1.0, transform: Transform | None = None,
              perturb: Perturbation | None = None, seed: int = 0,
              device: torch.device | None = None, progress: bool = True) -> nn.Module:
    """``base`` trained ``epochs`` more on ``dataset``'s training images, cached as ``name``.

    The profile's recipe (batch size, augmentation, label smoothing) with its peak learning
    rate times ``lr_scale``; ``perturb`` (e.g. ``adversarial_training.PGDPerturbation``) and
    ``transform`` go to :func:`fit`, and each names its settings in the cache key. The key
    also names the base model's weights, so retraining the base retrains this.
    """
    transform_key = _transform_key(transform)
    device = device or get_device()
    recipe = profile.recipe(dataset)
    key = {"dataset": dataset, "model": name, "profile": profile.name,
           "transform": transform_key, "seed": seed, "epochs": epochs, "lr_scale": lr_scale,
           "base": cache.fingerprint(base),
           **({} if perturb is None else {"perturb": getattr(perturb, "key", None)})}

    def train(model: nn.Module) -> list[dict]:
        model.load_state_dict(base.state_dict())
        return _fit_on_training_set(model, dataset, recipe, device, epochs=epochs,
                                    lr=recipe.lr * lr_scale, transform=transform,
                                    perturb=perturb, seed=seed, progress=progress,
                                    desc=f"{dataset}: {name} ({transform_key})")

    return cache.cached_model(key, lambda: make_classifier(dataset, profile), train, device)
