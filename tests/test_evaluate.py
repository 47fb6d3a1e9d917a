"""helpers.evaluate: every attack against every defense, on the same images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import attacks, evaluate

pytestmark = pytest.mark.usefixtures("single_thread")


class _SignOfMean(nn.Module):
    """Class 1 when the image's mean is above 0.5, else class 0 (as two logits)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.flatten(1).mean(1) - 0.5 + self.bias
        return torch.stack([-score, score], dim=1) * 100


def test_accuracy_table_known_answers():
    images = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(4, 1, 1, 1).expand(4, 1, 4, 4).clone()
    labels = torch.tensor([0, 0, 1, 1])
    flipped = 1 - images                                        # every prediction flips
    table = evaluate.accuracy_table(
        _SignOfMean(), images, labels, {"flip": flipped},
        {"none": None, "flip back": lambda x: 1 - x, "grey": lambda x: torch.full_like(x, 0.25)})
    assert table["clean"] == {"none": 1.0, "flip back": 0.0, "grey": 0.5}
    assert table["flip"] == {"none": 0.0, "flip back": 1.0, "grey": 0.5}


def test_accuracy_table_refuses_mismatched_shapes():
    images, labels = torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="shape"):
        evaluate.accuracy_table(_SignOfMean(), images, labels, {"bad": images[:2]}, {"none": None})


def test_scoreboard_measures_every_defense_on_every_set_and_counts_rejections():
    images = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(4, 1, 1, 1).expand(4, 1, 4, 4).clone()
    labels = torch.tensor([0, 0, 1, 1])
    model = _SignOfMean()

    def bare(x):
        return model(x).argmax(1), None

    def rejecting_bright(x):            # rejects images brighter than 0.5, still classifies
        return model(x).argmax(1), x.flatten(1).mean(1) > 0.5

    sets = {"clean": (images, labels), "flipped": (1 - images, labels)}
    board = evaluate.scoreboard({"bare": bare, "detector": rejecting_bright}, sets)
    assert board["bare"] == {"clean": 1.0, "flipped": 0.0}
    # clean: a rejected image is a failure (2 of 4 rejected); attacked: a success (2 of 4)
    assert board["detector"] == {"clean": 0.5, "flipped": 0.5}
    # the numbers follow the measurement: change the model, the board changes with it
    with torch.no_grad():
        model.bias.fill_(1.0)                       # now everything is class 1
    assert evaluate.scoreboard({"bare": bare}, sets)["bare"] == {"clean": 0.5, "flipped": 0.5}


def test_standard_attacks_are_fgsm_and_deepfool_on_the_same_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    images, labels = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    adversarial = evaluate.standard_attacks(model, images, labels)
    assert list(adversarial) == ["FGSM 2/255", "FGSM 8/255", "DeepFool"]
    assert torch.equal(adversarial["FGSM 8/255"], attacks.fgsm(model, images, labels, 8 / 255))
    assert torch.equal(adversarial["DeepFool"], attacks.deepfool(model, images, labels,
                                                                 overshoot=0.02))
    for adv in adversarial.values():
        assert adv.shape == images.shape


@pytest.fixture(scope="module")
def quick_gtsrb(data_dir, tmp_path_factory):
    """The quick profile's GTSRB classifier, trained here (about 50 s on 2 cores)."""
    from helpers import profiles, train

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LESSON_CACHE_DIR", str(tmp_path_factory.mktemp("quick-gtsrb")))
        return train.classifier("gtsrb", profile=profiles.get_profile("quick"),
                                device=torch.device("cpu"), progress=False)


def test_jpeg_75_raises_accuracy_on_fgsm_examples_for_a_quick_model(quick_gtsrb):
    from helpers import data, jpeg

    x, y = data.load("gtsrb", "test", n=500).to("cpu")
    adversarial = {"FGSM 2/255": attacks.fgsm(quick_gtsrb, x, y, 2 / 255, quantize=True)}
    table = evaluate.accuracy_table(quick_gtsrb, x, y, adversarial,
                                    {"none": None, "JPEG 75": lambda z: jpeg.jpeg(z, 75)})
    # measured on 1,000 images and 3 seeds: +12 points (seed spread 3); 5 is far from both
    assert table["FGSM 2/255"]["JPEG 75"] > table["FGSM 2/255"]["none"] + 0.05, table
    assert table["clean"]["JPEG 75"] < table["clean"]["none"] + 0.01, table  # no free lunch
