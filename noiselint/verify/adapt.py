"""Adapted what-ifs (``--adapt STEPS``): a what-if's change, then a short label-free distillation.

A training-free patch keeps weights that were trained for the original layer. Here the patch is
applied, then only the changed layers and the stem (the graph's ``stem`` nodes: the layers up to the
end of the first downsampling stage) are trained for ``steps`` Adam steps to reproduce the original
model's logits (mean squared error) on clean, augmented images: random resized crops (at least
:data:`MIN_AREA` of the image) and, for 3-channel images, horizontal flips. No labels are used;
everything else stays frozen, in eval mode. Before the first step, the running statistics of every
trained BatchNorm are re-estimated so that, on the first distillation batch, its output has the
original model's per-channel mean and variance (a warm start: a blur or an average pool changes the
scale of what the next layers see); during the steps they stay fixed. The adapted model is then
measured under noise like the original. It is distilled on every other verify image (positions 0, 2,
...); its clean agreement with the original is counted on the others, which it never saw. Seeded
(crops, flips, batch order) and repeatable on one device; the trained weights are put back
afterwards, so the caller's model is unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from noiselint.graph import ModelGraph
from noiselint.verify.noise import seed_for
from noiselint.verify.probe import PROBE_IMAGES, noise_to_signal
from noiselint.verify.report import Adapted
from noiselint.verify.whatif import Patch, applied

ADAPT_STREAM = 4
ADAPT_BATCH = 32
LEARNING_RATE = 3e-3
MIN_AREA = 0.6


@dataclass(frozen=True)
class Distilled:
    """What one distillation did: trained module paths, parameter count, loss at the start and end."""

    trained: tuple[str, ...]
    parameters: int
    first_loss: float
    last_loss: float
    seconds: float


def trainable_paths(graph: ModelGraph, module: nn.Module, chosen: list[Patch]) -> tuple[str, ...]:
    """Module paths to train: every stem node's module, the patched modules, and after each patch the
    first layer with weights that its output reaches (a pooling change has no weights of its own)."""
    modules = dict(module.named_modules())
    paths = [
        data["module_path"]
        for _, data in graph.nodes()
        if data["stem"] and data["module_path"] in modules and _weighted(modules[data["module_path"]])
    ]
    for patch in chosen:
        paths.append(patch.module_path)
        paths += _next_weighted(graph, modules, patch.probe.node)
    return tuple(dict.fromkeys(paths))


def _next_weighted(graph: ModelGraph, modules: dict[str, nn.Module], node: str) -> list[str]:
    """The module paths of the first nodes after ``node``, on each path, whose modules have weights."""
    found, seen, frontier = [], {node}, list(graph.successors(node))
    while frontier:
        current = frontier.pop(0)
        if current in seen:
            continue
        seen.add(current)
        module = modules.get(graph.node(current).get("module_path") or "")
        if module is not None and _weighted(module):
            found.append(graph.node(current)["module_path"])
        else:
            frontier += graph.successors(current)
    return found


def _weighted(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def augmented(images: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random resized crops (area >= MIN_AREA, aspect 3/4..4/3) of ``images`` (N, C, H, W),
    back at H x W (bilinear), flipped left-right half the time when there are 3 channels."""
    n, channels, height, width = images.shape
    picks = torch.randint(0, n, (count,), generator=generator).tolist()
    params = torch.rand((count, 4), generator=generator).tolist()
    out = torch.empty((count, channels, height, width), device=images.device)
    for row, (index, (area, ratio, dy, dx)) in enumerate(zip(picks, params, strict=True)):
        area = MIN_AREA + (1 - MIN_AREA) * area
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * ratio)
        h = min(height, max(1, round(height * math.sqrt(area / aspect))))
        w = min(width, max(1, round(width * math.sqrt(area * aspect))))
        top, left = int(dy * (height - h + 1)), int(dx * (width - w + 1))
        crop = images[index : index + 1, :, top : top + h, left : left + w]
        out[row] = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0]
    if channels == 3:
        flip = (torch.rand(count, generator=generator) < 0.5).to(images.device)
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    return out.clamp_(0, 1)


def batches(images: torch.Tensor, steps: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """The distillation batches of every step, the same each time they are drawn for a seed."""
    generator = torch.Generator()
    for step in range(steps):
        generator.manual_seed(seed_for(seed, ADAPT_STREAM, step))
        yield augmented(images, batch, generator)


@contextmanager
def adapted(
    module: nn.Module, graph: ModelGraph, chosen: list[Patch], executor, images: torch.Tensor, steps: int,
    seed: int,
) -> Iterator[Distilled]:
    """``chosen`` applied to ``module`` and the stem and patched layers distilled for ``steps`` steps
    against the unpatched model on ``images`` ((N, C, H, W) clean [0, 1] pixels); on exit the patch
    comes off and the trained weights get their values back."""
    started = time.perf_counter()
    device, batch = executor.device, min(ADAPT_BATCH, executor.batch_size)
    paths = trainable_paths(graph, module, chosen)
    norms = [m for m in map(module.get_submodule, paths) if isinstance(m, _BatchNorm) and m.running_var is not None]
    first = executor.normalize(next(batches(images, 1, batch, seed)).to(device))
    with _moments(norms) as wanted:
        executor.run(first)
    teacher = [executor.run(executor.normalize(x.to(device))) for x in batches(images, steps, batch, seed)]
    with applied(module, chosen, device, executor.channels_last), _trainable(module, paths, norms) as params:
        with _matched(norms, wanted):
            executor.run(first)
        losses = _distil(module, params, teacher, images, batch, seed, executor)
        yield Distilled(
            trained=paths,
            parameters=sum(p.numel() for p in params),
            first_loss=losses[0],
            last_loss=losses[-1],
            seconds=time.perf_counter() - started,
        )


def held_out(count: int) -> tuple[slice, slice]:
    """(distillation, held-out) positions among ``count`` verify images: even and odd positions; a
    single image is both."""
    return slice(0, None, 2), slice(1 if count > 1 else 0, None, 2)


def measure(module, graph, chosen, executor, images, options, base, training_free, progress) -> Adapted:
    """The adapted what-if of ``chosen``: distilled for ``options.adapt`` steps on the even-position
    verify images, then swept on all of them like the original (``base``) and the training-free patch
    (``training_free``); the clean agreement is over the odd-position (held-out) images."""
    from noiselint.verify.runner import sweep

    distil, held = held_out(len(images))
    with adapted(module, graph, chosen, executor, images.images[distil], options.adapt, options.seed) as done:
        run = sweep(executor, images, options, (), progress)
        probe = noise_to_signal(executor, images.images[:PROBE_IMAGES], options.seed)
    kept = run.accumulator.top1[held] == base.accumulator.top1[held]
    return Adapted(
        steps=options.adapt,
        trained=done.trained,
        parameters=done.parameters,
        first_loss=done.first_loss,
        last_loss=done.last_loss,
        clean_agreement=kept.float().mean().item(),
        held_out=len(kept) if len(images) > 1 else 0,
        sweep=run.result,
        vs_original=run.result.robustness - base.result.robustness,
        vs_training_free=run.result.robustness - training_free.result.robustness,
        seconds=done.seconds + run.result.seconds,
        probe=probe,
    )


def _distil(module, params, teacher, images, batch: int, seed: int, executor) -> list[float]:
    """Adam with a cosine learning rate on the mean squared logit error; the loss of every step."""
    from noiselint.verify.execute import logits_of

    steps, losses = len(teacher), []
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if executor.device.type == "cuda" and executor.precision == "bf16"
        else nullcontext()
    )
    for step, (x, target) in enumerate(zip(batches(images, steps, batch, seed), teacher, strict=True)):
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * step / steps))
        inputs = executor.normalize(x.to(executor.device))
        if executor.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = _loss(logits_of(module(inputs)), target.to(executor.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher)


def _channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().float().transpose(0, 1).flatten(1)
    return x.mean(1), x.var(1)


@contextmanager
def _moments(norms: list[_BatchNorm]) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """While open, each forward records the per-channel (mean, variance) of what enters ``norms``."""
    found: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(norms)  # type: ignore[list-item]

    def hook(index):
        return lambda _module, args: found.__setitem__(index, _channel_moments(args[0]))

    handles = [norm.register_forward_pre_hook(hook(index)) for index, norm in enumerate(norms)]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _matched(norms: list[_BatchNorm], wanted: list[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """While open, each of ``norms`` sets its running statistics, before it normalizes, so that its output
    on this input has the per-channel moments it had on ``wanted``'s input (a constant channel of either
    keeps its statistics)."""

    def hook(index):
        def match(norm, args):
            mean, var = _channel_moments(args[0])
            old_mean, old_var = wanted[index]
            scale = torch.where((old_var > 0) & (var > 0), var / old_var.clamp_min(1e-12), 1.0).to(norm.running_var)
            norm.running_mean.copy_(mean.to(norm.running_mean) - (old_mean.to(norm.running_mean) - norm.running_mean)
                                    * scale.sqrt())
            norm.running_var.copy_(((norm.running_var + norm.eps) * scale - norm.eps).clamp_min(0))

        return match

    handles = [norm.register_forward_pre_hook(hook(index)) for index, norm in enumerate(norms)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _trainable(module: nn.Module, paths: tuple[str, ...], norms: list[_BatchNorm]) -> Iterator[list[nn.Parameter]]:
    """Only the parameters of the modules at ``paths`` require grad; on exit every flag, every trained
    value and the running statistics of ``norms`` are as before. The model stays in eval mode."""
    flags = {p: p.requires_grad for p in module.parameters()}
    params = list({id(p): p for path in paths for p in module.get_submodule(path).parameters()}.values())
    buffers = [b for norm in norms for b in (norm.running_mean, norm.running_var)]
    saved = [p.detach().clone() for p in params + buffers]
    try:
        for p in flags:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield params
    finally:
        with torch.no_grad():
            for p, value in zip(params + buffers, saved, strict=True):
                p.copy_(value)
        for p, flag in flags.items():
            p.requires_grad_(flag)
