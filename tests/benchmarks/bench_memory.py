"""The largest memory one call takes, chapter by chapter, in the full profile.

    python -m tests.benchmarks.bench_memory [--gpu-gib 15]

For each chapter's heaviest call (the model an attack differentiates through, at full size),
measures on the CPU the bytes its backward pass keeps per image
(``helpers.batching.saved_bytes_per_image``), then multiplies by the images per chunk that
``helpers.batching`` gives on a GPU of ``--gpu-gib`` GiB (Colab's T4: 15 GiB usable). Every
attack runs in such chunks, so this is the activation memory of the chapter's largest call,
whatever its number of images. Weights are listed apart; they are small. A few seconds.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from helpers import adaptive, batching, defenses, jpeg, models
from helpers.profiles import get_profile


class _EndToEnd(nn.Module):
    """What ``adaptive.pgd_against_detectors`` differentiates: the reformer's logits and the
    detectors' scores from one shared pass (each network once per image)."""

    def __init__(self, reformer: defenses.Reformer, detectors: list):
        super().__init__()
        self.reformer, self.detectors = reformer, detectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = defenses.Pass(x)
        logits = shared(self.reformer.classifier, after=self.reformer.autoencoder)
        penalty = sum(score(shared) for score in self.detectors)
        return logits + 0 * penalty[:, None]


def cases() -> list[tuple[str, str, nn.Module, tuple[int, ...], int]]:
    """(chapter, what, model, image shape, classes) for each chapter's heaviest call."""
    full = get_profile("full")
    cifar = models.cifar_classifier(10, full.recipe("cifar10").widths).eval()
    gtsrb = models.cifar_classifier(43, full.recipe("gtsrb").widths).eval()
    mnist = models.mnist_classifier().eval()
    ae1, ae2 = defenses.magnet_autoencoder(1, True).eval(), defenses.magnet_autoencoder(3, False)
    ae2 = ae2.eval()

    def behind_jpeg(model: nn.Module, quality: int) -> nn.Module:
        return adaptive.Defended(model, adaptive.bpda(
            lambda z: jpeg.jpeg(z, quality), lambda z: jpeg.jpeg_differentiable(z, quality)))

    qualities = full.vaccine_qualities
    slq = adaptive.bpda(lambda z: z, lambda z: jpeg.jpeg_differentiable(z, qualities[2]))
    magnet = _EndToEnd(defenses.Reformer(ae2, cifar), [
        lambda p: defenses.reconstruction_error_of(p, ae2, 1),
        *[lambda p, t=t: defenses.divergence_of(p, cifar, ae2, t) for t in (10, 40)]])
    rgb, gray = (3, 32, 32), (1, 28, 28)
    return [
        ("2", "PGD / Carlini-Wagner on the CIFAR-10 classifier", cifar, rgb, 10),
        ("2", "the same on GTSRB (43 classes)", gtsrb, rgb, 43),
        ("3", "Carlini-Wagner through MNIST's reformer (AE I)",
         defenses.Reformer(ae1, mnist), gray, 10),
        ("3", "the same through CIFAR-10's reformer (AE II)", defenses.Reformer(ae2, cifar),
         rgb, 10),
        ("4-5", "FGSM / DeepFool on the CIFAR-10 classifier", cifar, rgb, 10),
        ("6", "BPDA through the differentiable JPEG", behind_jpeg(cifar, 75), rgb, 10),
        ("6", f"the vaccinated ensemble ({len(qualities)} members, BPDA each)",
         adaptive.Ensemble([behind_jpeg(cifar, q) for q in qualities]), rgb, 10),
        ("6", f"EOT over SLQ ({full.eot_samples} draws)",
         adaptive.EOT(cifar, full.eot_samples, lambda z, g: slq(z)), rgb, 10),
        ("6", "MagNet end to end (reformer + 3 detectors)", magnet, rgb, 10),
    ]


# Adversarial training attacks each training batch whole: the recipe's batch, not a chunk.
TRAINING_BATCH = ("6", "PGD inside adversarial training (one training batch)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-gib", type=float, default=15.0,
                        help="GPU memory the chunk size is set for (15: a 16 GB T4)")
    args = parser.parse_args(argv)
    per_pass = max(1, int(args.gpu_gib * batching.GPU_IMAGES_PER_GIB))
    print(f"full profile; chunks for a {args.gpu_gib:g} GiB GPU: {per_pass} images per forward "
          "pass (helpers.batching's default)\n")
    print(f"{'ch.':4} {'call':58} {'KB/image':>9} {'passes':>6} {'chunk':>6} {'GiB/call':>9}")
    largest = 0.0
    generator = torch.Generator().manual_seed(0)
    for chapter, what, model, shape, classes in cases():
        x = torch.rand(4, *shape, generator=generator)
        y = torch.randint(0, classes, (4,), generator=generator)
        per_image = batching.saved_bytes_per_image(model, x, y)
        passes = batching.forward_passes(model)
        chunk = max(1, per_pass // passes)
        gib = chunk * per_image / 2**30
        largest = max(largest, gib)
        print(f"{chapter:4} {what:58} {per_image / 1024:9.0f} {passes:6d} {chunk:6d} "
              f"{gib:9.2f}")
    batch = get_profile("full").recipe("cifar10").batch_size
    cifar = models.cifar_classifier(10, get_profile("full").recipe("cifar10").widths)
    x = torch.rand(4, 3, 32, 32, generator=generator)
    per_image = batching.saved_bytes_per_image(cifar.train(), x, torch.zeros(4).long())
    gib = batch * per_image / 2**30
    largest = max(largest, gib)
    print(f"{TRAINING_BATCH[0]:4} {TRAINING_BATCH[1]:58} {per_image / 1024:9.0f} {1:6d} "
          f"{batch:6d} {gib:9.2f}")
    weights = sum(p.numel() * 4 for p in models.cifar_classifier(
        10, get_profile("full").recipe("cifar10").widths).parameters()) / 2**20
    print(f"\nlargest call: {largest:.2f} GiB of activations (+ weights: {weights:.0f} MiB "
          f"a classifier); fits a {args.gpu_gib:g} GiB GPU: {largest < args.gpu_gib}")


if __name__ == "__main__":
    main()
