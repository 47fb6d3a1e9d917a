"""The cache of everything expensive: trained models and computed tensors (e.g. attacks).

One rule for every entry: its file name ends in a hash of everything that determines it,
so a changed input can never load a stale result.

* the **settings** the caller names in ``key`` (data set, profile, recipe, seed, ...);
* the **data**: the content hash of the data set's training file, when ``key`` names one;
* the **code**: the source of the functions that build and train it, followed through every
  ``helpers`` function, class and module they use (:func:`code_fingerprint`), and for a model
  its architecture as built (``repr``), so that editing ``fit`` or swapping an activation
  retrains, without a hand-kept version number;
* the torch version, the device type and, for a model, the precision it trains in
  (:func:`~helpers.device.training_dtype`).

Files are written atomically (a temporary file, then a rename), so an interrupted run never
leaves a file that loads; a file that cannot be read is ignored and recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import data
from .device import get_device, seed_everything, training_dtype
from .files import atomic_path
from .models import channels_last_model

CACHE_ENV = "LESSON_CACHE_DIR"
PACKAGE = __name__.split(".")[0]


def cache_dir() -> Path:
    """Where results are kept: ``LESSON_CACHE_DIR``, default ``lessondata/models``."""
    return Path(os.environ.get(CACHE_ENV, data.LESSONDATA / "models")).expanduser()


def digest(key: dict) -> str:
    """12 hex digits of a SHA-256 of ``key`` as canonical JSON: the hash part of a file name."""
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def fingerprint(*parts: torch.Tensor | nn.Module | str) -> str:
    """A short hash of exactly these values: tensors, modules (their parameters and buffers)
    or text. Results computed from a model or from images are keyed on it."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            sha.update(part.encode())
            continue
        tensors = part.state_dict().values() if isinstance(part, nn.Module) else [part]
        for t in tensors:
            sha.update(f"{t.dtype}{tuple(t.shape)}".encode())
            sha.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The code part of a key
# ---------------------------------------------------------------------------------------------

# Values a closure may hold that are settings of the code, not data: part of its fingerprint.
_SETTINGS = (bool, int, float, str, tuple, type(None))
# Closure variables that are not settings of the code: what is shown while training, and the
# device (the key names its type, whether it was given as "cpu" or torch.device("cpu")).
_DISPLAY_ONLY = {"progress", "desc", "device"}


def _ours(obj: object) -> bool:
    """Defined in this package (torch's and the standard library's code is named by version)."""
    module = getattr(obj, "__module__", None) or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # built in, or defined where no source is kept
        return getattr(obj, "__qualname__", repr(obj))


def _names(code: types.CodeType) -> set[str]:
    """Global and attribute names a function's code uses, nested functions and lambdas too."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _code_parts(obj: object, seen: set[int], parts: list[str]) -> None:
    if id(obj) in seen or obj is None:
        return
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        parts.append(f"partial{obj.args!r}{sorted(obj.keywords.items())!r}")
        _code_parts(obj.func, seen, parts)
    elif isinstance(obj, types.ModuleType):
        if _ours(types.SimpleNamespace(__module__=obj.__name__)):
            parts.append(_source(obj))
    elif isinstance(obj, types.MethodType):
        _code_parts(obj.__func__, seen, parts)
        _code_parts(obj.__self__, seen, parts)
    elif isinstance(obj, types.FunctionType):
        parts.append(_source(obj))
        used = _names(obj.__code__)
        for name in sorted(used):
            value = obj.__globals__.get(name)
            if isinstance(value, types.ModuleType):
                _code_parts(value, seen, parts)
                # module.function as called now (a patched attribute is not in the file)
                for attribute in sorted(used):
                    member = getattr(value, attribute, None)
                    if callable(member) and _ours(member):
                        _code_parts(member, seen, parts)
            elif callable(value) and (_ours(value) or _is_local(value, obj)):
                _code_parts(value, seen, parts)
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True):
            if name in _DISPLAY_ONLY:
                continue
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value):
                _code_parts(value, seen, parts)
            elif isinstance(value, _SETTINGS):  # e.g. the quality inside jpeg_at(quality)
                parts.append(repr(value))
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # a configured callable (a Transform at a quality, a PGD perturbation): its class and
        # its fields, code and settings alike
        _code_parts(type(obj), seen, parts)
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            if callable(value):
                _code_parts(value, seen, parts)
            elif isinstance(value, _SETTINGS):
                parts.append(f"{field.name}={value!r}")
    elif isinstance(obj, type):
        if _ours(obj):
            parts.append(_source(obj))
    elif isinstance(obj, nn.Module):
        parts.append(repr(obj))
        for module in obj.modules():
            _code_parts(type(module), seen, parts)
    elif callable(obj):  # an instance with __call__
        _code_parts(type(obj), seen, parts)


def _is_local(value: object, caller: types.FunctionType) -> bool:
    """A function defined in the same place as ``caller`` (a notebook's own helper)."""
    return isinstance(value, types.FunctionType) and value.__module__ == caller.__module__


def code_fingerprint(*objects: object) -> str:
    """A hash of the source of ``objects`` and of every function, class and module of this
    package they use, followed transitively (closures, partials, ``module.function`` calls).

    A function from a notebook counts too, with the notebook's own functions it calls. Code
    from torch or the standard library is not read: the key names the torch version instead.
    """
    parts: list[str] = []
    seen: set[int] = set()
    for obj in objects:
        if isinstance(obj, str):
            parts.append(obj)
        else:
            _code_parts(obj, seen, parts)
    return hashlib.sha256("\n\x00".join(parts).encode()).hexdigest()[:16]


def _full_key(key: dict, code: str, device: torch.device) -> dict:
    full = {**key, "code": code, "torch": torch.__version__.split("+")[0],
            "device": device.type}
    if "dataset" in key:
        full["data"] = data.content_digest(key["dataset"], "train")
    return full


# ---------------------------------------------------------------------------------------------
# Models and tensors
# ---------------------------------------------------------------------------------------------

def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: never a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load(path: Path, device: torch.device) -> dict | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means recompute
        warnings.warn(f"Ignoring unreadable cache file {path} ({exc}); recomputing.",
                      stacklevel=3)
        return None


def _model_file(key: dict, model: nn.Module, make: Callable[[], nn.Module], train: Callable,
                device: torch.device) -> Path:
    full = {**_full_key(key, code_fingerprint(model, make, train), device),
            "precision": str(training_dtype(device))}
    readable = "-".join(str(key[k]) for k in ("dataset", "model", "profile", "transform", "seed")
                        if k in key)
    return cache_dir() / f"{readable}-{digest(full)}.pt"


def model_path(key: dict, make: Callable[[], nn.Module], train: Callable,
               device: torch.device | None = None) -> Path:
    """The file :func:`cached_model` uses: readable settings, then the hash of the full key."""
    return _model_file(key, make(), make, train, torch.device(device or get_device()))


def cached_model(key: dict, make: Callable[[], nn.Module],
                 train: Callable[[nn.Module], list[dict]],
                 device: torch.device | None = None, cached_only: bool = False) -> nn.Module:
    """Load the model for ``key`` from the cache, or build it with ``make``, ``train`` it, save.

    ``key`` holds the settings; the code of ``make`` and ``train`` and the data are added by
    the cache's rule (see the module's docstring). The model carries ``model.train_info``
    (training seconds, history, the key), so a chapter can report training cost even when the
    model came from the cache. Trained or loaded, it comes back in eval mode and channels-last
    layout (:func:`~helpers.models.channels_last_model`), so both give the same numbers.
    ``cached_only``: raise ``FileNotFoundError`` instead of training.
    """
    device = torch.device(device or get_device())
    seed_everything(int(key.get("seed", 0)))  # the same initial weights on every run
    # built once (its architecture is part of the key), in the layout training leaves it in,
    # so a loaded model computes exactly what the trained one did
    model = channels_last_model(make().to(device))
    path = _model_file(key, model, make, train, device)
    saved = _load(path, device)
    if saved is not None:
        try:
            model.load_state_dict(saved["state_dict"])
            model.train_info = saved["info"]
            return model.eval()
        except (KeyError, RuntimeError) as exc:
            warnings.warn(f"Ignoring unusable checkpoint {path} ({exc}); retraining.",
                          stacklevel=2)
    if cached_only:
        raise FileNotFoundError(f"no cached model {path.name} in {path.parent}")
    started = time.perf_counter()
    history = train(model)
    info = {"train_seconds": time.perf_counter() - started, "history": history,
            "key": json.dumps(key, sort_keys=True, default=str), "device": str(device)}
    save_atomic({"state_dict": model.state_dict(), "info": info}, path)
    model.train_info = info
    return model.eval()


def cached_tensors(name: str, key: dict, compute: Callable[[], dict[str, torch.Tensor]],
                   device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """Load the tensors ``compute`` returns for ``key`` from the cache, or compute and save.

    For expensive, deterministic results that several chapters need, such as attacks on a
    cached model. ``key`` names the settings and what they were computed from (use
    :func:`fingerprint` for models and images); the code of ``compute`` is added by the rule.
    """
    device = torch.device(device or get_device())
    full = _full_key(key, code_fingerprint(compute), device)
    path = cache_dir() / "tensors" / f"{name}-{digest(full)}.pt"
    saved = _load(path, device)
    if saved is not None:
        return saved
    result = compute()
    save_atomic({k: v.detach().cpu() for k, v in result.items()}, path)
    return result
