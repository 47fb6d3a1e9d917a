"""The lesson datasets (MNIST, CIFAR-10, GTSRB) as tensors.

Files live at ``<root>/<name>/{train,test}.npz`` with ``images`` (uint8, N x H x W x C) and
``labels`` (int64). The root is ``LESSON_DATA_DIR`` (a relative path is taken from the repository
root, not the working directory, which is ``book/`` under Jupyter; default: the repository's
``lessondata/``); it must exist, and nothing is created in a folder that does not.

Every file is checked against ``lessondata/manifest.json`` before use. A missing file is prepared
from torchvision's downloads when the network works (``python -m helpers.data prepare``), and the
two kinds of file are checked by what is known about them:

* the offline copies (and any file without a provenance record): shape, dtype, count, per-class
  counts and the content sha256 of the known arrays;
* a fresh torchvision download, marked by ``<split>.provenance.json`` beside its ``.npz``:
  torchvision checked the archives' MD5, and shape, dtype, count and per-class counts are checked
  here. No content hash: no real download was ever compared with the offline copies' pixels.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
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
REPO_ROOT = Path(__file__).resolve().parent.parent  # holds helpers/ and lessondata/
LESSONDATA = REPO_ROOT / "lessondata"
MANIFEST_PATH = LESSONDATA / "manifest.json"
FRESH_SOURCE = "torchvision download"  # the provenance record's mark of a prepared file


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
    """The lesson data home: ``LESSON_DATA_DIR`` if set (and not empty), else the repository's
    ``lessondata/``. ``~`` expands; a relative path is taken from the repository root, so a
    notebook (run in ``book/``) and a shell in the repository root find the same folder."""
    value = os.environ.get(DATA_ENV, "")
    if not value:
        return LESSONDATA
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _checked_root(root: Path | str | None = None) -> Path:
    """``root`` (default :func:`data_root`), which must be an existing folder: a wrong path is an
    error that says where it came from, and nothing is created in it."""
    explicit = root is not None
    root = Path(root).expanduser() if explicit else data_root()
    if root.is_dir():
        return root
    problem = "does not exist" if not root.exists() else "is not a folder"
    value = os.environ.get(DATA_ENV, "")
    if explicit:
        origin = "It was passed to prepare() as its root."
        fix = "Pass an existing folder"
    elif value:
        origin = (f"It comes from {DATA_ENV}={value!r}; a relative {DATA_ENV} is taken from the "
                  f"repository root {REPO_ROOT}, not from the working directory.")
        fix = (f"Fix {DATA_ENV} so that it names the folder holding <name>/{{train,test}}.npz "
               f"(or unset it to use {LESSONDATA})")
    else:
        origin = f"It is the repository's default data folder ({DATA_ENV} is not set)."
        fix = f"Set {DATA_ENV} to the folder holding <name>/{{train,test}}.npz"
    raise DataError(
        f"The lesson data folder {root} {problem}. {origin} Nothing was written.\n"
        f"{fix}; or, to download the datasets into that folder, create it first "
        f"(`mkdir -p {root}`) and run `python -m helpers.data prepare`."
    )


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
        load(name, split)  # prepares it, or says how (also when the root is wrong)
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


def provenance_path(path: Path) -> Path:
    """The provenance record ``prepare`` writes beside ``<split>.npz``."""
    return path.with_name(f"{path.stem}.provenance.json")


def _provenance(path: Path, name: str, split: str, file_sha256: str) -> dict | None:
    """The record marking ``path`` as a fresh torchvision download, or ``None``: no record, an
    unreadable one, or one written for other bytes (the file changed after it was prepared)."""
    try:
        record = json.loads(provenance_path(path).read_text())
    except (OSError, ValueError):
        return None
    if (isinstance(record, dict) and record.get("source") == FRESH_SOURCE
            and record.get("dataset") == name and record.get("split") == split
            and record.get("npz_sha256") == file_sha256):
        return record
    return None


def verify(name: str, split: str, images: np.ndarray, labels: np.ndarray, path: Path, *,
           fresh_download: bool = False) -> str:
    """Check arrays against the manifest; returns how they were verified. Raises DataError.

    ``fresh_download``: the arrays come from torchvision's download, whose archives torchvision
    checked by MD5. They must have torchvision's count and, where the manifest knows the full
    dataset's per-class counts (MNIST and CIFAR-10, whose offline copies are complete), those;
    for GTSRB, whose offline copy is a subset, every class must occur. No content hash: the
    manifest's hashes are of the offline copies, never compared with a real download.
    Otherwise (an offline copy, or a file of unknown origin) the count must be the offline
    copy's, and then per-class counts and the content sha256 must match too; a file with
    torchvision's count (GTSRB prepared before provenance records) is checked as a download.
    """
    key = f"{name}/{split}.npz"
    expected = manifest()["files"][key]
    torchvision_n = manifest()["torchvision_counts"][key]
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
    known_counts = [torchvision_n] if fresh_download else sorted({expected["n"], torchvision_n})
    if len(labels) not in known_counts:
        what = f"torchvision's {key} has {torchvision_n}" if fresh_download else (
            f"expected one of {known_counts}")
        problems.append(f"{len(labels)} images, {what}")
    if problems:
        fix = ("Delete its downloads folder and prepare it again "
               "(`python -m helpers.data prepare`)" if fresh_download
               else "Delete it and prepare it again, or fix " + DATA_ENV)
        raise DataError(f"{path} does not hold the expected {key}: " + "; ".join(problems)
                        + f". {fix}.")
    counts = np.bincount(labels, minlength=n_classes).tolist()
    complete = expected["n"] == torchvision_n  # the offline copy is the whole dataset
    if len(labels) == expected["n"] and (complete or not fresh_download):
        if counts != expected["class_counts"]:
            origin = "torchvision's download" if fresh_download else "the file"
            raise DataError(
                f"{path}: per-class counts {counts} differ from the manifest's "
                f"{expected['class_counts']}; {origin} is damaged or mislabelled. Delete it "
                f"(and, for a download, its downloads folder) and prepare it again.")
        if fresh_download:
            return ("torchvision download: count and per-class counts match the manifest "
                    "(torchvision checked the archives' MD5)")
        if _content_sha256(images, labels) != expected["content_sha256"]:
            raise DataError(
                f"{path} has the right counts but different pixels or labels than the known "
                f"{key} (content sha256 mismatch), and no provenance record marks it as a "
                f"torchvision download; it is corrupt. Delete it and prepare it again "
                f"(`python -m helpers.data prepare {name}`), or point {DATA_ENV} at a good copy.")
        return "exact (content sha256 matches the manifest)"
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        raise DataError(
            f"{path}: {len(labels)} images but no image of class(es) {missing}; a full "
            f"{key} has all {n_classes}. The file is damaged or mislabelled: delete it (and its "
            f"downloads folder) and prepare it again.")
    if not fresh_download:
        return (f"counts only: torchvision's count, all {n_classes} classes present (a download "
                f"prepared without a provenance record)")
    return (f"torchvision download: count and all {n_classes} classes present (the manifest "
            f"does not know the full dataset's per-class counts; torchvision checked the "
            f"archives' MD5)")


@functools.lru_cache(maxsize=8)
def _load_verified(path_str: str, mtime: float, record_mtime: float | None, name: str,
                   split: str):
    path = Path(path_str)
    expected_file = manifest()["files"][f"{name}/{split}.npz"]["sha256"]
    images, labels = _read_npz(path)
    file_sha256 = _file_sha256(path_str, mtime)
    if file_sha256 != expected_file:  # repacked, prepared from a download, or damaged
        fresh = _provenance(path, name, split, file_sha256) is not None
        try:
            verify(name, split, images, labels, path, fresh_download=fresh)
        except DataError as exc:
            if record_mtime is None or fresh:
                raise
            raise DataError(f"{exc}\n({provenance_path(path)} does not mark this file as a "
                            f"torchvision download: it records other bytes, so the file changed "
                            f"after it was prepared.)") from exc
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return tensor, torch.from_numpy(labels)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


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
    root = _checked_root()  # a wrong LESSON_DATA_DIR is an error before anything is written
    path = root / name / f"{split}.npz"
    if not path.exists():
        if not download:
            raise DataError(_missing_message(path, name))
        try:
            prepare(name, root)
        except Exception as exc:  # offline, or torchvision refused, or the download was wrong
            raise DataError(_missing_message(path, name) + f"\nPreparing it failed: {exc}"
                            ) from exc
    images, labels = _load_verified(str(path), path.stat().st_mtime,
                                    _mtime(provenance_path(path)), name, split)
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


def _save_prepared(path: Path, images: np.ndarray, labels: np.ndarray, record: dict) -> None:
    """Write ``path`` and its provenance record (which names the ``.npz`` file's sha256), each
    atomically. The record lands first: an interruption between the two leaves a record without
    its file (which is then prepared again) or an old file that its new record does not mark
    (which then gets the full check), never a file marked by a record of other bytes."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels)
        record = {**record, "npz_sha256": _sha256(Path(tmp))}
        with atomic_path(provenance_path(path)) as record_tmp:
            Path(record_tmp).write_text(json.dumps(record, indent=1) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _listing(folder: Path) -> set[str]:
    """Every path under ``folder`` (relative; symlinks not followed)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        found.update(os.path.normpath(os.path.join(rel, n)) for n in dirnames + filenames)
    return found


def _remove_new(folder: Path, before: set[str]) -> None:
    """Remove what is under ``folder`` now but was not in ``before`` (a :func:`_listing`)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        for entry in list(dirnames):
            if os.path.normpath(os.path.join(rel, entry)) not in before:
                _remove(Path(dirpath) / entry)
                dirnames.remove(entry)
        for entry in filenames:
            if os.path.normpath(os.path.join(rel, entry)) not in before:
                _remove(Path(dirpath) / entry)


def _gtsrb_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Whole GTSRB images resized to 32x32 with Pillow bicubic (a one-off preparation step)."""
    from PIL import Image

    images, labels = [], []
    for file, label in dataset._samples:
        with Image.open(file) as im:
            images.append(np.asarray(im.convert("RGB").resize((32, 32), Image.BICUBIC)))
        labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _download(name: str, split: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images N x H x W x C uint8, labels int64)`` of torchvision's ``name`` (MD5-checked)."""
    import torchvision.datasets as tvd

    train = split == "train"
    if name == "mnist":
        ds = tvd.MNIST(cache, train=train, download=True)
        return ds.data.numpy()[..., None], ds.targets.numpy().astype(np.int64)
    if name == "cifar10":
        ds = tvd.CIFAR10(cache, train=train, download=True)
        return np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
    return _gtsrb_arrays(tvd.GTSRB(cache, split=split, download=True))


def prepare(name: str, root: Path | str | None = None) -> None:
    """Download ``name`` through torchvision and write ``<root>/<name>/{train,test}.npz``, each
    with a provenance record marking it as a fresh download (checked by counts, not by hash).

    ``root`` (default :func:`data_root`) must exist. Both splits are downloaded and verified
    before either is written; if anything fails, what this attempt created under ``root`` (the
    ``downloads/`` cache or anything new inside it, ``<name>/`` or new files in it) is removed
    again, and nothing that was there before is touched.
    """
    import torchvision

    _check_name(name)
    root = _checked_root(root)
    cache = root / "downloads"
    folder = root / name
    targets = [folder / f"{split}.npz" for split in SPLITS]
    targets += [provenance_path(path) for path in targets]
    created = [p for p in (cache, folder, *targets) if not p.exists() and not p.is_symlink()]
    cache_before = _listing(cache) if cache.is_dir() else None
    try:
        arrays = {}
        for split in SPLITS:
            images, labels = _download(name, split, cache)
            how = verify(name, split, images, labels, folder / f"{split}.npz",
                         fresh_download=True)
            arrays[split] = images, labels, how
        for split, (images, labels, how) in arrays.items():
            path = folder / f"{split}.npz"
            record = {"source": FRESH_SOURCE, "dataset": name, "split": split,
                      "torchvision": torchvision.__version__, "n": len(labels),
                      "class_counts": np.bincount(labels, minlength=len(class_names(name)))
                      .tolist(), "verified": how}
            _save_prepared(path, images, labels, record)
            print(f"wrote {path}: {len(labels)} images ({how})")
    except BaseException:
        for path in reversed(created):  # files before their folders
            _remove(path)
        if cache_before is not None and cache.is_dir():
            _remove_new(cache, cache_before)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the lesson datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download through torchvision into LESSON_DATA_DIR")
    p.add_argument("names", nargs="*", help=f"any of {DATASETS} (default: all)")
    sub.add_parser("check", help="verify every file against the manifest")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            for name in args.names or DATASETS:
                try:
                    prepare(name)
                except DataError:
                    raise
                except Exception as exc:  # offline, or torchvision refused
                    raise DataError(
                        f"Downloading {name} through torchvision failed "
                        f"({type(exc).__name__}: {exc}); nothing was left in {data_root()}. "
                        f"It needs network access; offline, point {DATA_ENV} at a folder "
                        f"holding prepared copies instead.") from exc
        else:
            for name in DATASETS:
                for split in SPLITS:
                    print(f"{name}/{split}: {len(load(name, split, download=False))} images ok")
    except DataError as exc:
        parser.exit(1, f"error: {exc}\n")


if __name__ == "__main__":
    main()
