"""Measured noise gains at stem and pooling nodes, through forward hooks on the real model.

A clean and a noisy forward (image noise at one sigma) record each node's input. The node's module
is then run alone three ways (see :class:`~noiselint.verify.report.NodeGain`): on white noise only,
on its real input plus white noise, and on its real noisy input. A gain is mean squared output noise
over mean squared input noise, divided by the node's squared response to a uniform unit step (its DC
gain: 1 for pooling and box filters, (sum of taps)^2 per channel for a conv), and counted only on
output positions whose window lies inside the input, so zero or replicated padding cannot bias it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from noiselint import estimates
from noiselint.graph import ModelGraph, Op
from noiselint.verify.noise import GAIN_STREAM, seed_for
from noiselint.verify.report import NodeGain

#: Output samples each white-noise measurement averages over, at least: neighbouring outputs of a
#: k x k filter are correlated, so this keeps the error of a 5x5 box near 1 %.
MIN_SAMPLES = 200_000
MAX_REPEATS = 64
SPATIAL_OPS = frozenset({*Op.CONVOLUTIONS, *Op.POOLING, Op.BLUR})
POOL_OPS = frozenset({*Op.POOLING, Op.BLUR})


@dataclass
class Probe:
    """A graph node, its module in the materialized model, and its input on clean and noisy images."""

    node: str
    data: dict
    module: nn.Module
    clean: torch.Tensor | None = None
    noisy: torch.Tensor | None = None


def probes(graph: ModelGraph, model: nn.Module) -> list[Probe]:
    """Stem filters (spatial convs, pools, blurs) and every pooling or blur node that is a module.

    Functional ops (``F.max_pool2d`` in a forward) have no module to hook and are left out.
    """
    modules = dict(model.named_modules())
    found = []
    for node, data in graph.nodes():
        op = data["op"]
        if op not in POOL_OPS and not (data["stem"] and op in SPATIAL_OPS):
            continue
        if op == Op.CONV and all(k == 1 for k in data["attrs"].get("kernel") or (1,)):
            continue  # a 1x1 stride-1 conv mixes channels; it filters nothing spatially
        module = modules.get(data["module_path"] or "")
        if module is not None and type(module).__name__ == data["module_type"]:
            found.append(Probe(node, data, module))
    return found


def capture(model: nn.Module, found: list[Probe], clean: torch.Tensor, noisy: torch.Tensor) -> None:
    """Fill each probe's ``clean`` and ``noisy`` input from two fp32 forwards of normalized inputs."""
    slot = {"name": "clean"}

    def hook(probe: Probe):
        def record(module, inputs):
            if getattr(probe, slot["name"]) is None and inputs and isinstance(inputs[0], torch.Tensor):
                setattr(probe, slot["name"], inputs[0].detach().float().clone())

        return record

    handles = [p.module.register_forward_pre_hook(hook(p)) for p in found]
    try:
        with torch.inference_mode():
            for name, inputs in (("clean", clean), ("noisy", noisy)):
                slot["name"] = name
                model(inputs)
    finally:
        for handle in handles:
            handle.remove()


class GainMeter:
    """Measures one module's noise gains on a node's captured inputs (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def measure(
        self, module: nn.Module, clean: torch.Tensor, noisy: torch.Tensor
    ) -> tuple[float | None, float | None, float | None, int]:
        """(noise only, real input, in model, output samples per white-noise measurement)."""
        with torch.inference_mode():
            base_zero = module(torch.zeros_like(clean))
            dc = self._mean_sq(module, module(torch.ones_like(clean)) - base_zero)
            if not dc > 1e-12:
                return None, None, None, 0
            per_repeat = self._interior(module, base_zero).numel()
            repeats = min(MAX_REPEATS, max(1, math.ceil(MIN_SAMPLES / max(1, per_repeat))))
            level = (noisy - clean).pow(2).mean().sqrt().item() or 1.0
            base_clean = module(clean)
            only = real = 0.0
            for repeat in range(repeats):
                generator = torch.Generator(device=clean.device).manual_seed(
                    seed_for(self.seed, GAIN_STREAM, repeat)
                )
                z = torch.randn(clean.shape, generator=generator, device=clean.device)
                only += self._mean_sq(module, module(z) - base_zero) / z.pow(2).mean().item()
                z = z * level
                real += self._mean_sq(module, module(clean + z) - base_clean) / z.pow(2).mean().item()
            delta_in = (noisy - clean).pow(2).mean().item()
            in_model = (
                self._mean_sq(module, module(noisy) - base_clean) / delta_in / dc if delta_in > 0 else None
            )
        return only / repeats / dc, real / repeats / dc, in_model, repeats * per_repeat

    def _mean_sq(self, module: nn.Module, delta: torch.Tensor) -> float:
        return self._interior(module, delta).float().pow(2).mean().item()

    @staticmethod
    def _interior(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        """Output positions whose window lies wholly inside the input (padding at most k - 1)."""
        window = window_of(module)
        if window is None or output.dim() < 4:
            return output
        (kh, kw), (sh, sw) = window
        mh, mw = math.ceil((kh - 1) / sh), math.ceil((kw - 1) / sw)
        h, w = output.shape[-2:]
        if h <= 2 * mh or w <= 2 * mw:
            return output
        return output[..., mh : h - mh, mw : w - mw]


def window_of(module: nn.Module) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(kernel extent, stride) per axis of a windowed module or a Sequential of them; None if global."""
    if isinstance(module, nn.Sequential):
        extent, stride = (1, 1), (1, 1)
        for inner in module:
            window = window_of(inner)
            if window is None:
                continue
            (kh, kw), (sh, sw) = window
            extent = (extent[0] + (kh - 1) * stride[0], extent[1] + (kw - 1) * stride[1])
            stride = (stride[0] * sh, stride[1] * sw)
        return extent, stride
    kernel = getattr(module, "kernel_size", None) or getattr(module, "filt_size", None)
    if kernel is None:
        return None
    kernel, stride = _pair(kernel), _pair(getattr(module, "stride", None) or kernel)
    dilation = _pair(getattr(module, "dilation", 1))
    return (tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)), stride)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    return value if len(value) == 2 else (value[0], value[0])


def analytic_gain(
    data: dict, module: nn.Module, input_shape: tuple[int, ...]
) -> tuple[float | None, str, str]:
    """(analytic gain, formula, op label) of a node, under the noise-only assumptions of the estimates."""
    op, attrs = data["op"], data["attrs"]
    if op in (Op.AVG_POOL, Op.MAX_POOL):
        kh, kw = _pair(attrs.get("window") or attrs.get("kernel"))
        stride = _pair(attrs.get("stride") or (kh, kw))
        label = f"{'max' if op == Op.MAX_POOL else 'avg'} pool {kh}x{kw}/{stride[0]}"
        return _pool_figure(op == Op.MAX_POOL, kh * kw) + (label,)
    if op in (Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL):
        out = _pair(attrs.get("output_size") or (1, 1))
        h, w = input_shape[-2:]
        kind = "max" if op == Op.ADAPTIVE_MAX_POOL else "avg"
        label = (
            f"global {kind} pool {h}x{w}"
            if out == (1, 1)
            else f"adaptive {kind} pool {h}x{w}->{out[0]}x{out[1]}"
        )
        if h % out[0] or w % out[1]:
            return None, "uneven windows", label
        return _pool_figure(op == Op.ADAPTIVE_MAX_POOL, (h // out[0]) * (w // out[1])) + (label,)
    if op == Op.BLUR:
        filt = getattr(module, "filt", None)
        label = f"blur {'x'.join(map(str, attrs.get('kernel') or ()))}"
        if filt is None:
            return None, "filter unknown", label
        taps = filt.detach().float().reshape(-1, *filt.shape[-2:])[0]
        gain = estimates.filter_noise_gain((taps / taps.sum()).cpu().numpy())
        return gain, "sum(h^2) of the normalized filter", label
    kh, kw = _pair(attrs.get("kernel") or (1, 1))
    stride = _pair(attrs.get("stride") or (1, 1))
    return 1.0 / (kh * kw), f"box model 1/{kh * kw}", f"conv {kh}x{kw}/{stride[0]}"


def _pool_figure(is_max: bool, n: int) -> tuple[float, str]:
    if is_max:
        return estimates.max_pool_mse(n), f"max pool MSE E[max]^2 + Var[max], n={n}"
    return estimates.avg_pool_mse(n), f"1/n, n={n}"


def node_gain(probe: Probe, meter: GainMeter, sigma: float) -> NodeGain:
    """The :class:`NodeGain` of one captured probe."""
    analytic, formula, label = analytic_gain(probe.data, probe.module, tuple(probe.clean.shape))
    only, real, in_model, samples = meter.measure(probe.module, probe.clean, probe.noisy)
    return NodeGain(
        node=probe.node,
        module_path=probe.data["module_path"],
        op=label,
        analytic=analytic,
        formula=formula,
        noise_only=only,
        real_input=real,
        in_model=in_model,
        sigma=sigma,
        samples=samples,
    )
