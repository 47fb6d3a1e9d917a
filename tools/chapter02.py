"""Source of book/02_adversarial_examples.ipynb. Regenerate, then execute with helpers.publish."""

from nbtools import check, code, md, write_notebook

cells = [
    md("""
# 2. Adversarial examples

Chapter 1 ended with a comfortable remedy: when the inputs drift, collect new data and retrain.
This chapter meets inputs for which that does not work. An **adversarial example** is an input
changed on purpose, by a tiny amount, so that a particular model gets it wrong. It is not drawn
from some new distribution we could sample; it is computed, for this model, from the model's
own gradients.

We build the four classic attacks the rest of the course uses (FGSM, PGD, DeepFool and
Carlini-Wagner), measure how strong each is on the models from Chapter 1, and test a popular
description of what they add to an image: "low-magnitude, high-frequency noise".
"""),
    code("""
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import helpers
from helpers import attacks, plots, spectra, train

profile, device = helpers.start("Chapter 2: adversarial examples")
"""),
    md("""
## The models and the images

The same cached classifiers as in Chapter 1 (trained again only if the cache is empty), plus
one for GTSRB, the German traffic-sign benchmark. Every attack below runs on the same fixed
subset of test images, whose size the profile sets.
"""),
    code("""
models = {name: train.classifier(name) for name in ("mnist", "cifar10", "gtsrb")}
sets = {name: helpers.data.load(name, "test", n=profile.attack_size) for name in models}
data = {name: s.to(device) for name, s in sets.items()}
clean = {name: train.evaluate(models[name], *data[name]) for name in models}
for name in models:
    print(f"{name:8s} clean accuracy {clean[name]:.1%} on {len(data[name][1])} test images")
"""),
    md("""
## FGSM and PGD in a few lines

The **fast gradient sign method** (Goodfellow et al., 2015) asks one question of the model: in
which direction does each pixel have to move to increase the loss on the true label? It then
moves *every* pixel by the same small amount `eps` in that direction. Under an L-infinity budget
(no pixel changes by more than `eps`) this is the best single step on a linear model.
"""),
    code("""
def my_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")  # sum: each image on its own
    grad, = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()
"""),
    md("""
**Projected gradient descent** (Madry et al., 2018) repeats smaller steps and, after each one,
projects back into the allowed box around the original image: `eps` around each pixel, and
the valid range [0, 1]. It is the standard "strong" first-order attack.
"""),
    code("""
def my_pgd(model, x, y, eps, alpha, steps):
    adv = x.clone()
    for _ in range(steps):
        adv = my_fgsm(model, adv, y, alpha)                              # a small FGSM step
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)    # back into the box
    return adv
"""),
    md("""
`helpers.attacks` has the same two attacks with input checks, batching, targeted variants and a
random start, and every attack there takes `(model, images, labels, **settings)`. On the same
images, our few lines and the library agree exactly.
"""),
    code("""
model, (x, y) = models["cifar10"], data["cifar10"]
eps = 8 / 255
mine, lib = my_fgsm(model.eval(), x, y, eps), attacks.fgsm(model, x, y, eps)
mine_pgd = my_pgd(model, x, y, eps, alpha=2 / 255, steps=10)
lib_pgd = attacks.pgd(model, x, y, eps, alpha=2 / 255, steps=10, random_start=False)
print(f"FGSM: largest difference {(mine - lib).abs().max():.1e}; "
      f"PGD: largest difference {(mine_pgd - lib_pgd).abs().max():.1e}")
print(f"largest pixel change {(lib_pgd - x).abs().max() * 255:.2f}/255 (budget 8/255)")
"""),
    check("""
assert torch.equal(mine, lib)
assert (mine_pgd - lib_pgd).abs().max() < 1e-6
assert (lib_pgd - x).abs().max() <= eps + 1e-6
"""),
    md("""
## "Panda to gibbon", on our own models

The famous picture from Goodfellow et al. shows a panda that, after an imperceptible change, is
classified as a gibbon with high confidence. Here is the same effect on a CIFAR-10 image and a
traffic sign: the clean image, the perturbation (magnified so it is visible: mid-grey is zero),
and the adversarial image, with each prediction and its confidence. The attack is PGD with a
budget of 8/255, about 3% of the pixel range.
"""),
    code("""
def show_attack(name, index=0, eps=8 / 255):
    model, (x, y), classes = models[name], data[name], sets[name].classes
    correct = (train.predict(model, x).argmax(1) == y).nonzero().flatten()
    i = correct[index:index + 1]
    adv = attacks.pgd(model, x[i], y[i], eps, steps=20, quantize=True)
    p_clean, p_adv = (F.softmax(train.predict(model, z), 1)[0] for z in (x[i], adv))
    caption = [f"{classes[p_clean.argmax()][:22]}\\n{p_clean.max():.0%}", "scaled x 16",
               f"{classes[p_adv.argmax()][:22]}\\n{p_adv.max():.0%}"]
    noise = 0.5 + (adv - x[i]) / (2 * eps)  # -eps..eps mapped to black..white
    return plots.image_grid([torch.cat([x[i], noise, adv])], titles=[caption], scale=2.2,
                            col_labels=["clean", "+ perturbation", "= adversarial"])


show_attack("cifar10")
show_attack("gtsrb")
plt.show()
"""),
    md("""
## How strong is each attack?

Accuracy as the budget `eps` grows, for FGSM and PGD (10 steps, random start), on MNIST and
CIFAR-10. Both use the same test images.
"""),
    code("""
budgets = {"mnist": [0.05, 0.1, 0.2, 0.3], "cifar10": [1 / 255, 2 / 255, 4 / 255, 8 / 255]}
curves = {}
for name, epsilons in budgets.items():
    model, (x, y) = models[name], data[name]
    curves[name] = {
        "FGSM": [clean[name]] + [train.evaluate(model, attacks.fgsm(model, x, y, e), y)
                                 for e in epsilons],
        "PGD-10": [clean[name]] + [train.evaluate(model, attacks.pgd(model, x, y, e), y)
                                   for e in epsilons],
    }
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for ax, (name, series) in zip(axes, curves.items()):
    scale = 255 if name == "cifar10" else 1
    plots.line_chart([0] + [e * scale for e in budgets[name]], series, ax=ax,
                     xlabel="eps" + (" (x/255)" if scale == 255 else ""),
                     title=f"{name}: accuracy under attack")
fig.tight_layout()
plt.show()
"""),
    md("""
PGD is never weaker than FGSM, and clearly stronger at moderate budgets: at 8/255, a change no
person would notice, PGD leaves the CIFAR-10 model almost nothing. The MNIST model holds out a
little longer, because its digits are nearly binary and small changes to a black background are
easy to ignore, but at eps 0.3 (the usual MNIST budget) PGD defeats it too.
"""),
    check("""
for name, series in curves.items():
    for f, p in zip(series["FGSM"][1:], series["PGD-10"][1:]):
        assert p <= f + 0.01, (name, series)  # PGD never weaker than FGSM
    assert max(f - p for f, p in zip(series["FGSM"][1:], series["PGD-10"][1:])) > 0.05, series
assert curves["cifar10"]["PGD-10"][-1] < 0.05, curves["cifar10"]          # 8/255 PGD
assert curves["mnist"]["PGD-10"][-1] < 0.05, curves["mnist"]              # eps 0.3 PGD
assert curves["mnist"]["PGD-10"][1] > curves["cifar10"]["PGD-10"][1]      # MNIST holds longer
"""),
    md("""
## Minimal attacks: DeepFool and Carlini-Wagner

FGSM and PGD spend a fixed budget. **DeepFool** (Moosavi-Dezfooli et al., 2016) and
**Carlini-Wagner** (2017) instead look for the *smallest* change that flips the label.
DeepFool linearises the model and steps to the nearest linearised decision boundary, over and
over; a small `overshoot` pushes it just past. Carlini-Wagner optimises the perturbation's L2
size plus `c` times a margin loss with Adam, searching over `c`, and keeps the smallest success.
We measure the success rate and the median L2 size of the perturbations they need, next to the
L2 size of an FGSM perturbation at 8/255.
"""),
    code("""
model, (x, y) = models["cifar10"], data["cifar10"]
keep = train.predict(model, x).argmax(1) == y          # attack correctly classified images only
xc, yc = x[keep], y[keep]
df = attacks.deepfool(model, xc, yc, overshoot=0.02)
n_cw = min(profile.cw_size, len(yc))
cw = attacks.carlini_wagner(model, xc[:n_cw], yc[:n_cw], c=1.0, kappa=0.0, lr=0.05,
                            steps=profile.cw_steps, binary_search_steps=profile.cw_search_steps)
fgsm8 = attacks.fgsm(model, xc, yc, 8 / 255)
minimal = {}
for label, adv, ref, labels in [("FGSM 8/255", fgsm8, xc, yc), ("DeepFool", df, xc, yc),
                                ("Carlini-Wagner", cw, xc[:n_cw], yc[:n_cw])]:
    fooled = train.predict(model, adv).argmax(1) != labels
    norms = attacks.l2_norms(adv, ref)[fooled]
    minimal[label] = (fooled.float().mean().item(), norms.median().item())
    print(f"{label:15s} success {minimal[label][0]:6.1%}   median L2 of successful "
          f"perturbations {minimal[label][1]:.3f}   ({len(labels)} images)")
"""),
    md("""
The minimal attacks succeed on essentially every image with perturbations many times smaller
in L2 than FGSM's: a whole 32x32 colour image changes by less than a single pixel flipping from
black to white would. Most classifier decisions sit very close to a boundary.
"""),
    check("""
assert minimal["DeepFool"][0] > 0.9 and minimal["Carlini-Wagner"][0] > 0.9, minimal
assert minimal["Carlini-Wagner"][1] < 0.5 * minimal["FGSM 8/255"][1], minimal
assert minimal["DeepFool"][1] < 0.5 * minimal["FGSM 8/255"][1], minimal
"""),
    md("""
## An attacker must submit an image

A perturbation of 0.2 in L2 over 3,072 values is a change of about 0.004 per value, *less than
one step of an 8-bit image* (1/255 = 0.0039). An attacker cannot send floating-point pixels to a
deployed model: they send a PNG or a JPEG. So every adversarial image has to survive rounding to
8 bits, and minimal attacks, which stop just past the boundary, often do not. Here is the share
of successful DeepFool examples that rounding alone turns back into correct predictions, for
several overshoots.
"""),
    code("""
overshoots = [0.02, 0.2, 1.0]
undone = []
for overshoot in overshoots:
    adv = attacks.deepfool(model, xc, yc, overshoot=overshoot)
    fooled = train.predict(model, adv).argmax(1) != yc
    rounded_ok = train.predict(model, attacks.quantize(adv)).argmax(1) == yc
    undone.append((rounded_ok & fooled).sum().item() / max(1, fooled.sum().item()))
ax = plots.line_chart(overshoots, {"successful DeepFool examples undone by rounding": undone},
                      xlabel="DeepFool overshoot", ylabel="share undone (%)")
ax.set_xscale("log")
plt.show()
for o, u in zip(overshoots, undone):
    print(f"overshoot {o:4}: {u:.0%} of successful examples undone by rounding to 8 bits")
"""),
    md("""
With the customary overshoot of 0.02, rounding to 8 bits undoes most DeepFool examples; a larger
overshoot buys robustness to rounding with a bigger perturbation. This matters for the rest of
the course: a defense that "removes" DeepFool examples may be getting most of its credit from
the rounding any image file applies anyway. From now on, every defense is evaluated on
8-bit images (`quantize=True`), and Chapter 4 reports rounding alone as a control.
"""),
    check("""
assert undone[0] > 0.5, undone                      # most overshoot-0.02 examples are undone
assert undone[-1] < undone[0] - 0.3, undone          # a large overshoot survives rounding
"""),
    md("""
## Is the noise "low magnitude, high frequency"?

Low magnitude, yes, by construction. High frequency is a claim we can measure. We take the
radially averaged power spectrum of the perturbations (how their energy spreads from coarse to
fine detail) and compare it with the spectrum of *natural* image differences: the difference
between two different test images. The number printed is the share of energy above a quarter
cycle per pixel, i.e. in the finest half of the frequency range.
"""),
    code("""
pgd8 = attacks.pgd(model, xc, yc, 8 / 255)
natural = xc[1:] - xc[:-1]
white = torch.rand(xc.shape, generator=torch.Generator().manual_seed(0)).to(device) - 0.5
perturbations = {"PGD 8/255": pgd8 - xc, "FGSM 8/255": fgsm8 - xc, "DeepFool": df - xc,
                 "natural image differences": natural, "white noise (reference)": white}
fig, ax = plt.subplots(figsize=(6, 3.6))
share = {}
for label, delta in perturbations.items():
    freqs, power = spectra.radial_power(delta)
    ax.semilogy(freqs.cpu(), power.cpu(), label=label)
    share[label] = spectra.high_frequency_share(delta)
ax.set_xlabel("spatial frequency (cycles per pixel)")
ax.set_ylabel("share of energy")
ax.legend(fontsize=8)
plt.show()
for label, s in share.items():
    print(f"{label:26s} {s:5.1%} of its energy above 0.25 cycles/pixel")
"""),
    md("""
The data supports the description, with a nuance worth remembering. Differences between natural
images keep almost all their energy at low frequencies, as natural images do. The attack
perturbations (FGSM, PGD and DeepFool alike) look like **white noise**: their energy is spread
almost evenly over all frequencies, so most of it sits at high frequencies simply because there
are many more fine-detail frequencies than coarse ones. "High frequency" is true relative to
natural images; the attacks are not aiming at high frequencies, they just do not avoid them.
That gap is what Chapters 3 and 4 try to exploit: remove fine detail, and
you may remove the attack while keeping the image.
"""),
    check("""
for label in ("PGD 8/255", "FGSM 8/255", "DeepFool"):
    assert share[label] > 5 * share["natural image differences"], share   # far more fine detail
    assert abs(share[label] - share["white noise (reference)"]) < 0.15, share  # about white
"""),
    md("""
## Transfer: one model's adversarial examples against another

Does an adversarial example only fool the model it was made on? We train a second MNIST model
with a different seed (same architecture, same data) and show it PGD examples made on the
first. If they do, an attacker who cannot see a model's gradients can attack it through a stand-in.
"""),
    code("""
other = train.classifier("mnist", seed=1)
model, (x, y) = models["mnist"], data["mnist"]
transfer = {}
for e in budgets["mnist"]:
    adv = attacks.pgd(model, x, y, e, quantize=True)
    transfer[e] = (train.evaluate(model, adv, y), train.evaluate(other, adv, y))
plots.line_chart(budgets["mnist"], {"attacked model (white-box)": [a for a, _ in
                                                                     transfer.values()],
                                    "independent model (transfer)": [b for _, b in
                                                                     transfer.values()]},
                 xlabel="eps", title="MNIST: PGD examples made on model A")
plt.show()
print(f"second model's clean accuracy: {train.evaluate(other, x, y):.1%}")
"""),
    md("""
Transfer is strong. Examples made on one model also fool an independently trained one,
somewhat less than the model they were made on but never more: the two models learned much the
same features from the same data, and the attack exploits what they share. This is what makes
attacks without access to a model's gradients practical, and it will matter again when we
compare defended models.
"""),
    check("""
other_clean = train.evaluate(other, x, y)
for a, b in transfer.values():
    assert b >= a - 0.03, transfer                  # never (clearly) stronger than white-box
assert transfer[0.2][1] < other_clean - 0.4, transfer  # yet strong: > 40 points lost at 0.2
assert transfer[0.3][1] < 0.2, transfer
"""),
    md("""
## Try it: an eps slider

Move the slider to grow the FGSM budget on six CIFAR-10 test images. The middle row is the
perturbation, magnified; the titles are the model's predictions (✗ marks a mistake). Every
state is rendered in advance, so the slider works on the website too.
"""),
    code("""
model, (x, y) = models["cifar10"], data["cifar10"]
classes = sets["cifar10"].classes
x6, y6 = x[:6], y[:6]
steps = [0, 1, 2, 4, 8, 16]


def eps_figure(k):
    adv = attacks.fgsm(model, x6, y6, k / 255, quantize=True)
    pred = train.predict(model, adv).argmax(1)
    titles = [[""] * 6, [""] * 6, [classes[p] + ("" if p == t else " ✗") for p, t in zip(pred, y6)]]
    noise = (0.5 + 2 * (adv - x6)).clamp(0, 1)
    return plots.image_grid([x6, noise, adv], row_labels=["clean", "perturbation x 4", "FGSM"],
                            titles=titles, scale=1.3, suptitle=f"eps = {k}/255")


plots.slider_gallery([eps_figure(k) for k in steps], "eps",
                     labels=[f"{k}/255" for k in steps])
"""),
    code("""
chapter = "02_adversarial_examples"
for name, series in curves.items():
    helpers.results.record(chapter, f"{name}_pgd10_accuracy_at_max_eps", series["PGD-10"][-1])
    helpers.results.record(chapter, f"{name}_fgsm_accuracy_at_max_eps", series["FGSM"][-1])
for label, (success, median_l2) in minimal.items():
    key = label.split()[0].lower().replace("-", "_")
    helpers.results.record(chapter, f"cifar10_{key}_success", success)
    helpers.results.record(chapter, f"cifar10_{key}_median_l2", median_l2)
helpers.results.record(chapter, "cifar10_deepfool_0.02_undone_by_rounding", undone[0])
"""),
    md("""
## Summary

* An adversarial example is built for a model from the model's own gradients. FGSM takes one
  step; PGD takes many and is the stronger attack at every budget.
* DeepFool and Carlini-Wagner find perturbations far smaller than a fixed-budget attack needs:
  decisions sit close to a boundary.
* A real attacker submits an 8-bit image, and rounding alone undoes most minimal examples unless
  they overshoot. We evaluate quantized images from here on.
* The perturbations are low magnitude and, compared with natural image variation, rich in high
  frequencies, which is the opening the next two chapters' defenses aim at.
* Adversarial examples partly transfer between independently trained models.
"""),
]

if __name__ == "__main__":
    print(write_notebook("02_adversarial_examples.ipynb", cells))
