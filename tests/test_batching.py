"""helpers.batching: every attack, prediction and detector score runs in memory-bounded chunks,
and the chunks give exactly what one call on all the images gives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import adaptive, attacks, batching, defenses, train

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model(torch.rand(64, 3, 8, 8))
    return model.eval()


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(23, 3, 8, 8, generator=generator),
            torch.randint(0, 10, (23,), generator=generator))


def test_budget_from_the_setting_or_the_device(monkeypatch):
    monkeypatch.delenv(batching.BATCH_ENV, raising=False)
    assert batching.images_per_pass("cpu") == batching.CPU_IMAGES
    monkeypatch.setenv(batching.BATCH_ENV, "7")
    assert batching.images_per_pass("cpu") == 7
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv(batching.BATCH_ENV, bad)
        with pytest.raises(ValueError, match=batching.BATCH_ENV):
            batching.images_per_pass("cpu")


def test_models_with_several_passes_get_smaller_chunks(monkeypatch):
    monkeypatch.setenv(batching.BATCH_ENV, "64")
    model = _model()
    eot = adaptive.EOT(model, samples=4)
    ensemble = adaptive.Ensemble([model, _model(1)])
    assert batching.forward_passes(model) == 1 and batching.chunk_size(model, "cpu") == 64
    assert batching.forward_passes(eot) == 4 and batching.chunk_size(eot, "cpu") == 16
    assert batching.forward_passes(adaptive.EOT(ensemble, samples=4)) == 8
    assert batching.chunk_size(adaptive.EOT(model, samples=100), "cpu") == 1


def test_in_chunks_cuts_every_per_image_tensor_alike():
    x, y = torch.arange(10.0), torch.arange(10) * 2
    seen = []

    def run(a, b):
        seen.append(len(a))
        assert torch.equal(b, a.long() * 2)
        return a + 1

    assert torch.equal(batching.in_chunks(run, 4, x, y), x + 1)
    assert seen == [4, 4, 2]
    with pytest.raises(ValueError, match="chunk size"):
        batching.in_chunks(run, 0, x, y)


def test_in_chunks_concatenates_each_part_of_a_tuple():
    x = torch.arange(10.0)
    pair = batching.in_chunks(lambda a: (a + 1, a[:, None].repeat(1, 2) > 4), 3, x)
    assert isinstance(pair, tuple) and torch.equal(pair[0], x + 1)
    assert pair[1].shape == (10, 2) and torch.equal(pair[1][:, 0], x > 4)


ATTACKS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 8 / 255),
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, 8 / 255, steps=3, quantize=True,
                                       generator=torch.Generator().manual_seed(1)),
    "deepfool": lambda m, x, y: attacks.deepfool(m, x, y, steps=5),
    "apgd": lambda m, x, y: attacks.apgd(m, x, y, 8 / 255, steps=5,
                                         generator=torch.Generator().manual_seed(1)),
    "carlini_wagner": lambda m, x, y: attacks.carlini_wagner(m, x, y, steps=5,
                                                             binary_search_steps=2),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_in_chunks_equal_one_call(name, images, monkeypatch):
    model = _model()
    monkeypatch.setenv(batching.BATCH_ENV, "1000")
    whole = ATTACKS[name](model, *images)
    monkeypatch.setenv(batching.BATCH_ENV, "5")  # 23 images: chunks of 5, 5, 5, 5, 3
    chunked = ATTACKS[name](model, *images)
    if name in ("deepfool", "apgd"):  # they re-batch the images still correct at every
        # step, and a convolution over another number of images may round its last bit
        # differently
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    else:
        assert torch.equal(chunked, whole)


def test_the_random_start_is_drawn_as_by_one_call(images, monkeypatch):
    """PGD with no steps returns its random start: chunks draw the same numbers in order."""
    model = _model()
    starts = []
    for size in ("1000", "4"):
        monkeypatch.setenv(batching.BATCH_ENV, size)
        starts.append(attacks.pgd(model, *images, 8 / 255, alpha=0.0, steps=1,
                                  generator=torch.Generator().manual_seed(3)))
    assert torch.equal(*starts)


def test_predict_and_scores_in_chunks_equal_one_call(images, monkeypatch):
    model, ae = _model(), nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Sigmoid()).eval()
    x, _ = images
    outputs = []
    for size in ("1000", "6"):
        monkeypatch.setenv(batching.BATCH_ENV, size)
        outputs.append((train.predict(model, x), defenses.reconstruction_error(ae, x),
                        defenses.divergence_score(model, ae, x, 10.0)))
    for a, b in zip(*outputs, strict=True):
        assert torch.equal(a, b)


def test_a_call_with_wrong_labels_still_says_so(images):
    x, y = images
    with pytest.raises(ValueError, match="one label per image"):
        attacks.fgsm(_model(), x, y[:-1], 8 / 255)


def test_saved_bytes_per_image_counts_what_the_backward_pass_keeps():
    """Flatten + ReLU on D pixels: ReLU keeps its output (4D bytes an image), cross-entropy
    keeps its log-softmax (4D) and the labels (8 bytes an image), plus a scalar or two."""
    d, n = 3 * 8 * 8, 16
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    x, y = torch.rand(n, 3, 8, 8), torch.randint(0, d, (n,))
    measured = batching.saved_bytes_per_image(model, x, y)
    assert 8 * d + 8 <= measured <= 8 * d + 8 + 16 / n
    # parameters are not activations: a linear layer's weight is not counted
    linear = nn.Sequential(nn.Flatten(), nn.Linear(d, 10))
    assert batching.saved_bytes_per_image(linear, x, y % 10) < 4 * d + 4 * 10 + 64
