"""Where in frequency an image or a perturbation keeps its energy.

Used to test the claim that adversarial noise is "high frequency": compare the radially
averaged power spectrum of perturbations with that of differences between natural images.
"""

from __future__ import annotations

import torch


def radial_power(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power at each radial frequency of a batch N x C x H x W (mean removed per image).

    Returns ``(frequencies in cycles/pixel, 0 to 0.5*sqrt(2); power normalised to sum 1)``.
    """
    x = images.float() - images.float().mean(dim=(2, 3), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=(0, 1))  # H x W, averaged over batch, chans
    h, w = power.shape
    fy = torch.fft.fftfreq(h, device=power.device)[:, None]
    fx = torch.fft.fftfreq(w, device=power.device)[None, :]
    radius = torch.sqrt(fy**2 + fx**2)
    bins = torch.round(radius * h).long().flatten()  # one bin per 1/H cycles per pixel
    total = torch.zeros(int(bins.max()) + 1, device=power.device).index_add_(0, bins,
                                                                             power.flatten())
    total = total / total.sum()
    return torch.arange(len(total), device=power.device) / h, total


def high_frequency_share(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of (mean-removed) energy above ``cutoff`` cycles per pixel (0.5 is Nyquist)."""
    freqs, power = radial_power(images)
    return power[freqs > cutoff].sum().item()
