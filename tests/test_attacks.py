"""Tests for helpers.attacks: bounds, exact references, analytic answers on linear models,
attack strength on a small trained MNIST net, side effects on the model, quantization, errors.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import attacks, cache, models, train
from helpers.attacks import (
    apgd,
    apgd_checkpoints,
    apgd_pair,
    apgd_pair_trace,
    apgd_trace,
    carlini_wagner,
    deepfool,
    deepfool_8bit,
    dlr_loss,
    fgsm,
    l2_norms,
    linf_norms,
    margin_loss,
    pgd,
    quantize,
    square,
    square_window_share,
    success_rate,
    survive_rounding,
    worst_case,
)

ATTACKS = {
    "fgsm": lambda m, x, y, **kw: fgsm(m, x, y, eps=0.1, **kw),
    "pgd": lambda m, x, y, **kw: pgd(m, x, y, eps=0.1, steps=3, **kw),
    "deepfool": lambda m, x, y, **kw: deepfool(m, x, y, steps=5, **kw),
    "carlini_wagner": lambda m, x, y, **kw: carlini_wagner(m, x, y, steps=5,
                                                           binary_search_steps=2, **kw),
}


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist(mnist_mlp):
    """conftest's small MLP trained on 2000 MNIST images, and 200 test images."""
    return mnist_mlp


def linear_problem(n_classes: int, n: int = 32, seed: int = 0):
    """f(x) = Wx + b on 1x4x4 inputs in [0.4, 0.6], labelled by its own predictions.

    Returns the model, inputs, labels, and the exact minimal L2 distance to the decision
    boundary, min over j != y of (z_y - z_j) / ||w_y - w_j||, with the step that reaches it.
    """
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, n_classes))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(n_classes, 16, generator=gen))
        model[1].bias.copy_(0.1 * torch.randn(n_classes, generator=gen))
    x = 0.4 + 0.2 * torch.rand(n, 1, 4, 4, generator=gen)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    weight = model[1].weight.detach()
    dw = weight[None] - weight[y][:, None]  # N x C x D: w_j - w_y
    margin = logits.gather(1, y[:, None]) - logits  # z_y - z_j >= 0
    distance = margin / dw.norm(dim=2)
    distance[torch.arange(n), y] = float("inf")
    d_min, j = distance.min(1)
    rows = torch.arange(n)
    step = (margin[rows, j] / dw[rows, j].norm(dim=1) ** 2)[:, None] * dw[rows, j]
    return model, x, y, d_min, step.view_as(x)


def in_ball(adv, x, eps, tol=1e-6):
    return bool((adv - x).abs().max() <= eps + tol)


def on_grid(images):
    return bool(((images * 255) - (images * 255).round()).abs().max() < 1e-3)


# ---------------------------------------------------------------------------------------------
# L-inf attacks: bounds and exact references
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_linf_attacks_stay_in_ball_and_image_range(mnist, attack, eps):
    model, x, y = mnist
    if attack == "fgsm":
        adv = fgsm(model, x, y, eps=eps)
    else:
        adv = pgd(model, x, y, eps=eps, steps=5, generator=torch.Generator().manual_seed(0))
    assert in_ball(adv, x, eps)
    assert adv.min() >= 0 and adv.max() <= 1
    assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
    if eps > 0:  # the budget is actually used, not a do-nothing attack
        assert linf_norms(adv, x).max() > eps / 2


def test_fgsm_matches_hand_computed_gradient():
    # cross-entropy of a linear model has gradient W^T (softmax(z) - onehot(y)) w.r.t. x
    model, x, y, _, _ = linear_problem(n_classes=5)
    weight, bias = model[1].weight.detach(), model[1].bias.detach()
    flat = x.flatten(1)
    probs = torch.softmax(flat @ weight.T + bias, dim=1)
    grad = (probs - F.one_hot(y, 5).float()) @ weight
    for eps in (0.05, 0.5):  # 0.5 makes clipping to [0, 1] bind
        expected = (flat + eps * grad.sign()).clamp(0, 1).view_as(x)
        torch.testing.assert_close(fgsm(model, x, y, eps=eps), expected, atol=1e-6, rtol=0)
        # targeted: the step goes the other way
        expected = (flat - eps * grad.sign()).clamp(0, 1).view_as(x)
        torch.testing.assert_close(fgsm(model, x, y, eps=eps, targeted=True), expected,
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_one_step_without_random_start_equals_fgsm(mnist, targeted):
    model, x, y = mnist
    for eps in (0.03, 0.2):
        one_step = pgd(model, x, y, eps=eps, alpha=eps, steps=1, random_start=False,
                       targeted=targeted)
        assert torch.equal(one_step, fgsm(model, x, y, eps=eps, targeted=targeted))


def test_pgd_default_alpha_and_random_start(mnist):
    model, x, y = mnist
    default = pgd(model, x, y, eps=0.1, steps=4, generator=torch.Generator().manual_seed(1))
    explicit = pgd(model, x, y, eps=0.1, steps=4, alpha=2.5 * 0.1 / 4,
                   generator=torch.Generator().manual_seed(1))
    other_seed = pgd(model, x, y, eps=0.1, steps=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(default, explicit)  # same seed, same default step: reproducible
    assert not torch.equal(default, other_seed)  # the start is really random


def test_pgd_is_far_stronger_than_random_noise(mnist):
    model, x, y = mnist
    eps = 0.1
    clean = train.evaluate(model, x, y)
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noisy = train.evaluate(model, (x + eps * signs).clamp(0, 1), y)
    adv = pgd(model, x, y, eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
    attacked = train.evaluate(model, adv, y)
    assert noisy > clean - 0.15  # random corners of the ball barely matter ...
    assert attacked < 0.2 and attacked < noisy - 0.5  # ... the worst corner does
    assert success_rate(model, adv, y) == pytest.approx(1 - attacked)
    assert attacked <= train.evaluate(model, fgsm(model, x, y, eps=eps), y)


def test_targeted_attacks_raise_target_probability(mnist):
    model, x, y = mnist
    target = (y + 1) % 10
    eps = 0.15
    with torch.no_grad():
        before = torch.softmax(model(x), 1).gather(1, target[:, None])
    rates = {}
    for name, adv in [("fgsm", fgsm(model, x, target, eps=eps, targeted=True)),
                      ("pgd", pgd(model, x, target, eps=eps, targeted=True,
                                  generator=torch.Generator().manual_seed(0)))]:
        with torch.no_grad():
            after = torch.softmax(model(adv), 1).gather(1, target[:, None])
        assert after.mean() > before.mean() + 0.2, name
        assert (after >= before - 1e-6).float().mean() > 0.9, name
        rates[name] = success_rate(model, adv, target, targeted=True)
    assert rates["pgd"] > 0.5 and rates["pgd"] > rates["fgsm"] + 0.1


# ---------------------------------------------------------------------------------------------
# APGD, Square, the losses and restarts
# ---------------------------------------------------------------------------------------------

def test_margin_and_dlr_losses_known_values():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [3.0, 1.0, 0.0, -1.0]])
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(margin_loss(logits, labels), torch.tensor([-2.0, 2.0]))
    # divided by z_1 - z_3 = 3 - 0; unchanged when the logits are rescaled
    torch.testing.assert_close(dlr_loss(logits, labels), torch.tensor([-2 / 3, 2 / 3]))
    torch.testing.assert_close(dlr_loss(10 * logits + 5, labels), dlr_loss(logits, labels))
    with pytest.raises(ValueError, match="3 classes"):
        dlr_loss(logits[:, :2], labels)


def test_apgd_checkpoints_follow_croce_and_hein():
    """p_0 = 0, p_1 = 0.22, p_(j+1) = p_j + max(p_j - p_(j-1) - 0.03, 0.06), times 100."""
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    gaps = [b - a for a, b in itertools.pairwise(apgd_checkpoints(1000))]
    assert gaps == sorted(gaps, reverse=True) and min(gaps) >= 60


def test_square_window_shrinks_by_halves():
    shares = [square_window_share(0.8, q, 10_000) for q in range(0, 10_000, 10)]
    assert shares[0] == 0.8 and shares[-1] == 0.8 / 2 ** 9
    assert shares == sorted(shares, reverse=True)
    assert square_window_share(0.8, 500, 1000) == square_window_share(0.8, 5000, 10_000)


@pytest.mark.parametrize("quantized", [False, True])
def test_apgd_and_square_stay_in_ball_and_image_range(mnist, quantized):
    model, x, y = mnist
    x, y = x[:32], y[:32]
    for attack in (lambda: apgd(model, x, y, 0.1, steps=10, quantize=quantized),
                   lambda: apgd(model, x, y, 0.1, steps=10, loss="dlr", quantize=quantized),
                   lambda: square(model, x, y, 0.1, queries=50, quantize=quantized)):
        adv = attack()
        assert in_ball(adv, x, 0.1) and adv.min() >= 0 and adv.max() <= 1
        assert on_grid(adv) or not quantized


def test_apgd_is_at_least_as_strong_as_pgd(mnist):
    model, x, y = mnist
    steps = 20
    pgd_rate = success_rate(model, pgd(model, x, y, 0.1, steps=steps), y)
    apgd_rate = success_rate(model, apgd(model, x, y, 0.1, steps=steps), y)
    assert apgd_rate >= pgd_rate - 0.03, (apgd_rate, pgd_rate)


def test_apgd_trace_is_the_robust_accuracy_the_attack_reached(mnist):
    """The trace's last entry is the returned images' accuracy; it only falls; a restart
    attacks just the images earlier ones left; the first restart is the single run."""
    model, x, y = mnist
    steps, generator = 8, torch.Generator().manual_seed(2)
    adv, robust = apgd_trace(model, x, y, 0.05, steps=steps, restarts=3, generator=generator)
    assert robust.shape == (len(x), 3, steps + 1) and robust.dtype == torch.bool
    curve = robust.float().mean(0).flatten()
    assert (curve[1:] <= curve[:-1]).all()  # running: once fooled, an image stays fooled
    with torch.no_grad():
        still_right = model(adv).argmax(1) == y
    assert torch.equal(robust[:, -1, -1], still_right)
    fooled_before = ~robust[:, 0, -1]
    assert not robust[fooled_before, 1:].any()  # restarts skip what is already fooled
    assert 0 < curve[-1] < curve[0] <= 1
    once = apgd(model, x, y, 0.05, steps=steps, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(once).argmax(1) != y, fooled_before)


def test_apgd_stops_an_image_once_it_is_fooled(mnist):
    """Early stopping costs no success: every image a run without it fools (here: the same
    run, counted by the model's own passes) is fooled, with fewer passes."""
    model, x, y = mnist
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    try:
        adv, robust = apgd_trace(model, x, y, 0.1, steps=20,
                                 generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert len(seen) == 21 or robust[:, 0, -1].sum() == 0
    assert seen[0] == len(x) and seen[-1] <= robust[:, 0, -2].sum()
    assert sum(seen) < len(x) * 21  # fewer image-passes than 21 full ones


def test_restarts_keep_every_image_a_single_run_fooled(mnist):
    """The first restart is the single run (same generator seed); the rest can only add."""
    model, x, y = mnist
    once = pgd(model, x, y, 0.05, steps=5, generator=torch.Generator().manual_seed(1))
    thrice = pgd(model, x, y, 0.05, steps=5, restarts=3,
                 generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fooled_once = model(once).argmax(1) != y
        fooled_thrice = model(thrice).argmax(1) != y
    assert (fooled_thrice | ~fooled_once).all()
    assert fooled_thrice.sum() >= fooled_once.sum()
    for loss in ("margin", "dlr"):  # other losses, the same interface
        assert in_ball(pgd(model, x[:8], y[:8], 0.05, steps=3, loss=loss), x[:8], 0.05)
    with pytest.raises(ValueError, match="loss"):
        pgd(model, x[:8], y[:8], 0.05, loss="hinge")
    with pytest.raises(ValueError, match="untargeted"):
        pgd(model, x[:8], y[:8], 0.05, loss="dlr", targeted=True)


def test_worst_case_takes_a_fooling_candidate_wherever_one_exists(mnist):
    """AutoAttack's rule: the pair fools every image APGD-CE fools, and then every image
    APGD-DLR fools among the rest (one generator: the CE run draws first)."""
    model, x, y = mnist
    x, y = x[:64], y[:64]
    generator = torch.Generator().manual_seed(5)
    ce = apgd(model, x, y, 0.05, steps=10, loss="ce", generator=generator)
    with torch.no_grad():
        left = (model(ce).argmax(1) == y).nonzero().squeeze(1)
    dlr = apgd(model, x[left], y[left], 0.05, steps=10, loss="dlr", generator=generator)
    pair, robust = apgd_pair_trace(model, x, y, 0.05, steps=10,
                                   generator=torch.Generator().manual_seed(5))
    assert torch.equal(pair, apgd_pair(model, x, y, 0.05, steps=10,
                                       generator=torch.Generator().manual_seed(5)))
    runs = [ce, x.clone().index_copy_(0, left, dlr)]
    with torch.no_grad():
        fooled = [model(r).argmax(1) != y for r in runs]
        assert torch.equal(model(pair).argmax(1) != y, fooled[0] | fooled[1])
        assert torch.equal(robust[:, -1, -1], ~(fooled[0] | fooled[1]))
        assert fooled[1].any() or not len(left)
        only_run = fooled[0] & (model(x).argmax(1) == y)  # fooled by the run, not by x
        assert torch.equal(worst_case(model, [x, runs[0]], y)[only_run], runs[0][only_run])
    with pytest.raises(ValueError, match="same shape"):
        worst_case(model, [x, x[:2]], y)


class _Staircase(nn.Module):
    """Inputs rounded to 4 levels before the model: a gradient of zero almost everywhere."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 3) / 3)


def test_square_needs_no_gradient(mnist):
    """Against a defense with no useful gradient, gradient attacks stall and Square does not:
    why it is the standard check for obfuscated gradients."""
    model, x, y = mnist
    masked = _Staircase(model).eval()
    with torch.no_grad():
        right = masked(x).argmax(1) == y
    x, y = x[right][:100], y[right][:100]
    gradient = success_rate(masked, pgd(masked, x, y, 0.3, steps=10, random_start=False), y)
    free = success_rate(masked, square(masked, x, y, 0.3, queries=300,
                                       generator=torch.Generator().manual_seed(0)), y)
    assert gradient == 0.0  # a zero gradient: PGD never moves
    assert free > 0.3, free


# ---------------------------------------------------------------------------------------------
# DeepFool and Carlini-Wagner against analytic answers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 5])
def test_deepfool_finds_exact_minimal_perturbation_of_linear_model(n_classes):
    model, x, y, d_min, step = linear_problem(n_classes)
    adv = deepfool(model, x, y, overshoot=0.0)
    assert adv.min() > 0 and adv.max() < 1  # clipping did not bind: the analytic answer holds
    torch.testing.assert_close(l2_norms(adv, x), d_min, atol=1e-4, rtol=0)
    torch.testing.assert_close(adv - x, step, atol=1e-4, rtol=0)  # the right direction, too

    adv = deepfool(model, x, y, overshoot=0.02)
    assert success_rate(model, adv, y) == 1.0  # overshoot crosses the boundary
    torch.testing.assert_close(l2_norms(adv, x), 1.02 * d_min, atol=1e-4, rtol=0)


def test_deepfool_batch_equals_one_by_one_and_skips_misclassified(mnist):
    model, x, y = mnist
    x, y = x[:12], y[:12].clone()
    y[0] = (model(x[:1]).argmax(1).item() + 1) % 10  # already misclassified
    batch = deepfool(model, x, y)
    assert torch.equal(batch[0], x[0])
    singles = torch.cat([deepfool(model, x[i:i + 1], y[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)
    assert success_rate(model, batch[1:], y[1:]) == 1.0
    # far smaller than the L-inf attacks' perturbations
    assert l2_norms(batch, x).max() < l2_norms(fgsm(model, x, y, eps=0.1), x).min()


def test_deepfool_8bit_is_near_minimal_on_a_binary_linear_model():
    """Along DeepFool's exact direction the smallest fooling grid point lies within the
    rounding (half a level a pixel: sqrt(16) / 2 / 255 in L2) and the bisection's slack of the
    exact distance, and never nearer than the exact distance."""
    model, x, y, d_min, _ = linear_problem(2)
    x = quantize(x)
    with torch.no_grad():
        y = model(x).argmax(1)
        d_min = (model(x) @ torch.tensor([1.0, -1.0])).abs() / (
            model[1].weight[0] - model[1].weight[1]).norm()
    adv = deepfool_8bit(model, x, y, overshoot=0.0)
    assert on_grid(adv) and success_rate(model, adv, y) == 1.0
    distance = l2_norms(adv, x)
    assert (distance >= d_min - 1e-6).all()
    assert (distance <= 1.01 * d_min + 4 / 2 / 255 + 1e-6).all(), distance / d_min


def test_deepfool_8bit_survives_rounding_where_deepfool_does_not(mnist):
    """On a trained model: the output is on the 8-bit grid, every image it changed is
    misclassified, it fools every image DeepFool fooled, while DeepFool rounded to 8 bits
    loses some, and it is barely larger than DeepFool's float perturbation."""
    model, x, y = mnist
    x, y = x[:100], y[:100].clone()
    y[0] = (model(x[:1]).argmax(1).item() + 1) % 10  # already misclassified: left alone
    float_adv = deepfool(model, x, y)
    adv = deepfool_8bit(model, x, y)
    assert on_grid(adv) and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(adv[0], x[0])
    with torch.no_grad():
        changed = (adv != quantize(x)).flatten(1).any(1)
        assert (model(adv[changed]).argmax(1) != y[changed]).all()
        fooled = model(float_adv).argmax(1) != y
        assert (model(adv[fooled]).argmax(1) != y[fooled]).all()  # wherever DeepFool did
        moved = fooled & (model(x).argmax(1) == y)  # not the ones already misclassified
    assert fooled.float().mean() > 0.95
    rounded = success_rate(model, quantize(float_adv), y)
    assert rounded < fooled.float().mean() - 0.05  # plain rounding undoes some
    ratio = l2_norms(adv[moved], x[moved]) / l2_norms(float_adv[moved], x[moved])
    assert ratio.median() < 1.3, ratio.median()
    # the same through survive_rounding, in chunks of any size
    assert torch.equal(survive_rounding(model, x, y, float_adv), adv)


def test_survive_rounding_leaves_unfoolable_images_rounded():
    """A perturbation that no scale makes fool (here: none at all) returns the rounded image."""
    model, x, y, _, _ = linear_problem(3)
    out = survive_rounding(model, x, y, x.clone())
    assert torch.equal(out, quantize(x))
    with pytest.raises(ValueError, match="max_scale"):
        survive_rounding(model, x, y, x, max_scale=0.5)
    with pytest.raises(ValueError, match="shape"):
        survive_rounding(model, x, y, x[:2])


def test_carlini_wagner_is_close_to_minimal_on_linear_model():
    model, x, y, d_min, _ = linear_problem(4)
    adv = carlini_wagner(model, x, y, steps=100, binary_search_steps=6)
    norms = l2_norms(adv, x)
    assert success_rate(model, adv, y) == 1.0
    assert (norms >= d_min - 1e-4).all()  # nothing beats the exact minimum ...
    assert (norms <= 1.2 * d_min).all()  # ... and CW gets close to it


def test_carlini_wagner_moves_black_pixels_in_a_short_run():
    """A black image (every pixel at 0, like MNIST's background) and a linear model whose
    boundary lies a known L2 distance away, inside the box: the minimal perturbation raises
    every pixel by d / sqrt(D). Started at atanh(-(1 - 1e-6)), where tanh is flat, 60 Adam
    steps of 0.1 would leave such pixels frozen; the attack must get close to d anyway."""
    d, pixels = 0.5, 16
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(pixels), torch.ones(pixels)]))
        model[1].bias.copy_(torch.tensor([d * pixels ** 0.5, 0.0]))  # margin d * ||w||
    x, y = torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.long)
    adv = carlini_wagner(model, x, y, c=10.0, lr=0.1, steps=60, binary_search_steps=3)
    assert success_rate(model, adv, y) == 1.0
    assert (l2_norms(adv, x) >= d - 1e-4).all()   # nothing beats the exact minimum
    assert (l2_norms(adv, x) <= 1.05 * d).all()   # a short run gets close ...
    frozen = carlini_wagner(model, x, y, c=10.0, lr=0.1, steps=60, binary_search_steps=3,
                            tanh_shrink=1e-6)   # ... which the reference code's start does not
    assert (l2_norms(frozen, x) > 1.1 * d).all()
    with pytest.raises(ValueError, match="tanh_shrink"):
        carlini_wagner(model, x, y, tanh_shrink=0.0)


def test_carlini_wagner_confidence_and_targets():
    model, x, y, _, _ = linear_problem(4)
    target, kappa = (y + 1) % 4, 1.0
    adv = carlini_wagner(model, x, target, kappa=kappa, steps=200, lr=0.05,
                         binary_search_steps=6, targeted=True)
    with torch.no_grad():
        clean, logits = model(x), model(adv)
    assert (logits.argmax(1) == target).all()
    others = logits.scatter(1, target[:, None], -float("inf")).amax(1)
    assert (logits.gather(1, target[:, None]).squeeze(1) - others >= kappa - 1e-4).all()
    # analytic lower bound: z_t - z_j must grow to kappa along w_t - w_j, for every j
    weight = model[1].weight.detach()
    dw = weight[target][:, None] - weight[None]  # N x C x D
    needed = (kappa - (clean.gather(1, target[:, None]) - clean)) / dw.norm(dim=2)
    needed[torch.arange(len(x)), target] = 0
    assert (l2_norms(adv, x) >= needed.amax(1) - 1e-4).all()


def test_carlini_wagner_returns_original_where_it_never_succeeds():
    model, x, y, _, _ = linear_problem(4)
    adv = carlini_wagner(model, x, y, c=1e-4, steps=2, binary_search_steps=1)
    assert torch.equal(adv, x)
    assert success_rate(model, adv, y) == 0.0


def test_minimal_attacks_on_trained_model(mnist):
    model, x, y = mnist
    x, y = x[:16], y[:16]
    cw = carlini_wagner(model, x, y, steps=50, binary_search_steps=5, lr=0.05)
    df = deepfool(model, x, y)  # crosses even where pixels are pinned at 0 (most of MNIST)
    assert success_rate(model, cw, y) == 1.0 and success_rate(model, df, y) == 1.0
    assert cw.min() >= 0 and cw.max() <= 1 and df.min() >= 0 and df.max() <= 1
    # both are small next to an eps = 0.1 L-inf attack (L2 of about 0.1 * sqrt(784) = 2.8)
    fgsm_l2 = l2_norms(fgsm(model, x, y, eps=0.1), x).median()
    assert l2_norms(df, x).median() < fgsm_l2 / 2 and l2_norms(cw, x).median() < fgsm_l2


# ---------------------------------------------------------------------------------------------
# Side effects on the model, and what models are accepted
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_model_mode_restored_and_no_parameter_gradients(name):
    torch.manual_seed(0)
    model = models.mnist_classifier()  # has dropout: train mode would make attacks random
    model.train()
    model[0].eval()  # a mixed state must come back exactly as it was
    modes = [m.training for m in model.modules()]
    x = torch.rand(4, 1, 28, 28)
    y = torch.arange(4)
    adv = ATTACKS[name](model, x, y)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert not adv.requires_grad and adv.shape == x.shape
    if name in ("fgsm", "deepfool"):  # deterministic: the same as attacking in eval mode
        model.eval()
        assert torch.equal(adv, ATTACKS[name](model, x, y))


def test_attacks_work_under_no_grad_and_through_a_defense(mnist):
    model, x, y = mnist
    defended = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), model)  # a smoothing input
    with torch.no_grad():
        adv = pgd(defended, x[:32], y[:32], eps=0.2, random_start=False)
    assert success_rate(defended, adv, y[:32]) > 0.5
    stateless = nn.Sequential(nn.Flatten(), nn.Tanh())  # no parameters at all
    adv = fgsm(stateless, x[:4], torch.zeros(4, dtype=torch.long), eps=0.1)
    assert in_ball(adv, x[:4], 0.1)


# ---------------------------------------------------------------------------------------------
# Quantization to the 8-bit grid
# ---------------------------------------------------------------------------------------------

def test_quantize_rounds_to_grid():
    x = torch.rand(3, 1, 5, 5)
    q = quantize(x)
    assert on_grid(q) and (q - x).abs().max() <= 0.5 / 255 + 1e-7
    assert torch.equal(quantize(q), q)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_can_quantize(mnist, name):
    model, x, y = mnist
    adv = ATTACKS[name](model, x[:8], y[:8], quantize=True)
    assert on_grid(adv) and adv.min() >= 0 and adv.max() <= 1


def test_quantized_linf_attacks_stay_in_ball_even_off_grid(mnist):
    model, x, y = mnist
    eps = 3 / 255
    # MNIST images are on the grid: the ball's ends are grid values, rounding stays inside
    adv = pgd(model, x, y, eps=eps, quantize=True, generator=torch.Generator().manual_seed(0))
    assert on_grid(adv) and in_ball(adv, x, eps)
    # half a grid step off: plain rounding of the ball's ends steps outside ...
    shifted = (x * 254 + 0.5) / 255
    adv = pgd(model, shifted, y, eps=eps, generator=torch.Generator().manual_seed(0))
    assert not in_ball(quantize(adv), shifted, eps)
    # ... the attacks round the ball inward instead
    for adv in (pgd(model, shifted, y, eps=eps, quantize=True,
                    generator=torch.Generator().manual_seed(0)),
                fgsm(model, shifted, y, eps=eps, quantize=True)):
        assert on_grid(adv) and in_ball(adv, shifted, eps)
        assert linf_norms(adv, shifted).max() > eps - 1 / 255  # still uses the budget
    # a ball narrower than the grid holds no grid value: the nearest grid value is returned
    adv = fgsm(model, shifted, y, eps=0.1 / 255, quantize=True)
    assert torch.equal(adv, quantize(shifted))


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------

def _linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


X = torch.full((2, 1, 4, 4), 0.5)
Y = torch.tensor([0, 1])
BAD_INPUTS = {
    "above one": (X + 1, Y, {}, r"\[0, 1\]"),
    "below zero": (X - 1, Y, {}, r"\[0, 1\]"),
    "nan": (X * float("nan"), Y, {}, "NaN"),
    "uint8": ((X * 255).to(torch.uint8), Y, {}, "float"),
    "3-D": (X[0], Y, {}, "4-D"),
    "empty": (X[:0], Y[:0], {}, "empty"),
    "length mismatch": (X, Y[:1], {}, "one label per image"),
    "2-D labels": (X, Y[:, None], {}, "one label per image"),
    "float labels": (X, Y.float(), {}, "integer"),
    "negative eps": (X, Y, {"eps": -0.1}, "eps must be >= 0"),
    "label out of range": (X, torch.tensor([0, 3]), {}, "0..2"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_bad_inputs_raise_clear_errors(name, case):
    images, labels, params, message = BAD_INPUTS[case]
    if "eps" in params:
        if name not in ("fgsm", "pgd"):
            return
        attack = fgsm if name == "fgsm" else pgd
        with pytest.raises(ValueError, match=message):
            attack(_linear(), images, labels, **params)
        return
    with pytest.raises(ValueError, match=message):
        ATTACKS[name](_linear(), images, labels)


def test_tiny_float_error_outside_range_is_accepted():
    model = _linear()
    x = X.clone()
    x[0, 0, 0, 0] = 1 + 1e-7
    adv = fgsm(model, x, Y, eps=0.1)
    assert adv.max() <= 1


def test_device_mismatch_raises():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, device="meta"))
    with pytest.raises(ValueError, match="same device"):
        fgsm(model, X, Y, eps=0.1)
    with pytest.raises(ValueError, match="same device"):
        fgsm(_linear(), X, Y.to("meta"), eps=0.1)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="steps"):
        pgd(_linear(), X, Y, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        pgd(_linear(), X, Y, eps=0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="num_candidates"):
        deepfool(_linear(), X, Y, num_candidates=1)
    with pytest.raises(ValueError, match="c > 0"):
        carlini_wagner(_linear(), X, Y, c=0.0)
    with pytest.raises(TypeError):
        fgsm(_linear(), X.numpy(), Y, eps=0.1)


def test_public_api():
    for name in ("fgsm", "pgd", "apgd", "apgd_pair", "worst_case", "square", "deepfool",
                 "deepfool_8bit", "survive_rounding", "carlini_wagner", "quantize",
                 "success_rate", "l2_norms", "linf_norms"):
        assert callable(getattr(attacks, name))


def test_standard_attacks_are_fgsm_and_deepfool_on_the_same_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    images, labels = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    adversarial = attacks.standard_attacks(model, images, labels)
    assert list(adversarial) == ["FGSM 2/255", "FGSM 8/255", "DeepFool"]
    assert torch.equal(adversarial["FGSM 8/255"], attacks.fgsm(model, images, labels, 8 / 255))
    assert torch.equal(adversarial["DeepFool"], attacks.deepfool(model, images, labels,
                                                                 overshoot=0.02))
    for adv in adversarial.values():
        assert adv.shape == images.shape


def test_standard_attacks_are_cached_on_the_model_images_settings_and_code(cache_dir,
                                                                           monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    images, labels = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    first = attacks.standard_attacks(model, images, labels)
    writes = []
    real_save = cache.save_atomic
    monkeypatch.setattr(cache, "save_atomic", lambda *a: writes.append(1) or real_save(*a))

    again = attacks.standard_attacks(model, images.clone(), labels.clone())
    assert writes == []                                      # loaded, not recomputed
    assert all(torch.equal(first[k], again[k]) for k in first)
    attacks.standard_attacks(model, images, labels, overshoot=0.05)
    assert len(writes) == 1                                  # other settings
    other_images = images.clone()
    other_images[0, 0, 0, 0] = 1 - other_images[0, 0, 0, 0]
    attacks.standard_attacks(model, other_images, labels)
    assert len(writes) == 2                                  # other images
    real_deepfool = attacks.deepfool
    monkeypatch.setattr(attacks, "deepfool", lambda *a, **k: real_deepfool(*a, **k))
    attacks.standard_attacks(model, images, labels)
    assert len(writes) == 3                                  # other attack code
    monkeypatch.setattr(attacks, "deepfool", real_deepfool)
    with torch.no_grad():
        model[1].weight[0, 0] += 0.1
    changed = attacks.standard_attacks(model, images, labels)
    assert len(writes) == 4                                  # the model changed since
    assert not torch.equal(changed["FGSM 8/255"], first["FGSM 8/255"])
    attacks.standard_attacks(model, images, labels, cache=False)
    assert len(writes) == 4                                  # cache=False wrote nothing
    assert len(list((cache_dir / "tensors").iterdir())) == 5
