"""Vaccination (Das et al., 2017): train on JPEG-compressed images, compress the same way at test.

Chapter 4's JPEG defense is a distribution shift for a model that never saw compressed images:
it costs clean accuracy. A *vaccinated* model has been trained on compressed images, so the
compression in front of it is just how its inputs look.

Every comparison here is built so one factor changes at a time:

* the **original** model (seed 0) is the one the oblivious attacker attacks;
* the **control** differs from it only in its training seed (``CONTROL_SEED``): any gain it
  shows on attacks made on the original is the transfer gap, not a defense;
* a **vaccinated** model is a trained model trained further, for ``profile.vaccine_epochs``,
  on JPEG-compressed training images; the **sham** is the same further training on
  uncompressed images, so "more training" is not mistaken for vaccination. Two protocols:
  vaccinate the control (``seed=CONTROL_SEED``, the default: the gain splits into transfer gap
  and vaccination) or the original, attacked model itself (``seed=ORIGINAL_SEED``: what "a
  model re-trained on compressed images" most plainly means; its sham is the comparison);
* ``from_scratch`` trains a model on compressed images from the start (the full profile);
* ``diverse_members`` vaccinates a control of its own at each quality, for an ensemble whose
  members share no base model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch
from torch import nn

from . import jpeg, train, zoo
from .profiles import Profile
from .transforms import jpeg_at

ORIGINAL_SEED = 0  # the original model, the one the oblivious attacker attacks
CONTROL_SEED = 1  # the control: the original recipe with another seed
LR_SCALE = 1 / 3  # further training starts from a trained model: a gentler peak rate


def control(dataset: str, profile: Profile, *, seed: int = CONTROL_SEED,
            device: torch.device | None = None, progress: bool = True) -> nn.Module:
    """The original model's recipe with another seed: the transfer-gap control."""
    if seed == 0:
        raise ValueError("seed 0 is the original model; a control needs another seed")
    return zoo.classifier(dataset, profile, seed=seed, device=device, progress=progress)


def vaccinated(dataset: str, quality: int | None, profile: Profile, *,
               seed: int = CONTROL_SEED, device: torch.device | None = None,
               progress: bool = True) -> nn.Module:
    """The classifier trained with ``seed`` trained ``profile.vaccine_epochs`` more on images
    JPEG-compressed at ``quality``, batch by batch as drawn (``None``: uncompressed, the sham).

    ``seed`` is the base model's: ``CONTROL_SEED`` (the default) vaccinates the control,
    ``ORIGINAL_SEED`` the original model, the one the oblivious attacks are made on.
    """
    base = zoo.classifier(dataset, profile, seed=seed, device=device, progress=progress)
    if quality is None:
        return zoo.finetuned(base, dataset, profile, name="sham-vaccinated",
                             epochs=profile.vaccine_epochs, lr_scale=LR_SCALE, device=device,
                             progress=progress)
    return zoo.finetuned(base, dataset, profile, name="vaccinated",
                         epochs=profile.vaccine_epochs, lr_scale=LR_SCALE,
                         transform=jpeg_at(quality), device=device, progress=progress)


def from_scratch(dataset: str, quality: int, profile: Profile, *, seed: int = CONTROL_SEED,
                 device: torch.device | None = None, progress: bool = True) -> nn.Module:
    """Vaccination from scratch: the original recipe with ``seed``, every training batch
    JPEG-compressed at ``quality`` from the first step."""
    return zoo.classifier(dataset, profile, seed=seed, transform=jpeg_at(quality),
                          device=device, progress=progress)


def diverse_members(dataset: str, qualities: Sequence[int], profile: Profile, *,
                    device: torch.device | None = None, progress: bool = True
                    ) -> dict[int, nn.Module]:
    """An ensemble whose members share no base: the i-th quality's member is a control of its
    own (seed ``CONTROL_SEED + i``) vaccinated at that quality. The first is the control's."""
    return {quality: vaccinated(dataset, quality, profile, seed=CONTROL_SEED + i,
                                device=device, progress=progress)
            for i, quality in enumerate(qualities)}


# ---------------------------------------------------------------------------------------------
# Das et al.'s ensemble, and SHIELD's stochastic local quantization
# ---------------------------------------------------------------------------------------------

def vote(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Majority vote of several models' predictions (one logits tensor per model).

    Each model votes for its top class. The class with the most votes wins; a tie is broken by
    the tied classes' mean softmax probability over all models, so two models that disagree
    are settled by the more confident one.
    """
    if not logits:
        raise ValueError("vote needs the logits of at least one model")
    stacked = torch.stack([lg.float() for lg in logits])  # models x images x classes
    votes = nn.functional.one_hot(stacked.argmax(2), stacked.shape[2]).sum(0)
    mean_probability = stacked.softmax(2).mean(0)  # in [0, 1]: never outweighs one vote
    return (votes + mean_probability * (votes == votes.max(1, keepdim=True).values)).argmax(1)


@torch.no_grad()
def ensemble_predict(members: Mapping[int, nn.Module], images: torch.Tensor) -> torch.Tensor:
    """Das et al.'s ensemble: each model classifies the images compressed at its own quality,
    then they vote (see :func:`vote`). ``members`` maps JPEG quality to vaccinated model.
    """
    return vote([train.predict(model, images, transform=jpeg_at(quality))
                 for quality, model in members.items()])


def stochastic_jpeg(images: torch.Tensor, qualities: Sequence[int],
                    generator: torch.Generator | None = None, block: int = 8,
                    rounding: str | None = None) -> torch.Tensor:
    """SHIELD's stochastic local quantization (Das et al., 2018), batched.

    Every ``block`` x ``block`` tile of every image takes its pixels from the JPEG round trip at
    a quality drawn uniformly from ``qualities``. Luma is coded per 8x8 block, so for luma this
    is what an encoder with a per-block quality would produce; chroma (coded per 16x16 pixels
    at 4:2:0) is an approximation at tile edges.

    ``rounding`` (``"cubic"`` or ``"straight-through"``) swaps the codec for
    :func:`helpers.jpeg.jpeg_differentiable` at each quality: the same tiles drawn from the
    same ``generator``, so an attack differentiates through each block's own drawn quality
    (the per-block approximation an adaptive attack on SHIELD needs), not one fixed quality.
    :func:`stochastic_jpeg_bpda` puts the two together.
    """
    choice = _draw_tiles(images, qualities, generator, block)
    return _assemble_tiles(images, qualities, choice, rounding)


def stochastic_jpeg_bpda(images: torch.Tensor, qualities: Sequence[int],
                         generator: torch.Generator | None = None, block: int = 8,
                         rounding: str = "straight-through") -> torch.Tensor:
    """One SLQ draw for an attacker (BPDA): forward, exactly :func:`stochastic_jpeg`'s output;
    backward, the gradient of its differentiable twin (``rounding``) with the *same* tiles
    drawn, so every block's gradient comes from the quality that block was coded at."""
    choice = _draw_tiles(images, qualities, generator, block)
    exact = _assemble_tiles(images.detach(), qualities, choice, None)
    approximation = _assemble_tiles(images, qualities, choice, rounding)
    return exact + (approximation - approximation.detach())  # value: exact, to the bit


def _draw_tiles(images: torch.Tensor, qualities: Sequence[int],
                generator: torch.Generator | None, block: int) -> torch.Tensor:
    """Per image and pixel, the index into ``qualities`` of its tile's drawn quality."""
    if not qualities:
        raise ValueError("stochastic_jpeg needs at least one quality")
    n, _, h, w = images.shape
    rows, cols = -(-h // block), -(-w // block)
    choice = torch.randint(len(qualities), (n, rows, cols), generator=generator)
    choice = choice.to(images.device).repeat_interleave(block, 1).repeat_interleave(block, 2)
    return choice[:, :h, :w]


def _assemble_tiles(images: torch.Tensor, qualities: Sequence[int], choice: torch.Tensor,
                    rounding: str | None) -> torch.Tensor:
    """Each pixel from the round trip at its tile's quality (``choice``, from
    :func:`_draw_tiles`): the real codec, or the differentiable one with ``rounding``."""
    codec = jpeg.jpeg if rounding is None else partial(jpeg.jpeg_differentiable,
                                                       rounding=rounding)
    compressed = torch.stack([codec(images, q) for q in qualities])  # q x n x c x h x w
    index = choice[None, :, None].expand(1, *images.shape)
    return compressed.gather(0, index)[0]


@torch.no_grad()
def shield_predict(members: Mapping[int, nn.Module], images: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """SHIELD as deployed (Das et al., 2018): one stochastically quantized copy of each image,
    its tiles' qualities drawn from the members' qualities, on which the vaccinated members
    vote (:func:`vote`). A new draw per call: score it over several calls."""
    quantized = stochastic_jpeg(images, list(members), generator)
    return vote([train.predict(model, quantized) for model in members.values()])
