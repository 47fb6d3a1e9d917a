"""Measure Chapter 4's seed-to-seed noise: its key numbers for classifiers trained with 3 seeds.

Run once per profile (quick: about 6 minutes on 2 CPU cores, most of it training)::

    LESSON_PROFILE=quick python tools/seed_noise_ch4.py

Records ``lessondata/results/<profile>/04_jpeg_defense_seeds.json``; Chapter 4 reads it and
asserts only gaps clearly larger than the spread between seeds. Same test images for every
seed; each seed's model is attacked with its own gradients.
"""

from __future__ import annotations

import helpers
from helpers import attacks, evaluate, images, jpeg, results, zoo

CHAPTER = "04_jpeg_defense_seeds"
SEEDS = (0, 1, 2)
DEFENSES = {"float": None, "8-bit": attacks.quantize, "JPEG 75": lambda x: jpeg.jpeg(x, 75)}


def main() -> None:
    profile, device = helpers.start("Chapter 4 seed-to-seed noise")
    for name in ("cifar10", "gtsrb"):
        x, y = helpers.data.load(name, "test", n=profile.test_size).to(device)
        x = images.as_float(x)
        for seed in SEEDS:
            model = zoo.classifier(name, profile, seed=seed)
            adversarial = attacks.standard_attacks(model, x, y)
            table = evaluate.accuracy_table(model, x, y, adversarial, DEFENSES)
            for attack, row in table.items():
                for defense, accuracy in row.items():
                    key = results.result_key(name, f"seed{seed}", attack, defense)
                    results.record(CHAPTER, key, accuracy, profile)
            print(name, seed, {a: {d: f"{v:.3f}" for d, v in r.items()} for a, r in table.items()})


if __name__ == "__main__":
    main()
