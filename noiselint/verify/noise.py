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


class InputBuilder:
    """Writes a chunk's normalized model inputs into a preallocated buffer, with no host-device sync.

    ``scale`` and ``shift`` normalize pixels (1/std and -mean/std, (1, C, 1, 1) tensors on the
    device); every per-sigma and per-rho coefficient is made once here, so building a chunk only
    launches kernels and a GPU never waits for the host between batches.
    """

    def __init__(
        self, sigmas: tuple[float, ...], rhos: tuple[float, ...], scale: torch.Tensor, shift: torch.Tensor
    ) -> None:
        device = scale.device
        self.sigmas, self.rhos = tuple(sigmas), tuple(rhos)
        self.sigma_scale = torch.tensor(self.sigmas, device=device).view(-1, 1, 1, 1, 1) * scale.unsqueeze(0)
        low, high = shift.flatten().tolist(), (scale + shift).flatten().tolist()
        self.bounds = list(zip(low, high, strict=True))
        rho = torch.tensor(self.rhos, device=device).view(-1, 1, 1, 1, 1)
        self.rho, self.rho_mean, self.rho_noise = rho, 1.0 - rho, (1.0 - rho * rho).sqrt()

    def noisy(self, u: torch.Tensor, z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized clip(x + sigma z, 0, 1) for every sigma, sigma-major: (len(sigmas) * N, C, H, W).

        ``u`` are the normalized clean images. Two passes: u + sigma * scale * z, then the clip to
        [0, 1] pixels on its normalized bounds (the same clip, since std > 0), per channel when the
        channels differ (clamp with scalar bounds is many times faster than with tensor bounds).
        """
        if out is None:
            out = torch.empty((len(self.sigmas) * len(u), *u.shape[1:]), device=u.device)
        blocks = out.view(len(self.sigmas), *u.shape)
        torch.addcmul(u.unsqueeze(0), self.sigma_scale, z.unsqueeze(0), out=blocks)
        if len(set(self.bounds)) == 1:
            blocks.clamp_(*self.bounds[0])
        else:
            for channel, (low, high) in enumerate(self.bounds):
                blocks[:, :, channel].clamp_(low, high)
        return out

    def correlated(self, u: torch.Tensor, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """rho-correlated copies of normalized model inputs ``u``, rho-major, into ``out``.

        Each input is standardized per image (zero mean m, unit variance s: the N(0, I) scale of the
        noise-stability definition), mixed as y = rho x + sqrt(1 - rho^2) z, then mapped back to the
        input's own m and s: rho u + (1 - rho) m + sqrt(1 - rho^2) s z (two passes). No clipping:
        this lives in the model's input space, not in pixels.
        """
        dims = tuple(range(1, u.dim()))
        mean = u.mean(dim=dims, keepdim=True).unsqueeze(0)
        spread = u.std(dim=dims, keepdim=True).clamp_min(1e-6).unsqueeze(0)
        blocks = out.view(len(self.rhos), *u.shape)
        torch.addcmul(self.rho_mean * mean, self.rho, u.unsqueeze(0), out=blocks)
        blocks.addcmul_(self.rho_noise * spread, z.unsqueeze(0))
        return out
