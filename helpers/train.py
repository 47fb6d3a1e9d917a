"""Training and evaluation over on-device tensors, and a cache of trained models.

No DataLoader and no per-image PIL transforms: the whole (sub)set sits on the device as one
tensor, batches are index slices, and augmentation is done for the whole batch at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import data, models
from .device import get_device, seed_everything
from .files import atomic_path
from .profiles import Profile, TrainRecipe, get_profile

CACHE_ENV = "LESSON_CACHE_DIR"
# Bump when a change to the training code should invalidate every cached model.
TRAINING_CODE_VERSION = 2

Transform = Callable[[torch.Tensor], torch.Tensor]
# perturb(model, images, labels) -> images: e.g. a PGD attack, for adversarial training
Perturbation = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2,
                     flip: bool = True) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (reflect padding) and flip half of them.

    One gather for the whole batch: every image gets its own shift, no Python loop per image.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[0, :, None])[:, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[1, :, None])[:, None, :]
    if flip:
        flipped = torch.rand(n, generator=generator).to(x.device) < 0.5
        cols = torch.where(flipped[:, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images as float in [0, 1]; float images unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def fit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
        batch_size: int, lr: float, augment: Callable | None = None,
        transform: Transform | None = None, perturb: Perturbation | None = None,
        label_smoothing: float = 0.0, weight_decay: float = 5e-4, seed: int = 0,
        desc: str = "training", progress: bool = True) -> list[dict]:
    """Train ``model`` in place with AdamW and a one-cycle schedule; returns per-epoch history.

    ``images`` (float in [0, 1], or uint8) and ``labels`` should already be on the model's
    device. ``augment(batch, generator)`` and ``transform(batch)`` run on whole batches;
    ``transform`` is also what the model will see at test time (e.g. JPEG, a shift).
    ``perturb(model, batch, labels)`` replaces each augmented batch before ``transform``, e.g.
    by PGD adversarial examples against the model being trained (adversarial training, Madry
    et al. 2018): it gets the model in training mode, so it should attack in eval mode and
    restore the mode, as every ``helpers.attacks`` attack does. The history's
    ``train_accuracy`` is then the accuracy on the perturbed batches.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need equally many images and labels, got {len(images)} and "
                         f"{len(labels)}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(images) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * steps
    warmup = max(1, round(0.25 * total))  # one-cycle: linear warm-up, then linear decay to 0

    def one_cycle(step: int) -> float:
        return (step + 1) / warmup if step < warmup else (total - step) / max(1, total - warmup)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle)
    use_amp = device.type == "cuda"
    history = []
    model.train()
    bar = tqdm(total=epochs * steps, desc=desc, disable=not progress, leave=True)
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(images.device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            xb, yb = as_float(images[idx]), labels[idx]
            if augment is not None:
                xb = augment(xb, generator)
            if perturb is not None:
                perturbed = perturb(model, xb, yb)
                if perturbed.shape != xb.shape:
                    raise ValueError(f"perturb changed the batch's shape from "
                                     f"{tuple(xb.shape)} to {tuple(perturbed.shape)}")
                xb = perturbed
            if transform is not None:
                xb = transform(xb)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            bar.update(1)
        record = {"epoch": epoch + 1, "loss": loss_sum.item() / len(images),
                  "train_accuracy": correct.item() / len(images)}
        history.append(record)
        bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.3f}",
                        acc=f"{record['train_accuracy']:.3f}")
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000,
            transform: Transform | None = None) -> torch.Tensor:
    """Logits for ``images`` in batches, in eval mode; every submodule's mode is restored after.

    Batches go in channels-last layout (:func:`models.channels_last`): the same logits up to
    float rounding, faster.
    """
    device = next(model.parameters()).device
    outputs = []
    with models.eval_mode(model):
        for start in range(0, len(images), batch_size):
            xb = as_float(images[start:start + batch_size].to(device))
            if transform is not None:
                xb = transform(xb)
            outputs.append(model(models.channels_last(xb)).float())
    return torch.cat(outputs)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000, transform: Transform | None = None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``images`` (optionally after ``transform``)."""
    logits = predict(model, images, batch_size, transform)
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()


# ---------------------------------------------------------------------------------------------
# The checkpoint cache
# ---------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where trained models are kept: ``LESSON_CACHE_DIR``, default ``lessondata/models``."""
    return Path(os.environ.get(CACHE_ENV, data.LESSONDATA / "models")).expanduser()


def _key_digest(key: dict) -> str:
    """12 hex digits of a SHA-256 of ``key`` as canonical JSON: the hash part of a cache name."""
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def checkpoint_path(key: dict) -> Path:
    """A readable file name plus a hash of everything in ``key`` that determines the weights."""
    digest = _key_digest({**key, "code_version": TRAINING_CODE_VERSION})
    readable = "-".join(str(key[k]) for k in ("dataset", "model", "profile", "transform", "seed")
                        if k in key)
    return cache_dir() / f"{readable}-{digest}.pt"


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def cached_model(key: dict, make: Callable[[], nn.Module],
                 train: Callable[[nn.Module], list[dict]],
                 device: torch.device | None = None) -> nn.Module:
    """Load the model for ``key`` from the cache, or build it with ``make``, ``train`` it, save.

    The loaded model carries ``model.train_info`` (training seconds, history, the key), so a
    chapter can report training cost even when the model came from the cache. An unreadable
    checkpoint (e.g. from an interrupted run before atomic writes) is ignored and retrained.
    """
    device = device or get_device()
    path = checkpoint_path(key)
    seed_everything(int(key.get("seed", 0)))  # the same initial weights on every run
    model = make().to(device)
    if path.exists():
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
            model.load_state_dict(saved["state_dict"])
            model.train_info = saved["info"]
            return model.eval()
        except Exception as exc:  # noqa: BLE001 - any unreadable file means retrain
            warnings.warn(f"Ignoring unreadable checkpoint {path} ({exc}); retraining.",
                          stacklevel=2)
    started = time.perf_counter()
    history = train(model)
    info = {"train_seconds": time.perf_counter() - started, "history": history,
            "key": json.dumps(key, sort_keys=True, default=str), "device": str(device)}
    save_atomic({"state_dict": model.state_dict(), "info": info}, path)
    model.train_info = info
    return model.eval()


def fingerprint(*parts: torch.Tensor | nn.Module | str) -> str:
    """A short hash of exactly these values: tensors, modules (their parameters and buffers)
    or text (e.g. source code).

    Cached results are keyed on what they were computed from, so a changed model, image set
    or piece of code can never pick up a stale result.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            digest.update(part.encode())
            continue
        tensors = part.state_dict().values() if isinstance(part, nn.Module) else [part]
        for t in tensors:
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def cached_tensors(name: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]],
                   device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Load the tensors computed for ``key`` from the cache, or ``compute`` and save them.

    For expensive, deterministic results that several chapters need, such as attacks on a
    cached model: ``key`` must name everything they depend on (use :func:`fingerprint`).
    Written atomically; an unreadable file is ignored and recomputed.
    """
    device = torch.device(device or get_device())
    digest = _key_digest({**key, "torch": torch.__version__, "device": device.type})
    path = cache_dir() / "tensors" / f"{name}-{digest}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file means recompute
            warnings.warn(f"Ignoring unreadable cache file {path} ({exc}); recomputing.",
                          stacklevel=2)
    result = compute()
    save_atomic({k: v.detach().cpu() for k, v in result.items()}, path)
    return result


def make_classifier(dataset: str, profile: Profile) -> nn.Module:
    """The architecture the course uses for ``dataset`` at ``profile``'s size."""
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


def model_name(dataset: str) -> str:
    """The architecture's name in cache keys: MagNet's CNN for MNIST, else the airbench CNN."""
    return "magnet-cnn" if dataset == "mnist" else "airbench-cnn"


def _check_transform_key(transform: Transform | None, transform_key: str) -> None:
    if transform is not None and transform_key == "none":
        raise ValueError("a training transform needs a transform_key naming it for the cache")


def _fit_on_training_set(model: nn.Module, dataset: str, recipe: TrainRecipe,
                         device: torch.device, **fit_args) -> list[dict]:
    """:func:`fit` on ``dataset``'s training images with ``recipe``'s batch size, label
    smoothing and the data set's augmentation; epochs, lr and the rest come in ``fit_args``."""
    train_set = data.load(dataset, "train", n=recipe.train_size)
    return fit(model, train_set.images.to(device), train_set.labels.to(device),
               batch_size=recipe.batch_size, augment=augmentation_for(dataset),
               label_smoothing=recipe.label_smoothing, **fit_args)


def classifier(dataset: str, *, seed: int = 0, profile: Profile | None = None,
               device: torch.device | None = None, transform: Transform | None = None,
               transform_key: str = "none", progress: bool = True) -> nn.Module:
    """The course's classifier for ``dataset``, trained by the profile's recipe, from the cache.

    ``transform`` is applied to every training batch (e.g. JPEG for vaccination); name it in
    ``transform_key`` so differently trained models never share a cache entry.
    """
    _check_transform_key(transform, transform_key)
    profile = profile or get_profile()
    device = device or get_device()
    recipe = profile.recipe(dataset)
    key = {"dataset": dataset, "model": model_name(dataset),
           "profile": profile.name, "transform": transform_key, "seed": seed,
           "recipe": asdict(recipe)}

    def train(model: nn.Module) -> list[dict]:
        return _fit_on_training_set(model, dataset, recipe, device, epochs=recipe.epochs,
                                    lr=recipe.lr, transform=transform, seed=seed,
                                    progress=progress,
                                    desc=f"{dataset} classifier (seed {seed}, {transform_key})")

    return cached_model(key, lambda: make_classifier(dataset, profile), train, device)


def finetuned(base: nn.Module, dataset: str, *, name: str, epochs: int, lr_scale: float = 1.0,
              transform: Transform | None = None, transform_key: str = "none",
              perturb: Perturbation | None = None, key_extra: dict | None = None,
              seed: int = 0, profile: Profile | None = None, device: torch.device | None = None,
              progress: bool = True) -> nn.Module:
    """``base`` trained ``epochs`` more on ``dataset``'s training images, cached as ``name``.

    The profile's recipe (batch size, augmentation, label smoothing) with its peak learning
    rate times ``lr_scale``; ``perturb`` and ``transform`` go to :func:`fit`. Everything else
    that shapes the weights (e.g. an attack's settings) belongs in ``key_extra``. The cache key
    names the base model, so retraining the base retrains this.
    """
    _check_transform_key(transform, transform_key)
    profile = profile or get_profile()
    device = device or get_device()
    recipe = profile.recipe(dataset)
    key = {"dataset": dataset, "model": name, "profile": profile.name,
           "transform": transform_key, "seed": seed, "epochs": epochs, "lr_scale": lr_scale,
           "base": base.train_info["key"], **(key_extra or {})}

    def train(model: nn.Module) -> list[dict]:
        model.load_state_dict(base.state_dict())
        return _fit_on_training_set(model, dataset, recipe, device, epochs=epochs,
                                    lr=recipe.lr * lr_scale, transform=transform,
                                    perturb=perturb, seed=seed, progress=progress,
                                    desc=f"{dataset}: {name} ({transform_key})")

    return cached_model(key, lambda: make_classifier(dataset, profile), train, device)
