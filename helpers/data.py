"""The lesson datasets (MNIST, CIFAR-10, GTSRB) as tensors.

Files live at ``<root>/<name>/{train,test}.npz`` with ``images`` (uint8, N x H x W x C) and
``labels`` (int64). The root is ``LESSON_DATA_DIR`` (default: the repository's ``lessondata/``).
Every file is checked against ``lessondata/manifest.json`` before use. A missing file is prepared
from torchvision's downloads when the network works: ``python -m helpers.data prepare``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import atomic_path
from .images import as_float

DATA_ENV = "LESSON_DATA_DIR"
DATASETS = ("mnist", "cifar10", "gtsrb")
SPLITS = ("train", "test")
LESSONDATA = Path(__file__).resolve().parent.parent / "lessondata"
MANIFEST_PATH = LESSONDATA / "manifest.json"


class DataError(RuntimeError):
    """A lesson dataset is missing, corrupt or not what the course expects."""


@dataclass
class ImageSet:
    """Images kept compact as uint8 N x C x H x W, with int64 labels and class names."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1] on ``device`` (converted there, so uint8 is what moves)."""
        return as_float(self.images.to(device))

    def to(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(float images in [0, 1], labels)`` on ``device``: what training and attacks take."""
        return self.float(device), self.labels.to(device)


def data_root() -> Path:
    """The lesson data home: ``LESSON_DATA_DIR`` if set, else the repository's ``lessondata/``."""
    return Path(os.environ.get(DATA_ENV, LESSONDATA)).expanduser()


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    """The committed manifest: class names, counts and checksums of the expected files."""
    return json.loads(MANIFEST_PATH.read_text())


def class_names(name: str) -> list[str]:
    _check_name(name)
    return list(manifest()["datasets"][name]["classes"])


def _check_name(name: str, split: str = "train") -> None:
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {DATASETS}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose 'train' or 'test'.")


def _missing_message(path: Path, name: str) -> str:
    return (
        f"Dataset file {path} is missing and could not be downloaded.\n"
        f"Either point {DATA_ENV} at a folder holding <name>/{{train,test}}.npz "
        f"(e.g. `export {DATA_ENV}=/path/to/data`), or prepare it with network access:\n"
        f"    python -m helpers.data prepare {name}\n"
        f"(it downloads through torchvision into {data_root()})."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _file_sha256(path_str: str, mtime: float) -> str:
    return _sha256(Path(path_str))


def content_digest(name: str, split: str = "train") -> str:
    """A hash of the data set file ``load(name, split)`` reads: cache keys name the data by it,
    so a model trained on other data (a fresh download, a repacked file) is never reused."""
    _check_name(name, split)
    path = data_root() / name / f"{split}.npz"
    if not path.exists():
        load(name, split)  # prepares it, or says how
    return _file_sha256(str(path), path.stat().st_mtime)[:16]


def _content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) != {"images", "labels"}:
                raise DataError(f"{path} holds arrays {sorted(z.files)}; expected exactly "
                                "'images' and 'labels'.")
            return z["images"], z["labels"]
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(
            f"{path} is corrupt or not a lesson .npz file ({type(exc).__name__}: {exc}). "
            f"Delete it and prepare it again (`python -m helpers.data prepare`), or point "
            f"{DATA_ENV} at a good copy."
        ) from exc


def verify(name: str, split: str, images: np.ndarray, labels: np.ndarray, path: Path) -> str:
    """Check arrays against the manifest; returns how they were verified. Raises DataError."""
    key = f"{name}/{split}.npz"
    expected = manifest()["files"][key]
    n_classes = len(class_names(name))
    problems = []
    if images.dtype != np.uint8 or images.ndim != 4:
        problems.append(f"images must be uint8 N x H x W x C, got {images.dtype} {images.shape}")
    elif list(images.shape[1:]) != expected["image_shape"]:
        problems.append(f"image shape {images.shape[1:]} != expected {expected['image_shape']}")
    if labels.dtype != np.int64 or labels.ndim != 1 or len(labels) != len(images):
        problems.append(f"labels must be int64 of length N, got {labels.dtype} {labels.shape}")
    elif len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        problems.append(f"labels outside 0..{n_classes - 1}")
    known_counts = {expected["n"], manifest()["torchvision_counts"][key]}
    if len(labels) not in known_counts:
        problems.append(f"{len(labels)} images, expected one of {sorted(known_counts)}")
    if problems:
        raise DataError(f"{path} does not hold the expected {key}: " + "; ".join(problems)
                        + f". Delete it and prepare it again, or fix {DATA_ENV}.")
    if len(labels) == expected["n"]:
        counts = np.bincount(labels, minlength=n_classes).tolist()
        if counts != expected["class_counts"]:
            raise DataError(f"{path}: per-class counts {counts} differ from the manifest's "
                            f"{expected['class_counts']}; the file is damaged or mislabelled.")
        if _content_sha256(images, labels) != expected["content_sha256"]:
            raise DataError(f"{path} has the right counts but different pixels or labels than "
                            f"the known {key} (content sha256 mismatch); it is corrupt.")
        return "exact (content sha256 matches the manifest)"
    return "counts only (a torchvision-prepared file of the full dataset)"


@functools.lru_cache(maxsize=8)
def _load_verified(path_str: str, mtime: float, name: str, split: str):
    path = Path(path_str)
    expected_file = manifest()["files"][f"{name}/{split}.npz"]["sha256"]
    images, labels = _read_npz(path)
    if _file_sha256(path_str, mtime) != expected_file:  # repacked or prepared elsewhere
        verify(name, split, images, labels, path)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return tensor, torch.from_numpy(labels)


def subset_indices(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices drawn by a fixed seed without replacement: every run, the same subset."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(len(labels), generator=generator)[:n].sort().values


def load(name: str, split: str = "train", n: int | None = None, seed: int = 0,
         download: bool = True) -> ImageSet:
    """Load a lesson dataset as an :class:`ImageSet` (uint8 images, N x C x H x W).

    ``n`` keeps a fixed random subset of that many images (the profile's size, usually);
    ``None`` keeps all. A missing file is prepared from torchvision when ``download`` is set and
    the network works; otherwise the error names the file, ``LESSON_DATA_DIR`` and the fix.
    """
    _check_name(name, split)
    path = data_root() / name / f"{split}.npz"
    if not path.exists():
        if not download:
            raise DataError(_missing_message(path, name))
        try:
            prepare(name, data_root())
        except Exception as exc:  # offline, or torchvision refused
            raise DataError(_missing_message(path, name) + f"\nDownload failed: {exc}") from exc
    images, labels = _load_verified(str(path), path.stat().st_mtime, name, split)
    if n is not None:
        if n <= 0:
            raise ValueError(f"n must be positive or None, got {n}")
        if n < len(labels):
            keep = subset_indices(labels, n, seed)
            images, labels = images[keep], labels[keep]
    return ImageSet(name, split, images, labels, class_names(name))


def held_out(name: str, n: int, train_size: int | None, seed: int = 0) -> ImageSet:
    """``n`` training images that ``load(name, "train", n=train_size, seed=seed)`` never contains.

    Thresholds and other choices made on data must not be made on images a model trained on.
    The training subset is the start of a fixed permutation; the held-out images are its end.
    """
    full = load(name, "train")
    total = len(full)
    used = total if train_size is None or train_size >= total else train_size
    if n <= 0 or used + n > total:
        raise ValueError(
            f"cannot hold out {n} of {total} {name} training images when {used} are used for "
            f"training; give the profile's recipe a train_size of at most {total - max(n, 1)}")
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(total, generator=generator)[total - n:].sort().values
    return ImageSet(name, "train", full.images[keep], full.labels[keep], full.classes)


def _save_npz_atomic(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, images=images, labels=labels)


def _gtsrb_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Whole GTSRB images resized to 32x32 with Pillow bicubic (a one-off preparation step)."""
    from PIL import Image

    images, labels = [], []
    for file, label in dataset._samples:
        with Image.open(file) as im:
            images.append(np.asarray(im.convert("RGB").resize((32, 32), Image.BICUBIC)))
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def prepare(name: str, root: Path | str | None = None) -> None:
    """Download ``name`` through torchvision and write ``<root>/<name>/{train,test}.npz``."""
    import torchvision.datasets as tvd

    _check_name(name)
    root = Path(root) if root is not None else data_root()
    cache = root / "downloads"
    for split in SPLITS:
        train = split == "train"
        if name == "mnist":
            ds = tvd.MNIST(cache, train=train, download=True)
            images, labels = ds.data.numpy()[..., None], ds.targets.numpy().astype(np.int64)
        elif name == "cifar10":
            ds = tvd.CIFAR10(cache, train=train, download=True)
            images, labels = np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
        else:
            images, labels = _gtsrb_arrays(tvd.GTSRB(cache, split=split, download=True))
        path = root / name / f"{split}.npz"
        verify(name, split, images, labels, path)
        _save_npz_atomic(path, images.astype(np.uint8), labels)
        print(f"wrote {path}: {len(labels)} images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the lesson datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download through torchvision into LESSON_DATA_DIR")
    p.add_argument("names", nargs="*", help=f"any of {DATASETS} (default: all)")
    sub.add_parser("check", help="verify every file against the manifest")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        for name in args.names or DATASETS:
            prepare(name)
    else:
        for name in DATASETS:
            for split in SPLITS:
                print(f"{name}/{split}: {len(load(name, split, download=False))} images ok")


if __name__ == "__main__":
    main()
