"""helpers.evaluate: every attack against every defense, on the same images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import attacks, evaluate, zoo
from helpers.results import wilson_interval
from tests.course_models import as_a_chapter_would

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


def test_success_table_does_not_charge_the_defenses_own_mistakes_to_the_attack():
    """Five images; the bare model misclassifies the last. The 'grey' defense maps every image
    to class 0, so it is right on the two class-0 clean images only: conditioned on those,
    an attack cannot fool it (0%), while counted over every image the bare model gets right
    it 'succeeds' on the class-1 images it never got right (2 of 4)."""
    images = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.7]).view(5, 1, 1, 1).expand(5, 1, 4, 4)
    images = images.clone()
    labels = torch.tensor([0, 0, 1, 1, 0])
    sets = {"clean": images, "flip": 1 - images, "none": images.clone()}
    predicted = evaluate.predicted_labels(
        _SignOfMean(), sets, {"bare": None, "grey": lambda x: torch.full_like(x, 0.25)})
    assert predicted[("flip", "bare")].tolist() == [1, 1, 0, 0, 0]
    assert evaluate.accuracies(predicted, labels) == evaluate.accuracy_table(
        _SignOfMean(), images, labels, {"flip": sets["flip"], "none": sets["none"]},
        {"bare": None, "grey": lambda x: torch.full_like(x, 0.25)})
    table = evaluate.success_table(predicted, labels, bare="bare")
    bare, grey = table.xs("bare", level="defense"), table.xs("grey", level="defense")
    assert bare.loc["flip", "success"] == 1.0 and bare.loc["none", "success"] == 0.0
    assert bare.loc["flip", "images"] == bare.loc["flip", "images (all)"] == 4
    assert grey.loc["flip", "success"] == 0.0 and grey.loc["flip", "images"] == 2
    assert grey.loc["flip", "success (all)"] == 0.5 and grey.loc["flip", "images (all)"] == 4
    assert set(table.index.get_level_values("attack")) == {"flip", "none"}
    with pytest.raises(ValueError, match="shape"):
        evaluate.predicted_labels(_SignOfMean(), {"clean": images, "bad": images[:2]},
                                  {"none": None})
    with pytest.raises(KeyError, match="clean"):
        evaluate.success_table(predicted, labels, bare="float")


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


@pytest.fixture(scope="module")
def quick_gtsrb(data_dir):
    """The quick profile's GTSRB classifier, Chapter 2's (about 25 s on 2 cores when the
    course's cache does not hold it yet)."""
    from helpers import profiles

    with as_a_chapter_would():
        return zoo.classifier("gtsrb", profile=profiles.get_profile("quick"),
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



class _Trained(nn.Module):
    """A stand-in for a cached model: only its recorded training time matters here."""

    def __init__(self, seconds: float):
        super().__init__()
        self.train_info = {"train_seconds": seconds}


def test_adaptive_scoreboard_takes_the_strongest_adaptive_attack_and_counts_costs():
    eps, other_eps = 8 / 255, 4 / 255
    accuracy = {
        ("a", "none", "PGD-10", eps): 0.05,
        ("a", "JPEG", "oblivious", eps): 0.40,
        ("a", "JPEG", "PGD-10, BPDA identity", eps): 0.35,
        ("a", "JPEG", "PGD-10, BPDA cubic", eps): 0.10,
        ("a", "JPEG", "PGD-10, BPDA cubic", other_eps): 0.01,  # other eps
        ("b", "JPEG", "PGD-10, BPDA identity", eps): 0.50,     # other data set
        ("a", "vaccinated", "oblivious", eps): 0.70,
        ("a", "vaccinated", "PGD-10, BPDA cubic", eps): 0.08,
    }
    control, vaccine = _Trained(100.0), _Trained(30.0)
    clean = {("none", "a"): 0.9, ("JPEG", "a"): 0.85, ("vaccinated", "a"): 0.88}
    extra = {("none", "a"): [], ("JPEG", "a"): [],
             ("vaccinated", "a"): [control, vaccine, control]}    # control counted once
    board = evaluate.adaptive_scoreboard(accuracy, eps, 200, clean, extra)
    assert list(board.index) == [("none", "a"), ("JPEG", "a"), ("vaccinated", "a")]
    jpeg_row = board.loc[("JPEG", "a")]
    assert jpeg_row["clean"] == 0.85 and jpeg_row["oblivious"] == 0.40
    assert jpeg_row["adaptive"] == 0.10
    assert (jpeg_row["adaptive low"], jpeg_row["adaptive high"]) == wilson_interval(0.1, 200)
    assert jpeg_row["strongest adaptive attack"] == "PGD-10, BPDA cubic"
    assert jpeg_row["models to train"] == 0 and jpeg_row["their training (s)"] == 0
    none_row = board.loc[("none", "a")]                # nothing to be oblivious of
    assert none_row["oblivious"] == none_row["adaptive"] == 0.05
    vaccinated_row = board.loc[("vaccinated", "a")]
    assert vaccinated_row["models to train"] == 2
    assert vaccinated_row["their training (s)"] == 130.0
    # the numbers follow the measurements
    accuracy[("a", "JPEG", "PGD-10, BPDA identity", eps)] = 0.03
    board = evaluate.adaptive_scoreboard(accuracy, eps, 200, clean, extra)
    assert board.loc[("JPEG", "a"), "adaptive"] == 0.03
    assert board.loc[("JPEG", "a"), "strongest adaptive attack"] == "PGD-10, BPDA identity"


def test_wilson_interval_covers_zero_and_matches_the_textbook_case():
    """0 of 200: (0, 1.88%); 10 of 100: (5.52%, 17.44%) (Wilson 1927; Newcombe 1998)."""
    low, high = wilson_interval(0.0, 200)
    assert low == 0 and high == pytest.approx(0.0188, abs=1e-4)
    low, high = wilson_interval(0.1, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson_interval(1.0, 50)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(1.5, 10)


def test_adaptive_scoreboard_refuses_a_defense_without_an_adaptive_attack():
    accuracy = {("a", "JPEG", "oblivious", 8 / 255): 0.4}
    with pytest.raises(KeyError, match="no adaptive attack on 'JPEG'"):
        evaluate.adaptive_scoreboard(accuracy, 8 / 255, 200, {("JPEG", "a"): 0.9},
                                     {("JPEG", "a"): []})
