"""Score defenses against attacks on the same images: one table, every pair.

Chapters 4-6 ask the same question many times: made with these attacks, cleaned by these
input transformations, how many images does the model still get right? ``accuracy_table``
answers it for every (attack, defense) pair on the same images, so rows and columns compare;
``predicted_labels``, ``accuracies`` and ``success_table`` answer it from one set of
predictions and also count attack success on the images the defense itself gets right;
``scoreboard`` does the same for defenses that may reject an input, and ``adaptive_scoreboard``
sums up Chapter 6. Nothing here attacks (:mod:`helpers.attacks`) or times
(:mod:`helpers.timing`): these functions only score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from . import train
from .results import wilson_interval
from .train import ImageFunction


def accuracy_table(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   adversarial: Mapping[str, torch.Tensor],
                   defenses: Mapping[str, ImageFunction | None]) -> dict[str, dict[str, float]]:
    """``table[attack][defense]``: accuracy of ``model`` on defended images.

    ``adversarial`` maps attack names to adversarial versions of ``images`` (the row
    ``"clean"`` is added for the clean images); ``defenses`` maps names to transforms applied
    before the model (``None``: the images as they are).
    """
    rows = {"clean": images, **adversarial}
    for name, adv in rows.items():
        if adv.shape != images.shape:
            raise ValueError(f"adversarial images {name!r} have shape {tuple(adv.shape)}, "
                             f"the clean images {tuple(images.shape)}")
    return accuracies(predicted_labels(model, rows, defenses), labels)


def predicted_labels(model: nn.Module, image_sets: Mapping[str, torch.Tensor],
                     defenses: Mapping[str, ImageFunction | None]
                     ) -> dict[tuple[str, str], torch.Tensor]:
    """``predicted[(images, defense)]``: ``model``'s labels for every named set of images
    behind every defense (``None``: no transform). One forward pass each, so accuracies and
    success rates can all be computed from the same predictions."""
    shapes = {tuple(images.shape) for images in image_sets.values()}
    if len(shapes) > 1:
        raise ValueError(f"every set must hold the same images, attacked or not; got shapes "
                         f"{sorted(shapes)}")
    return {(name, defense): train.predict(model, images, transform=transform).argmax(1)
            for name, images in image_sets.items() for defense, transform in defenses.items()}


def accuracies(predicted: Mapping[tuple[str, str], torch.Tensor], labels: torch.Tensor
               ) -> dict[str, dict[str, float]]:
    """``table[images][defense]``: accuracy from :func:`predicted_labels`' predictions (the
    layout of :func:`accuracy_table`)."""
    table: dict[str, dict[str, float]] = {}
    for (name, defense), labels_predicted in predicted.items():
        right = labels_predicted == labels.to(labels_predicted.device)
        table.setdefault(name, {})[defense] = right.float().mean().item()
    return table


def success_table(predicted: Mapping[tuple[str, str], torch.Tensor], labels: torch.Tensor,
                  bare: str, clean: str = "clean") -> pd.DataFrame:
    """Each attack's success behind each defense, counted two ways on the same images.

    ``predicted`` is :func:`predicted_labels`'s output; ``bare`` names its defense that does
    nothing and ``clean`` its set of clean images. Indexed by ``(attack, defense)`` for every
    other set and every defense. Columns:

    * ``success``: among the images that the bare model *and* the defended model classify
      correctly when clean, the share whose adversarial version the defended model gets wrong.
      The defense's own mistakes on clean images are not counted as the attack's successes.
    * ``success (all)``: among the images the bare model gets right, the share the defended
      model gets wrong after the attack: the usual "attack success rate", which charges the
      defense's clean-image mistakes to the attack.
    * ``images`` and ``images (all)``: how many images each rate is over.
    """
    sets = list(dict.fromkeys(name for name, _ in predicted))
    defenses = list(dict.fromkeys(defense for _, defense in predicted))
    if (clean, bare) not in predicted:
        raise KeyError(f"no predictions for the clean images {clean!r} without a defense "
                       f"{bare!r}; sets: {sets}, defenses: {defenses}")
    bare_right = predicted[(clean, bare)] == labels
    rows = []
    for defense in defenses:
        both_right = bare_right & (predicted[(clean, defense)] == labels)
        for attack in sets:
            if attack != clean:
                fooled = predicted[(attack, defense)] != labels
                rows.append({"attack": attack, "defense": defense,
                             "success": _share(fooled, both_right),
                             "success (all)": _share(fooled, bare_right),
                             "images": int(both_right.sum()),
                             "images (all)": int(bare_right.sum())})
    return pd.DataFrame(rows).set_index(["attack", "defense"])


def _share(hit: torch.Tensor, among: torch.Tensor) -> float:
    """The share of ``among`` that ``hit`` marks (NaN for none)."""
    count = int(among.sum())
    return (hit & among).sum().item() / count if count else math.nan


# A defense as the scoreboard sees it: images -> (predicted labels, rejected or None)
System = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def scoreboard(systems: Mapping[str, System],
               sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
               ) -> dict[str, dict[str, float]]:
    """``board[defense][images]``: each defense's accuracy on each named set of images.

    ``sets`` maps names to ``(images, labels)``; the set named ``"clean"`` is scored as a user
    sees it (a rejected clean image is a failure), every other set as the defense's papers do
    (an adversarial image the defense rejects counts as defended). Defenses that never reject
    return ``None`` for ``rejected``. Every number is measured here, on the images given.
    """
    board: dict[str, dict[str, float]] = {}
    for defense, system in systems.items():
        board[defense] = {}
        for name, (images, labels) in sets.items():
            predicted, rejected = system(images)
            correct = predicted.to(labels.device) == labels
            if rejected is not None:
                rejected = rejected.to(labels.device)
                correct = (correct & ~rejected) if name == "clean" else (correct | rejected)
            board[defense][name] = correct.float().mean().item()
    return board


# accuracy[(data set, defense, attack, eps)]: one measured accuracy behind the defense; the
# attack's name says its settings ("PGD-10, BPDA", "APGD-CE + DLR, 100 steps x 2")
Measured = Mapping[tuple[str, str, str, float], float]


def adaptive_scoreboard(accuracy: Measured, eps: float, n: int,
                        clean: Mapping[tuple[str, str], float],
                        extra_models: Mapping[tuple[str, str], Sequence[nn.Module]],
                        oblivious: str = "oblivious") -> pd.DataFrame:
    """One row per ``(defense, data set)`` of ``clean``, in its order: how the defense fares
    against an attacker who ignores it and against the strongest one who does not.

    Columns: ``clean`` (from ``clean``); ``oblivious``, the accuracy under the attack named
    ``oblivious`` at ``eps`` (a defense with no such entry, such as the bare model, has
    nothing to be oblivious of: it gets its adaptive accuracy); ``adaptive``, the lowest
    accuracy over every other attack measured at ``eps``, with ``adaptive low`` and
    ``adaptive high``, its 95% Wilson interval on ``n`` images, and ``strongest adaptive
    attack``, its name; ``models to train`` and ``their training (s)``, the distinct models
    in ``extra_models`` (each counted once) and the sum of their
    ``train_info["train_seconds"]``. Nothing is measured here: every accuracy comes from
    ``accuracy`` and ``clean``.
    """
    rows = []
    for defense, dataset in clean:
        found = {attack: value for (d_set, d, attack, e), value in accuracy.items()
                 if (d_set, d) == (dataset, defense) and math.isclose(e, eps)}
        adaptive = {attack: value for attack, value in found.items() if attack != oblivious}
        if not adaptive:
            raise KeyError(f"no adaptive attack on {defense!r} ({dataset}) at eps {eps:.4f}; "
                           f"measured: {sorted(found)}")
        strongest = min(adaptive, key=adaptive.get)
        low, high = wilson_interval(adaptive[strongest], n)
        models = list({id(m): m for m in extra_models[(defense, dataset)]}.values())
        rows.append({"defense": defense, "data set": dataset,
                     "clean": clean[(defense, dataset)],
                     "oblivious": found.get(oblivious, adaptive[strongest]),
                     "adaptive": adaptive[strongest],
                     "adaptive low": low, "adaptive high": high,
                     "strongest adaptive attack": strongest,
                     "models to train": len(models),
                     "their training (s)": sum(m.train_info["train_seconds"]
                                               for m in models)})
    return pd.DataFrame(rows).set_index(["defense", "data set"])
