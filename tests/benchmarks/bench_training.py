"""Benchmark: one training epoch over on-device tensors (``helpers.train.fit``) against the usual
torchvision Dataset + DataLoader with PIL transforms, on the same model, images and settings.

Run from the repository root (about three minutes on 2 CPU cores)::

    python -m tests.benchmarks.bench_training
    python -m tests.benchmarks.bench_training --train-n 10000 --workers 2 --repeats 3

Both train a fresh ``helpers.zoo.make_classifier("cifar10", profile)`` for one epoch over the
same CIFAR-10 training images (``--train-n``, default the quick profile's 10,000) with the
profile's batch size, AdamW (learning rate, weight decay 5e-4, label smoothing as the profile's
recipe) and a one-cycle learning-rate schedule, and the same augmentation: a random shift of
up to 2 pixels with reflect padding, and a horizontal flip of half the images.

* **tensors**: ``helpers.train.fit``: the images sit on the device as one uint8 tensor; batches
  are index slices and ``random_crop_flip`` shifts and flips the whole batch in one gather.
* **DataLoader**: what most training code does: a ``Dataset`` that turns each uint8 HWC array
  into a PIL image and applies ``RandomCrop(32, padding=2, padding_mode="reflect")``,
  ``RandomHorizontalFlip()`` and ``ToTensor()``, one image at a time; a ``DataLoader`` with
  ``shuffle=True`` and ``--workers`` worker processes (default 2 on a machine with 2 cores,
  measured best there: 0 or 1 leave the main process doing the PIL work) collates the batches,
  which are then moved to the device (pinned memory on CUDA).

Each contender is warmed up on a few batches, then the epochs are timed ``--repeats`` times,
alternating. The DataLoader's time includes starting its workers, as every epoch does with
``persistent_workers=False`` (the default). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from helpers import data, train, zoo
from helpers.device import get_device, training_dtype
from helpers.models import channels_last, channels_last_model
from helpers.profiles import get_profile
from tests.benchmarks.common import (
    add_common_options,
    add_profile_option,
    compare,
    print_machine,
    report,
    set_threads,
)

DATASET = "cifar10"
WEIGHT_DECAY = 5e-4  # helpers.train.fit's default


class PilImages(Dataset):
    """The usual torchvision way: uint8 HWC arrays in memory, one PIL image per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: nn.Module) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def pil_transform() -> nn.Module:
    """The same augmentation as ``helpers.transforms.random_crop_flip``, per image with PIL."""
    from torchvision import transforms as T

    return T.Compose([T.RandomCrop(32, padding=2, padding_mode="reflect"),
                      T.RandomHorizontalFlip(), T.ToTensor()])


def dataloader_epoch(model: nn.Module, loader: DataLoader, device: torch.device, lr: float,
                     label_smoothing: float) -> float:
    """One epoch of the usual training loop; returns the mean loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(  # its warm-up needs 8 steps at least
        optimizer, max_lr=lr, pct_start=0.25, total_steps=max(8, len(loader)))
    dtype = training_dtype(device)  # the same layout and precision as fit
    channels_last_model(model)
    model.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(channels_last(xb))
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
    model.eval()
    return loss_sum.item() / seen


def default_workers() -> int:
    """DataLoader workers: the usable cores, at most 4 (2 on the CI machine)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, usable or 1))


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-n", type=int, default=None,
                        help="CIFAR-10 training images (default: the profile's; quick: 10,000)")
    parser.add_argument("--train-batch-size", type=int, default=None,
                        help="training batch size (default: the profile's; quick: 128)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help=f"DataLoader worker processes ({default_workers()} here)")


def run(args: argparse.Namespace, device: torch.device) -> float:
    """Time one epoch each way; returns the ratio (tensors over DataLoader, in images/s)."""
    profile = get_profile(args.profile)
    recipe = profile.recipe(DATASET)
    n = args.train_n or recipe.train_size
    batch_size = args.train_batch_size or recipe.batch_size
    train_set = data.load(DATASET, "train", n=n)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    hwc = train_set.images.permute(0, 2, 3, 1).numpy().copy()  # as torchvision's CIFAR10 keeps
    dataset = PilImages(hwc, train_set.labels.numpy(), pil_transform())
    print(f"\nTraining: {len(train_set)} CIFAR-10 training images, make_classifier('{DATASET}', "
          f"{profile.name!r}), batch size {batch_size}, lr {recipe.lr}, AdamW, one epoch; "
          f"DataLoader with {args.workers} workers")

    def fresh_model() -> nn.Module:
        torch.manual_seed(0)
        return zoo.make_classifier(DATASET, profile).to(device)

    def tensors(n_images: int = len(images)) -> float:
        history = train.fit(fresh_model(), images[:n_images], labels[:n_images], epochs=1,
                            batch_size=batch_size, lr=recipe.lr,
                            augment=zoo.augmentation_for(DATASET),
                            label_smoothing=recipe.label_smoothing, progress=False)
        return history[-1]["loss"]

    def dataloader(n_images: int = len(dataset)) -> float:
        subset = torch.utils.data.Subset(dataset, range(n_images))
        loader = DataLoader(subset, batch_size=batch_size, shuffle=True,
                            num_workers=args.workers, pin_memory=device.type == "cuda")
        return dataloader_epoch(fresh_model(), loader, device, recipe.lr,
                                recipe.label_smoothing)

    times, losses = compare({"tensors (helpers.train.fit)": tensors,
                             "torchvision DataLoader + PIL": dataloader},
                            args.repeats, device, warm_up={"n_images": 4 * batch_size})
    ratio = report(f"One training epoch, median of {args.repeats} after a warm-up",
                   len(images), times)
    print("  check: mean training loss of the last epoch: "
          + ", ".join(f"{name} {loss:.3f}" for name, loss in losses.items()))
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    add_profile_option(parser)
    add_options(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = get_device()
    started = time.perf_counter()
    print_machine(device)
    run(args, device)
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
