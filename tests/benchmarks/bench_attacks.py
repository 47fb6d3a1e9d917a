"""Benchmark: helpers.attacks.pgd against torchattacks.PGD, and batched JPEG against Pillow.

Run from the repository root (about a minute or two on 2 CPU cores)::

    python -m tests.benchmarks.bench_attacks
    python tests/benchmarks/bench_attacks.py --threads 2 --n 1000 --repeats 3
    python tests/benchmarks/bench_attacks.py --only jpeg --repeats 15   # seconds, no model

Both PGD implementations attack the same model and the same CIFAR-10 test images with the
same parameters (PGD-10, eps 8/255, alpha 2/255, no random start, so both do the same work
and the outputs can be compared); then ``helpers.jpeg.jpeg`` on the whole batch is timed
against a Pillow encode/decode loop, one image at a time. Each contender is warmed up (PGD on
one batch, JPEG on all images), then timed ``--repeats`` times, interleaved between the two so
that a change in the machine's load hits both; the median is reported. torch runs on one
thread unless ``--threads`` says otherwise (0: torch's own choice): on a shared 2-core machine
two threads stall each other and the whole run takes minutes longer. The model is the
course's cached ``classifier("cifar10")`` if the cache holds it (it is never trained here),
else an untrained ``cifar_classifier()``: speed does not depend on the weights. Needs
torchattacks (``pip install --no-deps -r requirements-nodeps.txt``). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `helpers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from helpers import attacks, cache, data, jpeg, models, train, zoo  # noqa: E402
from helpers.device import get_device  # noqa: E402
from tests.benchmarks.common import (  # noqa: E402
    add_common_options,
    compare,
    print_machine,
    report,
    set_threads,
)

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


def load_model(device: torch.device) -> tuple[nn.Module, str]:
    """The cached CIFAR-10 classifier if there is one, else an untrained one; and which."""
    try:
        model = zoo.classifier("cifar10", device=device, progress=False, cached_only=True)
        return model.eval(), f"trained classifier('cifar10') from the cache {cache.cache_dir()}"
    except FileNotFoundError:
        torch.manual_seed(0)
        model = models.cifar_classifier().to(device).eval()
        return model, ("UNTRAINED cifar_classifier(): no cached classifier('cifar10') in "
                       f"{cache.cache_dir()} (speed does not depend on the weights)")


def pillow_jpeg_loop(images: Tensor, quality: int) -> Tensor:
    """Encode and decode one image at a time with Pillow (its default 4:2:0 subsampling)."""
    out = []
    for image in images.cpu():
        pixels = image.mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            array = np.asarray(decoded)
        if array.ndim == 2:
            array = array[:, :, None]
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(out).float().div_(255)


def bench_pgd(args: argparse.Namespace, device: torch.device, images: Tensor,
              labels: Tensor) -> None:
    """PGD-10 of helpers.attacks against torchattacks on the same model and batches."""
    import torchattacks

    model, which = load_model(device)
    print(f"\nModel: {which}")
    clean = train.evaluate(model, images, labels)

    batches = [(images[i:i + args.batch_size], labels[i:i + args.batch_size])
               for i in range(0, len(images), args.batch_size)]
    reference = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)

    def ours(n_batches: int = len(batches)) -> Tensor:
        return torch.cat([attacks.pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS,
                                      random_start=False) for x, y in batches[:n_batches]])

    def theirs(n_batches: int = len(batches)) -> Tensor:
        return torch.cat([reference(x, y) for x, y in batches[:n_batches]])

    times, outputs = compare({"helpers.attacks.pgd": ours, "torchattacks.PGD": theirs},
                             args.repeats, device, warm_up={"n_batches": 1})
    report(f"PGD-{STEPS} (eps 8/255, alpha 2/255, no random start), median of "
           f"{args.repeats} after a warm-up", len(images), times)
    adv_ours, adv_theirs = outputs["helpers.attacks.pgd"], outputs["torchattacks.PGD"]
    same = ((adv_ours - adv_theirs).abs() <= 1e-6).float().mean().item()
    print(f"  check: pixels equal within 1e-6: {same:.4%}; accuracy clean {clean:.3f}, "
          f"under helpers PGD {train.evaluate(model, adv_ours, labels):.3f}, "
          f"under torchattacks PGD {train.evaluate(model, adv_theirs, labels):.3f}")


def bench_jpeg(args: argparse.Namespace, device: torch.device, images: Tensor) -> None:
    """helpers.jpeg.jpeg on the whole batch against a Pillow loop, one image at a time."""
    times, outputs = compare({"helpers.jpeg.jpeg (one batch)": lambda: jpeg.jpeg(images,
                                                                               args.quality),
                              "Pillow, one image at a time": lambda: pillow_jpeg_loop(
                                  images, args.quality)},
                             args.repeats, device)
    report(f"JPEG round trip at quality {args.quality} (float in, float out), median of "
           f"{args.repeats} after a warm-up", len(images), times)
    batched, looped = outputs.values()
    diff = (batched.cpu() - looped).abs().max().item() * 255
    print(f"  check: largest difference between the two: {diff:.0f} / 255")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="CIFAR-10 test images (1000)")
    parser.add_argument("--batch-size", type=int, default=250,
                        help="images per attack call, the same for both (250)")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality (75)")


def run(args: argparse.Namespace, device: torch.device, only: str | None = None) -> None:
    """The JPEG and PGD comparisons on the same CIFAR-10 test images."""
    images, labels = data.load("cifar10", "test", n=args.n).to(device)
    print(f"\nImages: {len(images)} CIFAR-10 test images (data.load('cifar10', 'test', "
          f"n={args.n}), batches of {args.batch_size}")
    if only != "jpeg":
        bench_pgd(args, device, images, labels)
    if only != "pgd":
        bench_jpeg(args, device, images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    add_options(parser)
    parser.add_argument("--only", choices=["pgd", "jpeg"],
                        help="run one of the two benchmarks (default: both)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = get_device()
    started = time.perf_counter()
    print_machine(device)
    run(args, device, args.only)
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
