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
import datetime
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `helpers` importable
    sys.path.insert(0, str(REPO))
SHARED_DATA = REPO.parent / "shared" / "data"
if "LESSON_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():  # as tests/conftest.py does
    os.environ["LESSON_DATA_DIR"] = str(SHARED_DATA)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from helpers import attacks, data, jpeg, models, train  # noqa: E402
from helpers.device import get_device  # noqa: E402

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


class _NotCached(Exception):
    """Raised instead of training: the benchmark only uses a model that is already cached."""


def _refuse_training(*args, **kwargs):
    raise _NotCached


def load_model(device: torch.device) -> tuple[nn.Module, str]:
    """The cached CIFAR-10 classifier if there is one, else an untrained one; and which."""
    try:
        with mock.patch.object(train, "fit", _refuse_training):
            model = train.classifier("cifar10", device=device, progress=False)
        return model.eval(), f"trained classifier('cifar10') from the cache {train.cache_dir()}"
    except _NotCached:
        torch.manual_seed(0)
        model = models.cifar_classifier().to(device).eval()
        return model, ("UNTRAINED cifar_classifier(): no cached classifier('cifar10') in "
                       f"{train.cache_dir()} (speed does not depend on the weights)")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(device: torch.device) -> list[tuple[str, str]]:
    import PIL
    import torchattacks
    import torchvision

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    facts = [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("machine", f"{platform.node()} ({platform.platform()})"),
        ("cpu", f"{cpu_model()}; {os.cpu_count()} CPUs, {usable} usable"),
        ("load average (1, 5, 15 min)", load),
        ("torch threads", f"{torch.get_num_threads()} intra-op, "
                          f"{torch.get_num_interop_threads()} inter-op"),
        ("device", str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                  if device.type == "cuda" else "")),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torchvision", torchvision.__version__),
        ("torchattacks", torchattacks.__version__),
        ("Pillow", PIL.__version__),
    ]
    return facts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(contenders: dict[str, Callable[..., Tensor]], repeats: int, device: torch.device,
            warm_up: dict | None = None) -> tuple[dict[str, list[float]], dict[str, Tensor]]:
    """A warm-up run each (``run(**warm_up)``), then ``repeats`` timed runs, alternating."""
    for run in contenders.values():
        run(**(warm_up or {}))
    outputs: dict[str, Tensor] = {}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            _sync(device)
            start = time.perf_counter()
            outputs[name] = run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def report(title: str, n: int, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    rates = {}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rates[name] = n / median
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {name:<34} {rates[name]:9.1f} images/s   median {median:7.3f} s  "
              f"(runs: {runs})")
    (first, rate_first), (second, rate_second) = rates.items()
    ratio = rate_first / rate_second
    verdict = ("the same within 5%" if abs(ratio - 1) < 0.05
               else "faster" if ratio > 1 else "slower")
    print(f"  ratio {first} / {second}: {ratio:.2f}x ({verdict})")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="CIFAR-10 test images (1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (3)")
    parser.add_argument("--batch-size", type=int, default=250,
                        help="images per attack call, the same for both (250)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1; 0: torch's own choice)")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality (75)")
    parser.add_argument("--only", choices=["pgd", "jpeg"],
                        help="run one of the two benchmarks (default: both)")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = get_device()
    started = time.perf_counter()

    print("Machine")
    for key, value in machine_facts(device):
        print(f"  {key:<28} {value}")

    images, labels = data.load("cifar10", "test", n=args.n).to(device)
    print(f"\nImages: {len(images)} CIFAR-10 test images (data.load('cifar10', 'test', "
          f"n={args.n}), batches of {args.batch_size}")
    if args.only != "jpeg":
        bench_pgd(args, device, images, labels)
    if args.only != "pgd":
        bench_jpeg(args, device, images)
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
