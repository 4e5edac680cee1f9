"""NL3xx: pooling and subsampling."""

from __future__ import annotations

import math

from noiselint import estimates
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Rule


class MaxPooling(Rule):
    """
    ## What it does
    Flags max pooling layers (``nn.MaxPool2d``, ``F.max_pool2d``, ONNX ``MaxPool``) with a window
    larger than one value.

    ## Why is this bad?
    On a noisy input, the maximum of a window picks the largest noise sample: it is biased upwards
    by E[max of n normals] times sigma and its mean-squared error grows with the window, while
    average pooling is unbiased and divides the noise variance by the window area n. For a 3x3
    window the noise MSE is 2.56 sigma^2 for max against 0.11 sigma^2 for average pooling
    (analytic, noise-only input). Average pooling was one of the four design patterns that the
    1,174-model study of arXiv 2509.20939 found to improve robustness to Gaussian noise.

    ## Example
    ```python
    self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    ```

    ## Use instead
    ```python
    self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    ```

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL301"
    name = "max-pooling"
    family = "pooling"
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.pool = nn.AvgPool2d(3, stride=2, padding=1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.pool = nn.MaxPool2d(3, stride=2, padding=1)  # noiselint-expect

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3, padding=1)

                def forward(self, x):
                    return F.max_pool2d(self.conv(x), 2)  # noiselint-expect

            model = Net()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        for node_id, data in graph.nodes(Op.MAX_POOL):
            window = data["attrs"].get("window")
            if not window or all(w == 1 for w in window):
                continue
            where = "stem" if data["stem"] else "in-stage"
            size = "x".join(str(w) for w in window)
            yield self.finding(
                graph,
                f"{size} max pooling ({where}): average pooling with the same window is unbiased and "
                f"divides the noise variance by {math.prod(window)}",
                node=node_id,
                estimate=estimates.max_pool_estimate(tuple(window[:2])),
            )

