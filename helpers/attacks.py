"""Adversarial attacks with one call style: ``attack(model, images, labels, **params)``.

Every attack takes float images in [0, 1] (N x C x H x W) and integer labels (N) and returns
detached adversarial images of the same shape, clipped to [0, 1]. The model runs in eval mode
and is left in the mode it was found in. Only gradients with respect to the input are taken
(``torch.autograd.grad``), so the parameters' ``.grad`` never fills up, and any differentiable
``nn.Module`` works, e.g. ``nn.Sequential(defense, classifier)``.

``quantize=True`` rounds the output to the 8-bit grid: what an attacker can actually submit
as an image file. Rounding can undo a minimal (DeepFool, CW) attack; the L-inf attacks keep
their eps guarantee after rounding (see :func:`fgsm`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import batching
from .cache import cached_tensors, fingerprint
from .images import quantize
from .models import eval_mode

PIXEL_TOLERANCE = 1e-6  # images may leave [0, 1] by this much (float round-off), no more
_GRID_TOLERANCE = 1e-4  # in grid steps: absorbs float error when eps is a multiple of 1/255


# ---------------------------------------------------------------------------------------------
# Building blocks, public so that new attacks (helpers.adaptive's, a reader's) are built alike
# ---------------------------------------------------------------------------------------------

def _model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); None for a stateless model."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return None


def check_inputs(model: nn.Module, images: Tensor, labels: Tensor,
                  eps: float | None = None) -> tuple[Tensor, Tensor]:
    """Validate an attack's inputs; returns detached ``(images, labels as int64)``.

    Catching these here gives one clear message instead of a shape error deep inside a model
    or, worse, a silently meaningless attack (e.g. on 0-255 or normalized images).
    """
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(f"images and labels must be tensors, got {type(images).__name__} and "
                        f"{type(labels).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be a 4-D batch N x C x H x W, got shape "
                         f"{tuple(images.shape)} (for one image use images.unsqueeze(0))")
    if images.shape[0] == 0:
        raise ValueError("empty batch: images has no images (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype} "
                         "(convert uint8 with helpers.images.as_float)")
    if labels.dim() != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be 1-D with one label per image: got labels of shape "
                         f"{tuple(labels.shape)} for {len(images)} images")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if eps is not None and not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    model_device = _model_device(model)
    if images.device != labels.device or (model_device is not None
                                          and model_device != images.device):
        raise ValueError(f"images ({images.device}), labels ({labels.device}) and model "
                         f"({model_device}) must be on the same device")
    low, high = images.min().item(), images.max().item()
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("images contain NaN or infinity")
    if low < -PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
        raise ValueError(f"images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                         "attacks work in pixel space, so keep normalization inside the model")
    return images.detach().clamp(0, 1), labels.detach().long()


def check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_label_range(logits: Tensor, labels: Tensor) -> None:
    """Labels must index the model's outputs (cross-entropy's own error is cryptic)."""
    n_classes = logits.shape[1]
    if labels.min().item() < 0 or labels.max().item() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1} for a model with {n_classes} "
                         f"outputs, got values in {labels.min().item()}..{labels.max().item()}")


def margin_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Per image, the best other logit minus the label's: positive once misclassified.

    Carlini and Wagner's loss (their f6, without kappa); unlike cross-entropy it does not
    saturate, or reward pushing an already-wrong image further, so attacks that maximize it
    are not fooled by a model whose softmax is flat or saturated.
    """
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -math.inf)
    return others.amax(1) - label_logit


def dlr_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Croce and Hein's (2020) Difference of Logits Ratio, per image (untargeted):
    ``(max other - z_label) / (z_1 - z_3)``, the logits sorted in decreasing order.

    The margin divided by the spread of the top logits, so it does not change when the
    logits are rescaled: a defense cannot hide behind a large or a tiny logit scale.
    """
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got {logits.shape[1]}")
    top = logits.sort(1, descending=True).values
    return margin_loss(logits, labels) / (top[:, 0] - top[:, 2] + 1e-12)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


# Per-image losses an attack maximizes (untargeted): name -> loss(logits, labels).
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": _cross_entropy, "margin": margin_loss, "dlr": dlr_loss}


def check_loss(loss: str, targeted: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} ('ce': cross-entropy; "
                         f"'margin': Carlini-Wagner's; 'dlr': APGD's), got {loss!r}")
    if targeted and loss == "dlr":
        raise ValueError("the DLR loss here is untargeted; use loss='ce' or 'margin' "
                         "for a targeted attack")
    return LOSSES[loss]


def _loss_gradient(model: nn.Module, x: Tensor, labels: Tensor, targeted: bool,
                   loss: str = "ce") -> Tensor:
    """Gradient w.r.t. ``x`` of the summed ``loss`` (see ``LOSSES``): up for untargeted, down
    for targeted.

    Taken with ``torch.autograd.grad`` on the input only, so parameter ``.grad`` stays empty,
    and inside ``enable_grad`` so a caller's ``torch.no_grad()`` does not break the attack.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        check_label_range(logits, labels)
        total = LOSSES[loss](logits, labels).sum()
        (grad,) = torch.autograd.grad(total, x)
    return -grad if targeted else grad


def project_linf(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Clip ``adv`` into the L-inf ball of radius ``eps`` around ``x``, then into [0, 1]."""
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)


def _quantize_in_ball(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Round to the 8-bit grid without leaving the eps ball.

    Plain rounding can step outside the ball when ``x`` itself is off the grid (x = 127.5/255
    with eps = 2/255 rounds x + eps up to 130/255). So each pixel is clipped to the grid values
    inside its ball, the ball's bounds rounded inward. Where the ball holds no grid value (only
    possible when eps < 1/510 and ``x`` is off the grid) the pixel becomes round(x), which is
    within 1/510 of ``x``.
    """
    q = quantize(adv)
    low = torch.ceil((x - eps).clamp(0, 1) * 255 - _GRID_TOLERANCE) / 255
    high = torch.floor((x + eps).clamp(0, 1) * 255 + _GRID_TOLERANCE) / 255
    q = torch.min(torch.max(q, low), high)
    return torch.where(low > high, quantize(x), q)


def pgd_step_size(eps: float, steps: int, alpha: float | None) -> float:
    """Check ``steps`` and ``alpha``; the default step is ``2.5 * eps / steps`` (Madry et al.)."""
    check_positive_int("steps", steps)
    alpha = 2.5 * eps / steps if alpha is None else alpha
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return alpha


def uniform_start(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """A uniform random point of the eps ball around ``x``, clipped to [0, 1].

    Drawn on the generator's device (``x``'s when there is none), then moved to ``x``'s.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
    return (x + (2 * noise.to(x.device) - 1) * eps).clamp(0, 1)


def _finish_linf(adv: Tensor, x: Tensor, eps: float, quantized: bool) -> Tensor:
    adv = project_linf(adv, x, eps)
    if quantized:
        adv = _quantize_in_ball(adv, x, eps)
    return adv.detach()


def _finish(adv: Tensor, quantized: bool) -> Tensor:
    adv = adv.clamp(0, 1)
    return (quantize(adv) if quantized else adv).detach()


def in_chunks(attack: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Make ``attack(model, images, labels, ...)`` run on memory-bounded chunks of images
    (:func:`helpers.batching.chunk_size`) and concatenate them: the same result as one call,
    since every attack here treats each image on its own, and memory that does not grow with
    the number of images."""
    @functools.wraps(attack)
    def chunked(model: nn.Module, images: Tensor, labels: Tensor, *args, **kwargs) -> Tensor:
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor) \
                or len(images) != len(labels):
            check_inputs(model, images, labels)  # says what is wrong with them, as a whole
        size = batching.chunk_size(model, images.device)
        return batching.in_chunks(lambda x, y: attack(model, x, y, *args, **kwargs), size,
                                  images, labels)

    return chunked


# ---------------------------------------------------------------------------------------------
# L-infinity attacks
# ---------------------------------------------------------------------------------------------

@in_chunks
def fgsm(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
         targeted: bool = False, quantize: bool = False) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al., 2015): ``x + eps * sign(grad loss)``.

    One step to the corner of the L-inf ball that increases the cross-entropy most to first
    order. ``targeted=True`` treats ``labels`` as targets and steps to decrease their loss.
    ``quantize=True`` rounds to the 8-bit grid and still stays within ``eps`` of the input
    (up to 4e-7 of float slack when eps is a multiple of 1/255), as long as the ball holds a
    grid value, which it always does for eps >= 1/510 or images already on the grid.
    """
    x, y = check_inputs(model, images, labels, eps)
    with eval_mode(model):
        grad = _loss_gradient(model, x, y, targeted)
    adv = project_linf(x + eps * grad.sign(), x, eps)
    return _finish_linf(adv, x, eps, quantize)


@in_chunks
def pgd(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
        alpha: float | None = None, steps: int = 10, random_start: bool = True,
        targeted: bool = False, generator: torch.Generator | None = None,
        quantize: bool = False, loss: str = "ce", restarts: int = 1) -> Tensor:
    """Projected gradient descent in the L-inf ball (Madry et al., 2018): iterated FGSM.

    Starts from a uniform random point of the eps ball (``random_start``; draw it from
    ``generator`` for reproducible runs), takes ``steps`` signed-gradient steps of size
    ``alpha`` (default ``2.5 * eps / steps``, so the walk can cross the ball and back) and
    projects onto the ball and [0, 1] after each. With ``random_start=False, steps=1,
    alpha=eps`` it is exactly :func:`fgsm`. ``targeted`` and ``quantize`` as in :func:`fgsm`.
    ``loss`` is the one ascended (``LOSSES``: ``"ce"``, ``"margin"``; ``"dlr"``, untargeted).
    ``restarts`` runs the attack that many times from new random starts and keeps, image by
    image, the run with the largest margin (the first that fools the model, if any does).
    """
    x, y = check_inputs(model, images, labels, eps)
    check_loss(loss, targeted)
    check_positive_int("restarts", restarts)
    alpha = pgd_step_size(eps, steps, alpha)
    runs = []
    with eval_mode(model):
        for _ in range(restarts if random_start else 1):
            adv = uniform_start(x, eps, generator) if random_start else x
            for _ in range(steps):
                grad = _loss_gradient(model, adv, y, targeted, loss)
                adv = project_linf(adv + alpha * grad.sign(), x, eps)
            runs.append(adv)
        adv = runs[0] if len(runs) == 1 else worst_case(model, runs, y, targeted)
    return _finish_linf(adv, x, eps, quantize)


def worst_case(model: nn.Module, candidates: list[Tensor], labels: Tensor,
               targeted: bool = False) -> Tensor:
    """Image by image, the candidate with the largest margin (toward the target if
    ``targeted``): one that fools ``model`` wherever any does.

    How restarts keep their best run, and how an evaluation takes the worst case over several
    attacks (AutoAttack's rule): ``worst_case(model, [apgd(..., loss="ce"), apgd(...,
    loss="dlr")], labels)``. Every candidate holds adversarial versions of the same images.
    """
    if not candidates or any(c.shape != candidates[0].shape for c in candidates):
        raise ValueError("worst_case needs one or more candidates of the same shape")
    with torch.no_grad(), eval_mode(model):
        margins = [(-1 if targeted else 1) * margin_loss(model(c), labels) for c in candidates]
    return _largest_margin(candidates, margins)


def _largest_margin(candidates: list[Tensor], margins: list[Tensor]) -> Tensor:
    """Image by image, the candidate whose margin (one per image and candidate) is largest."""
    best = torch.stack(margins).argmax(0)
    return torch.stack(candidates)[best, torch.arange(len(best), device=best.device)]


# ---------------------------------------------------------------------------------------------
# Stronger L-inf attacks: APGD (gradient, step size adapted) and Square (gradient-free)
# ---------------------------------------------------------------------------------------------

def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size (Croce & Hein, 2020, Sec. 3.1).

    Their fractions p_0 = 0, p_1 = 0.22, p_(j+1) = p_j + max(p_j - p_(j-1) - 0.03, 0.06), in
    whole iterations as their code counts them: the first stretch is 22% of the run, each
    next one 3% shorter, down to 6%. Close together early, further apart later.
    """
    stretch = max(int(0.22 * steps), 1)
    shorter, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    checkpoints = [stretch]
    while True:
        stretch = max(stretch - shorter, shortest)
        if checkpoints[-1] + stretch >= steps:
            return [k for k in checkpoints if k < steps]
        checkpoints.append(checkpoints[-1] + stretch)


def _loss_value_and_gradient(model: nn.Module, x: Tensor, labels: Tensor,
                             loss: Callable[[Tensor, Tensor], Tensor]
                             ) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image ``loss``, its gradient w.r.t. ``x`` and the logits, in one pass."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        values = loss(logits, labels)
        (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad, logits.detach()


def _apgd_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int,
              loss: Callable[[Tensor, Tensor], Tensor], rho: float, start: Tensor,
              confidence: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run from ``start``: ``(adversarial images, their margins, robust)``.

    Each image keeps its own step size, starting at 2 eps. Steps use momentum 0.75 after the
    first. At each checkpoint an image's step is halved, and it restarts from the best point
    it has seen, if at most ``rho`` of its steps since the last checkpoint raised the loss,
    or if neither its step nor its best loss changed over that stretch. Returned, per image:
    the point with the largest margin seen (a misclassified one, if any was found), and
    ``robust`` (``steps + 1`` x images, bool): not yet misclassified after each iteration.

    An image stops once it is misclassified (its margin above ``confidence``), as in
    AutoAttack: its result cannot get better for the attacker, and every image's walk is its
    own (the model runs in eval mode), so leaving it out changes no other image and saves the
    passes it would cost.
    """
    n = len(x)
    step = torch.full((n, 1, 1, 1), 2 * eps, device=x.device, dtype=x.dtype)
    adv = start.clone()
    value, grad, logits = _loss_value_and_gradient(model, adv, y, loss)
    best_value, best_point, best_grad = value.clone(), adv.clone(), grad.clone()
    kept, kept_margin = adv.clone(), margin_loss(logits, y)
    robust = [kept_margin <= confidence]
    previous = adv
    adv = project_linf(adv + step * grad.sign(), x, eps)
    checkpoints, last_checkpoint = apgd_checkpoints(steps), 0
    raised = torch.zeros(n, device=x.device)
    halved = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_at_checkpoint = best_value.clone()
    for k in range(1, steps + 1):
        live = robust[-1].nonzero().squeeze(1)  # the images not yet misclassified
        if len(live) == 0:
            robust.extend(robust[-1:] * (steps + 1 - len(robust)))
            break
        last_value = value[live]
        value_, grad_, logits_ = _loss_value_and_gradient(model, adv[live], y[live], loss)
        value[live], grad[live] = value_, grad_
        margin = margin_loss(logits_, y[live])
        better = margin > kept_margin[live]
        kept[live[better]], kept_margin[live[better]] = adv[live[better]], margin[better]
        robust.append(kept_margin <= confidence)
        raised[live] += value_ > last_value
        improved = live[value_ > best_value[live]]
        best_value[improved], best_point[improved] = value[improved], adv[improved]
        best_grad[improved] = grad[improved]
        if k == steps:
            break
        if k in checkpoints:
            stalled = (raised <= rho * (k - last_checkpoint)) | (
                ~halved & (best_value <= best_at_checkpoint))
            step[stalled] /= 2
            adv[stalled], grad[stalled] = best_point[stalled], best_grad[stalled]
            previous = torch.where(stalled[:, None, None, None], adv, previous)
            halved, raised, last_checkpoint = stalled, torch.zeros_like(raised), k
            best_at_checkpoint = best_value.clone()
        moved = project_linf(adv + step * grad.sign(), x, eps)
        adv, previous = project_linf(adv + 0.75 * (moved - adv) + 0.25 * (adv - previous),
                                     x, eps), adv
    return kept, kept_margin, torch.stack(robust)


@in_chunks
def apgd_trace(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
               steps: int = 100, loss: str = "ce", restarts: int = 1, rho: float = 0.75,
               generator: torch.Generator | None = None, quantize: bool = False,
               confidence: float = 0.0) -> tuple[Tensor, Tensor]:
    """:func:`apgd`, with its progress: ``(adversarial images, robust)``.

    ``robust[i, r, k]`` says whether image ``i`` was still classified correctly after ``k`` of
    the ``steps`` iterations of restart ``r`` (bool, images x restarts x ``steps + 1``), as
    the attack saw it (before ``quantize``). A restart attacks only the images no earlier
    restart misclassified (the rest are False in it), so ``robust.float().mean(0).flatten()``
    is robust accuracy against the number of iterations spent, all restarts in a row: the
    curve that shows whether the attack has converged (flat at its end, and not lowered by
    another restart).

    ``confidence``: an image counts as fooled, and stops, once its margin (best other logit
    minus the label's) exceeds it. 0, misclassified, is right for a deterministic model. A
    randomized defense's single draws scatter around the average an EOT attacker sees, so an
    image just across the average's boundary is often classified right as deployed; a
    positive confidence keeps attacking it until it is well across.
    """
    x, y = check_inputs(model, images, labels, eps)
    loss_fn = check_loss(loss)
    check_positive_int("steps", steps)
    check_positive_int("restarts", restarts)
    best, best_margin = x.clone(), torch.full((len(x),), -math.inf, device=x.device)
    robust = torch.zeros(len(x), restarts, steps + 1, dtype=torch.bool, device=x.device)
    with eval_mode(model):
        for r in range(restarts):
            start = uniform_start(x, eps, generator)  # drawn for every image: reproducible
            live = (best_margin <= confidence).nonzero().squeeze(1)
            if len(live) == 0:
                continue
            adv, margin, run_robust = _apgd_run(model, x[live], y[live], eps, steps, loss_fn,
                                                rho, start[live], confidence)
            better = live[margin > best_margin[live]]
            keep = margin > best_margin[live]
            best[better], best_margin[better] = adv[keep], margin[keep]
            robust[live, r] = run_robust.T
    return _finish_linf(best, x, eps, quantize), robust


def apgd(model: nn.Module, images: Tensor, labels: Tensor, eps: float, steps: int = 100,
         loss: str = "ce", restarts: int = 1, rho: float = 0.75,
         generator: torch.Generator | None = None, quantize: bool = False,
         confidence: float = 0.0) -> Tensor:
    """Auto-PGD in the L-inf ball (Croce & Hein, 2020), untargeted: PGD with momentum and a
    step size that halves, image by image, when progress stalls (see :func:`_apgd_run`).

    ``loss`` is ``"ce"`` (cross-entropy) or ``"dlr"`` (:func:`dlr_loss`, their scale-free
    margin; ``"margin"`` also works); the two together are AutoAttack's untargeted pair.
    ``steps`` gradient evaluations per run; ``restarts`` runs from random points of the ball
    (from ``generator``), each on the images no earlier run misclassified, keeping per image
    the run with the largest margin. No step size to tune: it starts at 2 eps. ``quantize``
    as in :func:`fgsm`; ``confidence`` as in :func:`apgd_trace`, which also returns the
    attack's progress.
    """
    return apgd_trace(model, images, labels, eps, steps=steps, loss=loss, restarts=restarts,
                      rho=rho, generator=generator, quantize=quantize,
                      confidence=confidence)[0]


def apgd_pair_trace(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
                    steps: int = 100, restarts: int = 1,
                    generator: torch.Generator | None = None, quantize: bool = False,
                    confidence: float = 0.0) -> tuple[Tensor, Tensor]:
    """AutoAttack's untargeted pair, run as AutoAttack runs it: APGD with cross-entropy on
    every image, then APGD with DLR on the images it left classified correctly. Returns
    ``(adversarial images, robust)``; ``robust`` (images x ``2 * restarts`` x ``steps + 1``)
    is :func:`apgd_trace`'s, the cross-entropy runs then the DLR runs, so
    ``robust.float().mean(0).flatten()`` is robust accuracy against iterations spent.
    AutoAttack's standard version adds targeted APGD, FAB and Square; this is the part that
    breaks most defenses. ``confidence`` as in :func:`apgd_trace`."""
    x, y = check_inputs(model, images, labels, eps)
    adv, robust_ce = apgd_trace(model, x, y, eps, steps=steps, loss="ce", restarts=restarts,
                                generator=generator, confidence=confidence)
    robust = torch.cat([robust_ce, torch.zeros_like(robust_ce)], 1)
    live = robust_ce[:, -1, -1].nonzero().squeeze(1)
    if len(live):
        dlr, robust_dlr = apgd_trace(model, x[live], y[live], eps, steps=steps, loss="dlr",
                                     restarts=restarts, generator=generator,
                                     confidence=confidence)
        robust[live, restarts:] = robust_dlr
        fooled = ~robust_dlr[:, -1, -1]
        adv[live[fooled]] = dlr[fooled]
    return _finish_linf(adv, x, eps, quantize), robust


def apgd_pair(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
              steps: int = 100, restarts: int = 1, generator: torch.Generator | None = None,
              quantize: bool = False) -> Tensor:
    """The images of :func:`apgd_pair_trace`: per image, APGD-CE's result, or APGD-DLR's where
    only DLR fooled the model."""
    return apgd_pair_trace(model, images, labels, eps, steps=steps, restarts=restarts,
                           generator=generator, quantize=quantize)[0]


def square_window_share(p_init: float, query: int, queries: int) -> float:
    """The share of the image a Square attack window covers at ``query`` of ``queries``:
    ``p_init`` halved at fixed fractions of the run (Andriushchenko et al., 2020, their
    schedule for 10,000 queries, rescaled to ``queries``)."""
    progress = int(query / queries * 10_000)
    bounds = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
    halvings = sum(progress > bound for bound in bounds)
    return p_init / 2 ** halvings


@in_chunks
def square(model: nn.Module, images: Tensor, labels: Tensor, eps: float,
           queries: int = 1000, p_init: float = 0.8,
           generator: torch.Generator | None = None, quantize: bool = False) -> Tensor:
    """The Square attack in the L-inf ball (Andriushchenko et al., 2020): gradient-free.

    It only queries the model's logits, so a defense that hides or breaks its gradients does
    not stop it: the standard check for obfuscated gradients. Starts from vertical stripes of
    +-eps; each query redraws one random square window (every channel +eps or -eps) of the
    perturbation of each image not yet fooled, and keeps it if the margin
    ``z_label - max other`` fell. The window shrinks over the run (:func:`square_window_share`).
    ``queries`` model evaluations per image at most; random draws from ``generator`` (on the
    CPU). ``quantize`` as in :func:`fgsm`.
    """
    x, y = check_inputs(model, images, labels, eps)
    check_positive_int("queries", queries)
    n, c, h, w = x.shape

    def draw_signs(*shape: int) -> Tensor:
        signs = torch.randint(0, 2, shape, generator=generator).to(x.device, x.dtype)
        return eps * (2 * signs - 1)

    def score(images_: Tensor, labels_: Tensor) -> Tensor:
        with torch.no_grad():
            return -margin_loss(model(images_), labels_)  # < 0: fooled

    with eval_mode(model):
        delta = draw_signs(n, c, 1, w).expand(n, c, h, w).clone()
        adv = (x + delta).clamp(0, 1)
        margin = score(adv, y)
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        for query in range(1, queries):
            active = (margin > 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            side = round(math.sqrt(square_window_share(p_init, query, queries) * h * w))
            side = min(max(side, 1), h - 1, w - 1)
            top = torch.randint(0, h - side + 1, (len(active),), generator=generator)
            left = torch.randint(0, w - side + 1, (len(active),), generator=generator)
            top, left = top.to(x.device)[:, None, None], left.to(x.device)[:, None, None]
            window = ((rows >= top) & (rows < top + side)
                      & (cols >= left) & (cols < left + side))[:, None]
            proposal = torch.where(window, draw_signs(len(active), c, 1, 1), delta[active])
            candidate = (x[active] + proposal).clamp(0, 1)
            candidate_margin = score(candidate, y[active])
            better = candidate_margin < margin[active]
            chosen = active[better]
            delta[chosen], adv[chosen] = proposal[better], candidate[better]
            margin[chosen] = candidate_margin[better]
    return _finish_linf(adv, x, eps, quantize)


# ---------------------------------------------------------------------------------------------
# Minimal-perturbation (L2) attacks
# ---------------------------------------------------------------------------------------------

def _deepfool_step(model: nn.Module, x: Tensor, labels: Tensor,
                   candidates: Tensor) -> tuple[Tensor, Tensor]:
    """One linearized DeepFool step for a batch: ``(still correct?, step r)`` per image.

    For each candidate class k, ``f_k = z_k - z_label`` and ``w_k = grad f_k`` (one backward
    per candidate over the whole batch). The closest linearized boundary is the k with the
    least ``|f_k| / ||w_k||``; the step onto it is ``|f_k| / ||w_k||^2 * w_k``. Pixels already
    at 0 or 1 that ``w_k`` would push further out are left out of ``w_k``: clipping would undo
    that part of the step, and on MNIST (mostly 0-valued pixels) the attack would stall on
    the boundary instead of crossing it.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        diffs = logits.gather(1, candidates) - logits.gather(1, labels[:, None])
        grads = [torch.autograd.grad(diffs[:, k].sum(), x, retain_graph=True)[0]
                 for k in range(candidates.shape[1])]
    correct = logits.detach().argmax(1) == labels
    w = torch.stack(grads, dim=1)  # N x K x C x H x W
    pixels = x.detach().unsqueeze(1)
    blocked = ((pixels <= 0) & (w < 0)) | ((pixels >= 1) & (w > 0))
    w = w.masked_fill(blocked, 0).flatten(2)  # N x K x D
    f = diffs.detach().abs()  # N x K
    w_norm = w.norm(dim=2)
    distance = torch.nan_to_num(f / w_norm, nan=math.inf)  # no gradient: never the closest
    best = distance.argmin(1)
    rows = torch.arange(len(x), device=x.device)
    scale = f[rows, best] / w_norm[rows, best].clamp_min(1e-12) ** 2
    return correct, (scale[:, None] * w[rows, best]).view_as(x)


@in_chunks
def deepfool(model: nn.Module, images: Tensor, labels: Tensor, steps: int = 50,
             overshoot: float = 0.02, num_candidates: int = 10,
             quantize: bool = False) -> Tensor:
    """DeepFool (Moosavi-Dezfooli et al., 2016), multi-class, L2: a near-minimal perturbation.

    Repeatedly linearizes the model and steps onto the closest boundary between the label and
    one of the ``num_candidates - 1`` other classes that scored highest on the clean image.
    The accumulated perturbation is scaled by ``1 + overshoot`` to land just across the
    boundary (with ``overshoot=0`` it lands on it, which does not reliably flip the label).
    Pixels pinned at 0 or 1 are left out of a step that would push them further out.
    The whole batch is processed together; images stop being updated once misclassified.
    Images already misclassified are returned unchanged; images still correct after ``steps``
    come back as the last iterate. Assumes each image's logits depend only on that image
    (true in eval mode). ``quantize=True`` may push an image back across the boundary.
    """
    x, y = check_inputs(model, images, labels)
    check_positive_int("steps", steps)
    check_positive_int("num_candidates", num_candidates)
    if num_candidates < 2:
        raise ValueError("num_candidates must be >= 2 (the label and at least one other class)")
    if not overshoot >= 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot}")
    with eval_mode(model):
        with torch.no_grad():
            logits = model(x)
        check_label_range(logits, y)
        k = min(num_candidates, logits.shape[1])
        # the highest-scoring classes other than the label, chosen once on the clean image
        candidates = logits.scatter(1, y[:, None], -math.inf).topk(k - 1, dim=1).indices
        adv, total = x.clone(), torch.zeros_like(x)
        active = (logits.argmax(1) == y).nonzero().squeeze(1)
        for _ in range(steps):
            if len(active) == 0:
                break
            correct, step = _deepfool_step(model, adv[active], y[active], candidates[active])
            active, step = active[correct], step[correct]  # the fooled ones are done
            adv[active] = (x[active] + (1 + overshoot) * (total[active] + step)).clamp(0, 1)
            # keep only what survived clipping, so later steps start from the real image
            total[active] = (adv[active] - x[active]) / (1 + overshoot)
    return _finish(adv, quantize)


def survive_rounding(model: nn.Module, images: Tensor, labels: Tensor, adversarial: Tensor,
                     max_scale: float = 64.0, search_steps: int = 8) -> Tensor:
    """A float attack made into an 8-bit image that ``model`` still misclassifies.

    Rounding a minimal attack's output (DeepFool, Carlini-Wagner) to the 8-bit grid undoes
    most of it: it stops just past the boundary. This keeps the attack's perturbation d and
    finds, image by image, the smallest scale s for which ``quantize(x + s * d)`` is
    misclassified: doubling s from 1 until it fools the model (up to ``max_scale``), then
    ``search_steps`` bisections between the largest scale known to fail and the smallest known
    to fool. The output lies on the 8-bit grid, and every image that differs from
    ``quantize(images)`` is misclassified by ``model`` (checked on the image returned). Images
    no scale up to ``max_scale`` makes fool come back as ``quantize(images)``; images already
    misclassified come back unchanged. Runs in chunks of images (:mod:`helpers.batching`).
    """
    if not max_scale >= 1:
        raise ValueError(f"max_scale must be >= 1 (1: the attack's own size), got {max_scale}")
    check_positive_int("search_steps", search_steps)
    x, y = check_inputs(model, images, labels)
    if adversarial.shape != x.shape:
        raise ValueError(f"adversarial images have shape {tuple(adversarial.shape)}, the "
                         f"images {tuple(x.shape)}")
    size = batching.chunk_size(model, x.device)
    return batching.in_chunks(
        lambda *chunk: _survive_rounding(model, *chunk, max_scale, search_steps),
        size, x, y, adversarial.to(x.device))


def _survive_rounding(model: nn.Module, x: Tensor, y: Tensor, adversarial: Tensor,
                      max_scale: float, search_steps: int) -> Tensor:
    direction = adversarial - x

    def candidate(scale: Tensor, index: Tensor) -> Tensor:
        return quantize((x[index] + scale.view(-1, 1, 1, 1) * direction[index]).clamp(0, 1))

    def fools(scale: Tensor, index: Tensor) -> Tensor:
        return model(candidate(scale, index)).argmax(1) != y[index]

    with eval_mode(model), torch.no_grad():
        wrong = model(x).argmax(1) != y
        moved = direction.flatten(1).abs().amax(1) > 0
        low = torch.zeros(len(x), device=x.device)  # fails (s = 0: the clean image)
        high = torch.full_like(low, math.inf)  # fools
        index, scale = (moved & ~wrong).nonzero().squeeze(1), 1.0
        while len(index) and scale <= max_scale:  # double until it fools
            hit = fools(torch.full((len(index),), scale, device=x.device), index)
            high[index[hit]], low[index[~hit]] = scale, scale
            index, scale = index[~hit], scale * 2
        found = torch.isfinite(high).nonzero().squeeze(1)
        for _ in range(search_steps if len(found) else 0):  # bisect: high always fools
            middle = (low[found] + high[found]) / 2
            hit = fools(middle, found)
            high[found[hit]], low[found[~hit]] = middle[hit], middle[~hit]
        adv = quantize(x)
        adv[found] = candidate(high[found], found)
        adv[wrong] = x[wrong]
    return adv.detach()


def deepfool_8bit(model: nn.Module, images: Tensor, labels: Tensor, steps: int = 50,
                  overshoot: float = 0.02, num_candidates: int = 10, max_scale: float = 64.0,
                  search_steps: int = 8) -> Tensor:
    """DeepFool whose output is an 8-bit image the model still misclassifies: what an attacker
    who must submit an image file does with DeepFool (:func:`survive_rounding` of
    :func:`deepfool`'s output)."""
    adversarial = deepfool(model, images, labels, steps=steps, overshoot=overshoot,
                           num_candidates=num_candidates)
    return survive_rounding(model, images, labels, adversarial, max_scale, search_steps)


def _cw_margin(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    """How far from success, per image: ``z_label - max other`` (``max other - z_target``)."""
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return best_other - label_logit if targeted else label_logit - best_other


# How far Carlini-Wagner's start is pulled in from 0 and 1 before atanh. The reference code's
# 1e-6 puts a black or white pixel at w = atanh(1 - 1e-6) = 7.3, where tanh is flat: Adam
# needs about 50 steps of 0.1 before such a pixel moves at all, so in a short run every
# MNIST background pixel is frozen. 1e-3 (w = 3.8) moves a pixel by at most 0.0005, an
# eighth of an 8-bit step, which rounding restores.
TANH_SHRINK = 1e-3


@in_chunks
def carlini_wagner(model: nn.Module, images: Tensor, labels: Tensor, c: float = 1.0,
                   kappa: float = 0.0, steps: int = 100, lr: float = 0.01,
                   binary_search_steps: int = 5, targeted: bool = False,
                   quantize: bool = False, tanh_shrink: float = TANH_SHRINK) -> Tensor:
    """Carlini-Wagner L2 (2017): minimize ``||delta||^2 + c * max(margin, -kappa)`` with Adam.

    The image is written as ``(tanh(w) + 1) / 2``, so it stays in [0, 1] with no clipping.
    ``margin`` is ``z_label - max other logit`` (targeted: ``max other - z_target``); success
    means ``margin < -kappa``, i.e. misclassified (reaching the target) with confidence
    ``kappa``. A binary search runs per image over ``c``, starting at ``c``: smaller after a
    success, larger (x10 until a first success) after a failure; the smallest successful
    perturbation of any step is kept. Images never successful are returned unchanged (the
    original image), so ``l2_norms(adv, images) == 0`` marks a failure.
    ``quantize=True`` may undo a success. ``tanh_shrink``: how far the start is pulled in from
    0 and 1 before atanh (see ``TANH_SHRINK``; 1e-6 reproduces the reference code).
    """
    x, y = check_inputs(model, images, labels)
    check_positive_int("steps", steps)
    check_positive_int("binary_search_steps", binary_search_steps)
    if not c > 0 or not lr > 0 or not kappa >= 0:
        raise ValueError(f"need c > 0, lr > 0 and kappa >= 0, got c={c}, lr={lr}, "
                         f"kappa={kappa}")
    n = len(x)
    if not 0 < tanh_shrink < 1:
        raise ValueError(f"tanh_shrink must be in (0, 1), got {tanh_shrink}")
    w_start = torch.atanh((2 * x - 1) * (1 - tanh_shrink))  # atanh(+-1) is infinite
    const = torch.full((n,), float(c), device=x.device, dtype=x.dtype)
    lower, upper = torch.zeros_like(const), torch.full_like(const, math.inf)
    best_l2, best_adv = torch.full_like(const, math.inf), x.clone()
    with eval_mode(model):
        for _ in range(binary_search_steps):
            w = w_start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            for _ in range(steps):
                with torch.enable_grad():
                    adv = (torch.tanh(w) + 1) / 2
                    logits = model(adv)
                    check_label_range(logits, y)
                    l2_sq = (adv - x).flatten(1).pow(2).sum(1)
                    margin = _cw_margin(logits, y, targeted)
                    loss = (l2_sq + const * margin.clamp_min(-kappa)).sum()
                    (w.grad,) = torch.autograd.grad(loss, w)
                with torch.no_grad():
                    success = margin < -kappa
                    l2 = l2_sq.sqrt()
                    better = success & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv[better] = adv[better]
                    succeeded |= success
                optimizer.step()
            # per-image binary search on c
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < math.inf, (lower + upper) / 2, const * 10)
    return _finish(best_adv, quantize)


# ---------------------------------------------------------------------------------------------
# Measuring attacks
# ---------------------------------------------------------------------------------------------

def success_rate(model: nn.Module, adv: Tensor, labels: Tensor, targeted: bool = False) -> float:
    """Fraction of ``adv`` misclassified (``targeted``: classified as ``labels``, the targets)."""
    adv, labels = check_inputs(model, adv, labels)
    with eval_mode(model), torch.no_grad():
        predicted = model(adv).argmax(1)
    hits = predicted == labels if targeted else predicted != labels
    return hits.float().mean().item()


def l2_norms(adv: Tensor, images: Tensor) -> Tensor:
    """Per-image L2 norm of the perturbation ``adv - images`` (a length-N tensor)."""
    return (adv - images).flatten(1).norm(dim=1)


def linf_norms(adv: Tensor, images: Tensor) -> Tensor:
    """Per-image L-inf norm of the perturbation ``adv - images`` (a length-N tensor)."""
    return (adv - images).flatten(1).abs().amax(dim=1)


# ---------------------------------------------------------------------------------------------
# The course's standard set, made once per model and images
# ---------------------------------------------------------------------------------------------

def standard_attacks(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     eps: tuple[float, ...] = (2 / 255, 8 / 255), overshoot: float = 0.02,
                     cache: bool = True) -> dict[str, torch.Tensor]:
    """FGSM at each ``eps`` and DeepFool: the attacks Das et al. (2017) compressed away.

    Returned as floats, as the attacks produce them; score ``quantize(adv)`` for what an
    attacker can actually submit. With ``cache`` the result is kept in the model cache, keyed
    by the model's weights, the images and labels, the settings and the attack code
    (:mod:`helpers.cache`'s rule), so Chapter 5 reuses the attacks Chapter 4 made on the same
    model and test images (DeepFool on 1,000 images takes about 20 s on two CPU cores).
    """
    def attack() -> dict[str, torch.Tensor]:
        adversarial = {f"FGSM {round(e * 255)}/255": fgsm(model, images, labels, e)
                       for e in eps}
        adversarial["DeepFool"] = deepfool(model, images, labels, overshoot=overshoot)
        return adversarial

    if not cache:
        return attack()
    key = {"model": fingerprint(model), "images": fingerprint(images, labels),
           "eps": list(eps), "overshoot": overshoot}
    return cached_tensors("standard-attacks", key, attack, device=images.device)
