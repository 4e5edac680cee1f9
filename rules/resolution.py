"""NL2xx: input resolution."""

from __future__ import annotations

from noiselint import estimates
from noiselint.findings import Severity
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Range, Rule


def _first_layer(graph: ModelGraph) -> str | None:
    """The first conv, patch embed or linear layer: where a model-level finding points."""
    return next((node_id for node_id, _ in graph.nodes(*Op.CONVOLUTIONS, Op.LINEAR)), None)


def _side(size: tuple[int, int, int]) -> int | tuple[int, int]:
    """H for a square (C, H, W) size, else (H, W)."""
    return size[1] if size[1] == size[2] else (size[1], size[2])


def _text(size: tuple[int, int, int]) -> str:
    return f"{size[1]}x{size[2]}"


class HighInputResolution(Rule):
    """
    ## What it does
    Flags an input resolution above 224 pixels (the ``max_resolution`` option).

    The size comes from the model's preprocessing (a timm ``pretrained_cfg``, ``INPUT_SIZE`` in the
    model file, ``--input-size``), or else the size it was traced at; the finding says which.

    ## Why is this bad?
    Smaller input resolutions were one of the four design patterns that the 1,174-model study of
    arXiv 2509.20939 found to improve robustness to additive Gaussian noise; its later version
    states it under a pre-resize sensor-noise protocol. When the noise is in the image at its
    current resolution (the sensor's), resizing it to the smaller input averages neighbouring
    pixels: an antialiased bilinear resize keeps sum(w^2) of the noise variance per pixel (384 to
    224: 0.151), the finding's factor. Twins trained at 48 and 32 px on the same field of view
    (``benchmarks/twins``) measured that factor and a robustness gain on every seed.

    ## Example
    ```python
    model = timm.create_model("vit_base_patch16_384")  # input 3x384x384
    ```

    ## Use instead
    ```python
    model = timm.create_model("vit_base_patch16_224")  # input 3x224x224
    ```

    ## Known problems
    Higher-resolution models in a zoo also differ in training recipe and size. Lower resolution
    usually costs clean accuracy. With noise added after the resize (ImageNet-C style) the factor is
    1, and the twin study found no effect under that protocol. The trend is for Gaussian noise and
    need not transfer to other corruptions (arXiv 2606.07593).

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL201"
    name = "high-input-resolution"
    family = "resolution"
    options = {"max_resolution": 224}
    option_ranges = {"max_resolution": Range(1, 1_000_000)}
    valid = (
        Example(
            """
            import torch.nn as nn

            INPUT_SIZE = 224

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)
                    self.pool = nn.AdaptiveAvgPool2d(1)

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

            INPUT_SIZE = 384

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """,
            options={"input_size": (3, 448, 448)},
        ),
    )

    def check(self, graph: ModelGraph):
        size, source = graph.preprocessing.input_size, graph.preprocessing.origin
        if size is None:
            size, source = graph.traced_input_size, "the size it was traced at"
        limit = self.config["max_resolution"]
        if size is None or max(size[1:]) <= limit:
            return
        yield self.finding(
            graph,
            f"input {_text(size)} (from {source}) is above {limit}: smaller inputs were more robust to "
            f"Gaussian noise across the paper's zoo; with noise at sensor resolution, resizing to {limit} "
            f"before the model averages it",
            node=_first_layer(graph),
            estimate=estimates.sensor_resize_estimate(_side(size), limit),
        )


class LargerTestSize(Rule):
    """
    ## What it does
    Reports a test-time input size above the train size (timm's ``test_input_size``).

    ## Why is this bad?
    Testing above the train size (the FixRes effect) often gains clean accuracy, but it feeds the
    model a larger input, the direction that the 1,174-model study of arXiv 2509.20939 found less
    robust to Gaussian noise. Worth knowing when a robustness number is quoted at the test size.

    ## Example
    ```python
    pretrained_cfg = {"input_size": (3, 224, 224), "test_input_size": (3, 288, 288)}
    ```

    ## Use instead
    ```python
    pretrained_cfg = {"input_size": (3, 224, 224), "test_input_size": (3, 224, 224)}
    ```

    ## Known problems
    An observed trend across models, not a formula; the gain is unknown. It need not transfer to
    other corruptions (arXiv 2606.07593).

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    - Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019
    """

    code = "NL202"
    name = "test-size-above-train-size"
    family = "resolution"
    severity = Severity.INFO
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                pretrained_cfg = {
                    "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                    "input_size": (3, 224, 224), "test_input_size": (3, 224, 224),
                }

                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                pretrained_cfg = {
                    "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                    "input_size": (3, 224, 224), "test_input_size": (3, 288, 288),
                }

                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        train, test = graph.preprocessing.input_size, graph.preprocessing.test_input_size
        if train is None or test is None or max(test[1:]) <= max(train[1:]):
            return
        yield self.finding(
            graph,
            f"evaluated at {_text(test)} but trained at {_text(train)} (from {graph.preprocessing.origin}): "
            f"larger inputs were less robust to Gaussian noise across the paper's zoo; the gain of testing "
            f"at {_text(train)} is unknown",
            node=_first_layer(graph),
            estimate=estimates.resolution_estimate(_side(test), _side(train)),
        )
