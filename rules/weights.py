"""NL6xx: noise gains read from real weights (checkpoints, ONNX initializers, instantiated modules)."""

from __future__ import annotations

import numpy as np

from noiselint import estimates
from noiselint.findings import Severity
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Range, Rule


def _first(tensors: dict, *keys: str) -> np.ndarray | None:
    """The first of ``keys`` present: loaders name BatchNorm tensors ONNX's way or torch's."""
    return next((tensors[k] for k in keys if tensors.get(k) is not None), None)


def _amplifying(gains: np.ndarray, limit: float) -> str:
    worst = int(np.argmax(gains))
    count = int(np.sum(gains > limit))
    return f"{count} of {gains.size} channels; worst channel {worst}: x{gains[worst]:.3g}"


class NoiseAmplifyingStemConv(Rule):
    """
    ## What it does
    With real weights, reports a first conv whose channels amplify white input noise.

    A channel amplifies when its exact white-noise gain, the sum of its squared weights, is above 1
    (the ``max_gain`` option): its output noise variance exceeds the input's.

    ## Why is this bad?
    For white input noise of variance s^2, output channel c of a conv carries noise of variance
    s^2 ||W[c]||^2 (the sum of its squared weights over input channels and taps), for any kernel,
    stride or grouping. A mean filter keeps 1/n of it; a high-pass or large-norm kernel multiplies
    it. Robustness is concentrated in the shallow layers (arXiv 2603.12799), and the first conv is
    the only layer that sees the input noise unfiltered.

    ## Example
    ```python
    conv1 = nn.Conv2d(3, 64, 3)  # trained weights with ||W[c]||^2 = 6.8 on some channels
    ```

    ## Use instead
    ```python
    conv1 = nn.Conv2d(3, 64, 7)  # a larger, smoother stem; or train with noise augmentation / weight decay
    ```

    ## Known problems
    A sensitivity figure: the clean signal passes the same conv, so a channel that amplifies noise
    may amplify its signal as much. The gain is in the units of the normalized input (see NL401).
    A gain for Gaussian noise need not transfer to other corruptions (arXiv 2606.07593).

    ## References
    - "What Makes VLMs Robust? Towards Reconciling Robustness and Accuracy in Vision-Language Models",
      arXiv:2603.12799
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL601"
    name = "noise-amplifying-stem-conv"
    family = "weights"
    severity = Severity.INFO
    options = {"max_gain": 1.0}
    option_ranges = {"max_gain": Range(0, low_open=True)}
    valid = (
        Example(
            """
            import torch
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

                def forward(self, x):
                    return self.conv(x)

            with torch.device("cpu"):  # real weights
                model = Net().eval()
            with torch.no_grad():
                model.conv.weight.fill_(1 / 27)  # a 3x3 mean over 3 channels: gain 1/27
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x)

            with torch.device("cpu"):  # real weights
                model = Net().eval()
            with torch.no_grad():
                model.conv.weight.fill_(0.5)  # gain 27 x 0.25 = 6.75 per channel
            """
        ),
    )

    def check(self, graph: ModelGraph):
        first = next((n for n, d in graph.nodes(*Op.CONVOLUTIONS) if d["stem"]), None)
        if first is None or first not in graph.parameters:
            return
        weight = graph.parameters[first]().get("weight")
        if weight is None:
            return
        gains, limit = estimates.conv_channel_noise_gain(weight), self.config["max_gain"]
        if gains.max() <= limit:
            return
        yield self.finding(
            graph,
            f"first conv amplifies white input noise (||W[c]||^2 > {limit:g}) on {_amplifying(gains, limit)}",
            node=first,
            estimate=estimates.stem_weight_estimate(weight, limit),
        )


class BatchNormAmplifiesNoise(Rule):
    """
    ## What it does
    With real weights, reports a stem BatchNorm whose channels amplify noise.

    A channel amplifies when its eval-mode gain gamma^2/(var + eps) is above 1 (the ``max_gain``
    option).

    ## Why is this bad?
    In eval mode a BatchNorm multiplies channel c by gamma_c / sqrt(running_var_c + eps), so it
    multiplies that channel's noise variance by gamma_c^2 / (running_var_c + eps), whatever the
    noise. A channel with a small running variance and a large gamma amplifies whatever noise
    reached it. Robustness is concentrated in the shallow layers (arXiv 2603.12799). In a small CPU
    experiment run for noiselint on digits, CNNs with BatchNorm collapsed at noise sigma
    0.05-0.1 while the same nets without it held above 88 % accuracy at 0.3.

    ## Example
    ```python
    self.bn1 = nn.BatchNorm2d(64)  # trained: running_var 0.01, gamma 1 on some channels: x100
    ```

    ## Use instead
    ```python
    self.bn1 = nn.GroupNorm(8, 64)  # or keep BatchNorm and train with noise augmentation
    ```

    ## Known problems
    A sensitivity figure: the clean signal is scaled by the same factor, and a small running
    variance may simply mean a weak channel. The digits experiment is one small setting, not a
    general result. A gain for Gaussian noise need not transfer to other corruptions
    (arXiv 2606.07593).

    ## References
    - "What Makes VLMs Robust? Towards Reconciling Robustness and Accuracy in Vision-Language Models",
      arXiv:2603.12799
    - Ioffe and Szegedy, "Batch Normalization", ICML 2015
    """

    code = "NL602"
    name = "batchnorm-amplifies-noise"
    family = "weights"
    severity = Severity.INFO
    options = {"max_gain": 1.0}
    option_ranges = {"max_gain": Range(0, low_open=True)}
    valid = (
        Example(
            """
            import torch
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.bn = nn.BatchNorm2d(8)

                def forward(self, x):
                    return self.bn(self.conv(x))

            with torch.device("cpu"):  # real weights: gamma 1, running_var 1
                model = Net().eval()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.bn = nn.BatchNorm2d(8)  # noiselint-expect

                def forward(self, x):
                    return self.bn(self.conv(x))

            with torch.device("cpu"):  # real weights
                model = Net().eval()
            model.bn.running_var.fill_(0.01)  # gamma 1: gain 1 / 0.01 = 100
            """
        ),
    )

    def check(self, graph: ModelGraph):
        limit = self.config["max_gain"]
        for node_id, data in graph.nodes(Op.NORM):
            if not data["stem"] or node_id not in graph.parameters:
                continue
            tensors = graph.parameters[node_id]()
            gamma, var = _first(tensors, "scale", "weight"), _first(tensors, "var", "running_var")
            if gamma is None or var is None:
                continue
            eps = float(data["attrs"].get("epsilon", 1e-5))
            gains = estimates.batchnorm_gain(gamma, var, eps)
            if gains.max() <= limit:
                continue
            yield self.finding(
                graph,
                f"BatchNorm amplifies noise (gamma^2/(var + eps) > {limit:g}) on {_amplifying(gains, limit)}",
                node=node_id,
                estimate=estimates.batchnorm_weight_estimate(gamma, var, eps, limit),
            )
