"""Adaptive attacks (Chapter 6): attack the defended model, not the model alone.

An attack that ignores a defense measures the defense against an attacker who does not know it
exists. An adaptive attacker makes the defense part of the model and differentiates through it,
and where it cannot, works around the obstacle:

* :func:`bpda` (Backward Pass Differentiable Approximation, Athalye, Carlini & Wagner 2018):
  run a non-differentiable transformation (JPEG) exactly on the way forward, and pass gradients
  through an approximation (the identity, or ``jpeg.jpeg_differentiable``) on the way back.
* :class:`Defended`: ``model(transform(x))`` as one ``nn.Module``, so every attack in
  ``helpers.attacks`` runs on the defended model unchanged.
* :class:`EOT` (Expectation over Transformation, Athalye et al. 2018): for a randomized
  defense, average over many random draws, so the attack follows the expected gradient
  instead of one draw's.
* :func:`pgd_against_detectors`: PGD against MagNet's reformer *and* its detectors, with a
  loss that fools the classifier while keeping every detector's score under its threshold
  (after Carlini & Wagner 2017, "MagNet and 'Efficient Defenses ...' are not robust").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .attacks import (
    check_inputs,
    check_label_range,
    check_positive_int,
    in_chunks,
    pgd_step_size,
    project_linf,
    uniform_start,
)
from .defenses import Detector, Pass, Reformer
from .models import eval_mode

# transform(images, generator) -> images: one random draw of a randomized defense
RandomTransform = Callable[[Tensor, torch.Generator | None], Tensor]


# ---------------------------------------------------------------------------------------------
# BPDA
# ---------------------------------------------------------------------------------------------

class _BPDAFunction(torch.autograd.Function):
    """Forward: ``transform(x)``, as it is. Backward: the vector-Jacobian product of
    ``approximation`` at ``x`` (of the identity when it is None)."""

    @staticmethod
    def forward(ctx, x: Tensor, transform: Callable[[Tensor], Tensor],
                approximation: Callable[[Tensor], Tensor] | None) -> Tensor:
        y = transform(x.detach())
        if not isinstance(y, Tensor):
            raise TypeError(f"the transform must return a tensor, got {type(y).__name__}")
        if approximation is None and y.shape != x.shape:
            raise ValueError(f"an identity backward pass needs a transform that keeps the "
                             f"shape, got {tuple(x.shape)} -> {tuple(y.shape)}")
        ctx.approximation = approximation
        ctx.save_for_backward(x)
        # a fresh tensor (never x itself or a view of it): autograd owns what forward returns
        shares = y.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        return y.clone() if shares else y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:
        if ctx.approximation is None:
            return grad_output, None, None
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            approx = ctx.approximation(x)
            if approx.shape != grad_output.shape:
                raise ValueError(f"the backward approximation's output has shape "
                                 f"{tuple(approx.shape)}, the transform's "
                                 f"{tuple(grad_output.shape)}")
            (grad,) = torch.autograd.grad(approx, x, grad_output)
        return grad, None, None


class BPDA(nn.Module):
    """A transformation whose forward pass is exact and whose backward pass is approximated.

    See :func:`bpda`. A ``transform`` or ``backward`` that is an ``nn.Module`` is registered as
    a submodule, so device checks and eval mode reach it.
    """

    def __init__(self, transform: Callable[[Tensor], Tensor],
                 backward: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if backward is not None and not callable(backward):
            raise TypeError(f"backward must be callable or None, got {type(backward).__name__}")
        self.transform = transform
        self.approximation = backward

    def forward(self, x: Tensor) -> Tensor:
        return _BPDAFunction.apply(x, self.transform, self.approximation)


def bpda(transform: Callable[[Tensor], Tensor],
         backward: Callable[[Tensor], Tensor] | None = None) -> BPDA:
    """BPDA (Athalye, Carlini & Wagner 2018): ``transform`` forward, ``backward``'s gradient back.

    The output is ``transform(x)`` bit for bit, so the model sees exactly what the defense
    gives it; the gradient that flows back to ``x`` is the vector-Jacobian product of the
    differentiable ``backward`` at ``x``, or the upstream gradient itself when ``backward`` is
    None (the identity: "the transform is close to x, so pretend it is x"). E.g.
    ``bpda(lambda x: jpeg.jpeg(x, 75), lambda x: jpeg.jpeg_differentiable(x, 75))``.
    A custom autograd function, not ``y + (t - y).detach()``, whose float arithmetic can
    change the forward output in the last bit.
    """
    return BPDA(transform, backward)


# ---------------------------------------------------------------------------------------------
# Defended models
# ---------------------------------------------------------------------------------------------

class Defended(nn.Module):
    """``model(transform(x))`` as one module: the classifier an adaptive attacker faces.

    Every attack in ``helpers.attacks`` runs on it unchanged: its parameters are the model's
    (and the transform's, when that is a module), and ``eval_mode`` reaches every submodule.
    ``transform=None`` is the bare model. A non-differentiable transform (``jpeg.jpeg``) gives
    no gradient; wrap it in :func:`bpda` first.
    """

    def __init__(self, model: nn.Module, transform: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got "
                            f"{type(transform).__name__}")
        self.transform = transform
        self.model = model
        self.training = model.training  # as the model it wraps

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x if self.transform is None else self.transform(x))


class EOT(nn.Module):
    """Expectation over Transformation (Athalye et al. 2018) for a randomized defense.

    Each call draws ``samples`` random versions ``transform(x, generator)`` of the batch
    (``transform=None``: the model itself is random, and is simply called ``samples`` times),
    and returns ``log(mean softmax(model(draw)))``: the log of the *probabilities* averaged
    over the draws. Used as logits, its argmax is the class of highest expected probability,
    and the cross-entropy the attacks take of it is ``-log E[p(label)]``, the loss of the
    expected prediction. Its gradient, ``-E[grad p(label)] / E[p(label)]``, is the average of
    the draws' gradients scaled per image by a positive number, so a signed PGD step is exactly
    the sign of the average gradient. Probabilities rather than logits: they are bounded, so
    one draw with huge logits cannot outvote the rest, and they are what the defense outputs.
    ``generator`` (or the global RNG when None) is advanced by every call.
    """

    def __init__(self, model: nn.Module, samples: int, transform: RandomTransform | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        check_positive_int("samples", samples)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got "
                            f"{type(transform).__name__}")
        self.transform = transform
        self.model = model
        self.samples = samples
        self.passes_per_image = samples  # for helpers.batching: memory per image
        self.generator = generator
        self.training = model.training

    def _draw(self, x: Tensor) -> Tensor:
        return x if self.transform is None else self.transform(x, self.generator)

    def forward(self, x: Tensor) -> Tensor:
        return log_mean_probability([self.model(self._draw(x)) for _ in range(self.samples)])


def log_mean_probability(logits: Sequence[Tensor]) -> Tensor:
    """``log(mean softmax)`` over several predictions of the same images, used as logits.

    How EOT and :class:`Ensemble` combine predictions: the argmax is the class with the highest
    mean probability, and the cross-entropy of it is the loss of the averaged prediction.
    """
    log_probs = torch.stack([F.log_softmax(lg.float(), dim=1) for lg in logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


class Ensemble(nn.Module):
    """Several (defended) models as one: ``log(mean softmax)`` of their outputs.

    The attacker's view of Das et al.'s voting ensemble: a vote has no gradient, the members'
    mean probability does, and a class the members agree on wins both. Members that are
    :class:`Defended` with :func:`bpda` each keep their own transformation.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.passes_per_image = len(members)  # for helpers.batching: memory per image
        self.training = any(m.training for m in members)

    def forward(self, x: Tensor) -> Tensor:
        return log_mean_probability([member(x) for member in self.members])


# ---------------------------------------------------------------------------------------------
# MagNet end to end
# ---------------------------------------------------------------------------------------------

def _check_detectors(detectors: Sequence[Detector]) -> None:
    for detector in detectors:
        if detector.differentiable_score is None:
            raise ValueError(f"detector {detector.name!r} has no differentiable_score; build it "
                             "with defenses.reconstruction_detector or divergence_detector")
        if not detector.threshold > 0:
            raise ValueError(f"detector {detector.name!r} has threshold {detector.threshold}; "
                             "the penalty divides by it, so it must be > 0")


@in_chunks
def pgd_against_detectors(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
                          detectors: Sequence[Detector], alpha: float | None = None,
                          steps: int = 10, weight: float = 10.0, random_start: bool = True,
                          generator: torch.Generator | None = None) -> Tensor:
    """L-inf PGD against a classifier guarded by detectors (MagNet attacked end to end).

    ``model`` is what the defense classifies with (``defenses.Reformer(autoencoder,
    classifier)`` for MagNet; the reformer alone is plain ``attacks.pgd`` on it). Each step
    ascends, per image, ``cross_entropy(model(x), label) - weight * sum_d max(0, s_d(x) / t_d
    - 1)``: fool the classifier, but pay once a detector's score ``s_d`` rises over its
    threshold ``t_d`` (scores divided by thresholds, so detectors on different scales weigh
    alike; the default ``weight`` makes a score 10% over its threshold cost as much as one nat
    of cross-entropy). Detectors are ``defenses.Detector`` objects with a
    ``differentiable_score`` (those from ``reconstruction_detector`` and
    ``divergence_detector`` have one).
    Steps, ``alpha`` (default ``2.5 * eps / steps``), ``random_start``, ``generator``, the
    projection onto the eps ball and [0, 1] are as in ``attacks.pgd``. Returned per image:
    the last iterate, including the start, that was misclassified while no detector flagged it;
    where there was none, the last iterate.
    """
    x, y = check_inputs(model, images, labels, eps)
    alpha = pgd_step_size(eps, steps, alpha)
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    _check_detectors(detectors)
    adv = uniform_start(x, eps, generator) if random_start else x
    best, found = adv.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with eval_mode(model):
        for step in range(steps + 1):  # the last pass only checks the final iterate
            with torch.enable_grad():
                adv = adv.detach().requires_grad_(True)
                shared = Pass(adv)  # each network once per image, for model and detectors
                logits = (shared(model.classifier, after=model.autoencoder)
                          if isinstance(model, Reformer) else shared(model))
                check_label_range(logits, y)
                penalty = torch.zeros(len(x), device=x.device)
                evading = torch.ones_like(found)
                for detector in detectors:
                    score = (detector.score_of(shared) if detector.score_of is not None
                             else detector.differentiable_score(adv))
                    penalty = penalty + (score / detector.threshold - 1).clamp_min(0)
                    evading &= score.detach() <= detector.threshold  # flags: score > threshold
                loss = F.cross_entropy(logits, y, reduction="sum") - weight * penalty.sum()
            success = evading & (logits.detach().argmax(1) != y)
            best[success] = adv.detach()[success]
            found |= success
            if step == steps:
                break
            (grad,) = torch.autograd.grad(loss, adv)
            adv = project_linf(adv.detach() + alpha * grad.sign(), x, eps)
    return torch.where(found[:, None, None, None], best, adv.detach())
