"""helpers.attacks against an independent implementation (torchattacks) on a trained model.

A small real model (the course's MNIST CNN, trained for a few seconds) is attacked by both
libraries with the same parameters on the same images. Where the algorithms are the same the
outputs must agree (FGSM exactly, PGD nearly); where they differ in documented details
(DeepFool's overshoot and pinned pixels) the comparison says how. Carlini-Wagner's confidence
``kappa`` and binary search, which torchattacks lacks, are checked by behaviour; and every
attack must take the model far below its clean accuracy.

torchattacks is a test-only dependency, installed without its dependencies
(``pip install --no-deps -r requirements-nodeps.txt``); without it the comparisons are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from helpers import data, models, train
from helpers.attacks import (
    apgd,
    apgd_pair,
    carlini_wagner,
    deepfool,
    fgsm,
    l2_norms,
    pgd,
    square,
    success_rate,
)
from helpers.results import clearly_above

pytestmark = pytest.mark.usefixtures("single_thread")

N_CW = 100  # Carlini-Wagner is the slow one: fewer images
CW = {"c": 10.0, "steps": 50, "lr": 0.05}  # one run succeeds on about 90% of the images


@dataclass
class Trained:
    model: nn.Module
    images: Tensor
    labels: Tensor
    clean_accuracy: float


def standard_layout(images: Tensor) -> Tensor:
    """The same values with standard N x C x H x W strides.

    ``data.load`` permutes NHWC files, so 1-channel batches come with strides (784, 1, 28, 1),
    which PyTorch treats as channels-last. MaxPool's tie-breaking (MNIST's flat background
    gives many exact ties) then differs from the standard-layout kernels, and with it the
    input gradient on a few pixels. helpers.attacks works on a clamped copy (standard layout)
    and torchattacks on a clone (layout kept), so without this the two would compute
    different, equally valid, gradients on about 1 pixel in 10^5.
    """
    return images.new_empty(images.shape).copy_(images)


@pytest.fixture(scope="module")
def trained(single_thread, data_dir) -> Trained:
    """The course's MNIST CNN trained for 2 epochs on 5000 images (~6 s), 200 test images."""
    torch.manual_seed(0)
    x_train, y_train = data.load("mnist", "train", n=5000).to("cpu")
    x_test, y_test = data.load("mnist", "test", n=200).to("cpu")
    model = models.mnist_classifier()
    train.fit(model, x_train, y_train, epochs=2, batch_size=64, lr=3e-3, progress=False)
    model.eval()
    x_test = standard_layout(x_test)
    clean = train.evaluate(model, x_test, y_test)
    assert clean > 0.9, f"the reference model trained badly (clean accuracy {clean:.3f})"
    return Trained(model, x_test, y_test, clean)


@pytest.fixture(scope="module")
def ta():
    return pytest.importorskip("torchattacks", reason="pip install --no-deps -r "
                               "requirements-nodeps.txt to compare against torchattacks")


@pytest.fixture(scope="module")
def cw_runs(trained):
    """Our Carlini-Wagner outputs on the first N_CW images, memoized by keyword arguments."""
    runs: dict[tuple, Tensor] = {}
    x, y = trained.images[:N_CW], trained.labels[:N_CW]

    def run(**params) -> Tensor:
        key = tuple(sorted(params.items()))
        if key not in runs:
            runs[key] = carlini_wagner(trained.model, x, y, **params)
        return runs[key]

    return run


def reference(attack, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """Run a torchattacks attack; its DeepFool and CW call ``backward()``: clear the grads."""
    adv = attack(images, labels)
    model.zero_grad(set_to_none=True)
    return adv.detach()


def fooled(model: nn.Module, adv: Tensor, labels: Tensor) -> Tensor:
    with torch.no_grad():
        return model(adv).argmax(1) != labels


def true_class_margin(model: nn.Module, adv: Tensor, labels: Tensor) -> Tensor:
    """``z_label - max other logit`` per image: > 0 still correct, < 0 fooled."""
    with torch.no_grad():
        logits = model(adv)
    others = logits.scatter(1, labels[:, None], -math.inf).amax(1)
    return logits.gather(1, labels[:, None]).squeeze(1) - others


def changed(adv: Tensor, images: Tensor) -> Tensor:
    """Per image: did the attack return something else than the input (CW: a success)?"""
    return (adv != images).flatten(1).any(1)


# ---------------------------------------------------------------------------------------------
# L-inf attacks: the same algorithm, so the same images
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_fgsm_equals_torchattacks(trained, ta, eps):
    # torchattacks averages the loss over the batch, we sum it: the gradient's sign is the same
    model, x, y = trained.model, trained.images, trained.labels
    ours = fgsm(model, x, y, eps=eps)
    theirs = reference(ta.FGSM(model, eps=eps), model, x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert (ours - x).abs().max() > eps - 1e-6  # a real attack, not two no-ops agreeing


def test_pgd_nearly_equals_torchattacks(trained, ta):
    model, x, y = trained.model, trained.images, trained.labels
    params = {"eps": 0.2, "alpha": 0.05, "steps": 10}  # a walk of 2.5 eps: projection binds
    ours = pgd(model, x, y, random_start=False, **params)
    theirs = reference(ta.PGD(model, random_start=False, **params), model, x, y)
    # torchattacks projects with clamp(adv - x) + x, we clip adv to [x - eps, x + eps]: the
    # last bit can differ, and a rare tie in a later step's gradient sign with it
    differ = (ours - theirs).abs() > 1e-6
    assert differ.float().mean() < 0.005, f"{differ.float().mean():.2%} of pixels differ"
    assert differ.flatten(1).any(1).float().mean() < 0.2  # most images bit-for-bit the same
    assert abs(success_rate(model, ours, y) - success_rate(model, theirs, y)) <= 0.02
    assert success_rate(model, ours, y) > success_rate(model, fgsm(model, x, y, eps=0.2), y)


# ---------------------------------------------------------------------------------------------
# DeepFool: the same linearization, two documented differences
# ---------------------------------------------------------------------------------------------

def test_deepfool_agrees_with_torchattacks(trained, ta):
    """Same success and size of perturbation where the algorithms are meant to agree.

    Two deliberate differences: (1) helpers leaves pixels pinned at 0 or 1 out of a step that
    pushes them further out; torchattacks lets clipping eat that part and stalls on raw MNIST
    (80% of pixels are 0), so the images are squeezed into [0.1, 0.9] here, where clipping
    rarely binds. (2) torchattacks applies ``1 + overshoot`` to each step from the current
    iterate, helpers to the whole perturbation; near the boundary torchattacks' steps shrink
    and some images end on the boundary, not across it. With overshoot 0.02 those count as
    reached (margin < 1e-3 logits); with overshoot 0.1 both cross and the rates must agree.
    """
    model = trained.model
    x, y = 0.1 + 0.8 * trained.images[:100], trained.labels[:100]
    assert train.evaluate(model, x, y) > 0.85  # the squeezed images are still recognised
    for overshoot in (0.02, 0.1):
        ours = deepfool(model, x, y, steps=20, overshoot=overshoot)
        theirs = reference(ta.DeepFool(model, steps=20, overshoot=overshoot), model, x, y)
        ours_fooled, theirs_fooled = fooled(model, ours, y), fooled(model, theirs, y)
        theirs_reached = theirs_fooled | (true_class_margin(model, theirs, y) < 1e-3)
        rate, rate_theirs = ours_fooled.float().mean(), theirs_fooled.float().mean()
        assert rate > 0.95
        assert rate >= rate_theirs - 0.02  # never weaker than the reference
        assert abs(rate - theirs_reached.float().mean()) <= 0.03, overshoot
        if overshoot >= 0.1:
            assert abs(rate - rate_theirs) <= 0.03
        both = ours_fooled & theirs_fooled
        assert both.sum() >= 50
        ratio = l2_norms(ours, x)[both].median() / l2_norms(theirs, x)[both].median()
        assert 0.9 < ratio < 1.1, f"median L2 ours / torchattacks = {ratio:.3f}"


# ---------------------------------------------------------------------------------------------
# Carlini-Wagner: one round equals torchattacks' CW; kappa and the binary search by behaviour
# ---------------------------------------------------------------------------------------------

def test_carlini_wagner_one_round_agrees_with_torchattacks(trained, ta, cw_runs):
    # torchattacks.CW has no binary search: compare with a single round at the same c, from
    # the reference code's start (atanh of 1 - 1e-6, where black and white pixels barely move;
    # torchattacks' own atanh(1) is infinite, so they never do)
    model, x, y = trained.model, trained.images[:N_CW], trained.labels[:N_CW]
    ours = cw_runs(kappa=0.0, binary_search_steps=1, tanh_shrink=1e-6, **CW)
    theirs = reference(ta.CW(model, kappa=0.0, **CW), model, x, y)
    rate, rate_theirs = success_rate(model, ours, y), success_rate(model, theirs, y)
    assert abs(rate - rate_theirs) <= 0.03
    assert 0.5 < rate < 1.0  # a c where success is not trivial, or the check says little
    both = fooled(model, ours, y) & fooled(model, theirs, y)
    ratio = l2_norms(ours, x)[both].median() / l2_norms(theirs, x)[both].median()
    assert 0.9 < ratio < 1.1, f"median L2 ours / torchattacks = {ratio:.3f}"


def test_carlini_wagner_kappa_buys_confidence(trained, cw_runs):
    model, x, y = trained.model, trained.images[:N_CW], trained.labels[:N_CW]
    plain = cw_runs(kappa=0.0, binary_search_steps=1, **CW)
    confident = cw_runs(kappa=5.0, binary_search_steps=1, **CW)
    both = changed(plain, x) & changed(confident, x)  # successes of both runs
    assert both.sum() >= 30
    margin_plain = -true_class_margin(model, plain, y)[both]  # best other - true logit
    margin_confident = -true_class_margin(model, confident, y)[both]
    assert (margin_confident >= 5.0 - 1e-4).all()  # every success is kappa-confident
    assert margin_plain.median() < 1.0  # kappa 0 stops just across the boundary
    assert margin_confident.median() > margin_plain.median() + 3.0
    # confidence costs distortion
    assert l2_norms(confident, x)[both].median() > l2_norms(plain, x)[both].median()


def test_carlini_wagner_binary_search_keeps_best_success_of_the_constants_it_tried(trained):
    """Three rounds from c0 equal the best success of three single rounds along each image's
    search path: c0, then c0 / 2 after a success (then c0 / 4 or 3 c0 / 4) or 10 c0 after a
    failure (then 5.5 c0 or 100 c0). Each round restarts from the image with a fresh
    optimizer and images do not interact, so the match is exact."""
    model, x, y = trained.model, trained.images[:32], trained.labels[:32]
    params = {"kappa": 0.0, "steps": 30, "lr": 0.05}
    c0 = 1.0
    singles: dict[float, Tensor] = {}

    def single(c: float) -> Tensor:
        if c not in singles:
            singles[c] = carlini_wagner(model, x, y, c=c, binary_search_steps=1, **params)
        return singles[c]

    searched = carlini_wagner(model, x, y, c=c0, binary_search_steps=3, **params)
    expected = x.clone()
    for i in range(len(x)):
        if changed(single(c0), x)[i]:
            second = c0 / 2
            third = c0 / 4 if changed(single(second), x)[i] else 3 * c0 / 4
        else:
            second = 10 * c0
            third = 5.5 * c0 if changed(single(second), x)[i] else 100 * c0
        best = math.inf
        for c in (c0, second, third):
            adv = single(c)[i]
            norm = (adv - x[i]).norm().item()
            if changed(single(c), x)[i] and norm < best:  # the first of equals is kept
                best, expected[i] = norm, adv
    torch.testing.assert_close(searched, expected, atol=1e-6, rtol=0)
    # and so, by behaviour: nothing lost, failures retried with larger c, successes shrunk
    first = single(c0)
    ok_first, ok_searched = changed(first, x), changed(searched, x)
    assert (ok_searched >= ok_first).all() and ok_searched.sum() > ok_first.sum()
    norms_first, norms_searched = l2_norms(first, x), l2_norms(searched, x)
    assert (norms_searched[ok_first] <= norms_first[ok_first] + 1e-6).all()
    assert norms_searched[ok_first].median() < 0.9 * norms_first[ok_first].median()


# ---------------------------------------------------------------------------------------------
# Strength: every attack takes the model far below its clean accuracy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "limit"), [
    ("fgsm", 0.6),  # one step at eps 0.2 leaves about half of this model's answers right
    ("pgd", 0.3),
    ("deepfool", 0.05),  # minimal attacks run until they succeed
    ("carlini_wagner", 0.3),
])
def test_attacks_take_model_far_below_clean_accuracy(trained, cw_runs, name, limit):
    model, x, y = trained.model, trained.images, trained.labels
    if name == "fgsm":
        adv = fgsm(model, x, y, eps=0.2)
    elif name == "pgd":
        adv = pgd(model, x, y, eps=0.2, steps=10, generator=torch.Generator().manual_seed(0))
    elif name == "deepfool":
        adv = deepfool(model, x, y)
    else:
        x, y = x[:N_CW], y[:N_CW]
        adv = cw_runs(kappa=0.0, binary_search_steps=1, **CW)
    clean = train.evaluate(model, x, y)
    attacked = train.evaluate(model, adv, y)
    assert clean > 0.9
    assert attacked < limit and attacked < clean - 0.3, f"{name}: {clean:.3f} -> {attacked:.3f}"


# ---------------------------------------------------------------------------------------------
# APGD and Square: randomized, so compared by robust accuracy on the same images
# ---------------------------------------------------------------------------------------------

STRONG_EPS = 0.15  # where the MNIST CNN keeps about 55-60%: room to differ either way


def _within_noise(ours: float, theirs: float, n: int) -> None:
    assert not clearly_above(ours, theirs, n), (ours, theirs)
    assert not clearly_above(theirs, ours, n), (ours, theirs)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_agrees_with_torchattacks(trained, ta, loss):
    """Same model, images, eps and 50 steps: robust accuracy within the sampling noise of each
    other (measured at 100 steps on these 200 images: 54.0% / 54.0% with cross-entropy,
    59.0% / 58.5% with DLR), and at least as strong as PGD with as many steps."""
    x, y = trained.images, trained.labels
    ours = apgd(trained.model, x, y, STRONG_EPS, steps=50, loss=loss,
                generator=torch.Generator().manual_seed(0))
    theirs = reference(ta.APGD(trained.model, eps=STRONG_EPS, steps=50, loss=loss, seed=0),
                       trained.model, x, y)
    assert (ours - x).abs().max() <= STRONG_EPS + 1e-6
    accuracy = [train.evaluate(trained.model, a, y) for a in (ours, theirs)]
    _within_noise(*accuracy, len(y))
    baseline = pgd(trained.model, x, y, STRONG_EPS, steps=50,
                   generator=torch.Generator().manual_seed(0))
    assert accuracy[0] <= train.evaluate(trained.model, baseline, y) + 0.03
    assert accuracy[0] < trained.clean_accuracy - 0.2


def test_square_agrees_with_torchattacks(trained, ta):
    """Gradient-free, 500 queries: robust accuracy within the sampling noise of torchattacks'
    Square on the same images (measured at 1,000 queries: 62.0% / 63.0%)."""
    x, y = trained.images, trained.labels
    ours = square(trained.model, x, y, STRONG_EPS, queries=500,
                  generator=torch.Generator().manual_seed(0))
    theirs = reference(ta.Square(trained.model, eps=STRONG_EPS, n_queries=500, seed=0),
                       trained.model, x, y)
    assert (ours - x).abs().max() <= STRONG_EPS + 1e-6
    accuracy = [train.evaluate(trained.model, a, y) for a in (ours, theirs)]
    _within_noise(*accuracy, len(y))
    assert accuracy[0] < trained.clean_accuracy - 0.2


def test_apgd_pair_is_close_to_autoattack(trained, ta):
    """Our worst case of APGD-CE and APGD-DLR against torchattacks' standard AutoAttack (which
    adds targeted APGD, FAB and Square) on the same 100 images: never far weaker (measured:
    50.0% against 47.0%)."""
    x, y = trained.images[:100], trained.labels[:100]
    ours = train.evaluate(trained.model, apgd_pair(
        trained.model, x, y, STRONG_EPS, generator=torch.Generator().manual_seed(0)), y)
    attack = ta.AutoAttack(trained.model, norm="Linf", eps=STRONG_EPS, version="standard",
                           n_classes=10, seed=0)
    theirs = train.evaluate(trained.model, reference(attack, trained.model, x, y), y)
    assert not clearly_above(ours, theirs, len(y)), (ours, theirs)
    assert theirs <= ours + 0.03, (ours, theirs)  # more attacks: at least as strong
