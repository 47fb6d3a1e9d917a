"""Training and evaluation over on-device tensors: ``fit``, ``predict`` and ``evaluate``.

No DataLoader and no per-image PIL transforms: the whole (sub)set sits on the device as one
tensor, batches are index slices, and augmentation is done for the whole batch at once. Which
model, data and recipe each chapter trains is in :mod:`helpers.zoo`; caching in
:mod:`helpers.cache`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import batching, models
from .device import gradient_scaler, training_dtype
from .images import as_float

# images -> images, on a whole batch: e.g. helpers.transforms.jpeg_at(75)
ImageFunction = Callable[[torch.Tensor], torch.Tensor]
# perturb(model, images, labels) -> images: e.g. a PGD attack, for adversarial training
Perturbation = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
        batch_size: int, lr: float, augment: Callable | None = None,
        transform: ImageFunction | None = None, perturb: Perturbation | None = None,
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

    For speed, batches and weights are in channels-last layout (1.5x faster on a CPU for the
    CIFAR-10 network; the model stays that way, see :func:`models.channels_last_model`) and
    the forward pass runs in :func:`~helpers.device.training_dtype`, chosen by the hardware
    (bfloat16 or float16 on a GPU, bfloat16 on a CPU that has it natively); the weights stay
    float32, and float16's loss is scaled (:func:`~helpers.device.gradient_scaler`).
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need equally many images and labels, got {len(images)} and "
                         f"{len(labels)}")
    device = next(model.parameters()).device
    models.channels_last_model(model)  # before the optimizer takes the parameters
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(images) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * steps
    warmup = max(1, round(0.25 * total))  # one-cycle: linear warm-up, then linear decay to 0

    def one_cycle(step: int) -> float:
        return (step + 1) / warmup if step < warmup else (total - step) / max(1, total - warmup)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle)
    dtype = training_dtype(device)
    scaler = gradient_scaler(device, dtype)
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
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits = model(models.channels_last(xb))
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # skipped when float16 gradients overflowed
            scaler.update()
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
def predict(model: nn.Module, images: torch.Tensor, batch_size: int | None = None,
            transform: ImageFunction | None = None) -> torch.Tensor:
    """Logits for ``images`` in batches, in eval mode; every submodule's mode is restored after.

    Batches of ``batch_size`` images (default: :func:`batching.chunk_size`, the memory budget)
    go in channels-last layout (:func:`models.channels_last`): the same logits up to float
    rounding, faster.
    """
    device = next(model.parameters()).device
    size = batch_size or batching.chunk_size(model, device)

    def run(batch: torch.Tensor) -> torch.Tensor:
        xb = as_float(batch.to(device))
        if transform is not None:
            xb = transform(xb)
        return model(models.channels_last(xb)).float()

    with models.eval_mode(model):
        return batching.in_chunks(run, size, images)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int | None = None, transform: ImageFunction | None = None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``images`` (optionally after ``transform``)."""
    logits = predict(model, images, batch_size, transform)
    return (logits.argmax(1) == labels.to(logits.device)).float().mean().item()
