"""Measure Chapter 5's seed-to-seed noise: its comparisons for two control seeds.

Run once per profile (quick: about 10 minutes on 2 CPU cores, most of it training)::

    LESSON_PROFILE=quick python tools/seed_noise_ch5.py

For control seeds 1 (the chapter's) and 2, on the same test images and the same attacks (made
on the original, seed-0 model, as in the chapter): the control, the sham and the vaccinated
models, each behind JPEG at every quality of the profile. Records
``lessondata/results/<profile>/05_vaccination_seeds.json``; Chapter 5 sizes its claims by it.
"""

from __future__ import annotations

import helpers
from helpers import attacks, evaluate, results, transforms, vaccination, zoo

CHAPTER = "05_vaccination_seeds"
SEEDS = (1, 2)


def main() -> None:
    profile, device = helpers.start("Chapter 5 seed-to-seed noise")
    for name in ("cifar10", "gtsrb"):
        x, y = helpers.data.load(name, "test", n=profile.test_size).to(device)
        original = zoo.classifier(name, profile)
        adversarial = {attack: attacks.quantize(adv) for attack, adv
                       in attacks.standard_attacks(original, x, y).items()}
        for seed in SEEDS:
            candidates = {"control": vaccination.control(name, profile, seed=seed),
                          "sham": vaccination.vaccinated(name, None, profile, seed=seed)}
            for quality in profile.vaccine_qualities:
                defense = {f"JPEG {quality}": transforms.jpeg_at(quality)}
                models = {**candidates, "vaccinated": vaccination.vaccinated(name, quality, profile,
                                                                             seed=seed)}
                for kind, model in models.items():
                    table = evaluate.accuracy_table(model, x, y, adversarial, defense)
                    for attack, row in table.items():
                        key = results.result_key(name, f"seed{seed}", kind, f"q{quality}",
                                                 attack)
                        results.record(CHAPTER, key, row[f"JPEG {quality}"], profile)
                    print(name, seed, quality, kind,
                          {a: f"{r[f'JPEG {quality}']:.3f}" for a, r in table.items()})


if __name__ == "__main__":
    main()
