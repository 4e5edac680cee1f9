"""Seeded noise: Gaussian noise on [0, 1] pixels, and rho-correlated copies of model inputs.

Each image's noise comes from its own generator, seeded from (seed, stream, draw, image index), so a
run is repeatable for a given seed and device whatever the batch size, and the same draw is shared by
every sigma (common random numbers: the curves differ by sigma alone). CPU and CUDA generators give
different numbers for the same seed. Noise is added in memory, never through a saved (JPEG) file.
"""

from __future__ import annotations

import numpy as np
import torch

PIXEL_STREAM, RHO_STREAM, GAIN_STREAM = 0, 1, 2


def seed_for(*key: int) -> int:
    return int(np.random.SeedSequence([abs(int(k)) for k in key]).generate_state(1, dtype=np.uint64)[0] >> 1)


def standard_normal(shape: tuple[int, ...], indices: range, *, seed: int, stream: int, draw: int,
                    device: torch.device) -> torch.Tensor:
    """(len(indices), *shape) N(0, 1) samples, row i from the generator of image ``indices[i]``."""
    generator = torch.Generator(device=device)
    out = torch.empty((len(indices), *shape), device=device)
    for row, index in enumerate(indices):
        generator.manual_seed(seed_for(seed, stream, draw, index))
        out[row].normal_(generator=generator)
    return out


def add_pixel_noise(x: torch.Tensor, z: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """clip(x + sigma z, 0, 1) for every sigma, stacked sigma-major: (len(sigmas) * N, C, H, W)."""
    return torch.cat([(x + sigma * z).clamp_(0.0, 1.0) for sigma in sigmas])


def correlated_inputs(u: torch.Tensor, z: torch.Tensor, rhos: tuple[float, ...]) -> torch.Tensor:
    """rho-correlated copies of normalized model inputs ``u``, stacked rho-major.

    Each input is standardized per image (zero mean, unit variance: the N(0, I) scale of the
    noise-stability definition), mixed as y = rho x + sqrt(1 - rho^2) z, then mapped back to the
    input's own mean and scale. No clipping: this lives in the model's input space, not in pixels.
    """
    dims = tuple(range(1, u.dim()))
    mean = u.mean(dim=dims, keepdim=True)
    scale = u.std(dim=dims, keepdim=True).clamp_min(1e-6)
    x = (u - mean) / scale
    return torch.cat([(rho * x + (1.0 - rho * rho) ** 0.5 * z) * scale + mean for rho in rhos])
