"""What a verify run uses, checked before any model is loaded so bad input fails fast (exit 2)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from noiselint.errors import NoiselintError
from noiselint.memory import DEFAULT_MAX_MEMORY

#: ImageNet-C Gaussian noise severities 1-5, on [0, 1] pixels (RESEARCH.md section 3).
DEFAULT_SIGMAS = (0.08, 0.12, 0.18, 0.26, 0.38)
#: rho values for noise stability (see :mod:`noiselint.verify.metrics`).
DEFAULT_RHOS = (0.95, 0.9, 0.8)
DEFAULT_IMAGES = 512
DEFAULT_DRAWS = 3
BUILTIN_DATA = ("auto", "natural", "digits")
#: Where the pixel noise goes: on the model's input after resize and crop, or on the image at its own
#: resolution before them (see :mod:`noiselint.verify.data`).
NOISE_AT = ("input", "sensor")
INSTALL_HINT = "pip install 'noiselint[verify]'"


class VerifyError(NoiselintError):
    """A verify input is wrong (weights, data, options): one line, exit code 2."""


@dataclass(frozen=True)
class VerifyOptions:
    """Options of one verify run; :meth:`validate` checks them without importing torch.

    ``data`` is an image folder or one of :data:`BUILTIN_DATA`; ``images`` caps the number of images
    (a seeded sample when the data set is larger); ``batch_size`` None means automatic; ``adapt`` is
    the number of distillation steps of each adapted what-if (0: none, see :mod:`noiselint.verify.adapt`);
    ``noise_at`` one of :data:`NOISE_AT`.
    """

    weights: str | None = None
    data: str = "auto"
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    rhos: tuple[float, ...] = DEFAULT_RHOS
    device: str = "auto"
    images: int = DEFAULT_IMAGES
    draws: int = DEFAULT_DRAWS
    seed: int = 0
    plot: str | None = None
    batch_size: int | None = None
    gain_images: int = 8
    progress: bool = False
    adapt: int = 0
    noise_at: str = "input"
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes; a run uses the lint's budget (Options.max_memory)

    def validate(self) -> None:
        """Raise :class:`VerifyError` on the first bad option."""
        if not self.sigmas or any(not 0 < s <= 1 for s in self.sigmas):
            raise VerifyError(
                f"--sigmas must be numbers in (0, 1] (noise std on [0, 1] pixels), got {self.sigmas}"
            )
        if any(not 0 < r < 1 for r in self.rhos):
            raise VerifyError(f"rho values must lie in (0, 1), got {self.rhos}")
        if self.images < 1 or self.draws < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise VerifyError("--images, --draws and the batch size must be positive")
        if self.adapt < 0:
            raise VerifyError(f"--adapt must be a number of steps >= 0, got {self.adapt}")
        if self.noise_at not in NOISE_AT:
            raise VerifyError(f"--noise-at must be one of {', '.join(NOISE_AT)}, got {self.noise_at!r}")
        if self.device not in ("auto", "cuda", "cpu"):
            raise VerifyError(f"--device must be auto, cuda or cpu, got {self.device!r}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise VerifyError(f"--weights {self.weights}: no such file")
        if self.weights is not None and self.weights.endswith(".safetensors"):
            require("safetensors", "--weights with a .safetensors file")
        if self.data not in BUILTIN_DATA and not Path(self.data).is_dir():
            raise VerifyError(
                f"--data {self.data}: not a folder (give an image folder, or one of "
                f"{', '.join(BUILTIN_DATA)})"
            )
        if self.plot is not None:
            if Path(self.plot).suffix.lower() not in (".png", ".svg", ".pdf"):
                raise VerifyError(f"--plot {self.plot}: give a .png, .svg or .pdf file name")
            require("matplotlib", "--plot")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise VerifyError("--device cuda: no CUDA device is available (use --device auto or cpu)")


def require(module: str, what: str) -> None:
    """Fail with a one-line install hint when an optional dependency is missing."""
    if importlib.util.find_spec(module) is None:
        raise VerifyError(f"{what} needs the {module} package: {INSTALL_HINT}")
