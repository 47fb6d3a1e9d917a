"""Source of book/01_distribution_shift.ipynb. Regenerate, then execute with helpers.publish."""

from nbtools import check, code, md, write_notebook

cells = [
    md("""
# 1. Distribution shift: a model is frozen to its training data

A trained classifier is a snapshot. It learned whatever separated the classes in the images it
was shown, and it keeps applying that rule to whatever arrives after deployment, long after its
trainers stopped controlling the inputs. A model trained on early-2000s flip phones has never
seen a smartphone. When the world drifts away from the training data, accuracy drops, and the
usual remedy is to collect new data and retrain.

This chapter makes that argument with real models and real numbers. We train an MNIST and a
CIFAR-10 classifier, then feed them the *same* test images after natural changes: rotation,
blur, noise, lower contrast, brighter exposure, inverted colours, and JPEG compression. Keep an
eye on the last one. In Chapter 4 we will use JPEG as a *defense*, and this chapter already shows
its price: compression is itself a shift.
"""),
    code("""
import matplotlib.pyplot as plt
import pandas as pd
import torch

import helpers
from helpers import plots, shifts, train

profile, device = helpers.start("Chapter 1: distribution shift")
"""),
    md("""
## Two models, trained on clean images

`helpers.train.classifier` trains the course's classifier for a dataset with the active
profile's recipe, or loads it from the model cache if an identical one was trained before (later
chapters reuse these same models). MNIST gets the small convolutional network MagNet used;
CIFAR-10 gets a compact network in the style of airbench (BatchNorm, on-device data, batched
augmentation). The test images below are a fixed subset whose size the profile sets.
"""),
    code("""
mnist_model = train.classifier("mnist")
cifar_model = train.classifier("cifar10")

test_sets = {name: helpers.data.load(name, "test", n=profile.test_size)
             for name in ("mnist", "cifar10")}
tests = {name: s.to(device) for name, s in test_sets.items()}
models = {"mnist": mnist_model, "cifar10": cifar_model}
clean = {name: train.evaluate(models[name], *tests[name]) for name in models}
for name, model in models.items():
    print(f"{name:8s} clean test accuracy {clean[name]:.1%} on {len(tests[name][1])} images "
          f"(trained in {model.train_info['train_seconds']:.0f} s on "
          f"{model.train_info['device']})")
"""),
    check("""
# The claims below compare shifted accuracy with these clean numbers; they need working models.
assert clean["mnist"] > 0.90, clean
assert clean["cifar10"] > 0.60, clean
"""),
    md("""
## What the shifts look like

Every shift comes at three severities. Each is a plausible change in how images are captured or
stored, not an attack: a tilted camera, a lens out of focus, a noisy sensor, fog, overexposure, a
negative, and heavier and heavier JPEG compression. A person reads almost all of these images
without effort.
"""),
    code("""
one_image = tests["cifar10"][0][:1]
rows = [torch.cat([one_image] + [shifts.apply_shift(one_image, name, s) for s in (1, 2, 3)])
        for name in shifts.SHIFTS]
titles = [["clean"] + [f"{unit.split(' (')[0]} {p}" if name != "inversion" else "" for p in params]
          for name, (_, params, unit) in shifts.SHIFTS.items()]
plots.image_grid(rows, row_labels=list(shifts.SHIFTS), titles=titles, scale=1.4,
                 suptitle="One CIFAR-10 test image under each shift (severity 1 to 3)")
plt.show()
"""),
    md("""
## How much each shift costs

We evaluate both models on every shift and severity, always on the same test images. The table
lists accuracy in percent; the charts show how it falls as the shift gets stronger.
"""),
    code("""
shifted = {name: shifts.accuracy_under_shifts(models[name], *tests[name]) for name in models}
table = pd.concat({name: pd.DataFrame(acc, index=["clean", "sev. 1", "sev. 2", "sev. 3"]).T
                   for name, acc in shifted.items()}, axis=1)
(100 * table).round(1)
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, (name, acc) in zip(axes, shifted.items()):
    plots.line_chart([0, 1, 2, 3], acc, xlabel="severity (0 = clean)", ax=ax,
                     title=f"{name}: accuracy under natural shifts")
fig.tight_layout()
plt.show()
"""),
    code("""
drop = {name: {s: acc[s][0] - acc[s][3] for s in acc} for name, acc in shifted.items()}
for name in models:
    worst = max(drop[name], key=drop[name].get)
    print(f"{name}: the most damaging severe shift is {worst} "
          f"(-{100 * drop[name][worst]:.0f} points); "
          f"mean drop at severity 3: {100 * sum(drop[name].values()) / len(drop[name]):.0f} points")
"""),
    md("""
What the numbers show:

* **CIFAR-10 suffers from every shift, and more the stronger it is.** Even changes a person
  shrugs off, such as a little blur or lower contrast, cost many points.
* **MNIST is robust to some shifts and fragile to others.** Its digits are thick, high-contrast
  strokes on a black background, so blur, pixel noise and JPEG barely matter. Rotation and
  overexposure do, and inverted colours (black digits on white) break it completely: nothing in
  training looked like a negative.
* **Which shifts hurt depends on the data, not on how strange the images look to us.**

A model does not understand "a cat, but blurry". It learned statistics of the training images,
and an input whose statistics differ is, to the model, simply unfamiliar.
"""),
    check("""
graded = [s for s in shifts.SHIFTS if s != "inversion"]  # inversion has one strength
for s in graded:  # CIFAR-10: every graded shift hurts, and severe hurts more than mild
    acc = shifted["cifar10"][s]
    assert acc[3] < acc[1] - 0.05 and acc[3] < acc[0] - 0.10, (s, acc)
assert shifted["cifar10"]["blur"][1] < clean["cifar10"] - 0.05  # even mild blur costs points
m = shifted["mnist"]
for s in ("blur", "noise", "jpeg"):  # MNIST shrugs these off ...
    assert m[s][3] > m[s][0] - 0.05, (s, m[s])
assert m["rotation"][3] < m["rotation"][0] - 0.20, m["rotation"]  # ... but not rotation
assert m["brightness"][3] < m["brightness"][0] - 0.10, m["brightness"]  # or overexposure
for name in models:
    assert shifted[name]["inversion"][3] < 0.5 * clean[name], (name, shifted[name]["inversion"])
"""),
    md("""
## JPEG compression is a shift too

JPEG throws away detail it predicts we will not miss: fine colour variation and high spatial
frequencies. The models, however, were trained on lossless images and did use some of that
detail. Here is accuracy against JPEG quality (100 is nearly lossless, 10 is heavily
compressed), on the same test images.
"""),
    code("""
qualities = [100, 90, 75, 50, 30, 10]
jpeg_acc = {name: [train.evaluate(models[name], helpers.jpeg.jpeg(tests[name][0], q),
                                  tests[name][1]) for q in qualities] for name in models}
ax = plots.line_chart(qualities, jpeg_acc, xlabel="JPEG quality",
                      title="Clean accuracy after JPEG compression")
ax.invert_xaxis()
plt.show()
for name in models:
    print(f"{name}: lossless {clean[name]:.1%}, quality 75 {jpeg_acc[name][2]:.1%}, "
          f"quality 10 {jpeg_acc[name][-1]:.1%}")
"""),
    md("""
For CIFAR-10, light compression costs little and heavy compression is not: at quality 10 the
model loses many points on images that are still perfectly recognisable. (MNIST's bold strokes
survive even quality 10.) Chapter 4 will compress
adversarial images to clean them, and this cost comes with the cleaning. Chapter 5 tries to remove
it by training on compressed images, the same remedy this chapter turns to next.
"""),
    check("""
c = jpeg_acc["cifar10"]
assert c[-1] < clean["cifar10"] - 0.10, (c, clean)        # quality 10 costs > 10 points
assert c[-1] < c[2] - 0.05, c                             # and more than quality 75 does
assert abs(c[0] - clean["cifar10"]) < 0.02, (c, clean)    # quality 100 is nearly free
assert jpeg_acc["mnist"][-1] > clean["mnist"] - 0.03, jpeg_acc["mnist"]  # MNIST survives q10
"""),
    md("""
## The usual remedy: train on the new data

When the deployment data drifts, the standard fix is to gather examples of the new conditions
and train on them. We fine-tune each model for a few epochs on its *training* images, half of
each batch left clean and half passed through a random shift at a random severity, then measure
it again on the same test images as before. The fine-tuned model is cached like any other.
"""),
    code("""
def finetuned(dataset: str, base: torch.nn.Module) -> torch.nn.Module:
    recipe = profile.recipe(dataset)
    augment = train.augmentation_for(dataset)

    def augment_and_shift(x, generator):
        x = augment(x, generator) if augment else x
        return shifts.random_shift(x, generator)

    def fit(model):
        model.load_state_dict(base.state_dict())
        train_set = helpers.data.load(dataset, "train", n=recipe.train_size)
        return train.fit(model, train_set.images.to(device), train_set.labels.to(device),
                         epochs=profile.finetune_epochs, batch_size=recipe.batch_size,
                         lr=recipe.lr / 3, augment=augment_and_shift,
                         label_smoothing=recipe.label_smoothing,
                         desc=f"{dataset}: fine-tuning on shifted images")

    key = {"dataset": dataset, "model": "finetuned-on-shifts", "profile": profile.name,
           "transform": "random-shift", "seed": 0, "base": base.train_info["key"],
           "epochs": profile.finetune_epochs}
    return train.cached_model(key, lambda: train.make_classifier(dataset, profile), fit, device)


adapted = {name: finetuned(name, models[name]) for name in models}
adapted_acc = {name: shifts.accuracy_under_shifts(adapted[name], *tests[name])
               for name in models}
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, name in zip(axes, models):
    names = list(shifted[name])
    plots.bar_chart(["clean"] + names,
                    {"original model": [clean[name]] + [shifted[name][s][3] for s in names],
                     "fine-tuned on shifts": [adapted_acc[name]["blur"][0]]
                     + [adapted_acc[name][s][3] for s in names]},
                    title=f"{name}: severity 3, before and after fine-tuning", ax=ax)
fig.tight_layout()
plt.show()

recovered = {}
for name in models:
    before = sum(shifted[name][s][3] for s in shifted[name]) / len(shifted[name])
    after = sum(adapted_acc[name][s][3] for s in shifted[name]) / len(shifted[name])
    recovered[name] = (after - before) / (clean[name] - before)
    print(f"{name}: mean severe-shift accuracy {before:.1%} -> {after:.1%}; "
          f"{recovered[name]:.0%} of the drop recovered; clean accuracy "
          f"{clean[name]:.1%} -> {adapted_acc[name]['blur'][0]:.1%}")
"""),
    md("""
Training on the new conditions wins back a large part of what the shifts took (the printout
says how much), most visibly on the inverted images that were hopeless before, while clean
accuracy barely moves. It does not win back everything: one small network now has to cope with
seven kinds of change at three strengths, after only a few epochs. Still, for *natural* shifts
more representative data is a reliable, well-understood fix.

Chapter 2 is about inputs for which it is not. An adversarial example is not drawn from a new
distribution that we could sample and train on: it is constructed, for *this* model, to be
misclassified, and a new model invites new adversarial examples.
"""),
    check("""
for name in models:
    assert recovered[name] > 0.3, recovered                       # a large part of the drop back
    assert adapted_acc[name]["blur"][0] > clean[name] - 0.03, name  # clean accuracy kept
    assert adapted_acc[name]["inversion"][3] > shifted[name]["inversion"][3] + 0.2, name
"""),
    md("""
## Try it: a severity slider

Move the slider to strengthen every shift at once. Each row is one shift applied to the same six
CIFAR-10 test images; the titles are the original model's predictions (a trailing ✗ marks a
mistake). The pictures are rendered in advance, so the slider also works on the website without
a running kernel.
"""),
    code("""
classes = test_sets["cifar10"].classes
x6, y6 = tests["cifar10"][0][:6], tests["cifar10"][1][:6]


def severity_figure(severity: int) -> plt.Figure:
    rows, titles = [], []
    for name in shifts.SHIFTS:
        x = x6 if severity == 0 else shifts.apply_shift(x6, name, severity)
        pred = train.predict(cifar_model, x).argmax(1)
        rows.append(x)
        titles.append([classes[p] + ("" if p == y else " ✗") for p, y in zip(pred, y6)])
    return plots.image_grid(rows, row_labels=list(shifts.SHIFTS), titles=titles, scale=1.25)


plots.slider_gallery([severity_figure(s) for s in range(4)], "severity",
                     labels=["clean", "1 (mild)", "2", "3 (severe)"])
"""),
    md("""
## What we recorded

The chapter's headline numbers go to `lessondata/results/<profile>/01_distribution_shift.json`,
with the profile, device and date, so runs can be compared and later chapters can cite them.
"""),
    code("""
chapter = "01_distribution_shift"
for name in models:
    helpers.results.record(chapter, f"{name}_clean_accuracy", clean[name])
    helpers.results.record(chapter, f"{name}_jpeg10_accuracy", jpeg_acc[name][-1])
    helpers.results.record(chapter, f"{name}_severe_blur_accuracy", shifted[name]["blur"][3])
    helpers.results.record(chapter, f"{name}_severe_inversion_accuracy",
                           shifted[name]["inversion"][3])
    helpers.results.record(chapter, f"{name}_share_of_drop_recovered_by_finetuning",
                           recovered[name])
pd.Series({k: v["value"] for k, v in helpers.results.load_results(chapter).items()})
"""),
    md("""
## Summary

* A model is frozen to its training distribution: ordinary, harmless-looking changes in the
  inputs cost it many points, and the loss grows with the size of the change.
* JPEG compression is one such change. Any defense that compresses inputs pays this price on
  clean images, unless the model was trained for it (Chapter 5).
* Training on data from the new conditions recovers a large part of the loss. That remedy
  assumes the new inputs come from a distribution we can sample; adversarial examples
  (Chapter 2) do not.
"""),
]

if __name__ == "__main__":
    print(write_notebook("01_distribution_shift.ipynb", cells))
