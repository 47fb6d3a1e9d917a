"""helpers.data: the real files' shapes and counts, subsets, and every way a file can be wrong
(missing, offline, truncated, relabelled, short), where ``LESSON_DATA_DIR`` points (relative,
wrong), plus ``prepare`` with a fake torchvision and how its fresh downloads are checked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import data
from helpers.data import DataError

pytestmark = pytest.mark.usefixtures("single_thread")

EXPECTED = {  # name: (train count, test count, classes, C, H, W)
    "mnist": (60_000, 10_000, 10, 1, 28, 28),
    "cifar10": (50_000, 10_000, 10, 3, 32, 32),
    "gtsrb": (15_458, 4_290, 43, 3, 32, 32),
}


def _fresh_root(tmp_path: Path, monkeypatch, name: str = "data") -> Path:
    """A new, empty ``LESSON_DATA_DIR`` (a distinct path: loads are cached by path and mtime)."""
    root = tmp_path / name
    root.mkdir()
    monkeypatch.setenv(data.DATA_ENV, str(root))
    return root


def _real_arrays(data_dir: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / name / f"{split}.npz") as z:
        return z["images"], z["labels"]


def _write_npz(root: Path, name: str, split: str, **arrays) -> Path:
    path = root / name / f"{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# The real files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", data.SPLITS)
@pytest.mark.parametrize("name", data.DATASETS)
def test_real_files_shapes_dtypes_counts(data_dir, name, split):
    n_train, n_test, n_classes, c, h, w = EXPECTED[name]
    ds = data.load(name, split, download=False)
    n = n_train if split == "train" else n_test
    assert (ds.name, ds.split) == (name, split)
    assert len(ds) == n
    assert ds.images.shape == (n, c, h, w)  # N x C x H x W
    assert ds.images.dtype == torch.uint8
    assert ds.images.is_contiguous()
    assert ds.labels.shape == (n,)
    assert ds.labels.dtype == torch.int64
    assert int(ds.labels.min()) >= 0 and int(ds.labels.max()) == n_classes - 1
    assert len(ds.classes) == n_classes == len(data.class_names(name))
    assert len(set(ds.classes)) == n_classes
    # every class occurs, and the counts are the manifest's
    counts = torch.bincount(ds.labels, minlength=n_classes).tolist()
    assert counts == data.manifest()["files"][f"{name}/{split}.npz"]["class_counts"]
    assert min(counts) > 0
    # the images are real pictures, not a constant fill
    assert ds.images[:100].float().std() > 20


def test_class_names():
    assert data.class_names("mnist") == [str(d) for d in range(10)]
    cifar = data.class_names("cifar10")
    assert len(cifar) == 10 and cifar[0] == "airplane" and cifar[-1] == "truck"
    assert len(data.class_names("gtsrb")) == 43
    # a copy: changing it cannot change the manifest
    cifar.append("not a class")
    assert len(data.class_names("cifar10")) == 10


def test_cifar10_test_is_exactly_balanced(data_dir):
    labels = data.load("cifar10", "test", download=False).labels
    assert torch.bincount(labels, minlength=10).tolist() == [1000] * 10


def test_float_is_unit_range_float32(data_dir):
    ds = data.load("cifar10", "test", n=300)
    x = ds.float()
    assert x.dtype == torch.float32 and x.shape == ds.images.shape
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.max()) > 0.9  # really divided by 255, not by something bigger
    assert torch.equal(x * 255, ds.images.float())  # exact: k/255*255 rounds back to k
    images, labels = ds.to("cpu")
    assert torch.equal(images, x) and torch.equal(labels, ds.labels)
    # converting does not touch the compact uint8 copy
    assert ds.images.dtype == torch.uint8


def test_subset_has_n_images_and_is_the_same_every_call(data_dir):
    full = data.load("mnist", "test")
    a = data.load("mnist", "test", n=123)
    b = data.load("mnist", "test", n=123)
    assert len(a) == 123 and a.images.shape == (123, 1, 28, 28)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # a subset of the real file, without repeats
    keep = data.subset_indices(full.labels, 123, seed=0)
    assert len(set(keep.tolist())) == 123
    assert torch.equal(a.images, full.images[keep]) and torch.equal(a.labels, full.labels[keep])
    # another seed draws another subset; more than exists keeps everything
    c = data.load("mnist", "test", n=123, seed=1)
    assert not torch.equal(a.labels, c.labels) or not torch.equal(a.images, c.images)
    assert len(data.load("mnist", "test", n=10**6)) == 10_000
    # a random subset, not the first n
    assert keep[-1] > 5_000


@pytest.mark.parametrize("bad_n", [0, -5])
def test_nonpositive_n_raises(data_dir, bad_n):
    with pytest.raises(ValueError, match="n must be positive"):
        data.load("mnist", "test", n=bad_n)


@pytest.mark.parametrize(("name", "split"), [("imagenet", "train"), ("MNIST", "test"),
                                             ("mnist", "val"), ("cifar10", "Train")])
def test_unknown_dataset_or_split_raises_value_error(name, split):
    with pytest.raises(ValueError, match="Unknown"):
        data.load(name, split, download=False)


def test_unknown_dataset_in_class_names_and_prepare():
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.class_names("svhn")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.prepare("svhn")


def test_data_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv(data.DATA_ENV)
    assert data.data_root() == data.LESSONDATA
    monkeypatch.setenv(data.DATA_ENV, "")  # empty counts as unset
    assert data.data_root() == data.LESSONDATA


def test_relative_data_dir_is_taken_from_the_repository_root(monkeypatch, tmp_path):
    assert (data.REPO_ROOT / "helpers" / "data.py").is_file()
    assert data.LESSONDATA == data.REPO_ROOT / "lessondata"
    elsewhere = tmp_path / "book"  # Jupyter runs a chapter in book/, not the repository root
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(data.DATA_ENV, "../shared/data")
    assert data.data_root() == data.REPO_ROOT / "../shared/data"
    monkeypatch.setenv(data.DATA_ENV, "lessondata")
    assert data.data_root() == data.REPO_ROOT / "lessondata"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(data.DATA_ENV, "~/lesson-data")
    assert data.data_root() == tmp_path / "lesson-data"


def test_relative_data_dir_loads_from_any_working_directory(data_dir, monkeypatch, tmp_path):
    relative = os.path.relpath(data_dir, data.REPO_ROOT)
    monkeypatch.setenv(data.DATA_ENV, relative)
    for cwd in (tmp_path, data.REPO_ROOT / "book", data.REPO_ROOT):
        monkeypatch.chdir(cwd)
        assert data.data_root().resolve() == data_dir.resolve()
        assert len(data.load("mnist", "test", download=False)) == 10_000


# ---------------------------------------------------------------------------------------------
# A wrong LESSON_DATA_DIR: a clear error, and nothing written
# ---------------------------------------------------------------------------------------------

class _CreatesFolders:
    """A torchvision dataset that must not be reached: it records the call and creates its
    download folder as the real one does before the network fails."""

    calls: list = []

    def __init__(self, root, *args, **kwargs):
        type(self).calls.append(Path(root))
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")


@pytest.mark.parametrize("value", ["absolute", "relative"])
def test_missing_data_dir_is_an_error_and_nothing_is_created(tmp_path, monkeypatch, capsys,
                                                             value):
    import torchvision.datasets

    fake = type("Fake", (_CreatesFolders,), {"calls": []})
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake)
    if value == "absolute":
        setting = str(tmp_path / "typo" / "data")
        root = tmp_path / "typo" / "data"
    else:
        monkeypatch.chdir(tmp_path)
        setting = f"no-such-folder-{tmp_path.name}/data"
        root = data.REPO_ROOT / setting
    monkeypatch.setenv(data.DATA_ENV, setting)
    attempts = {
        "load": lambda: data.load("mnist", "test"),
        "load without download": lambda: data.load("mnist", "test", download=False),
        "content_digest": lambda: data.content_digest("mnist", "test"),
        "prepare": lambda: data.prepare("mnist"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(DataError) as info:
            attempt()
        message = str(info.value)
        assert f"{root} does not exist" in message, what
        assert f"{data.DATA_ENV}={setting!r}" in message  # which variable, set to what
        assert "relative" in message and str(data.REPO_ROOT) in message  # how it resolves
        assert f"mkdir -p {root}" in message and "python -m helpers.data prepare" in message
        assert "Nothing was written" in message
    assert fake.calls == []  # no download was attempted
    assert not root.exists() and not root.parent.exists()
    assert list(tmp_path.iterdir()) == []
    # the command line says the same, without a traceback
    with pytest.raises(SystemExit) as exit_info:
        data.main(["prepare", "mnist"])
    assert exit_info.value.code == 1
    assert f"{root} does not exist" in capsys.readouterr().err
    assert not root.parent.exists()


def test_data_dir_that_is_a_file_or_a_missing_prepare_root(tmp_path, monkeypatch):
    a_file = tmp_path / "data.npz"
    a_file.write_bytes(b"not a folder")
    monkeypatch.setenv(data.DATA_ENV, str(a_file))
    with pytest.raises(DataError, match="is not a folder"):
        data.load("mnist", "test")
    assert a_file.read_bytes() == b"not a folder"
    with pytest.raises(DataError, match="passed to prepare"):
        data.prepare("mnist", tmp_path / "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]


# ---------------------------------------------------------------------------------------------
# Missing files
# ---------------------------------------------------------------------------------------------

def _assert_helpful_missing_message(message: str, path: Path) -> None:
    assert str(path) in message
    assert "LESSON_DATA_DIR" in message
    assert "python -m helpers.data prepare" in message


def test_missing_file_without_download(tmp_path, monkeypatch):
    root = _fresh_root(tmp_path, monkeypatch)
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", download=False)
    _assert_helpful_missing_message(str(info.value), root / "mnist" / "test.npz")
    assert not (root / "mnist").exists()  # nothing was written


def test_missing_file_when_prepare_fails(tmp_path, monkeypatch):
    root = _fresh_root(tmp_path, monkeypatch)
    calls = []

    def offline(name, where=None):
        calls.append((name, Path(where)))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data, "prepare", offline)
    with pytest.raises(DataError) as info:
        data.load("cifar10", "train")
    assert calls == [("cifar10", root)]  # it did try, into LESSON_DATA_DIR
    message = str(info.value)
    _assert_helpful_missing_message(message, root / "cifar10" / "train.npz")
    assert "Network is unreachable" in message
    assert isinstance(info.value.__cause__, OSError)


def test_missing_file_when_torchvision_download_fails(tmp_path, monkeypatch):
    import torchvision.datasets

    root = _fresh_root(tmp_path, monkeypatch)

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    with pytest.raises(DataError) as info:
        data.load("mnist", "test")
    _assert_helpful_missing_message(str(info.value), root / "mnist" / "test.npz")
    assert "Error downloading" in str(info.value)
    assert not (root / "mnist" / "test.npz").exists()


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for a folder)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


class _OfflineMNIST:
    """torchvision's MNIST offline: it creates its folders and a partial file, then fails."""

    def __init__(self, root, train=True, download=False):
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")


class _OfflineCIFAR10:
    """torchvision's CIFAR10 offline: a partial archive in its root, then the network error."""

    def __init__(self, root, train=True, download=False):
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
@pytest.mark.parametrize("before", ["empty", "with files"])
def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch, name, before):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", _OfflineMNIST)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _OfflineCIFAR10)
    root = _fresh_root(tmp_path, monkeypatch, f"offline-{name}-{before.replace(' ', '-')}")
    if before == "with files":  # what was there before is kept, byte for byte
        (root / "downloads" / "MNIST" / "processed").mkdir(parents=True)
        (root / "downloads" / "MNIST" / "processed" / "old.pt").write_bytes(b"old")
        (root / "downloads" / "notes.txt").write_text("mine")
        (root / name).mkdir()
        (root / name / "README").write_text("mine too")
        (root / "models").mkdir()
    expected = _tree(root)
    with pytest.raises(DataError, match="Preparing it failed"):
        data.load(name, "train")
    assert _tree(root) == expected
    with pytest.raises((RuntimeError, OSError)):
        data.prepare(name)
    assert _tree(root) == expected


# ---------------------------------------------------------------------------------------------
# Corrupt files
# ---------------------------------------------------------------------------------------------

def _load_error(root_name: str, tmp_path, monkeypatch, write) -> str:
    """Write a bad mnist/test.npz with ``write(path)`` into a fresh root; return the error."""
    root = _fresh_root(tmp_path, monkeypatch, root_name)
    path = root / "mnist" / "test.npz"
    path.parent.mkdir(parents=True)
    write(path)
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", download=False)
    message = str(info.value)
    assert str(path) in message
    return message


def test_truncated_file(data_dir, tmp_path, monkeypatch):
    good = (data_dir / "mnist" / "test.npz").read_bytes()
    message = _load_error("trunc", tmp_path, monkeypatch,
                          lambda p: p.write_bytes(good[: len(good) // 2]))
    assert "corrupt" in message and "prepare" in message


@pytest.mark.parametrize("content", [b"", b"version https://git-lfs.github.com/spec/v1\n",
                                     bytes(range(256)) * 4])
def test_empty_or_foreign_file(tmp_path, monkeypatch, content):
    message = _load_error("foreign", tmp_path, monkeypatch, lambda p: p.write_bytes(content))
    assert "corrupt or not a lesson .npz" in message


def test_bytes_damaged_inside_file_fail_checksum(data_dir, tmp_path, monkeypatch):
    good = bytearray((data_dir / "mnist" / "test.npz").read_bytes())
    middle = len(good) // 2
    good[middle:middle + 16] = bytes(b ^ 0xFF for b in good[middle:middle + 16])
    message = _load_error("flipmid", tmp_path, monkeypatch, lambda p: p.write_bytes(good))
    assert "corrupt" in message


def test_bytes_damaged_early_in_compressed_stream(data_dir, tmp_path, monkeypatch):
    path = data_dir / "mnist" / "test.npz"
    good = bytearray(path.read_bytes())
    expected = data.manifest()["files"]["mnist/test.npz"]["sha256"]
    assert hashlib.sha256(good).hexdigest() == expected  # the exact file this case was built on
    good[1000:1016] = bytes(b ^ 0xFF for b in good[1000:1016])
    _load_error("flipearly", tmp_path, monkeypatch, lambda p: p.write_bytes(good))


def test_one_label_changed(data_dir, tmp_path, monkeypatch):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 10
    message = _load_error("relabel", tmp_path, monkeypatch,
                          lambda p: np.savez(p, images=images, labels=labels))
    assert "per-class counts" in message


def test_two_labels_swapped_or_one_pixel_changed(data_dir, tmp_path, monkeypatch):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    swapped = labels.copy()
    other = int(np.nonzero(swapped != swapped[0])[0][0])
    swapped[[0, other]] = swapped[[other, 0]]  # same class counts, wrong labels
    message = _load_error("swap", tmp_path, monkeypatch,
                          lambda p: np.savez(p, images=images, labels=swapped))
    assert "content sha256" in message
    pixel = images.copy()
    pixel[0, 0, 0, 0] ^= 1
    message = _load_error("pixel", tmp_path, monkeypatch,
                          lambda p: np.savez(p, images=pixel, labels=labels))
    assert "content sha256" in message


def test_wrong_count(data_dir, tmp_path, monkeypatch):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    message = _load_error("short", tmp_path, monkeypatch,
                          lambda p: np.savez(p, images=images[:-1], labels=labels[:-1]))
    assert "9999 images" in message and "10000" in message


@pytest.mark.parametrize("damage", ["extra_array", "int32_labels", "float_images", "label_10",
                                    "wrong_shape"])
def test_wrong_arrays(data_dir, tmp_path, monkeypatch, damage):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    arrays = {"images": images, "labels": labels}
    if damage == "extra_array":
        arrays["extra"] = labels
        expect = "expected exactly"
    elif damage == "int32_labels":
        arrays["labels"] = labels.astype(np.int32)
        expect = "labels must be int64"
    elif damage == "float_images":
        arrays["images"] = images.astype(np.float32)
        expect = "images must be uint8"
    elif damage == "label_10":
        arrays["labels"] = labels.copy()
        arrays["labels"][5] = 10
        expect = "labels outside 0..9"
    else:
        arrays["images"] = np.zeros((10_000, 32, 32, 1), np.uint8)
        expect = "image shape"
    message = _load_error(damage, tmp_path, monkeypatch, lambda p: np.savez(p, **arrays))
    assert expect in message


def test_repacked_good_file_loads(data_dir, tmp_path, monkeypatch):
    """A file whose bytes differ (saved uncompressed) but whose arrays are exact is accepted."""
    images, labels = _real_arrays(data_dir, "mnist", "test")
    root = _fresh_root(tmp_path, monkeypatch, "repacked")
    _write_npz(root, "mnist", "test", images=images, labels=labels)
    ds = data.load("mnist", "test", download=False)
    assert torch.equal(ds.images, torch.from_numpy(images).permute(0, 3, 1, 2))


def test_good_copy_loads_from_another_root(data_dir, tmp_path, monkeypatch):
    root = _fresh_root(tmp_path, monkeypatch, "copy")
    (root / "mnist").mkdir()
    shutil.copy(data_dir / "mnist" / "test.npz", root / "mnist" / "test.npz")
    assert len(data.load("mnist", "test", download=False)) == 10_000


# ---------------------------------------------------------------------------------------------
# prepare() with a fake torchvision dataset (no network here)
# ---------------------------------------------------------------------------------------------

class _FakeMNIST:
    """Stands in for ``torchvision.datasets.MNIST``: ``.data`` uint8 N x 28 x 28, ``.targets``."""

    source: Path
    calls: list

    def __init__(self, root, train=True, download=False):
        type(self).calls.append((Path(root), train, download))
        with np.load(type(self).source / "mnist" / f"{'train' if train else 'test'}.npz") as z:
            self.data = torch.from_numpy(z["images"][..., 0].copy())
            self.targets = torch.from_numpy(z["labels"].copy())


def test_prepare_writes_files_that_load_back(data_dir, tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    fake = type("FakeMNIST", (_FakeMNIST,), {"source": data_dir, "calls": []})
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake)
    root = _fresh_root(tmp_path, monkeypatch, "prepared")
    data.prepare("mnist", root)
    assert fake.calls == [(root / "downloads", True, True), (root / "downloads", False, True)]
    assert "wrote" in capsys.readouterr().out
    for split, n in (("train", 60_000), ("test", 10_000)):
        path = root / "mnist" / f"{split}.npz"
        assert path.is_file()
        ds = data.load("mnist", split, download=False)
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        images, labels = _real_arrays(data_dir, "mnist", split)
        assert torch.equal(ds.labels, torch.from_numpy(labels))
        assert torch.equal(ds.images, torch.from_numpy(images).permute(0, 3, 1, 2))
    leftovers = [p.name for p in (root / "mnist").iterdir() if p.suffix == ".tmp"]
    assert leftovers == []
    # each file is marked as a fresh torchvision download, by a record of its bytes
    import torchvision

    for split, n in (("train", 60_000), ("test", 10_000)):
        path = root / "mnist" / f"{split}.npz"
        record = json.loads(data.provenance_path(path).read_text())
        assert data.provenance_path(path) == root / "mnist" / f"{split}.provenance.json"
        assert record["source"] == data.FRESH_SOURCE == "torchvision download"
        assert (record["dataset"], record["split"], record["n"]) == ("mnist", split, n)
        assert record["torchvision"] == torchvision.__version__
        expected = data.manifest()["files"][f"mnist/{split}.npz"]["class_counts"]
        assert record["class_counts"] == expected
        assert record["npz_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert "torchvision download" in record["verified"]


def test_load_prepares_a_missing_file_through_torchvision(data_dir, tmp_path, monkeypatch):
    import torchvision.datasets

    fake = type("FakeMNIST", (_FakeMNIST,), {"source": data_dir, "calls": []})
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake)
    root = _fresh_root(tmp_path, monkeypatch, "autoprep")
    ds = data.load("mnist", "test", n=50)  # download=True is the default
    assert len(ds) == 50 and (root / "mnist" / "test.npz").is_file()
    assert len(fake.calls) == 2


def test_prepare_refuses_wrong_data_and_writes_nothing(data_dir, tmp_path, monkeypatch):
    import torchvision.datasets

    class Relabelled(_FakeMNIST):
        source, calls = data_dir, []

        def __init__(self, root, train=True, download=False):
            super().__init__(root, train, download)
            self.targets = (self.targets + 1) % 10  # right count, wrong per-class counts

    monkeypatch.setattr(torchvision.datasets, "MNIST", Relabelled)
    root = _fresh_root(tmp_path, monkeypatch, "scrambled")
    with pytest.raises(DataError, match="per-class counts"):
        data.prepare("mnist", root)
    assert list(root.iterdir()) == []

    class TestFails(_FakeMNIST):  # the training split is fine, the test split is not
        source, calls = data_dir, []

        def __init__(self, root, train=True, download=False):
            super().__init__(root, train, download)
            if not train:
                self.targets = (self.targets + 1) % 10

    monkeypatch.setattr(torchvision.datasets, "MNIST", TestFails)
    with pytest.raises(DataError, match="per-class counts"):
        data.prepare("mnist", root)
    assert list(root.iterdir()) == []  # both splits are verified before either is written

    class Tiny:
        def __init__(self, root, train=True, download=False):
            self.data = torch.zeros(100, 28, 28, dtype=torch.uint8)
            self.targets = torch.arange(100) % 10

    monkeypatch.setattr(torchvision.datasets, "MNIST", Tiny)
    with pytest.raises(DataError, match="100 images, torchvision's mnist/train.npz has 60000"):
        data.prepare("mnist", root)
    assert list(root.iterdir()) == []


def _one_pixel_off(images: np.ndarray) -> np.ndarray:
    changed = images.copy()
    changed[7, 3, 4, 0] ^= 1
    return changed


class _FakeCIFAR10:
    """Stands in for ``torchvision.datasets.CIFAR10`` (``.data`` N x 32 x 32 x 3, ``.targets``
    a list), with one pixel unlike the offline copy: a download never compared with it."""

    source: Path

    def __init__(self, root, train=True, download=False):
        with np.load(type(self).source / "cifar10" / f"{'train' if train else 'test'}.npz") as z:
            self.data = _one_pixel_off(z["images"])
            self.targets = z["labels"].tolist()


def test_fresh_download_one_pixel_unlike_the_offline_copy_loads(data_dir, tmp_path, monkeypatch):
    """The issue's case: a real CIFAR-10 download that differs from the offline copy anywhere
    is accepted (torchvision checked its archive by MD5; counts and class counts match)."""
    import torchvision.datasets

    fake = type("FakeCIFAR10", (_FakeCIFAR10,), {"source": data_dir})
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake)
    root = _fresh_root(tmp_path, monkeypatch, "cifar-download")
    ds = data.load("cifar10", "test")  # prepares both splits
    images, labels = _real_arrays(data_dir, "cifar10", "test")
    assert torch.equal(ds.images, torch.from_numpy(_one_pixel_off(images)).permute(0, 3, 1, 2))
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    assert len(data.load("cifar10", "train")) == 50_000
    # a model trained on it is cached under another key than one trained on the offline copy
    downloaded = data.content_digest("cifar10", "test")
    monkeypatch.setenv(data.DATA_ENV, str(data_dir))
    assert data.content_digest("cifar10", "test") != downloaded
    # without its provenance record it is an unknown file again: the full check fails
    monkeypatch.setenv(data.DATA_ENV, str(root))
    data.provenance_path(root / "cifar10" / "test.npz").unlink()
    with pytest.raises(DataError, match="content sha256"):
        data.load("cifar10", "test")


def _write_marked(root: Path, name: str, split: str, images, labels) -> Path:
    """A file as ``prepare`` writes it, with a provenance record of its bytes. (Arrays equal to
    an offline copy's give that copy's bytes, which load accepts without looking further.)"""
    path = root / name / f"{split}.npz"
    record = {"source": data.FRESH_SOURCE, "dataset": name, "split": split,
              "torchvision": "0.0", "n": len(labels)}
    data._save_prepared(path, images, labels, record)
    return path


def test_marked_file_is_checked_by_counts_not_by_hash(data_dir, tmp_path, monkeypatch):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    root = _fresh_root(tmp_path, monkeypatch, "marked-pixel")
    _write_marked(root, "mnist", "test", _one_pixel_off(images), labels)
    ds = data.load("mnist", "test", download=False)
    assert torch.equal(ds.images, torch.from_numpy(_one_pixel_off(images)).permute(0, 3, 1, 2))
    how = data.verify("mnist", "test", images, labels, root / "x", fresh_download=True)
    assert how.startswith("torchvision download") and "per-class counts" in how
    assert data.verify("mnist", "test", images, labels, root / "x").startswith("exact")


@pytest.mark.parametrize("damage", ["short", "relabelled", "offline count"])
def test_marked_file_with_wrong_counts_still_fails(data_dir, tmp_path, monkeypatch, damage):
    images, labels = _real_arrays(data_dir, "mnist", "test")
    if damage == "short":
        images, labels, expect = images[:-1], labels[:-1], "9999 images, torchvision's"
    elif damage == "relabelled":
        labels, expect = (labels + 1) % 10, "per-class counts"
    root = _fresh_root(tmp_path, monkeypatch, f"marked-{damage.replace(' ', '-')}")
    if damage == "offline count":  # a marked GTSRB of the offline subset's size
        g_images, g_labels = _real_arrays(data_dir, "gtsrb", "test")
        _write_marked(root, "gtsrb", "test", _one_pixel_off(g_images), g_labels)
        with pytest.raises(DataError, match="4290 images, torchvision's gtsrb/test.npz has 12630"):
            data.load("gtsrb", "test", download=False)
        return
    path = _write_marked(root, "mnist", "test", images, labels)
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", download=False)
    assert expect in str(info.value) and str(path) in str(info.value)
    assert "prepare it again" in str(info.value)


def test_record_of_other_bytes_does_not_mark_a_file(data_dir, tmp_path, monkeypatch):
    """A file changed after ``prepare`` (its record names other bytes), or a record copied from
    another dataset, marks nothing: the file gets the full check, and the error says why."""
    images, labels = _real_arrays(data_dir, "mnist", "test")
    root = _fresh_root(tmp_path, monkeypatch, "changed")
    path = _write_marked(root, "mnist", "test", images, labels)
    np.savez(path, images=_one_pixel_off(images), labels=labels)
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", download=False)
    assert "content sha256" in str(info.value)
    assert "records other bytes" in str(info.value)
    root = _fresh_root(tmp_path, monkeypatch, "copied-record")
    path = _write_marked(root, "mnist", "test", _one_pixel_off(images), labels)
    record = json.loads(data.provenance_path(path).read_text())
    data.provenance_path(path).write_text(json.dumps({**record, "split": "train"}))
    with pytest.raises(DataError, match="content sha256"):
        data.load("mnist", "test", download=False)
    data.provenance_path(path).write_text("{not json")
    with pytest.raises(DataError, match="content sha256"):
        data.load("mnist", "test", download=False)


def _gtsrb_download(n: int, missing_class: int | None = None):
    labels = np.arange(n, dtype=np.int64) % 43
    if missing_class is not None:
        labels[labels == missing_class] = (missing_class + 1) % 43
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = labels  # some content
    return images, labels


def test_fresh_gtsrb_is_checked_for_its_count_and_all_classes(tmp_path, monkeypatch, capsys):
    """A full GTSRB download (26,640 training images, not the offline subset's 15,458): the
    manifest does not know its per-class counts, so every class must occur."""
    import torchvision.datasets

    sizes = data.manifest()["torchvision_counts"]
    assert (sizes["gtsrb/train.npz"], sizes["gtsrb/test.npz"]) == (26_640, 12_630)

    class FakeGTSRB:
        def __init__(self, root, split="train", download=False):
            self.split = split

    monkeypatch.setattr(torchvision.datasets, "GTSRB", FakeGTSRB)
    monkeypatch.setattr(data, "_gtsrb_arrays",
                        lambda ds: _gtsrb_download(sizes[f"gtsrb/{ds.split}.npz"]))
    root = _fresh_root(tmp_path, monkeypatch, "gtsrb-download")
    data.prepare("gtsrb")
    assert "all 43 classes present" in capsys.readouterr().out
    ds = data.load("gtsrb", "train", download=False)
    assert len(ds) == 26_640 and ds.images.shape == (26_640, 3, 32, 32)
    record = json.loads(data.provenance_path(root / "gtsrb" / "train.npz").read_text())
    assert record["class_counts"] == np.bincount(ds.labels.numpy(), minlength=43).tolist()
    # a class missing fails, marked or not; so does the subset's count for a download
    images, labels = _gtsrb_download(12_630, missing_class=5)
    for fresh in (True, False):
        with pytest.raises(DataError, match=r"no image of class\(es\) \[5\]"):
            data.verify("gtsrb", "test", images, labels, root / "x", fresh_download=fresh)
    images, labels = _gtsrb_download(12_630)
    assert data.verify("gtsrb", "test", images, labels, root / "x").startswith("counts only")
    images, labels = _gtsrb_download(4_290)
    with pytest.raises(DataError, match="4290 images, torchvision's gtsrb/test.npz has 12630"):
        data.verify("gtsrb", "test", images, labels, root / "x", fresh_download=True)


def test_cli(monkeypatch, capsys):
    prepared = []
    monkeypatch.setattr(data, "prepare", lambda name, root=None: prepared.append(name))
    data.main(["prepare", "mnist"])
    data.main(["prepare"])
    assert prepared == ["mnist", *data.DATASETS]
    checked = []

    def fake_load(name, split, download=True):
        checked.append((name, split, download))
        return [0] * len(name)

    monkeypatch.setattr(data, "load", fake_load)
    data.main(["check"])
    assert checked == [(n, s, False) for n in data.DATASETS for s in data.SPLITS]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mnist/train: 5 images ok" and len(lines) == 6
    with pytest.raises(SystemExit):
        data.main([])


def test_cli_errors_say_what_to_do_without_a_traceback(monkeypatch, capsys):
    def broken(name, split, download=True):
        raise DataError("mnist/train.npz is corrupt. Delete it and prepare it again.")

    monkeypatch.setattr(data, "load", broken)
    with pytest.raises(SystemExit) as info:
        data.main(["check"])
    assert info.value.code == 1
    assert "Delete it and prepare it again" in capsys.readouterr().err

    def offline(name, root=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data, "prepare", offline)
    with pytest.raises(SystemExit) as info:
        data.main(["prepare", "cifar10"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Downloading cifar10" in err and "Network is unreachable" in err
    assert "needs network access" in err and data.DATA_ENV in err


# ---------------------------------------------------------------------------------------------
# Held-out training images (Chapter 3's detector thresholds)
# ---------------------------------------------------------------------------------------------

def _row_keys(ds: data.ImageSet) -> set[bytes]:
    """One key per image (pixels and label); MNIST's 60,000 training rows are all distinct."""
    return {hashlib.blake2b(row.numpy().tobytes() + bytes([label]), digest_size=16).digest()
            for row, label in zip(ds.images.flatten(1), ds.labels.tolist(), strict=True)}


@pytest.mark.parametrize("seed", [0, 3])
def test_held_out_is_disjoint_from_the_training_subset(data_dir, seed):
    full = data.load("mnist", "train")
    train_size, n = 10_000, 2_000
    training = data.load("mnist", "train", n=train_size, seed=seed)
    held = data.held_out("mnist", n, train_size, seed=seed)
    assert (held.name, held.split, held.classes) == ("mnist", "train", full.classes)
    assert len(held) == n and held.images.shape == (n, 1, 28, 28)
    assert held.images.dtype == torch.uint8 and held.labels.dtype == torch.int64
    # by content: no held-out image (with its label) is a training image
    assert len(_row_keys(full)) == len(full)  # so content identifies the index
    held_keys = _row_keys(held)
    assert len(held_keys) == n  # no repeats
    assert held_keys.isdisjoint(_row_keys(training))
    # by index: the last n of the seeded permutation whose first train_size entries load uses
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(held.images, full.images[perm[-n:].sort().values])
    assert torch.equal(held.labels, full.labels[perm[-n:].sort().values])
    assert torch.equal(training.labels, full.labels[perm[:train_size].sort().values])
    # a mix of classes, not one corner of the file
    assert torch.bincount(held.labels, minlength=10).min() > 100


def test_held_out_is_deterministic_and_fills_exactly_the_rest(data_dir):
    a = data.held_out("mnist", 500, 10_000)
    b = data.held_out("mnist", 500, 10_000)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # the held-out set does not depend on train_size: the same images for every profile
    c = data.held_out("mnist", 500, 55_000)
    assert torch.equal(a.images, c.images)
    # train_size + n == the file: together they are the whole training file, once each
    training = data.load("mnist", "train", n=55_000)
    rest = data.held_out("mnist", 5_000, 55_000)
    assert _row_keys(training) | _row_keys(rest) == _row_keys(data.load("mnist", "train"))
    # another seed holds out other images
    assert not torch.equal(a.images, data.held_out("mnist", 500, 10_000, seed=1).images)


@pytest.mark.parametrize(("n", "train_size"), [(1, None), (2_000, None), (1, 60_000),
                                               (1, 10**6), (2_001, 58_000), (0, 10_000),
                                               (-1, 10_000)])
def test_held_out_refuses_what_would_overlap_training(data_dir, n, train_size):
    with pytest.raises(ValueError, match="cannot hold out"):
        data.held_out("mnist", n, train_size)


def test_held_out_allows_exactly_the_rest(data_dir):
    assert len(data.held_out("mnist", 2_000, 58_000)) == 2_000


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_quick_profile_can_hold_out_its_validation_images(data_dir, dataset):
    from helpers import defenses, profiles

    profile = profiles.get_profile("quick")
    full = data.load(dataset, "train")
    n = profile.validation_size
    for recipe in (profile.recipe(dataset), defenses.AUTOENCODER_RECIPES["quick"][dataset]):
        held = data.held_out(dataset, n, recipe.train_size)
        assert len(held) == n and held.images.shape[1:] == full.images.shape[1:]
        assert recipe.train_size + n <= len(full)
