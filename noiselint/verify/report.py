"""What verify found for one model, as frozen records the reporters render (text) and serialize (JSON).

``ModelReport.verification`` holds a :class:`Verification`; the text reporter renders it with
:func:`noiselint.reporters.verify_text.render_verification`, the JSON reporter with
:meth:`Verification.to_dict` (the schema is documented in README.md, section "Verify").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOISE_MODEL = (
    "Gaussian noise N(0, sigma^2) added in memory (not through a saved JPEG) to [0, 1] pixels after "
    "resize and centre crop, before normalization, then clipped to [0, 1]"
)
SENSOR_NOISE_MODEL = (
    "Gaussian noise N(0, sigma^2) added in memory (not through a saved JPEG) to each image's [0, 1] "
    "pixels at its own resolution, clipped to [0, 1], then resized and centre-cropped to the model "
    "input and normalized"
)
#: The noise model of each ``--noise-at`` protocol.
NOISE_MODELS = {"input": NOISE_MODEL, "sensor": SENSOR_NOISE_MODEL}
ROBUSTNESS_DEFINITION = (
    "robustness: mean over sigmas of noisy accuracy / clean accuracy (labelled data) or of top-1 "
    "agreement with the model's own clean top-1 (label-free)"
)
ADAPT_DEFINITION = (
    "adapted: the what-if's change, then only the stem and the changed layers trained to reproduce the "
    "original model's logits (mean squared error) on clean augmented images, no labels, after the trained "
    "BatchNorm statistics are re-estimated to give the original's per-channel output moments; distilled "
    "on every other verify image (even positions); clean agreement = its clean top-1 equal to the "
    "original's on the other (held-out) images"
)
GAIN_DEFINITION = (
    "output noise variance / input noise variance at the node, per unit of its response to a uniform "
    "(DC) step, so a pooling window or box filter compares with 1/n and a learned conv with the box "
    "model 1/k^2"
)
STABILITY_DEFINITION = (
    "Stab_rho = E<f(x), f(y)>, y = rho x + sqrt(1 - rho^2) z in the standardized model input, f = "
    "logits centred over classes and scaled to unit length (mean cosine; 1 = unchanged)"
)
WHAT_IF_CAVEAT = (
    "what-ifs patch the trained weights without retraining: a training-free patch is not the same as "
    "training with the change"
)
PROBE_DEFINITION = (
    "noise-to-signal: RMS over classes of the logit change under N(0, sigma^2) pixel noise, over the "
    "standard deviation of the clean logits over classes; mean over images and draws"
)
#: |measured / analytic - 1| up to this counts as a match.
MATCH_TOLERANCE = 0.05


@dataclass(frozen=True)
class CurvePoint:
    """Outcomes at one sigma, averaged over images and draws (``*_std``: spread across draws)."""

    sigma: float
    accuracy: float | None
    accuracy_std: float | None
    agreement: float
    agreement_std: float
    top5_overlap: float
    confident_agreement: float | None


@dataclass(frozen=True)
class Sweep:
    """One model (or what-if variant) over every sigma: curves, stability and throughput."""

    clean_accuracy: float | None
    confident_images: int
    points: tuple[CurvePoint, ...]
    stability: tuple[tuple[float, float], ...]
    forwards: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.forwards / self.seconds if self.seconds > 0 else 0.0

    def curve(self) -> list[float]:
        """Accuracy when labelled, else agreement, at each sigma."""
        return [p.accuracy if p.accuracy is not None else p.agreement for p in self.points]

    @property
    def robustness(self) -> float:
        """Mean over sigmas of accuracy / clean accuracy when labelled, else of agreement
        (see :data:`ROBUSTNESS_DEFINITION`)."""
        values = self.curve()
        scale = self.clean_accuracy if self.points and self.points[0].accuracy is not None else 1.0
        return sum(values) / len(values) / scale if values and scale else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean_accuracy": self.clean_accuracy,
            "confident_images": self.confident_images,
            "curve": [vars(p).copy() for p in self.points],
            "stability": [{"rho": rho, "stability": value} for rho, value in self.stability],
            "forwards": self.forwards,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "robustness": self.robustness,
        }


@dataclass(frozen=True)
class NodeGain:
    """The noise gain of one node, analytic and measured three ways (see :data:`GAIN_DEFINITION`).

    ``noise_only``: white noise alone as the node's input (the analytic figures' assumption);
    ``real_input``: white noise added to the node's real input from clean images, scaled like the
    noise it sees in the model; ``in_model``: the noise that image noise at ``sigma`` brings to the
    node's input, propagated through it (not white: earlier layers correlate it).
    """

    node: str
    module_path: str
    op: str
    analytic: float | None
    formula: str
    noise_only: float | None
    real_input: float | None
    in_model: float | None
    sigma: float
    samples: int

    @property
    def relative_error(self) -> float | None:
        if self.analytic is None or self.noise_only is None or self.analytic == 0:
            return None
        return self.noise_only / self.analytic - 1.0

    @property
    def verdict(self) -> str:
        error = self.relative_error
        if error is None:
            return ""
        return "matches" if abs(error) <= MATCH_TOLERANCE else f"off by {error:+.0%}"

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "relative_error": self.relative_error, "verdict": self.verdict}


@dataclass(frozen=True)
class Adapted:
    """A what-if's change after ``steps`` distillation steps (see :data:`ADAPT_DEFINITION`).

    ``clean_agreement`` is over the ``held_out`` images it was not distilled on (0: a single verify
    image, distilled on and counted); ``vs_original`` and ``vs_training_free``: its robustness minus
    that of the original model and of the training-free patch."""

    steps: int
    trained: tuple[str, ...]
    parameters: int
    first_loss: float
    last_loss: float
    clean_agreement: float
    held_out: int
    sweep: Sweep
    vs_original: float
    vs_training_free: float
    seconds: float
    probe: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("sweep", "probe")}
        return {**data, "trained": list(self.trained), **self.sweep.to_dict(), "seconds": round(self.seconds, 3),
                "probe": _probe(self.probe)}


@dataclass(frozen=True)
class WhatIf:
    """A training-free counterfactual applied to a copy of the model, and what it changed.

    ``predicted`` is the analytic factor on the node's noise figure; the ``measured_*`` factors are
    (patched gain) / (original gain) at the same node, measured as in :class:`NodeGain`.
    ``clean_agreement`` is the share of clean top-1 predictions the patch left unchanged;
    ``low_pass`` the gain of the averaging filter the patch adds, alone on the node's input.
    """

    name: str
    change: str
    module_path: str
    findings: tuple[str, ...]
    predicted: float | None
    measured_noise_only: float | None
    measured_real_input: float | None
    measured_in_model: float | None
    clean_agreement: float
    low_pass: NodeGain | None
    sweep: Sweep
    probe: tuple[tuple[float, float], ...] = ()
    adapted: Adapted | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("sweep", "low_pass", "probe", "adapted")}
        low_pass = self.low_pass.to_dict() if self.low_pass is not None else None
        adapted = self.adapted.to_dict() if self.adapted is not None else None
        return {**data, "findings": list(self.findings), "low_pass": low_pass, **self.sweep.to_dict(),
                "probe": _probe(self.probe), "adapted": adapted}


@dataclass(frozen=True)
class Verification:
    """Everything ``--verify`` measured on one model."""

    model: str
    device: str
    batch_size: int
    weights: str
    data: str
    images: int
    labelled: bool
    sigmas: tuple[float, ...]
    draws: int
    seed: int
    sweep: Sweep
    gains: tuple[NodeGain, ...] = ()
    what_ifs: tuple[WhatIf, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    probe: tuple[tuple[float, float], ...] = ()  # (sigma, noise-to-signal), see noiselint.verify.probe
    noise_at: str = "input"  # the --noise-at protocol, a key of NOISE_MODELS

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "weights": self.weights,
            "data": {"source": self.data, "images": self.images, "labelled": self.labelled},
            "noise": {
                "protocol": self.noise_at,
                "model": NOISE_MODELS[self.noise_at],
                "sigmas": list(self.sigmas),
                "draws": self.draws,
                "seed": self.seed,
            },
            "stability_definition": STABILITY_DEFINITION,
            "probe": _probe(self.probe),
            "probe_definition": PROBE_DEFINITION,
            **self.sweep.to_dict(),
            "gain_definition": GAIN_DEFINITION,
            "nodes": [g.to_dict() for g in self.gains],
            "robustness_definition": ROBUSTNESS_DEFINITION,
            "what_if_caveat": WHAT_IF_CAVEAT,
            "adapt_definition": ADAPT_DEFINITION,
            "what_ifs": [w.to_dict() for w in self.what_ifs],
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def _probe(values: tuple[tuple[float, float], ...]) -> list[dict[str, float]]:
    return [{"sigma": sigma, "noise_to_signal": ratio} for sigma, ratio in values]
