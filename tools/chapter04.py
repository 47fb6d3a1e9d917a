"""Source of book/04_jpeg_defense.ipynb. Regenerate, then execute with helpers.publish."""

from nbtools import check, code, md, write_notebook

cells = [
    md("""
# 4. The JPEG defense

MagNet needed a second model, trained on the data, to pull inputs back toward normal images.
Is there a cleaner that needs no training at all? Das et al. (2017) proposed one that is on every
computer already: **JPEG compression**. JPEG was designed to throw away what people notice
least: colour detail before brightness detail, and fine detail before coarse. Chapter 2 measured
that adversarial perturbations are small and, compared with natural images, rich in fine detail.
So compressing an adversarial image might remove the attack and keep the picture.

This chapter reproduces their experiment on CIFAR-10 and GTSRB (road signs) with FGSM and
DeepFool, sweeps the quality setting, and measures the price. It also adds a control the
original experiment lacked: an attacker has to submit an 8-bit image, and rounding alone
undoes some attacks. How much of JPEG's success is JPEG?

**Threat model.** As in the paper, the adversarial images are made against the bare classifier:
the attacker does not know that inputs will be compressed. Chapter 6 drops that assumption.
"""),
    code("""
from functools import partial

import matplotlib.pyplot as plt
import pandas as pd
import torch

import helpers
from helpers import attacks, evaluate, jpeg, plots, spectra, train, transforms

profile, device = helpers.start("Chapter 4: the JPEG defense")
"""),
    md("""
## The models and the images

The CIFAR-10 classifier from Chapter 1 and the GTSRB classifier from Chapter 2, from the cache.
Every number below uses the same test images (the profile's size), so differences between
rows are differences between defenses, not between samples.
"""),
    code("""
names = ("cifar10", "gtsrb")
models = {name: train.classifier(name) for name in names}
sets = {name: helpers.data.load(name, "test", n=profile.test_size) for name in names}
data = {name: (train.as_float(s.images.to(device)), s.labels.to(device))
        for name, s in sets.items()}
for name in names:
    print(f"{name:8s} clean accuracy {train.evaluate(models[name], *data[name]):.1%} "
          f"on {len(data[name][1])} test images")
"""),
    md("""
## What JPEG throws away

A JPEG encoder does four things, and only the last loses much:

1. **Colour conversion.** RGB becomes brightness (Y, luma) and two colour-difference channels
   (Cb, Cr, chroma). Our eyes resolve brightness far better than colour.
2. **Chroma subsampling.** The two colour channels are stored at half resolution in each
   direction (4:2:0): three quarters of the colour samples are gone before anything else happens.
3. **8x8 DCT.** Each channel is cut into 8x8 blocks, and each block is rewritten as 64 cosine
   patterns, from flat (top left) to the finest checkerboard (bottom right). This loses nothing.
4. **Quantization.** Each of the 64 coefficients is divided by an entry of a quantization table
   and rounded. The table's entries grow toward fine detail, and all of them grow as the
   *quality* setting falls. Fine detail rounds to zero first.

Here are the channels of a CIFAR-10 image and a road sign, with the chroma at the resolution
JPEG keeps.
"""),
    code("""
examples = torch.cat([data["cifar10"][0][:1], data["gtsrb"][0][:1]])
ycc = jpeg.rgb_to_ycbcr(examples)
kept_chroma = jpeg.upsample_chroma(jpeg.subsample_chroma(ycc[:, 1:]))   # 4:2:0 subsampling
gray = lambda c: c.expand(-1, 3, -1, -1)  # noqa: E731 - show one channel as a gray image
columns = [examples, gray(ycc[:, :1]), gray(ycc[:, 1:2]), gray(kept_chroma[:, :1]),
           gray(ycc[:, 2:3]), gray(kept_chroma[:, 1:2])]
plots.image_grid([torch.cat([c[i:i + 1] for c in columns]) for i in range(len(examples))],
                 col_labels=["RGB", "Y (luma)", "Cb", "Cb kept", "Cr", "Cr kept"],
                 row_labels=list(names), scale=1.4)
plt.show()
"""),
    md("""
The quantization tables for brightness at three qualities. Each cell is the step a coefficient
is rounded to: a coefficient smaller than half its step becomes zero.
"""),
    code("""
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, quality in zip(axes, (90, 50, 10)):
    luma_table, _ = jpeg.quantization_tables(quality)
    shown = ax.imshow(luma_table, cmap="viridis")
    ax.set_title(f"quality {quality}: steps {int(luma_table.min())}-{int(luma_table.max())}")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, fraction=0.046)
fig.suptitle("luma quantization table (top left: flat pattern; bottom right: finest)")
fig.tight_layout()
plt.show()
"""),
    md("""
The heart of JPEG in four lines: transform the brightness of every test image block by block,
divide by the table, round, and count what survives.
"""),
    code("""
def surviving_share(images, quality):
    luma = jpeg.rgb_to_ycbcr(images)[:, :1] * 255 - 128           # JPEG centres values on 0
    coefficients = jpeg.block_dct(luma)                           # 8x8 blocks of 64 patterns
    table = jpeg.quantization_tables(quality)[0].to(images.device)
    steps = table.repeat(luma.shape[-2] // 8, luma.shape[-1] // 8)
    return ((coefficients / steps).round() != 0).float().mean().item()


qualities = [100, 90, 80, 75, 70, 60, 50, 40, 30, 20, 10]   # 75: the paper's choice
survive = {name: [surviving_share(data[name][0], q) for q in qualities] for name in names}
sizes = {name: [jpeg.encoded_sizes(data[name][0], q).float().mean().item() for q in qualities]
         for name in names}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
plots.line_chart(qualities, survive, xlabel="JPEG quality", ax=axes[0],
                 ylabel="luma DCT coefficients kept (%)", title="what survives quantization")
plots.line_chart(qualities, sizes, xlabel="JPEG quality", ax=axes[1], percent=False,
                 ylabel="bytes per 32x32 image", title="file size")
for ax in axes:
    ax.invert_xaxis()
fig.tight_layout()
plt.show()
print(f"an uncompressed 32x32 RGB image: {32 * 32 * 3} bytes")
"""),
    md("""
At quality 100 most coefficients survive; by quality 50 only a minority does, and the file is a
fraction of the raw 3,072 bytes. Here is what that looks like.
"""),
    check("""
for name in names:
    at = {q: i for i, q in enumerate(qualities)}
    assert survive[name][at[100]] > 0.5 > survive[name][at[50]], survive
    assert all(a >= b for a, b in zip(sizes[name], sizes[name][1:])), sizes  # smaller and smaller
    assert sizes[name][at[50]] < 32 * 32 * 3 / 3, sizes
"""),
    code("""
shown_qualities = [100, 75, 50, 25, 10]
rows, titles = [], []
for name in names:
    x = data[name][0][:6]
    for q in shown_qualities:
        rows.append(jpeg.jpeg(x, q))
        titles.append([f"{n} B" for n in jpeg.encoded_sizes(x, q).tolist()])
plots.image_grid(rows, row_labels=[f"{n}\\nq={q}" for n in names for q in shown_qualities],
                 titles=titles, scale=1.1)
plt.show()
"""),
    md("""
## What compression does to an attack's perturbation

The hope, in the words of the paper's motivation: adversarial perturbations are fine detail, JPEG
removes fine detail, so compression should remove the perturbation. We can check that directly.
Compress the clean image and the adversarial image the same way; what is left of the
perturbation is the difference between the two compressed images. We measure three things
about it, relative to the original perturbation: its energy, the share of that energy at high
frequencies, and its **direction** (the cosine similarity between the two, per image).
"""),
    code("""
model, (x, y) = models["cifar10"], data["cifar10"]
cosine = torch.nn.functional.cosine_similarity
survival_rows, residues = [], {}
for eps in (2 / 255, 8 / 255):
    adv = attacks.fgsm(model, x, y, eps, quantize=True)
    before = adv - x
    for q in (90, 75, 50):
        after = jpeg.jpeg(adv, q) - jpeg.jpeg(x, q)         # what is left of the perturbation
        residues[(round(eps * 255), q)] = (before, after)
        survival_rows.append({
            "FGSM eps": f"{round(eps * 255)}/255", "quality": q,
            "energy left": (after.pow(2).sum() / before.pow(2).sum()).item(),
            "high-frequency share": spectra.high_frequency_share(after),
            "direction kept (cosine)": cosine(after.flatten(1), before.flatten(1)).mean().item()})
survival = pd.DataFrame(survival_rows)
before, after = residues[(8, 75)]
fig, ax = plt.subplots(figsize=(6, 3.4))
for label, delta in {"FGSM 8/255 perturbation": before, "left after JPEG 75": after}.items():
    freqs, power = spectra.radial_power(delta)
    ax.semilogy(freqs.cpu(), power.cpu(), label=label)
ax.set_xlabel("spatial frequency (cycles per pixel)")
ax.set_ylabel("share of energy")
ax.legend()
plt.show()
print(f"high-frequency share of the perturbation itself: "
      f"{spectra.high_frequency_share(before):.0%}")
survival.style.format({"energy left": "{:.0%}", "high-frequency share": "{:.0%}",
                       "direction kept (cosine)": "{:.2f}"}).hide(axis="index")
"""),
    md("""
The hypothesis fails, instructively. What is left of the perturbation after compression is not
smaller: it carries *more* energy than the perturbation itself, several times more at 2/255, and
much of it is still fine detail. A tiny change to a block flips which level many of its DCT
coefficients round to, and each flip changes the whole 8x8 block. What compression does destroy
is the perturbation's **direction**: at quality 75 the residue keeps little of the original
pattern. Is direction what matters? Add random noise of exactly FGSM's size, every pixel pushed
up or down by eps at random:
"""),
    code("""
signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)).to(device)
noise_rows = []
for eps in (2 / 255, 8 / 255):
    noisy = (x + eps * (2 * signs - 1)).clamp(0, 1)
    noise_rows.append({"eps": f"{round(eps * 255)}/255", "clean": train.evaluate(model, x, y),
                       "random signs": train.evaluate(model, noisy, y),
                       "FGSM (gradient signs)": train.evaluate(
                           model, attacks.fgsm(model, x, y, eps, quantize=True), y)})
direction = pd.DataFrame(noise_rows)
direction.style.format({c: "{:.1%}" for c in direction.columns[1:]}).hide(axis="index")
"""),
    md("""
Random signs cost the model almost nothing; the same budget spent along the gradient's signs
defeats it. An adversarial perturbation is dangerous because of where it points, not because of
how big or how fine it is. So JPEG works, where it works, not by removing the attack but by
**scrambling** it into a change the model does not care about. Keep that in mind for Chapter
6: an attacker who knows about the compression can aim through it.
"""),
    check("""
row = survival.set_index(["FGSM eps", "quality"])
assert row.loc[("2/255", 75), "energy left"] > 1.0, row               # not removed: larger
assert row.loc[("2/255", 75), "high-frequency share"] > 0.5, row      # ... and still fine detail
assert row.loc[("2/255", 75), "direction kept (cosine)"] < 0.4, row   # direction scrambled
assert row.loc[("8/255", 75), "direction kept (cosine)"] < 0.6, row
for r in noise_rows:
    assert r["random signs"] > r["clean"] - 0.05, r                    # random: harmless
    assert r["random signs"] > r["FGSM (gradient signs)"] + 0.3, r     # direction is everything
"""),
    md("""
## The main experiment: a quality sweep

For each data set we make three sets of adversarial images on the undefended model: FGSM at
2/255 and at 8/255 (the SHIELD code's default), and DeepFool with its customary overshoot of
0.02. Then we compress them at every quality from 100 down to 10 and classify. Clean test images
go through the same compression, so the cost shows on the same plot.

Two baselines without JPEG matter: the adversarial images as the attack produced them
(floating-point pixels, what the paper evaluated) and the same images **rounded to 8 bits**,
which is what an attacker can actually submit. JPEG itself starts by rounding to 8 bits, so any
gain JPEG shows over the first baseline includes the rounding.
"""),
    code("""
defenses = {"float": None, "8-bit": attacks.quantize,
            **{f"JPEG {q}": partial(jpeg.jpeg, quality=q) for q in qualities}}
adversarial, tables = {}, {}
for name in names:
    model, (x, y) = models[name], data[name]
    adversarial[name] = evaluate.standard_attacks(model, x, y)
    tables[name] = evaluate.accuracy_table(model, x, y, adversarial[name], defenses)
attack_names = list(adversarial["cifar10"])
published = {k: helpers.results.published(f"das_jpeg_only_attacked_accuracy_{k}")
             for k in ("low", "high")}

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, name in zip(axes, names):
    t = tables[name]
    series = {row: [t[row][f"JPEG {q}"] for q in qualities] for row in ["clean", *attack_names]}
    plots.line_chart(qualities, series, xlabel="JPEG quality", ax=ax, title=name)
    for line, row in zip(ax.lines[1:], attack_names):
        ax.axhline(100 * t[row]["8-bit"], color=line.get_color(), linestyle=":", linewidth=1)
    ax.axhspan(100 * published["low"]["value"], 100 * published["high"]["value"], color="grey",
               alpha=0.12, label="paper: JPEG alone, attacked")
    ax.invert_xaxis()
    ax.legend(fontsize=7)
fig.suptitle("accuracy after JPEG (dotted: the attack rounded to 8 bits, no JPEG)")
fig.tight_layout()
plt.show()
"""),
    code("""
for name in names:
    frame = pd.DataFrame(tables[name]).T[["float", "8-bit", "JPEG 90", "JPEG 75", "JPEG 50",
                                          "JPEG 30", "JPEG 10"]]
    print(f"\\n{name}: accuracy")
    print(frame.map(lambda v: f"{v:.1%}").to_string())
"""),
    md("""
The paper plots the same experiment as **attack success rate**: among the images the model
classifies correctly when they are clean and uncompressed, the share the attack still fools
after compression. Here it is at four qualities.
"""),
    code("""
success_rows = []
for name in names:
    model, (x, y) = models[name], data[name]
    right = train.predict(model, x).argmax(1) == y
    for attack in attack_names:
        adv = adversarial[name][attack][right]
        row = {"data set": name, "attack": attack,
               "8-bit, no JPEG": 1 - train.evaluate(model, adv, y[right],
                                                    transform=attacks.quantize)}
        for q in (100, 75, 50, 10):
            row[f"JPEG {q}"] = 1 - train.evaluate(model, adv, y[right],
                                                  transform=partial(jpeg.jpeg, quality=q))
        success_rows.append(row)
success = pd.DataFrame(success_rows)
success.style.format({c: "{:.1%}" for c in success.columns[2:]}).hide(axis="index")
"""),
    check("""
sr = success.set_index(["data set", "attack"])
for name in names:
    deepfool, fgsm8 = sr.loc[(name, "DeepFool"), "JPEG 75"], sr.loc[(name, "FGSM 8/255"), "JPEG 75"]
    assert deepfool < 0.4, sr                                       # DeepFool mostly undone
    assert fgsm8 > 3 * deepfool, sr                                 # FGSM 8/255 far less so
"""),
    md("""
Read the plots from the left (quality 100, almost lossless) to the right:

* **Clean accuracy falls steadily as quality drops.** Compression is itself a distribution
  shift: these models were trained on lossless images, and Chapter 1 already showed JPEG at low
  quality hurting them.
* **DeepFool is largely undone** at every quality. But the dotted line shows that rounding to 8
  bits alone undoes most of it: DeepFool's minimal perturbations stop just past the boundary,
  and any small change pushes them back. Much of the paper's "works very well against DeepFool"
  is, on these models, quantization.
* **FGSM is partly undone**, and the gain grows as quality falls, until the cost to clean
  accuracy catches up. Here rounding does nothing at all (FGSM moves every pixel of an 8-bit
  image by exactly 2/255 or 8/255, so its output is already on the 8-bit grid), and the gain is
  JPEG's own.
"""),
    md("""
### The control, quality 75

Quality 75 is the setting the paper singled out. For each attack: accuracy on the float images
the attack produced, on the same images rounded to 8 bits, and after JPEG 75. The last column
is the gain JPEG adds *beyond* rounding, the part that is JPEG's own.
"""),
    code("""
q75 = partial(jpeg.jpeg, quality=75)
control = {}
for name in names:
    model, (x, y) = models[name], data[name]
    clean_75 = train.evaluate(model, x, y, transform=q75)
    row = {"clean": (train.evaluate(model, x, y), train.evaluate(model, x, y), clean_75)}
    for attack in attack_names:
        adv = adversarial[name][attack]
        row[attack] = tuple(train.evaluate(model, adv, y, transform=d)
                            for d in (None, attacks.quantize, q75))
    control[name] = row
frames = []
for name in names:
    for attack, (flt, rounded, compressed) in control[name].items():
        frames.append({"data set": name, "images": attack, "float": flt, "8-bit": rounded,
                       "JPEG 75": compressed, "JPEG gain over float": compressed - flt,
                       "JPEG gain over 8-bit": compressed - rounded})
control_table = pd.DataFrame(frames)
control_table.style.format({c: "{:+.1%}" if "gain" in c else "{:.1%}"
                            for c in control_table.columns[2:]}).hide(axis="index")
"""),
    md("""
How sure are these numbers? The same experiment, with classifiers trained from three different
seeds on the same images (measured with `tools/seed_noise_ch4.py`, stored in
`lessondata/results/<profile>/04_jpeg_defense_seeds.json`), gives the spread below: the largest
minus the smallest value across seeds. The chapter's claims only rest on gaps clearly larger.
"""),
    code("""
seeds = helpers.results.load_results("04_jpeg_defense_seeds")
if not seeds:
    raise RuntimeError(f"no seed-noise measurement for the {profile.name!r} profile: run "
                       "`python tools/seed_noise_ch4.py` with this LESSON_PROFILE first")


def seed_values(name, images, defense):
    return [seeds[helpers.results.result_key(name, f"seed{s}", images, defense)]["value"]
            for s in range(3)]


spread_rows = []
for name in names:
    for images in ["clean", *attack_names]:
        gains = [j - r for j, r in zip(seed_values(name, images, "JPEG 75"),
                                       seed_values(name, images, "8-bit"))]
        values = seed_values(name, images, "JPEG 75")
        spread_rows.append({"data set": name, "images": images,
                            "JPEG 75, 3 seeds": " / ".join(f"{v:.1%}" for v in values),
                            "spread": max(values) - min(values),
                            "gain over 8-bit, 3 seeds": " / ".join(f"{g:+.1%}" for g in gains),
                            "gain spread": max(gains) - min(gains)})
spread = pd.DataFrame(spread_rows)
noise = {"level": spread["spread"].max(), "gain": spread["gain spread"].max()}
print(f"largest seed-to-seed spread: {noise['level']:.1%} in an accuracy, "
      f"{noise['gain']:.1%} in JPEG 75's gain over the 8-bit images")
spread.style.format({"spread": "{:.1%}", "gain spread": "{:.1%}"}).hide(axis="index")
"""),
    md("""
What the control shows, on both data sets:

* Against **DeepFool**, JPEG 75 restores most of the accuracy relative to the float images, but
  rounding alone restores the larger part of that; JPEG's own share is the smaller one.
* Against **FGSM**, rounding changes nothing and JPEG's gain is its own, well above the
  seed-to-seed spread, but it leaves many 8/255 examples fooled: most of them on CIFAR-10,
  about half on GTSRB.
* For **clean** images JPEG 75 costs a few points, paid on every input, attacked or not.
"""),
    check("""
c = control_table.set_index(["data set", "images"])
for name in names:
    deepfool = c.loc[(name, "DeepFool")]
    assert deepfool["JPEG gain over float"] > 0.3, deepfool            # JPEG "works" ...
    assert deepfool["8-bit"] > deepfool["float"] + 0.3, deepfool       # ... so does rounding
    assert deepfool["JPEG gain over 8-bit"] < deepfool["JPEG gain over float"] / 2, deepfool
    assert c.loc[(name, "FGSM 8/255"), "JPEG 75"] < {"cifar10": 0.3, "gtsrb": 0.6}[name], c
    small = c.loc[(name, "FGSM 2/255")]
    for fgsm in ("FGSM 2/255", "FGSM 8/255"):
        assert abs(c.loc[(name, fgsm), "8-bit"] - c.loc[(name, fgsm), "float"]) < 0.01, c
    assert small["JPEG gain over 8-bit"] > 2 * noise["gain"], (small, noise)  # JPEG's own
    assert c.loc[(name, "clean"), "JPEG gain over float"] < 0, c       # clean images pay
    assert deepfool["JPEG gain over float"] > small["JPEG gain over float"], c  # FGSM: less
"""),
    md("""
## Is it JPEG, or would any smoothing do?

JPEG is one way to throw away fine detail. Cheaper ones exist: a Gaussian blur, a median filter
(which replaces each pixel by the median of its neighbourhood), or reducing the number of bits
per colour. For a fair comparison we give each the same budget: for each data set we pick each
transformation's setting whose clean accuracy is closest to JPEG 75's, then compare them on the
8-bit FGSM images (DeepFool is left out: rounding already undoes it). A transformation whose
mildest setting already costs far more than JPEG 75 cannot be matched; the table shows it
anyway, and the comparison leaves it out.
"""),
    code("""
matched_rows = []
for name in names:
    model, (x, y) = models[name], data[name]
    target = train.evaluate(model, x, y, transform=q75)
    candidates = {"JPEG 75": q75}
    for label, t in transforms.TRANSFORMS.items():
        options = {s: partial(t.apply, **{t.parameter: s}) for s in t.settings}
        cost = {s: abs(train.evaluate(model, x, y, transform=f) - target)
                for s, f in options.items()}
        best = min(cost, key=cost.get)
        candidates[f"{label} ({t.parameter} {best})"] = options[best]
    for label, defense in candidates.items():
        row = {"data set": name, "defense": label,
               "clean": train.evaluate(model, x, y, transform=defense)}
        for attack in attack_names[:2]:
            row[attack] = train.evaluate(model, attacks.quantize(adversarial[name][attack]), y,
                                         transform=defense)
        matched_rows.append(row)
matched = pd.DataFrame(matched_rows)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, name in zip(axes, names):
    part = matched[matched["data set"] == name]
    plots.bar_chart(["clean", *attack_names[:2]],
                    {r["defense"]: [r["clean"], *(r[a] for a in attack_names[:2])]
                     for _, r in part.iterrows()}, ax=ax, title=name)
fig.tight_layout()
plt.show()
matched.style.format({c: "{:.1%}" for c in ["clean", *attack_names[:2]]}).hide(axis="index")
"""),
    md("""
At the same cost in clean accuracy, JPEG does better than a blur or fewer bits on CIFAR-10's
small-budget FGSM examples, by about ten points; on GTSRB a mild blur does about as well as JPEG.
The 3x3 median filter, the mildest there is, already costs CIFAR-10 far more clean accuracy than
JPEG 75, so it has no matched setting there. JPEG's edge on the photos is plausibly that it
throws detail away adaptively, block by block, keeping strong edges that a blur smears. What
all of them share is the mechanism: change the fine detail and hope the model did not need it.
That is also the weakness Chapter 6 exploits.
"""),
    check("""
m = matched.set_index(["data set", "defense"])
jpeg_clean = {name: m.loc[(name, "JPEG 75"), "clean"] for name in names}
matched_cost = [abs(r["clean"] - jpeg_clean[r["data set"]]) < 0.05 for _, r in matched.iterrows()]
comparable = m[matched_cost]                                    # within 5 points of JPEG 75
cifar, gtsrb = comparable.loc["cifar10"], comparable.loc["gtsrb"]
assert len(cifar) >= 3 and len(gtsrb) >= 3, comparable
median_cifar = m.loc["cifar10"].filter(like="median", axis=0)["clean"]
assert (median_cifar < jpeg_clean["cifar10"] - 0.1).all(), m     # median: cannot be matched
cifar_noise = spread[spread["data set"] == "cifar10"]["spread"].max()
best_other_cifar = cifar.drop("JPEG 75")["FGSM 2/255"].max()
assert cifar.loc["JPEG 75", "FGSM 2/255"] > best_other_cifar + 2 * cifar_noise, cifar
blur = gtsrb.filter(like="blur", axis=0)["FGSM 2/255"].iloc[0]
assert abs(gtsrb.loc["JPEG 75", "FGSM 2/255"] - blur) < 2 * noise["level"], gtsrb
"""),
    md("""
## Try it: a quality slider

Six CIFAR-10 test images attacked with FGSM at 8/255 (rounded to 8 bits), then compressed at
the quality the slider sets. Titles give the model's prediction (✗ marks a mistake). Every state
is rendered in advance, so the slider also works on the website.
"""),
    code("""
model, (x, y) = models["cifar10"], data["cifar10"]
classes = sets["cifar10"].classes
x6, y6 = x[:6], y[:6]
adv6 = attacks.quantize(adversarial["cifar10"]["FGSM 8/255"][:6])
slider_qualities = [100, 90, 75, 50, 25, 10]


def labels_for(images):
    predicted = train.predict(model, images).argmax(1)
    return [classes[p] + ("" if p == t else " ✗") for p, t in zip(predicted, y6)]


def quality_figure(quality):
    compressed = jpeg.jpeg(adv6, quality)
    return plots.image_grid([x6, adv6, compressed],
                            row_labels=["clean", "FGSM 8/255", f"JPEG {quality}"],
                            titles=[labels_for(x6), labels_for(adv6), labels_for(compressed)],
                            scale=1.3, suptitle=f"quality {quality}")


plots.slider_gallery([quality_figure(q) for q in slider_qualities], "quality",
                     labels=[str(q) for q in slider_qualities])
"""),
    code("""
chapter = "04_jpeg_defense"
for name in names:
    for row in ["clean", *attack_names]:
        for defense in ("float", "8-bit", "JPEG 75", "JPEG 50", "JPEG 10"):
            helpers.results.record(chapter, helpers.results.result_key(name, row, defense),
                                   tables[name][row][defense])
helpers.results.record(chapter, "largest_seed_spread_accuracy", noise["level"])
helpers.results.record(chapter, "largest_seed_spread_gain", noise["gain"])
"""),
    md("""
## Summary

* JPEG keeps brightness over colour and coarse over fine detail; at quality 75 most 8x8 DCT
  coefficients of these small images are rounded to zero.
* Compression does not remove an attack's perturbation (what is left is larger and still fine
  detail); it scrambles its direction, and direction is what makes a perturbation adversarial.
* Against DeepFool, JPEG 75 restores most of the accuracy, but rounding the adversarial image to
  8 bits, which any image file does, restores the larger part of it. Against FGSM JPEG's gain
  is its own, partial, and bought with clean accuracy on every input.
* At the same clean-accuracy cost JPEG beats a blur and bit-depth reduction on CIFAR-10 and
  ties with a blur on GTSRB: a good smoother, not a unique one.
* The cost is a distribution shift. Chapter 5 removes it by training on compressed images.
"""),
]

if __name__ == "__main__":
    print(write_notebook("04_jpeg_defense.ipynb", cells))
