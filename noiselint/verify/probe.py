"""Noise-to-signal probe: how much small pixel noise moves the logits, relative to their spread.

For each image x, draw d and small sigma: RMS over classes of f(x + sigma z) - f(x), divided by the
standard deviation of f(x) over classes; averaged over images and draws. Seeded like the sweep
(its own noise stream). The cheap measured counterpart of the static ``exposure``.
"""

from __future__ import annotations

import torch

from noiselint.verify.noise import InputBuilder, standard_normal

PROBE_SIGMAS = (0.01, 0.02, 0.04)
PROBE_STREAM = 3
#: Images the probe runs on (the first of the verify set).
PROBE_IMAGES = 64


def noise_to_signal(executor, images: torch.Tensor, seed: int, draws: int = 2,
                    sigmas: tuple[float, ...] = PROBE_SIGMAS) -> tuple[tuple[float, float], ...]:
    """((sigma, mean ratio), ...) for ``images`` ((N, C, H, W) [0, 1] pixels) through ``executor``."""
    device = executor.device
    x = images.to(device)
    clean = executor.normalize(x)
    reference = executor.run(clean).float().cpu()
    spread = reference.std(dim=1).clamp_min(1e-12)
    builder = InputBuilder(sigmas, (), executor.scale, executor.shift)
    totals = torch.zeros(len(sigmas))
    for draw in range(draws):
        z = standard_normal(tuple(x.shape[1:]), range(len(x)), seed=seed, stream=PROBE_STREAM, draw=draw,
                            device=device)
        noisy = executor.run(builder.noisy(clean, z)).float().cpu().view(len(sigmas), len(x), -1)
        change = (noisy - reference).pow(2).mean(dim=2).sqrt()
        totals += (change / spread).mean(dim=1)
    return tuple((s, (t / draws).item()) for s, t in zip(sigmas, totals, strict=True))
