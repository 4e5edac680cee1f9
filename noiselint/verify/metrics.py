"""Per-image outcomes of a sweep, reduced to curves: accuracy, agreement, top-5 overlap, stability.

* accuracy: noisy top-1 equals the label (only with labels);
* agreement: noisy top-1 equals the clean top-1 of the same model;
* top-5 overlap: |top5(clean) & top5(noisy)| / 5 (top-k with k = min(5, classes));
* confident agreement: agreement over the images whose clean softmax maximum is >= 0.5, since
  low-confidence images swap near-tied classes at the smallest noise (RESEARCH.md section 5);
* noise stability Stab_rho = E<f(x), f(y)>, y = rho x + sqrt(1 - rho^2) z (see
  :func:`noiselint.verify.noise.correlated_inputs`), with f(x) the logit vector centred over classes
  and scaled to unit length: the mean cosine between clean and correlated logits, 1 = unchanged.

Every figure is a mean over images and draws; ``*_std`` is the spread of the per-draw means.
"""

from __future__ import annotations

import torch

from noiselint.verify.report import CurvePoint, Sweep

CONFIDENT = 0.5
TOP_K = 5


def unit_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits centred over classes (softmax-invariant) and scaled to unit length."""
    centred = logits - logits.mean(dim=1, keepdim=True)
    return centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SweepAccumulator:
    """Collects per-image outcomes of one model over (sigma, draw) and (rho, draw)."""

    def __init__(self, count: int, sigmas, rhos, draws: int, labels: torch.Tensor | None) -> None:
        self.sigmas, self.rhos, self.draws = tuple(sigmas), tuple(rhos), draws
        self.labels = labels
        self.top1 = torch.zeros(count, dtype=torch.long)
        self.topk: torch.Tensor | None = None
        self.confidence = torch.zeros(count)
        self.unit: torch.Tensor | None = None
        shape = (len(self.sigmas), draws, count)
        self.agree = torch.zeros(shape, dtype=torch.bool)
        self.overlap = torch.zeros(shape)
        self.correct = torch.zeros(shape, dtype=torch.bool)
        self.cosine = torch.zeros((len(self.rhos), draws, count))

    def add_clean(self, rows: slice, logits: torch.Tensor) -> None:
        logits = logits.cpu()
        k = min(TOP_K, logits.shape[1])
        if self.topk is None:
            self.topk = torch.zeros((len(self.top1), k), dtype=torch.long)
            self.unit = torch.zeros((len(self.top1), logits.shape[1]))
        self.top1[rows] = logits.argmax(1)
        self.topk[rows] = logits.topk(k, dim=1).indices
        self.confidence[rows] = logits.softmax(1).amax(1)
        self.unit[rows] = unit_logits(logits)

    def add_noisy(self, rows: slice, sigma: int, draw: int, logits: torch.Tensor) -> None:
        logits = logits.cpu()
        top1 = logits.argmax(1)
        self.agree[sigma, draw, rows] = top1 == self.top1[rows]
        topk = logits.topk(self.topk.shape[1], dim=1).indices
        same = (topk[:, :, None] == self.topk[rows][:, None, :]).any(2)
        self.overlap[sigma, draw, rows] = same.float().mean(1)
        if self.labels is not None:
            self.correct[sigma, draw, rows] = top1 == self.labels[rows]

    def add_correlated(self, rows: slice, rho: int, draw: int, logits: torch.Tensor) -> None:
        self.cosine[rho, draw, rows] = (unit_logits(logits.cpu()) * self.unit[rows]).sum(1)

    def clean_accuracy(self) -> float | None:
        if self.labels is None:
            return None
        return (self.top1 == self.labels).float().mean().item()

    def result(self, forwards: int, seconds: float) -> Sweep:
        confident = self.confidence >= CONFIDENT
        points = []
        for i, sigma in enumerate(self.sigmas):
            accuracy = _mean_std(self.correct[i]) if self.labels is not None else (None, None)
            agreement = _mean_std(self.agree[i])
            confident_agreement = _mean_std(self.agree[i][:, confident])[0] if confident.any() else None
            points.append(
                CurvePoint(
                    sigma=sigma,
                    accuracy=accuracy[0],
                    accuracy_std=accuracy[1],
                    agreement=agreement[0],
                    agreement_std=agreement[1],
                    top5_overlap=_mean_std(self.overlap[i])[0],
                    confident_agreement=confident_agreement,
                )
            )
        stability = tuple((rho, _mean_std(self.cosine[i])[0]) for i, rho in enumerate(self.rhos))
        return Sweep(
            clean_accuracy=self.clean_accuracy(),
            confident_images=int(confident.sum()),
            points=tuple(points),
            stability=stability,
            forwards=forwards,
            seconds=seconds,
        )


def _mean_std(values: torch.Tensor) -> tuple[float, float]:
    """Mean over draws and images, and the standard deviation of the per-draw means."""
    per_draw = values.float().mean(dim=1)
    spread = per_draw.std().item() if len(per_draw) > 1 else 0.0
    return per_draw.mean().item(), spread
