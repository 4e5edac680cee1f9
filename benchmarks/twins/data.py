"""The two tasks' data, from images that installed packages ship (no downloads).

``natural``: which of 17 scikit-image images a 48x48 crop comes from; train crops from the top
three quarters of each image, test crops from the bottom quarter (unseen regions). The crop is the
"sensor" image; models see it resized to their input size (32 px, or 48 px for the resolution twin).
``digits``: scikit-learn's 1,797 8x8 digits, upsampled to 16x16 (bilinear), a fixed 2:1 split.
Pixels in [0, 1]; noise is added in pixel space, before the model's normalization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NATURAL_IMAGES = (
    "astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "page", "hubble_deep_field",
    "immunohistochemistry", "retina", "grass", "gravel", "brick", "colorwheel", "text", "clock",
)
SENSOR = 48  # natural task: crop size at sensor resolution


@dataclass(frozen=True)
class Task:
    """Train and test tensors (N, C, H, W) in [0, 1] at sensor resolution, and their labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    channels: int


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def _shrink(image: np.ndarray, longest: int = 512) -> np.ndarray:
    """Area-resize so the longest side is at most ``longest`` (retina, hubble are larger)."""
    h, w = image.shape[:2]
    if max(h, w) <= longest:
        return image
    t = torch.from_numpy(image).permute(2, 0, 1)[None]
    size = (round(h * longest / max(h, w)), round(w * longest / max(h, w)))
    return F.interpolate(t, size=size, mode="area")[0].permute(1, 2, 0).numpy()


def _crops(image: np.ndarray, rows: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    top = rng.integers(rows[0], rows[1] - SENSOR + 1, size=count)
    left = rng.integers(0, w - SENSOR + 1, size=count)
    return np.stack([image[t:t + SENSOR, s:s + SENSOR] for t, s in zip(top, left, strict=True)])


def natural(train_per_class: int = 300, test_per_class: int = 60) -> Task:
    """17-way natural-image crop task at 48x48 sensor resolution (seeded, deterministic)."""
    import skimage.data

    rng = np.random.default_rng(0)
    xs_train, xs_test, ys_train, ys_test = [], [], [], []
    for label, name in enumerate(NATURAL_IMAGES):
        image = _shrink(_rgb(getattr(skimage.data, name)()))
        cut = min(int(image.shape[0] * 0.75), image.shape[0] - SENSOR)
        xs_train.append(_crops(image, (0, cut), train_per_class, rng))
        xs_test.append(_crops(image, (cut, image.shape[0]), test_per_class, rng))
        ys_train += [label] * train_per_class
        ys_test += [label] * test_per_class

    def tensor(parts):
        return torch.from_numpy(np.concatenate(parts)).permute(0, 3, 1, 2).contiguous()

    return Task("natural", tensor(xs_train), torch.tensor(ys_train), tensor(xs_test), torch.tensor(ys_test),
                classes=len(NATURAL_IMAGES), channels=3)


def digits() -> Task:
    """scikit-learn digits, 8x8 upsampled to 16x16 bilinear, pixels /16; a seeded 2:1 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.from_numpy(data.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    cut = 1200
    train, test = order[:cut], order[cut:]
    return Task("digits", x[train], y[train], x[test], y[test], classes=10, channels=1)


def to_model(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize sensor images to the model's input (antialiased bilinear); identity at the same size."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
