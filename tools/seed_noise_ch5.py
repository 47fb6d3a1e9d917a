"""Measure Chapter 5's seed-to-seed noise, and Das et al.'s ensemble with diverse members.

Run once per profile (quick: about 12 minutes on 2 CPU cores, most of it training)::

    LESSON_PROFILE=quick python tools/seed_noise_ch5.py

For control seeds 1 (the chapter's) and 2, on the same test images and the same attacks (made
on the original, seed-0 model, as in the chapter): the control, the sham and the vaccinated
models, each behind JPEG at every quality of the profile. Then the ensemble two ways: members
that share the seed-1 control (the chapter's), and diverse members, each vaccinated from a
control of its own (:func:`helpers.vaccination.diverse_members`: seeds 1, 2, 3, ...), with
the best single member of each. Records ``lessondata/results/<profile>/05_vaccination_seeds.json``;
Chapter 5 sizes its claims by it and reports the diverse ensemble from it (a control model per
quality is more training than the chapter's budget).
"""

from __future__ import annotations

import helpers
from helpers import attacks, evaluate, results, train, transforms, vaccination, zoo

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
        qualities = profile.vaccine_qualities
        ensembles = {"shared": {q: vaccination.vaccinated(name, q, profile) for q in qualities},
                     "diverse": vaccination.diverse_members(name, qualities, profile)}
        for kind, members in ensembles.items():
            for images, adv in {"clean": x, **adversarial}.items():
                voted = vaccination.ensemble_predict(members, adv)
                key = results.result_key(name, "ensemble", kind, images)
                results.record(CHAPTER, key, (voted == y).float().mean().item(), profile)
                best = max(train.evaluate(m, adv, y, transform=transforms.jpeg_at(q))
                           for q, m in members.items())
                results.record(CHAPTER, results.result_key(name, "best-member", kind, images),
                               best, profile)
                print(name, kind, images, f"{(voted == y).float().mean().item():.3f}",
                      f"best member {best:.3f}")


if __name__ == "__main__":
    main()
