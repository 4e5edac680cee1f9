"""Training-free counterfactuals for findings: swap one module for its advised replacement.

* max pooling -> average pooling with the same window, stride and padding (padding not counted);
* adaptive (global) max pooling -> adaptive average pooling to the same output size;
* a strided 1x1 conv (nearest-neighbour subsampling) -> s x s average pooling, then the same conv
  at stride 1 (the ResNet-D shortcut);
* a stem conv -> a k x k box blur (the stem's own kernel size, replicate padding) before it: a
  low-pass pre-filter that widens the stem's receptive field to 2k - 1 without new weights.

A patch measures a finding only when it applies that finding's advice: the finding's rule code is
one of the patch's ``codes`` (max -> average pooling: NL301; adaptive max -> average: NL303; the
average-pool shortcut: NL302). The box pre-filter advises nothing a rule says (NL101 advises a 7x7
stem, NL103 a blur after a stride-1 conv), so it is reported as a what-if but measures no finding.

Each patch keeps the trained weights. It says what the advice does to noise at that node on this
model, but a training-free patch is not the same as training with the change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from noiselint import estimates
from noiselint.findings import Finding
from noiselint.graph import Op
from noiselint.verify.gains import Probe

POOLING_QUANTITIES = ("noise MSE at this pooling stage", "noise MSE at global pooling")
DOWNSAMPLING_QUANTITY = "noise variance per sample after downsampling"
STEM_QUANTITIES = ("noise variance after the stem filter", DOWNSAMPLING_QUANTITY)


class BoxBlur(nn.Module):
    """A k x k mean filter at stride 1 that keeps the size (replicate padding, so borders stay bright)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = 1

    def forward(self, x):
        k = self.kernel_size
        before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
        return F.avg_pool2d(F.pad(x, (before, after, before, after), mode="replicate"), k, stride=1)


@dataclass
class Patch:
    """Replace the module at ``module_path`` with ``build(original)``; ``predicted`` is the analytic factor
    on the node's gain. ``low_pass`` picks the new averaging filter out of the replacement (it reads
    the node's own input), whose analytic gain ``low_pass_gain`` (1/n, 1/k^2) verify checks."""

    name: str
    change: str
    probe: Probe
    build: Callable[[nn.Module], nn.Module]
    predicted: float | None
    quantities: tuple[str, ...]
    low_pass: Callable[[nn.Module], nn.Module]
    low_pass_label: str
    low_pass_gain: float
    codes: tuple[str, ...] = ()
    findings: list[Finding] = field(default_factory=list)

    @property
    def module_path(self) -> str:
        return self.probe.data["module_path"]


def patch_for(probe: Probe) -> Patch | None:
    """The counterfactual of a probed node, or None when it has no training-free one."""
    module, data = probe.module, probe.data
    path = data["module_path"]
    if isinstance(module, nn.MaxPool2d) and _single(module.dilation) == 1:
        n = _area(module.kernel_size)
        return Patch(
            f"avg pool at {path}",
            f"{_describe(module)} -> AvgPool2d, same window/stride/padding",
            probe,
            lambda m: nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, count_include_pad=False),
            estimates.avg_pool_mse(n) / estimates.max_pool_mse(n),
            POOLING_QUANTITIES,
            _itself,
            f"avg pool, n={n}",
            estimates.avg_pool_mse(n),
            ("NL301",),
        )
    if isinstance(module, nn.AdaptiveMaxPool2d) and probe.clean is not None:
        h, w = probe.clean.shape[-2:]
        out = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
        if h % (out[0] or h) or w % (out[1] or w):
            return None
        n = (h // (out[0] or h)) * (w // (out[1] or w))
        return Patch(
            f"avg pool at {path}",
            "AdaptiveMaxPool2d -> AdaptiveAvgPool2d",
            probe,
            lambda m: nn.AdaptiveAvgPool2d(m.output_size),
            estimates.avg_pool_mse(n) / estimates.max_pool_mse(n),
            POOLING_QUANTITIES,
            _itself,
            f"avg pool, n={n}",
            estimates.avg_pool_mse(n),
            ("NL303",),
        )
    if not isinstance(module, nn.Conv2d):
        return None
    stride = _single(module.stride)
    if data["op"] == Op.SUBSAMPLE and stride > 1:
        return Patch(
            f"avg-pool shortcut at {path}",
            f"1x1 conv stride {stride} -> AvgPool2d({stride}) + 1x1 conv",
            probe,
            _pooled_shortcut,
            estimates.box_filter_gain(stride),
            (DOWNSAMPLING_QUANTITY,),
            _first,
            f"avg pool {stride}x{stride}",
            estimates.box_filter_gain(stride),
            ("NL302",),
        )
    k = _single(module.kernel_size)
    if data["stem"] and data["op"] == Op.CONV and k > 1:
        predicted = estimates.stem_kernel_estimate(k, [(k, 1), (k, stride)]).factor
        return Patch(
            f"{k}x{k} box pre-filter at {path}",
            f"{k}x{k} box blur before the stem conv {_describe(module)}",
            probe,
            lambda m: nn.Sequential(BoxBlur(k), m),
            predicted,
            STEM_QUANTITIES,
            _first,
            f"box blur {k}x{k}",
            estimates.box_filter_gain(k),
        )
    return None


def patches(findings: tuple[Finding, ...], probes: list[Probe]) -> list[Patch]:
    """One patch per probed node with findings and a counterfactual; attached are only the findings
    whose rule code the patch's advice answers (the box pre-filter answers none)."""
    by_node = {p.node: p for p in probes}
    found: dict[str, Patch | None] = {}
    for finding in findings:
        probe = by_node.get(finding.node or "")
        if probe is None:
            continue
        if probe.node not in found:
            found[probe.node] = patch_for(probe)
        patch = found[probe.node]
        estimate = finding.estimate
        if (
            patch is not None
            and estimate is not None
            and estimate.factor is not None
            and finding.code in patch.codes
        ):
            patch.findings.append(finding)
    return [p for p in found.values() if p is not None and (p.findings or not p.codes)]


@contextmanager
def applied(model: nn.Module, chosen: list[Patch], device, channels_last: bool) -> Iterator[None]:
    """Swap the patched modules into ``model`` for the duration, then put the originals back."""
    originals = []
    try:
        for patch in chosen:
            parent_path, _, name = patch.module_path.rpartition(".")
            parent = model.get_submodule(parent_path)
            original = getattr(parent, name)
            replacement = patch.build(original).to(device)
            if channels_last:
                replacement = replacement.to(memory_format=torch.channels_last)
            setattr(parent, name, replacement)
            originals.append((parent, name, original))
        yield
    finally:
        for parent, name, original in reversed(originals):
            setattr(parent, name, original)


def _itself(module: nn.Module) -> nn.Module:
    return module


def _first(module: nn.Sequential) -> nn.Module:
    return module[0]


def _pooled_shortcut(conv: nn.Conv2d) -> nn.Module:
    stride = _single(conv.stride)
    inner = copy.deepcopy(conv)
    inner.stride = (1, 1)
    return nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False), inner)


def _single(value) -> int:
    return int(value if isinstance(value, int) else value[0])


def _area(value) -> int:
    return int(value * value if isinstance(value, int) else value[0] * value[1])


def _describe(module: nn.Module) -> str:
    kernel = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
    stride = module.stride if isinstance(module.stride, int) else module.stride[0]
    return f"{type(module).__name__}({kernel}, stride {stride})"
