"""Shared test setup: import path, the lesson data, and tmp folders for everything tests write.

Run from the repository root: ``python3 -m pytest tests``. The real datasets are found through
``LESSON_DATA_DIR``; when it is unset and ``../shared/data`` exists beside the repository, that
folder is used. Trained models and recorded results go to per-test tmp folders, with one
exception: the few tests that need a model the chapters train too (the quick profile's MNIST
classifier and AE I, its GTSRB classifier) build it ``as_a_chapter_would()``
(``tests/course_models.py``): in the chapters' own model cache and with a chapter's number of
threads, so that the test command trains each such model once and the chapters' numbers do not
depend on whether a test trained it. Its cache key (code, data, settings) makes what they load
exactly the chapters' model; nothing else is written there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before helpers.plots imports pyplot: no display in tests

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if "LESSON_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LESSON_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory, monkeypatch):
    """Every test gets its own model cache and results folder (see ``as_a_chapter_would``)."""
    out = tmp_path_factory.mktemp("outputs")
    monkeypatch.setenv("LESSON_CACHE_DIR", str(out / "models"))
    monkeypatch.setenv("LESSON_RESULTS_DIR", str(out / "results"))


@pytest.fixture
def cache_dir(monkeypatch, tmp_path) -> Path:
    """A fresh, empty model cache folder set as ``LESSON_CACHE_DIR``."""
    path = tmp_path / "model-cache"
    monkeypatch.setenv("LESSON_CACHE_DIR", str(path))
    return path


@pytest.fixture
def results_dir(monkeypatch, tmp_path) -> Path:
    """A fresh, empty results folder set as ``LESSON_RESULTS_DIR``."""
    path = tmp_path / "results"
    monkeypatch.setenv("LESSON_RESULTS_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real lesson data folder; tests that need it are skipped (with the reason) without it."""
    from helpers import data

    root = data.data_root()
    missing = [f"{name}/{split}.npz" for name in data.DATASETS for split in data.SPLITS
               if not (root / name / f"{split}.npz").is_file()]
    if missing:
        pytest.skip(f"lesson data not found under {root} (missing {missing}); "
                    "set LESSON_DATA_DIR to the folder holding <name>/{train,test}.npz")
    return root


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: these tests use small tensors, where two threads on two cores that
    other processes also use can be ten times slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_test(data_dir):
    """256 fixed MNIST test images (float in [0, 1]) and labels."""
    from helpers import data

    return data.load("mnist", "test", n=256).to("cpu")


@pytest.fixture(scope="session")
def cifar_test(data_dir):
    """256 fixed CIFAR-10 test images (float in [0, 1]) and labels."""
    from helpers import data

    return data.load("cifar10", "test", n=256).to("cpu")


@pytest.fixture(scope="session")
def mnist_mlp(data_dir):
    """A small MLP trained for a few seconds on 2000 MNIST images, and 200 test images.

    Shared: tests may attack it but must not change it (copy it to train it further).
    """
    from torch import nn

    from helpers import data, train

    torch.manual_seed(0)
    x_train, y_train = data.load("mnist", "train", n=2000).to("cpu")
    x_test, y_test = data.load("mnist", "test", n=200).to("cpu")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    train.fit(model, x_train, y_train, epochs=8, batch_size=64, lr=3e-3, progress=False)
    model.eval()
    assert train.evaluate(model, x_test, y_test) > 0.85
    return model, x_test, y_test


@dataclass(frozen=True)
class SiteBuild:
    """One build of the website: Jupyter Book's exit code, the end of its log, the HTML folder."""

    returncode: int
    log: str
    html: Path


@pytest.fixture(scope="session")
def site_build(tmp_path_factory) -> SiteBuild:
    """The site built once per test run (Jupyter Book 1.x from the stored outputs, warnings as
    errors, ``-W -n --keep-going``), shared by the build test and the browser test."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
         str(REPO), "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, timeout=900)
    return SiteBuild(result.returncode, result.stdout[-4000:] + result.stderr[-4000:],
                     out / "_build" / "html")
