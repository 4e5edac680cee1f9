"""Train each twin, lint it, measure it under Gaussian noise; one raw record per (task, variant, seed).

Measured per model: clean accuracy; accuracy under noise sigma in SIGMAS added at sensor resolution
before the resize to the model's input ("sensor", the main protocol) and after it ("input");
robustness = mean over sigmas of noisy / clean accuracy; and the noise-to-signal ratio (NSR) at
hooked stages for small noise (sigma PROBE_SIGMA): sum of squared output changes over the summed
variance of the clean output across images, per stage, with the same noise for every model.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from benchmarks.twins import data, models

SIGMAS = (0.02, 0.05, 0.08, 0.12, 0.18, 0.26)
PROBE_SIGMA = 0.05
PROBE_IMAGES = 256
STAGES = ("stem.1", "stem", "pool", "layer2.shortcut", "layer3.shortcut")


@dataclass(frozen=True)
class Recipe:
    """The training recipe, the same for every variant of a task."""

    steps: int
    batch: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True


RECIPES = {"natural": Recipe(steps=300), "digits": Recipe(steps=200, flip=False)}
QUICK_RECIPES = {"natural": Recipe(steps=120), "digits": Recipe(steps=120, flip=False)}
MEAN = 0.5


def normalize(x: torch.Tensor, std: float) -> torch.Tensor:
    return (x - MEAN) / std


def train(net: torch.nn.Module, task: data.Task, size: int, std: float, recipe: Recipe, seed: int) -> None:
    """SGD with momentum, cosine learning rate, random batches drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    x_all = data.to_model(task.x_train, size)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay, nesterov=True)
    net.train()
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        index = torch.randint(0, len(x_all), (recipe.batch,), generator=generator)
        x = x_all[index]
        if recipe.flip:
            flip = torch.rand(recipe.batch, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = F.cross_entropy(net(normalize(x, std)), task.y_train[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()


def _noise(shape: torch.Size, key: int) -> torch.Tensor:
    """Unit Gaussian noise, the same for every model and seed (common random numbers)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(1000 + key))


@torch.no_grad()
def _accuracy(net, x: torch.Tensor, y: torch.Tensor, std: float) -> float:
    correct = 0
    for start in range(0, len(x), 512):
        correct += int((net(normalize(x[start:start + 512], std)).argmax(1) == y[start:start + 512]).sum())
    return correct / len(x)


def accuracies(net, task: data.Task, size: int, std: float) -> dict:
    """Clean accuracy and noisy accuracy per sigma under both noise protocols."""
    clean_input = data.to_model(task.x_test, size)
    out = {"clean": _accuracy(net, clean_input, task.y_test, std), "sensor": [], "input": []}
    for i, sigma in enumerate(SIGMAS):
        sensor = task.x_test + sigma * _noise(task.x_test.shape, i)
        out["sensor"].append(_accuracy(net, data.to_model(sensor, size), task.y_test, std))
        noisy = clean_input + sigma * _noise(clean_input.shape, 100 + i)
        out["input"].append(_accuracy(net, noisy, task.y_test, std))
    return out


def _nsr(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    clean, noisy = clean.flatten(1).double(), noisy.flatten(1).double()
    signal = ((clean - clean.mean(0)) ** 2).sum()
    return float(((noisy - clean) ** 2).sum() / signal)


@torch.no_grad()
def stage_nsr(net, task: data.Task, size: int, std: float) -> dict[str, float]:
    """NSR at the model input (after the resize), at each hooked stage and at the logits (sensor noise)."""
    x = task.x_test[:PROBE_IMAGES]
    noisy_sensor = x + PROBE_SIGMA * _noise(x.shape, 999)
    captured: dict[str, list[torch.Tensor]] = {}
    modules = dict(net.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda _m, _i, out, name=name: captured.setdefault(name, []).append(out.detach()))
        for name in STAGES if name in modules and not isinstance(modules[name], torch.nn.Identity)]
    try:
        clean_in, noisy_in = data.to_model(x, size), data.to_model(noisy_sensor, size)
        logits = [net(normalize(clean_in, std)), net(normalize(noisy_in, std))]
    finally:
        for handle in handles:
            handle.remove()
    result = {"input": _nsr(clean_in, noisy_in), "logits": _nsr(*logits)}
    result.update({name: _nsr(*outs) for name, outs in captured.items()})
    return result


def lint(variant: str, task: data.Task, size: int, config: str) -> dict:
    """noiselint's findings and exposure for a variant (architecture only: built, not trained)."""
    import noiselint

    torch.manual_seed(0)
    net = models.build(variant, task.channels, task.classes)
    std = models.VARIANTS[variant].std
    report = noiselint.lint(net, mean=(MEAN,) * task.channels, std=(std,) * task.channels,
                            input_size=(task.channels, size, size), name=variant, config=config,
                            ignore=["NL6"])
    model = report.models[0]
    findings = []
    for f in model.findings:
        e = f.estimate
        findings.append({
            "code": f.code, "module_path": f.module_path,
            "estimate": None if e is None else {
                "quantity": e.quantity, "factor": e.factor, "current": e.current, "proposed": e.proposed,
                "scales_sigma": e.scales_sigma, "basis": e.basis.value},
        })
    return {"findings": findings, "exposure": model.exposure, "load_error": model.load_error}


def run_one(task: data.Task, variant: str, seed: int, recipe: Recipe) -> dict:
    """Train and measure one (variant, seed): a raw record."""
    start = time.perf_counter()
    size = models.input_size(variant, task.name)
    std = models.VARIANTS[variant].std
    torch.manual_seed(seed)
    net = models.build(variant, task.channels, task.classes)
    train(net, task, size, std, recipe, seed)
    acc = accuracies(net, task, size, std)
    record = {
        "task": task.name, "variant": variant, "seed": seed, "size": size,
        "accuracy": acc, "nsr": stage_nsr(net, task, size, std),
        "seconds": round(time.perf_counter() - start, 2),
    }
    record["robustness"] = {protocol: sum(acc[protocol]) / len(SIGMAS) / acc["clean"]
                            for protocol in ("sensor", "input")}
    return record


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)
