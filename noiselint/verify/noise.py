"""Seeded noise: Gaussian noise on [0, 1] pixels, and rho-correlated copies of model inputs.

Each image's noise comes from its own generator, seeded from (seed, stream, draw, image index), so a
run is repeatable for a given seed and device whatever the batch size, and the same draw is shared by
every sigma (common random numbers: the curves differ by sigma alone). CPU and CUDA generators give
different numbers for the same seed. Noise is added in memory, never through a saved (JPEG) file.
"""

from __future__ import annotations

import torch

PIXEL_STREAM, RHO_STREAM, GAIN_STREAM = 0, 1, 2
_MASK = (1 << 64) - 1


def seed_for(*key: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps: cheap enough to call once per image)."""
    state = 0x9E3779B97F4A7C15
    for value in key:
        state = (state ^ (int(value) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & _MASK
        state ^= state >> 29
    return state >> 1


def standard_normal(
    shape: tuple[int, ...], indices: range, *, seed: int, stream: int, draw: int, device: torch.device
) -> torch.Tensor:
    """(len(indices), *shape) N(0, 1) samples, row i from the generator of image ``indices[i]``."""
    generator = torch.Generator(device=device)
    out = torch.empty((len(indices), *shape), device=device)
    for row, index in enumerate(indices):
        generator.manual_seed(seed_for(seed, stream, draw, index))
        out[row].normal_(generator=generator)
    return out


def noisy_inputs(
    u: torch.Tensor,
    z: torch.Tensor,
    sigmas: tuple[float, ...],
    scale: torch.Tensor,
    shift: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalized clip(x + sigma z, 0, 1) for every sigma, stacked sigma-major: (len(sigmas) * N, C, H, W).

    ``u = x * scale + shift`` are the normalized clean images (scale = 1/std, shift = -mean/std, per
    channel). Two passes: u + sigma * scale * z, then the clip to [0, 1] pixels, done on its
    normalized bounds (shift and scale + shift), which is the same since std > 0.
    """
    out = torch.empty((len(sigmas) * len(u), *u.shape[1:]), device=u.device) if out is None else out
    blocks = out.view(len(sigmas), *u.shape)
    torch.addcmul(u.unsqueeze(0), _column(sigmas, u) * scale, z.unsqueeze(0), out=blocks)
    blocks.clamp_(min=shift, max=scale + shift)
    return out


def correlated_inputs(
    u: torch.Tensor, z: torch.Tensor, rhos: tuple[float, ...], out: torch.Tensor
) -> torch.Tensor:
    """rho-correlated copies of normalized model inputs ``u``, stacked rho-major into ``out``.

    Each input is standardized per image (zero mean m, unit variance s: the N(0, I) scale of the
    noise-stability definition), mixed as y = rho x + sqrt(1 - rho^2) z, then mapped back to the
    input's own m and s: rho u + (1 - rho) m + sqrt(1 - rho^2) s z (two passes). No clipping: this
    lives in the model's input space, not in pixels.
    """
    dims = tuple(range(1, u.dim()))
    mean = u.mean(dim=dims, keepdim=True).unsqueeze(0)
    spread = u.std(dim=dims, keepdim=True).clamp_min(1e-6).unsqueeze(0)
    rho = _column(rhos, u)
    blocks = out.view(len(rhos), *u.shape)
    torch.addcmul((1.0 - rho) * mean, rho, u.unsqueeze(0), out=blocks)
    blocks.addcmul_((1.0 - rho * rho).sqrt() * spread, z.unsqueeze(0))
    return out


def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` shaped (len, 1, 1, ...) to broadcast against a stack of ``like``."""
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(-1, *([1] * like.dim()))
