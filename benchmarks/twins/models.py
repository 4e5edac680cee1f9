"""One small ResNet family (16-32-64 channels, one basic block per stage) and its twin variants.

Every variant is the base with one design choice changed; module names are the same in all of
them (``stem``, ``pool``, ``layer1``..``layer3``, ``fc``) so that hooks measure the same stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn


class BlurPool2d(nn.Module):
    """Binomial [1, 2, 1]^2 / 16 low-pass, then stride: noiselint reads it as a blur (``filt_size``)."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2):
        super().__init__()
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        row = torch.tensor([1.0, 2.0, 1.0])
        kernel = (row[:, None] * row[None, :]) / 16.0
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        return nn.functional.conv2d(x, self.filt, stride=self.stride, groups=self.channels)


@dataclass(frozen=True)
class Design:
    """The design choices a twin may change."""

    stem_kernel: int = 3
    stem_stride: int = 1
    patch: int | None = None  # a patchify stem: p x p conv with stride p, no pooling after it
    stem_norm: bool = True
    blur: bool = False  # stem conv at stride 1, then a blur with stride 2 (replaces the pool)
    pool: str | None = "max"  # "max", "avg" or None
    shortcut: str = "conv"  # "conv": strided 1x1; "avg": 2x2 average pool then 1x1 (ResNet-D)
    std: float = 0.25
    size: int = 32  # model input side; the sensor image is resized to it


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if shortcut == "avg" and stride != 1:
                self.shortcut = nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False),
                                              nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TwinNet(nn.Module):
    """The small ResNet of one design; it takes normalized input."""

    def __init__(self, design: Design, channels: int, classes: int, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        w0, w1, w2 = widths
        if design.patch:
            conv = nn.Conv2d(channels, w0, design.patch, design.patch, bias=not design.stem_norm)
        else:
            stride = 1 if design.blur else design.stem_stride
            conv = nn.Conv2d(channels, w0, design.stem_kernel, stride, design.stem_kernel // 2,
                             bias=not design.stem_norm)
        parts = [conv, nn.BatchNorm2d(w0) if design.stem_norm else nn.Identity(), nn.ReLU()]
        if design.blur:
            parts.append(BlurPool2d(w0, 3, 2))
        self.stem = nn.Sequential(*parts)
        if design.pool == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, 2, 1)
        elif design.pool == "avg":
            self.pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
        else:
            self.pool = nn.Identity()
        self.layer1 = Block(w0, w0, 1, design.shortcut)
        self.layer2 = Block(w0, w1, 2, design.shortcut)
        self.layer3 = Block(w1, w2, 2, design.shortcut)
        self.head = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.pool(self.stem(x)))))
        return self.fc(torch.flatten(self.head(x), 1))


BASE = Design()

#: Every variant: the base with one design choice changed (``s2``/``blur`` and ``patch2``/``patch4``
#: are twins of each other, with no pooling layer).
VARIANTS: dict[str, Design] = {
    "base": BASE,
    "k5": replace(BASE, stem_kernel=5),
    "k7": replace(BASE, stem_kernel=7),
    "avgpool": replace(BASE, pool="avg"),
    "resnetd": replace(BASE, shortcut="avg"),
    "std05": replace(BASE, std=0.5),
    "nobn": replace(BASE, stem_norm=False),
    "nobn_std05": replace(BASE, stem_norm=False, std=0.5),
    "s2": replace(BASE, stem_stride=2, pool=None),
    "blur": replace(BASE, blur=True, pool=None),
    "patch2": replace(BASE, patch=2, pool=None),
    "patch4": replace(BASE, patch=4, pool=None),
    "res48": replace(BASE, size=48),
}

#: (flagged, advice followed, rule, what changes, hooked stage). Stages are module names or
#: "input" (the model's input after the resize) and "logits".
PAIRS: tuple[tuple[str, str, str, str, str], ...] = (
    ("base", "k7", "NL101", "stem 3x3 -> 7x7", "stem.1"),
    ("base", "k5", "NL101", "stem 3x3 -> 5x5", "stem.1"),
    ("k5", "k7", "NL101", "stem 5x5 -> 7x7", "stem.1"),
    ("patch2", "patch4", "NL101", "patchify stem 2x2 -> 4x4", "stem.1"),
    ("base", "avgpool", "NL301", "max -> average pool (stem)", "pool"),
    ("base", "resnetd", "NL302", "1x1/s2 shortcut -> 2x2 avg pool + 1x1 (ResNet-D)", "layer2.shortcut"),
    ("s2", "blur", "NL103", "stride 2 -> blur then stride 2", "stem"),
    ("base", "std05", "NL401", "input std 0.25 -> 0.5 (BatchNorm after the stem)", "logits"),
    ("nobn", "nobn_std05", "NL401", "input std 0.25 -> 0.5 (no norm after the stem)", "logits"),
    ("res48", "base", "NL201", "input 48 px -> 32 px, same field of view, noise before the resize", "input"),
)

#: Variants and pairs per task: the digits task (16 px, 1 channel) has no sensor resolution above its input.
TASK_VARIANTS = {
    "natural": tuple(VARIANTS),
    "digits": tuple(v for v in VARIANTS if v != "res48"),
}


def build(name: str, channels: int, classes: int, size: int | None = None) -> TwinNet:
    design = VARIANTS[name]
    return TwinNet(design, channels, classes)


def input_size(name: str, task: str) -> int:
    """The model's input side for a variant on a task (digits: 16 px for all)."""
    return VARIANTS[name].size if task == "natural" else 16
