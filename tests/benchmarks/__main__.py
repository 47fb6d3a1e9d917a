"""Every benchmark in one run: ``python -m tests.benchmarks [--chapters] [options]``.

Prints the machine, then each comparison measured side by side on it:

* JPEG round trip: one batched ``helpers.jpeg.jpeg`` call against a per-image Pillow loop;
* PGD-10 images/s: ``helpers.attacks.pgd`` against torchattacks, on the same model;
* one training epoch: on-device tensors (``helpers.train.fit``) against a torchvision
  Dataset + DataLoader with PIL transforms, on the same model;
* with ``--chapters`` (off by default: about 15 minutes in the quick profile on 2 CPU cores):
  each chapter's wall time under nbval, as ``python -m tests.benchmarks.bench_chapters``.

About five minutes without ``--chapters`` on 2 CPU cores. Runs on CUDA when
``helpers.device.get_device()`` picks it (``LESSON_DEVICE`` forces a device). Each part also
runs alone: ``python -m tests.benchmarks.bench_attacks``, ``bench_training``,
``bench_chapters``. Needs torchattacks (``pip install --no-deps -r requirements-nodeps.txt``).
"""

from __future__ import annotations

import argparse
import time

from helpers.device import get_device
from tests.benchmarks import bench_attacks, bench_chapters, bench_training
from tests.benchmarks.common import (
    add_common_options,
    add_profile_option,
    print_machine,
    set_threads,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks",
                                     description=__doc__.splitlines()[0])
    add_common_options(parser)
    add_profile_option(parser)
    bench_attacks.add_options(parser)
    bench_training.add_options(parser)
    parser.add_argument("--chapters", action="store_true",
                        help="also time every chapter in _toc.yml under nbval (slow)")
    bench_chapters.add_options(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    device = get_device()
    started = time.perf_counter()
    print_machine(device)
    bench_attacks.run(args, device)
    bench_training.run(args, device)
    if args.chapters:
        bench_chapters.run(args, bench_chapters.toc_notebooks())
    print(f"\nTotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
