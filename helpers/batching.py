"""Memory-bounded work: every attack, prediction and detector score runs in chunks of images.

What an attack keeps for its backward pass grows with the number of images: 2.5 MB per image
for the full profile's CIFAR-10 network, 40 MB for EOT over 16 draws of it
(``python -m tests.benchmarks.bench_memory`` measures each chapter's heaviest call). So no
call takes all its images at once: it takes chunks of :func:`chunk_size` images and
concatenates the results, which are the same as one big call (every attack here treats each
image on its own; the tests check it).

The budget is a number of images per forward pass, ``LESSON_BATCH`` if set, else a default for
the device: 500 on a CPU, and on a GPU 64 per GiB of its memory (960 on a 16 GB T4: 2.3 GiB of
activations for the full CIFAR-10 network, 4.7 GiB for MagNet attacked end to end). A model
that runs several forward passes per image (EOT's draws, an ensemble's members) declares it in
``passes_per_image`` and gets proportionally fewer images per chunk.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

BATCH_ENV = "LESSON_BATCH"
CPU_IMAGES = 500
GPU_IMAGES_PER_GIB = 64


def images_per_pass(device: torch.device | str) -> int:
    """The budget: images per forward pass in one call on ``device``."""
    setting = os.environ.get(BATCH_ENV)
    if setting:
        try:
            value = int(setting)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{BATCH_ENV} must be a positive number of images per forward "
                             f"pass, got {setting!r}")
        return value
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return max(1, int(total / 2**30 * GPU_IMAGES_PER_GIB))
    return CPU_IMAGES


def forward_passes(model: nn.Module) -> int:
    """How many forward passes of a classifier ``model`` makes per image: its own
    ``passes_per_image`` (default 1) times the most any submodule makes."""
    inner = max((forward_passes(child) for child in model.children()), default=1)
    return int(getattr(model, "passes_per_image", 1)) * inner


def chunk_size(model: nn.Module, device: torch.device | str) -> int:
    """Images per call for ``model`` on ``device``: the budget over its forward passes."""
    return max(1, images_per_pass(device) // forward_passes(model))


def in_chunks(run: Callable[..., Tensor | tuple[Tensor, ...]], size: int, images: Tensor,
              *per_image: Tensor) -> Tensor | tuple[Tensor, ...]:
    """``run(images, *per_image)`` over consecutive chunks of ``size`` images, concatenated
    (each tensor of the tuple concatenated on its own, if ``run`` returns a tuple).

    ``per_image`` tensors (labels, say) are cut along with the images; the chunks run in
    order, so a random generator ``run`` draws from is consumed as by one call.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    if len(images) <= size:
        return run(images, *per_image)
    parts = [run(images[start:start + size], *(t[start:start + size] for t in per_image))
             for start in range(0, len(images), size)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)


def saved_bytes_per_image(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Bytes an attack's backward pass keeps per image: what the autograd graph of
    ``cross_entropy(model(images), labels)`` saves, the model's parameters left out, divided
    by the number of images. Measured, not estimated: every tensor autograd packs is counted
    once by its storage. What a chunk of ``n`` images needs is about ``n`` times this."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = images.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = torch.nn.functional.cross_entropy(model(x), labels)
    del loss
    return sum(storages.values()) / len(images)
