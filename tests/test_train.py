"""helpers.train: batch augmentation, fitting and evaluation, and the trained-model cache."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import data, models, train, transforms
from helpers.device import gradient_scaler, seed_everything

pytestmark = pytest.mark.usefixtures("single_thread")

# ---------------------------------------------------------------------------------------------
# fit, predict, evaluate
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_small(data_dir):
    train_set = data.load("mnist", "train", n=2000)
    test_set = data.load("mnist", "test", n=500)
    return train_set, test_set


def test_fit_learns_mnist(mnist_small, single_thread):
    train_set, test_set = mnist_small
    x, y = train_set.to("cpu")
    seed_everything(0)
    model = models.mnist_classifier()
    history = train.fit(model, x, y, epochs=2, batch_size=50, lr=3e-3, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert 0 <= history[0]["train_accuracy"] <= history[1]["train_accuracy"] <= 1
    assert not model.training  # fit leaves the model ready for evaluation
    accuracy = train.evaluate(model, *test_set.to("cpu"))
    assert accuracy > 0.80, f"held-out accuracy {accuracy:.3f} after 2 epochs on 2000 images"


def _small_cifar_net() -> nn.Module:
    return models.cifar_classifier(10, widths=(8, 16, 16))


def _fit_once(x, y, seed=0, augment=None):
    seed_everything(seed)
    model = _small_cifar_net()
    history = train.fit(model, x, y, epochs=2, batch_size=32, lr=3e-3, augment=augment,
                        seed=seed, progress=False)
    return model, history


def test_cpu_fit_repeats_exactly(cifar_test, single_thread):
    x, y = cifar_test[0][:128], cifar_test[1][:128]
    a, history_a = _fit_once(x, y, augment=transforms.random_crop_flip)
    b, history_b = _fit_once(x, y, augment=transforms.random_crop_flip)
    assert history_a == history_b
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    c, _ = _fit_once(x, y, seed=1, augment=transforms.random_crop_flip)
    assert not torch.equal(c.state_dict()["1.weight"], state_a["1.weight"])


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_fit_returns_float32_weights_in_channels_last_layout(cifar_test, monkeypatch,
                                                             precision):
    """fit trains in channels-last layout, maybe in bfloat16 or float16 (then with its loss
    scaled, as on a T4); the weights stay float32."""
    monkeypatch.setenv("LESSON_PRECISION", precision)
    scalers = []

    def spy(device, dtype):
        scalers.append(gradient_scaler(device, dtype))
        return scalers[-1]

    monkeypatch.setattr(train, "gradient_scaler", spy)
    model, history = _fit_once(cifar_test[0][:64], cifar_test[1][:64])
    assert [s.is_enabled() for s in scalers] == [precision == "float16"]
    assert history[-1]["loss"] == history[-1]["loss"]  # not NaN
    for name, p in model.state_dict().items():
        assert p.dtype in (torch.float32, torch.int64), (name, p.dtype)
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last), name


def test_mixed_precision_training_learns_as_well_as_float32(mnist_small, monkeypatch):
    """Mixed precision is a speed-up, not another result: on the same data, seed and
    schedule, bfloat16 and float16 (loss-scaled) reach float32's held-out accuracy within 3
    points."""
    train_set, test_set = mnist_small
    accuracy = {}
    for precision in ("float32", "bfloat16", "float16"):
        monkeypatch.setenv("LESSON_PRECISION", precision)
        seed_everything(0)
        model = models.mnist_classifier()
        train.fit(model, *train_set.to("cpu"), epochs=2, batch_size=50, lr=3e-3,
                  progress=False)
        accuracy[precision] = train.evaluate(model, *test_set.to("cpu"))
    assert accuracy["float32"] > 0.8, accuracy
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) < 0.03, accuracy
    assert abs(accuracy["float16"] - accuracy["float32"]) < 0.03, accuracy


def test_fit_randomness_comes_from_its_seed(cifar_test):
    """Batch order and augmentation follow ``seed``, not whatever the global RNG holds."""
    x, y = cifar_test[0][:96], cifar_test[1][:96]
    torch.manual_seed(0)
    start = _small_cifar_net()
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    torch.manual_seed(1)
    train.fit(a, x, y, epochs=2, batch_size=32, lr=3e-3, augment=transforms.random_crop_flip,
              seed=5, progress=False)
    torch.manual_seed(2)
    train.fit(b, x, y, epochs=2, batch_size=32, lr=3e-3, augment=transforms.random_crop_flip,
              seed=5, progress=False)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_fit_takes_uint8_like_float(single_thread):
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (96,))
    from_uint8, _ = _fit_once(images, labels)
    from_float, _ = _fit_once(images.float() / 255, labels)
    for a, b in zip(from_uint8.state_dict().values(), from_float.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_fit_applies_transform_and_augment_to_every_batch():
    seen = {"augment": 0, "transform": 0}

    def augment(batch, generator):
        assert isinstance(generator, torch.Generator)
        seen["augment"] += len(batch)
        return batch

    def transform(batch):
        seen["transform"] += len(batch)
        return batch

    x, y = torch.rand(50, 3, 32, 32), torch.randint(0, 10, (50,))
    train.fit(_small_cifar_net(), x, y, epochs=2, batch_size=16, lr=1e-3, augment=augment,
              transform=transform, progress=False)
    assert seen == {"augment": 100, "transform": 100}  # every image, every epoch, once


@pytest.mark.parametrize("total_steps", [1, 2, 3, 5, 8])
def test_fit_runs_for_short_schedules(total_steps):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(total_steps * 2, 3, 2, 2), torch.randint(0, 3, (total_steps * 2,))
    history = train.fit(model, x, y, epochs=1, batch_size=2, lr=1e-2, progress=False)
    assert len(history) == 1


@pytest.mark.parametrize(("n_images", "epochs", "batch_size"), [(4, 1, 1), (64, 2, 32)])
def test_fit_with_exactly_four_steps(n_images, epochs, batch_size):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(n_images, 3, 2, 2), torch.randint(0, 3, (n_images,))
    history = train.fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=1e-2,
                        progress=False)
    assert len(history) == epochs


@pytest.mark.parametrize(("n_images", "n_labels"), [(10, 9), (0, 0)])
def test_fit_rejects_mismatched_or_empty_data(n_images, n_labels):
    with pytest.raises(ValueError, match="equally many"):
        train.fit(_small_cifar_net(), torch.rand(n_images, 3, 32, 32),
                  torch.zeros(n_labels, dtype=torch.long), epochs=1, batch_size=4, lr=1e-3,
                  progress=False)


@pytest.mark.parametrize("was_training", [True, False])
def test_predict_and_evaluate_restore_the_mode(mnist_test, was_training):
    x, y = mnist_test
    torch.manual_seed(0)
    model = models.mnist_classifier()  # has dropout: train mode would make outputs random
    model.train(was_training)
    first = train.predict(model, x, batch_size=100)
    assert model.training is was_training
    second = train.predict(model, x, batch_size=37)  # eval mode inside: no dropout noise
    assert torch.allclose(first, second, atol=1e-5)
    accuracy = train.evaluate(model, x, y)
    assert model.training is was_training
    assert accuracy == pytest.approx((first.argmax(1) == y).float().mean().item())


def test_predict_shapes_uint8_and_transform(mnist_test):
    x, y = mnist_test
    torch.manual_seed(0)
    model = models.mnist_classifier().eval()
    logits = train.predict(model, x)
    assert logits.shape == (len(x), 10) and logits.dtype == torch.float32
    as_uint8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(train.predict(model, as_uint8), logits, atol=1e-5)
    inverted = train.predict(model, x, transform=lambda b: 1 - b)
    assert torch.allclose(inverted, train.predict(model, 1 - x), atol=1e-5)
    accuracy = train.evaluate(model, x, y, transform=lambda b: 1 - b)
    assert accuracy == pytest.approx((inverted.argmax(1) == y).float().mean().item())


def test_predict_in_channels_last_layout_gives_the_plain_forward_pass():
    torch.manual_seed(0)
    model = _small_cifar_net().eval()
    x = torch.rand(64, 3, 32, 32)
    with torch.no_grad():
        plain = model(x.contiguous())
    logits = train.predict(model, x, batch_size=20)
    assert torch.allclose(logits, plain, atol=1e-4, rtol=1e-4)
    assert torch.equal(logits.argmax(1), plain.argmax(1))
    assert all(p.is_contiguous() for p in model.parameters())  # the model itself untouched
